package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"ustack/nic/xdp"
	"ustack/shm"
)

// cmdKeeper runs a group's keeper (nic/xdp keeper.go). A process under ustack starts it with
// --detach when it finds no keeper for its interface's queue: the first run starts the keeper
// proper in a session of its own and exits, so that the keeper is nobody's child.
func cmdKeeper(args []string, stderr io.Writer) int {
	// whatever the starting process left open without close-on-exec is not the keeper's
	_ = unix.CloseRange(3, ^uint(0), 0)
	fs := flag.NewFlagSet("keeper", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ifname := fs.String("iface", "", "interface")
	queue := fs.Int("queue", 0, "queue")
	slots := fs.Uint("slots", 16, "member slots")
	mode := fs.String("mode", "", "XDP attach mode: auto, native or generic")
	build := fs.String("build", "", "build id of the members (hex, required)")
	logFile := fs.String("log", "", "log file (default: none)")
	detach := fs.Bool("detach", false, "start the keeper in a session of its own and return")
	if err := fs.Parse(args); err != nil || *ifname == "" {
		fmt.Fprintln(stderr, "onloadctl keeper: --iface is required")
		return 2
	}
	if *detach {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "onloadctl keeper: %v\n", err)
			return 1
		}
		var rest []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "detach" {
				rest = append(rest, "--"+f.Name+"="+f.Value.String())
			}
		})
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			fmt.Fprintf(stderr, "onloadctl keeper: %v\n", err)
			return 1
		}
		fd := null.Fd()
		_, err = syscall.ForkExec(self, append([]string{self, "keeper"}, rest...), &syscall.ProcAttr{
			Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
			Files: []uintptr{fd, fd, fd},
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
		if err != nil {
			fmt.Fprintf(stderr, "onloadctl keeper: starting: %v\n", err)
			return 1
		}
		return 0
	}
	logger := log.New(io.Discard, "", log.LstdFlags|log.Lmicroseconds)
	if *logFile != "" {
		if f, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
			logger.SetOutput(f)
		}
	}
	var id shm.BuildID
	if b, err := hex.DecodeString(*build); err != nil || len(b) != len(id) {
		fmt.Fprintf(stderr, "onloadctl keeper: --build %q: want %d hex bytes\n", *build, len(id))
		return 2
	} else {
		copy(id[:], b)
	}
	err := xdp.RunKeeper(xdp.KeeperOptions{
		Ifname: *ifname, Queue: *queue, Listener: -1,
		Log: logger.Printf,
		Group: xdp.GroupOptions{
			Mode:     *mode,
			Geometry: xdp.DefaultGroupGeometry(*ifname, uint32(*slots)),
			Build:    id,
		},
	})
	if errors.Is(err, xdp.ErrKeeperExists) {
		return 0 // another process started one first
	}
	if err != nil {
		logger.Printf("keeper: %v", err)
		return 1
	}
	return 0
}

// cmdGroup prints the group of an interface's queue, as its keeper sees it: every member with
// the frames and steering entries it holds.
func cmdGroup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("group", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ifname := fs.String("iface", os.Getenv("USTACK_IFACE"), "interface (default $USTACK_IFACE)")
	queue := fs.Int("queue", 0, "queue")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || *ifname == "" {
		fmt.Fprintln(stderr, "onloadctl group: --iface (or $USTACK_IFACE) is required")
		return 2
	}
	st, err := xdp.QueryGroup(*ifname, *queue)
	if err != nil {
		fmt.Fprintf(stderr, "onloadctl group: %s queue %d: %v\n", *ifname, *queue, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "%s queue %d (%s), keeper pid %d: %d frames (%d receive, %d transmit per slot), %d receive frames with the kernel\n",
		st.Ifname, st.Queue, st.Mode, st.Keeper, st.Frames, st.RxFrames, st.TxPerSlot, st.RxOnFill)
	fmt.Fprintf(stdout, "%5s %8s %8s %8s %8s %9s %6s  %s\n", "slot", "pid", "state", "rx held", "tx free", "tx flight", "flows", "ports")
	for _, m := range st.Members {
		fmt.Fprintf(stdout, "%5d %8d %8s %8d %8d %9d %6d  %s\n", m.Slot, m.Pid, m.State, m.RxHeld, m.TxFree, m.TxInflight, m.Flows,
			strings.Join(m.Ports, ", "))
	}
	return 0
}
