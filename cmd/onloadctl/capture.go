package main

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"ustack/shm"
)

// A capture reads the frames of the user-space stacks, which the kernel's tcpdump cannot see (the
// XDP program takes them before the kernel's taps): each process copies them into a ring
// onloadctl made (shm.CreateCapture), and onloadctl writes them out as pcap.

// captureTarget is one process being captured.
type captureTarget struct {
	pid    int
	comm   string
	ctl    *shm.SockTableControl
	ring   *shm.CaptureReader
	id     uint64
	table  string // its socket table: the process is gone once the file is another
	tabIno uint64
	gone   bool // the process exited, or another capture replaced this one
}

// parseCaptureFilter reads tcpdump's simplest primitives: tcp, udp, host ADDR, port N, joined
// by "and".
func parseCaptureFilter(words []string) (shm.CaptureFilter, error) {
	var f shm.CaptureFilter
	for i := 0; i < len(words); i++ {
		switch w := words[i]; w {
		case "tcp":
			f.Proto = unix.IPPROTO_TCP
		case "udp":
			f.Proto = unix.IPPROTO_UDP
		case "host":
			i++
			if i >= len(words) {
				return f, errors.New("host: address missing")
			}
			a, err := netip.ParseAddr(words[i])
			if err != nil || a.Zone() != "" {
				return f, fmt.Errorf("host: %q is not an IP address", words[i])
			}
			f.HasHost, f.Host = true, a.As16() // IPv4 as mapped
		case "port":
			i++
			if i >= len(words) {
				return f, errors.New("port: number missing")
			}
			p, err := strconv.ParseUint(words[i], 10, 16)
			if err != nil || p == 0 {
				return f, fmt.Errorf("port: bad port %q", words[i])
			}
			f.Port = uint16(p)
		case "and", "&&":
		default:
			return f, fmt.Errorf("unsupported filter word %q (tcp, udp, host ADDR, port N, and)", w)
		}
	}
	return f, nil
}

func cmdCapture(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("capture", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("pid", 0, "capture only this process")
	iface := fs.String("i", "", "capture the processes accelerating this interface")
	out := fs.String("w", "", "pcap file to write, - for stdout")
	count := fs.Uint64("c", 0, "stop after this many frames")
	snap := fs.Int("s", 65535, "bytes kept of each frame")
	secs := fs.Float64("G", 0, "stop after this many seconds")
	ringKiB := fs.Int("B", 16384, "ring size per process in KiB (a power of two)")
	dirFlag := fs.String("dir", "", "stats directory (default $USTACK_STATS_DIR or /dev/shm)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "onloadctl capture: -w FILE (or -w -) is required")
		return 2
	}
	if *snap <= 0 || *snap > 262144 {
		fmt.Fprintln(stderr, "onloadctl capture: -s wants 1 to 262144")
		return 2
	}
	filter, err := parseCaptureFilter(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "onloadctl capture: %v\n", err)
		return 2
	}
	dir := statsDir(*dirFlag)
	pids, err := capturePids(dir, *pid, *iface)
	if err != nil {
		fmt.Fprintf(stderr, "onloadctl capture: %v\n", err)
		return 1
	}

	var w io.Writer = stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintf(stderr, "onloadctl capture: %v\n", err)
			return 1
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(uint32(*snap), layers.LinkTypeEthernet); err != nil {
		fmt.Fprintf(stderr, "onloadctl capture: %v\n", err)
		return 1
	}

	var targets []*captureTarget
	defer func() {
		for _, t := range targets {
			t.stop()
		}
	}()
	for _, p := range pids {
		t, err := startCapture(dir, p, *ringKiB<<10, *snap, filter, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "onloadctl capture: process %d: %v\n", p, err)
			continue
		}
		targets = append(targets, t)
		fmt.Fprintf(stderr, "onloadctl capture: capturing process %d (%s)\n", t.pid, t.comm)
	}
	if len(targets) == 0 {
		fmt.Fprintln(stderr, "onloadctl capture: no process to capture")
		return 1
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	defer signal.Stop(sigs)
	var deadline time.Time
	if *secs > 0 {
		deadline = time.Now().Add(time.Duration(*secs * float64(time.Second)))
	}
	var written uint64
	var werr error
	write := func(f *shm.CaptureFrame) {
		if werr != nil || *count > 0 && written >= *count {
			return
		}
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, f.TimeNanos), CaptureLength: len(f.Data), Length: f.Len}
		if werr = pw.WritePacket(ci, f.Data); werr == nil {
			written++
		}
	}
	drainAll := func() int {
		n := 0
		for _, t := range targets {
			n += t.ring.Drain(write)
		}
		if n > 0 && werr == nil {
			werr = bw.Flush()
		}
		return n
	}
	lastCheck := time.Now()
