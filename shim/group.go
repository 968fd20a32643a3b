package shim

import (
	"bufio"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"ustack/nic/xdp"
	"ustack/shm"
)

// Every process under ustack on an interface is a member of the group of its queue: its own
// stack and AF_XDP socket over the UMEM the group shares, steered to by the group's program
// (nic/xdp keeper.go). The first process to come starts the group's keeper, an onloadctl that
// lives as long as some member does.

// attachGroup joins the group of the interface's queue 0, starting its keeper if need be.
func attachGroup(cfg Config, ifname string, stats *xdp.Stats) (*xdp.Socket, *xdp.Membership, error) {
	build, err := buildID()
	if err != nil {
		return nil, nil, err
	}
	return xdp.Attach(ifname, 0, xdp.AttachOptions{
		Build: build,
		Stats: stats,
		Spawn: func() error { return spawnKeeper(cfg, ifname, build) },
	})
}

// spawnKeeper starts `onloadctl keeper --detach`, which starts the keeper in a session of its
// own and exits at once; its exit is collected here (a program that collects every child may
// collect it first, which does no harm).
func spawnKeeper(cfg Config, ifname string, build shm.BuildID) error {
	ctl := cfg.Onloadctl
	if ctl == "" {
		lib, err := libraryPath()
		if err != nil {
			return fmt.Errorf("finding onloadctl: %w (set USTACK_ONLOADCTL)", err)
		}
		ctl = onloadctlNear(filepath.Dir(lib))
	}
	args := []string{ctl, "keeper", "--detach", "--iface=" + ifname, "--queue=0",
		"--slots=" + strconv.Itoa(cfg.GroupSlots), fmt.Sprintf("--build=%x", build[:])}
	if cfg.XDPMode != "" {
		args = append(args, "--mode="+cfg.XDPMode)
	}
	if cfg.KeeperLog != "" {
		args = append(args, "--log="+cfg.KeeperLog)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	fd := null.Fd()
	// the program's environment stays with the program: no LD_PRELOAD for the keeper
	pid, err := syscall.ForkExec(ctl, args, &syscall.ProcAttr{
		Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Files: []uintptr{fd, fd, fd},
	})
	if err != nil {
		return fmt.Errorf("starting %s: %w", ctl, err)
	}
	go func() {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	}()
	return nil
}

// onloadctlNear returns the onloadctl that goes with the library in dir: beside it (the build
// directory), else in the bin directory of an installation: dir/../bin for PREFIX/lib,
// dir/../../bin for a multiarch PREFIX/lib/<triplet>.
func onloadctlNear(dir string) string {
	near := []string{
		filepath.Join(dir, "onloadctl"),
		filepath.Join(dir, "..", "bin", "onloadctl"),
		filepath.Join(dir, "..", "..", "bin", "onloadctl"),
	}
	for _, p := range near {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return near[0]
}

var build struct {
	once sync.Once
	id   shm.BuildID
	err  error
}

// buildID identifies this build of the library: the hash of its Go build id. Two builds of
// ustack never share a group (their shared layouts may differ).
func buildID() (shm.BuildID, error) {
	build.once.Do(func() {
		path, err := libraryPath()
		if err != nil {
			build.err = err
			return
		}
		f, err := elf.Open(path)
		if err != nil {
			build.err = fmt.Errorf("reading the build id of %s: %w", path, err)
			return
		}
		defer f.Close()
		sec := f.Section(".note.go.buildid")
		if sec == nil {
			build.err = fmt.Errorf("%s has no Go build id", path)
			return
		}
		data, err := sec.Data()
		if err != nil {
			build.err = fmt.Errorf("reading the build id of %s: %w", path, err)
			return
		}
		build.id = sha256.Sum256(data)
	})
	return build.id, build.err
}

// libraryPath returns the file this code was loaded from, as /proc/self/maps names it.
func libraryPath() (string, error) {
	pc := uint64(reflect.ValueOf(libraryPath).Pointer())
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 {
			continue
		}
		lo, hi, ok := strings.Cut(fs[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && a <= pc && pc < b {
			return fs[5], nil
		}
	}
	return "", errors.New("the library's mapping is not in /proc/self/maps")
}