loop:
	for {
		if drainAll() == 0 {
			time.Sleep(time.Millisecond)
		}
		switch {
		case werr != nil:
			break loop
		case *count > 0 && written >= *count:
			break loop
		case !deadline.IsZero() && time.Now().After(deadline):
			break loop
		}
		select {
		case <-sigs:
			break loop
		default:
		}
		if time.Since(lastCheck) > 200*time.Millisecond {
			lastCheck = time.Now()
			alive := 0
			for _, t := range targets {
				switch {
				case t.gone:
				case !t.alive():
					t.gone = true
					fmt.Fprintf(stderr, "onloadctl capture: process %d exited\n", t.pid)
				case t.ctl.Requested() != t.id:
					t.gone = true
					fmt.Fprintf(stderr, "onloadctl capture: process %d: another capture replaced this one\n", t.pid)
				}
				if !t.gone {
					alive++
				}
			}
			if alive == 0 {
				break loop
			}
		}
	}
	// the stacks stop at their next batch: what they wrote until then is read too
	for _, t := range targets {
		t.ctl.StopCapture(t.id)
	}
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
		attached := false
		for _, t := range targets {
			attached = attached || !t.gone && t.ctl.Attached() == t.id
		}
		drainAll()
		if !attached {
			break
		}
		time.Sleep(time.Millisecond)
	}
	drainAll()
	if werr == nil {
		werr = bw.Flush()
	}
	var frames, drops uint64
	for _, t := range targets {
		f, d := t.ring.Counts()
		frames, drops = frames+f, drops+d
	}
	fmt.Fprintf(stderr, "%d packets captured\n%d packets written\n%d packets dropped by ustack (ring full)\n",
		frames, written, drops)
	if werr != nil && !errors.Is(werr, syscall.EPIPE) {
		fmt.Fprintf(stderr, "onloadctl capture: writing: %v\n", werr)
		return 1
	}
	return 0
}

// capturePids returns the processes to capture: pid, or every live one with a socket table (on
// iface, if given).
func capturePids(dir string, pid int, iface string) ([]int, error) {
	if pid != 0 {
		return []int{pid}, nil
	}
	paths, err := shm.ListSockTables(dir)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range paths {
		snap, err := shm.ReadSockTable(p)
		if err != nil || !snap.Alive {
			continue
		}
		if iface != "" {
			st, err := shm.ReadStats(shm.StatsPath(dir, snap.Pid))
			if err != nil || st.Iface != iface {
				continue
			}
		}
		pids = append(pids, snap.Pid)
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no ustack process found (directory %s)", dir)
	}
	return pids, nil
}

func startCapture(dir string, pid, size, snap int, f shm.CaptureFilter, stderr io.Writer) (*captureTarget, error) {
	table := shm.SockTablePath(dir, pid)
	snapTab, err := shm.ReadSockTable(table)
	if err != nil {
		return nil, err
	}
	if !snapTab.Alive {
		return nil, errors.New("not running")
	}
	var st unix.Stat_t
	if err := unix.Stat(table, &st); err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := binary.LittleEndian.Uint64(b[:]) | 1
	name := fmt.Sprintf("%s%d.%x", shm.CaptureFilePrefix, pid, id)
	ring, err := shm.CreateCapture(filepath.Join(filepath.Dir(table), name), size, snap, f, int(st.Uid), int(st.Gid))
	if err != nil {
		return nil, err
	}
	ctl, err := shm.OpenSockTableControl(table)
	if err != nil {
		ring.Remove()
		return nil, err
	}
	if old := snapTab.CaptureReq; old != 0 {
		// another onloadctl captures it, or one was killed before it could say stop
		fmt.Fprintf(stderr, "onloadctl capture: process %d: replacing capture %x\n", pid, old)
	}
	ctl.RequestCapture(id, name)
	return &captureTarget{pid: pid, comm: commOf(pid), ctl: ctl, ring: ring, id: id, table: table, tabIno: st.Ino}, nil
}

// alive reports whether the process still runs the table captured.
func (t *captureTarget) alive() bool {
	var st unix.Stat_t
	if unix.Stat(t.table, &st) != nil || st.Ino != t.tabIno {
		return false
	}
	return unix.Kill(t.pid, 0) == nil && commOf(t.pid) != ""
}

func (t *captureTarget) stop() {
	t.ctl.StopCapture(t.id)
	t.ctl.Close()
	t.ring.Remove()
}
