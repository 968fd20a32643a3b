// Package faults builds a fault-injecting topology for interop tests: a
// namespace R between the two hosts of tests/topo.
//
//	namespace A                namespace R                     namespace B
//	  IfA 10.X.Y.1/24 <─veth─> IfRA ══ relay ══ IfRB <─veth─> IfB 10.X.Y.2/24
//	      fdUU:UUUU:UUUU::1/64                                    fdUU:UUUU:UUUU::2/64
//
// A and B have IPv6 as in tests/topo (a unique local /64 per run, link-locals,
// no duplicate address detection); the relay forwards every frame, IPv6 and
// neighbour discovery included, and R itself has no IPv6.
//
// R forwards Ethernet frames between IfRA and IfRB like a bridge, through the
// relay program (tests/faults/relay: AF_PACKET raw sockets, no netem needed),
// which applies seeded per-direction loss, duplication, corruption, delay with
// jitter and reordering (Fault). With Options.RateKbit a TBF qdisc on both of
// R's interfaces makes a bandwidth bottleneck with a short queue (tail drop).
// The relay's counters (Stats) are read with Topo.Stats and logged at the end.
//
// The routed variant (Options.Routed) has no relay: A and B are on two
// subnets and R is an IPv4 and IPv6 router between them (kernel forwarding):
//
//	IfA 10.X.Y.1/24 <─veth─> IfRA 10.X.Y.254 │ R │ IfRB 10.X.Z.254 <─veth─> IfB 10.X.Z.2/24
//	    fdUU:..:UUUU::1/64        fdUU:..:UUUU::fe   fdUU:..:UUUU:1::fe        fdUU:..:UUUU:1::2/64
//
// Every veth end the kernel transmits from has TX checksum offload and
// TSO/GSO/GRO off (IfRA, IfRB, IfB), so frames carry full checksums and are at
// most one MTU long. IfA keeps its defaults, as ustack runs there; call
// OffloadsOffA (or set Options.OffloadsOffA) before the kernel in A sends
// through the relay, which cannot forward a TSO super-frame or finish a
// partial checksum.
//
// Names follow tests/topo ("ustk-<pid>-<id>-a/b/r", interfaces
// "ufa<id>"/"ufra<id>"/"ufrb<id>"/"ufb<id>"), so stale namespaces of a killed
// run are swept by the next one; Close deletes everything on every path.
package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ustack/tests/topo"
)

// Options configure a topology. The zero value is a relay that forwards
// every frame unchanged.
type Options struct {
	AB, BA Fault // faults on frames from A to B, and from B to A

	// Seed seeds the relay's generators; 0 picks one at random (logged, and
	// in Stats, so that a failing run can be repeated with it).
	Seed uint64

	// RateKbit > 0 puts a TBF qdisc with this rate on R's egress interfaces
	// (both directions), queue QueueBytes (0: 20 ms at the rate, at least 4
	// full frames) and bucket BurstBytes (0: 1 ms at the rate, at least 3
	// full frames).
	RateKbit   int
	QueueBytes int
	BurstBytes int

	// Routed makes R an IPv4 and IPv6 router between two subnets instead of a relay;
	// AB and BA must then be zero (RateKbit still applies).
	Routed bool

	// OffloadsOffA turns TX checksum offload and TSO/GSO/GRO off on IfA too,
	// for topologies where only the kernel sends from A.
	OffloadsOffA bool

	// RelayPath is the relay binary; "" means $USTACK_RELAY, else
	// build/tests/relay, built (go build) when missing or older than its
	// sources.
	RelayPath string
}

// Symmetric is Options with the same fault in both directions.
func Symmetric(f Fault) Options { return Options{AB: f, BA: f} }

// Topo is one instance of the fault topology. The embedded topo.Topo is
// hosts A and B (NSA, NSB, IfA, IfB, AddrA, AddrB, Run*, Start,
// StartServer), so everything written against tests/topo runs unchanged.
type Topo struct {
	*topo.Topo
	NSR        string
	IfRA, IfRB string // R's ends of the veth pairs towards A and B
	// Routed only: R's addresses, the gateways of A and B, and B's subnet; IPv4 and IPv6.
	GatewayA, GatewayB   string
	SubnetB              string
	GatewayA6, GatewayB6 string
	Prefix6B             string
	Opts                 Options

	dir       string // relay stats file and log
	relay     *exec.Cmd
	relayDone chan struct{}
	relayErr  bytes.Buffer

	mu     sync.Mutex
	closed bool
	final  *Stats
}

// Available reports why a fault topology cannot be created here, or nil.
func Available() error {
	if err := topo.Available(); err != nil {
		return err
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return err
	}
	return nil
}

// New creates a topology and registers its teardown with t.Cleanup, which also
// logs the relay's final counters. It skips the test when the topology cannot
// be built here (not root, tools missing).
func New(t testing.TB, o Options) *Topo {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("fault topology unavailable: %v", err)
	}
	ft, err := Create(o)
	if err != nil {
		t.Fatalf("creating fault topology: %v", err)
	}
	t.Cleanup(func() {
		err := ft.Close()
		if s, ok := ft.FinalStats(); ok {
			t.Logf("fault topology %s (AB %v, BA %v):\n%s", ft.ID, ft.Opts.AB, ft.Opts.BA, s)
		}
		if err != nil {
			t.Errorf("tearing down fault topology: %v", err)
		}
	})
	return ft
}

// Create builds a topology; the caller must Close it.
func Create(o Options) (*Topo, error) {
	if err := o.AB.Validate(); err != nil {
		return nil, fmt.Errorf("faults A to B: %w", err)
	}
	if err := o.BA.Validate(); err != nil {
		return nil, fmt.Errorf("faults B to A: %w", err)
	}
	if o.Routed && !(o.AB.Zero() && o.BA.Zero()) {
		return nil, errors.New("the routed topology has no relay: faults must be zero")
	}
	if o.RateKbit < 0 || o.QueueBytes < 0 || o.BurstBytes < 0 {
		return nil, errors.New("negative rate, queue or burst")
	}
	topo.SweepStale()
	var rb [16]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, fmt.Errorf("random id: %w", err)
	}
	if o.Seed == 0 {
		o.Seed = binary.LittleEndian.Uint64(rb[8:]) | 1
	}
	id := hex.EncodeToString(rb[:3])
	x, y := 100+int(rb[3])%100, int(rb[4])
	ula, err := topo.ULA48()
	if err != nil {
		return nil, err
	}
	ns := func(role string) string { return fmt.Sprintf("%s%d-%s-%s", topo.NSPrefix, os.Getpid(), id, role) }
	ft := &Topo{
		Topo: &topo.Topo{
			ID: id, NSA: ns("a"), NSB: ns("b"), IfA: "ufa" + id, IfB: "ufb" + id,
			AddrA: fmt.Sprintf("10.%d.%d.1", x, y), AddrB: fmt.Sprintf("10.%d.%d.2", x, y),
			PrefixLen: 24, Subnet: fmt.Sprintf("10.%d.%d.0/24", x, y),
			AddrA6: ula + "::1", AddrB6: ula + "::2", Prefix6: ula + "::/64", PrefixLen6: 64,
		},
		NSR: ns("r"), IfRA: "ufra" + id, IfRB: "ufrb" + id,
		Opts: o,
	}
	if o.Routed {
		z := (y + 1) % 256
		ft.AddrB = fmt.Sprintf("10.%d.%d.2", x, z)
		ft.GatewayA, ft.GatewayB = fmt.Sprintf("10.%d.%d.254", x, y), fmt.Sprintf("10.%d.%d.254", x, z)
		ft.SubnetB = fmt.Sprintf("10.%d.%d.0/24", x, z)
		ft.AddrB6, ft.Prefix6B = ula+":1::2", ula+":1::/64"
		ft.GatewayA6, ft.GatewayB6 = ula+"::fe", ula+":1::fe"
	}
	if err := ft.setup(); err != nil {
		return nil, errors.Join(err, ft.Close())
	}
	return ft, nil
}

const noIPv6 = "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"

func offloadsOff(ns, ifname string) []string {
	return []string{"ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off", "gro", "off"}
}

func (ft *Topo) setup() error {
	pl := strconv.Itoa(ft.PrefixLen)
	steps := [][]string{
		{"ip", "netns", "add", ft.NSA},
		{"ip", "netns", "add", ft.NSB},
		{"ip", "netns", "add", ft.NSR},
	}
	pl6 := strconv.Itoa(ft.PrefixLen6)
	if !ft.Opts.Routed {
		steps = append(steps, []string{"ip", "netns", "exec", ft.NSR, "sh", "-c", noIPv6})
	}
	steps = append(steps,
		[]string{"ip", "link", "add", ft.IfA, "netns", ft.NSA, "type", "veth", "peer", "name", ft.IfRA, "netns", ft.NSR},
		[]string{"ip", "link", "add", ft.IfB, "netns", ft.NSB, "type", "veth", "peer", "name", ft.IfRB, "netns", ft.NSR},
		topo.QuietIPv6(ft.NSA, ft.IfA),
		topo.QuietIPv6(ft.NSB, ft.IfB),
		[]string{"ip", "-n", ft.NSA, "addr", "add", ft.AddrA + "/" + pl, "dev", ft.IfA},
		[]string{"ip", "-n", ft.NSB, "addr", "add", ft.AddrB + "/" + pl, "dev", ft.IfB},
		[]string{"ip", "-n", ft.NSA, "addr", "add", ft.AddrA6 + "/" + pl6, "dev", ft.IfA, "nodad"},
		[]string{"ip", "-n", ft.NSB, "addr", "add", ft.AddrB6 + "/" + pl6, "dev", ft.IfB, "nodad"},
		offloadsOff(ft.NSB, ft.IfB),
		offloadsOff(ft.NSR, ft.IfRA),
		offloadsOff(ft.NSR, ft.IfRB),
	)
	if ft.Opts.OffloadsOffA {
		steps = append(steps, offloadsOff(ft.NSA, ft.IfA))
	}
	if ft.Opts.Routed {
		steps = append(steps,
			[]string{"ip", "-n", ft.NSR, "addr", "add", ft.GatewayA + "/" + pl, "dev", ft.IfRA},
			[]string{"ip", "-n", ft.NSR, "addr", "add", ft.GatewayB + "/" + pl, "dev", ft.IfRB},
			[]string{"ip", "netns", "exec", ft.NSR, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"},
			topo.QuietIPv6(ft.NSR, ft.IfRA, ft.IfRB),
			[]string{"ip", "netns", "exec", ft.NSR, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"},
			[]string{"ip", "-n", ft.NSR, "addr", "add", ft.GatewayA6 + "/" + pl6, "dev", ft.IfRA, "nodad"},
			[]string{"ip", "-n", ft.NSR, "addr", "add", ft.GatewayB6 + "/" + pl6, "dev", ft.IfRB, "nodad"},
		)
	}
	for _, n := range []string{ft.NSA, ft.NSB, ft.NSR} {
		steps = append(steps, []string{"ip", "-n", n, "link", "set", "lo", "up"})
	}
	steps = append(steps,
		[]string{"ip", "-n", ft.NSR, "link", "set", ft.IfRA, "up"},
		[]string{"ip", "-n", ft.NSR, "link", "set", ft.IfRB, "up"},
		[]string{"ip", "-n", ft.NSA, "link", "set", ft.IfA, "up"},
		[]string{"ip", "-n", ft.NSB, "link", "set", ft.IfB, "up"},
	)
	if ft.Opts.Routed {
		steps = append(steps,
			[]string{"ip", "-n", ft.NSA, "route", "add", "default", "via", ft.GatewayA},
			[]string{"ip", "-n", ft.NSB, "route", "add", "default", "via", ft.GatewayB},
			[]string{"ip", "-n", ft.NSA, "-6", "route", "add", "default", "via", ft.GatewayA6},
			[]string{"ip", "-n", ft.NSB, "-6", "route", "add", "default", "via", ft.GatewayB6},
		)
	}
	if r := ft.Opts.RateKbit; r > 0 {
		rate := r * 1000 / 8 // bytes per second
		const frame = 1514
		queue, burst := ft.Opts.QueueBytes, ft.Opts.BurstBytes
		if queue == 0 {
			queue = max(rate/50, 4*frame)
		}
		if burst == 0 {
			burst = max(rate/1000, 3*frame)
		}
		for _, ifname := range []string{ft.IfRA, ft.IfRB} {
			steps = append(steps, []string{"ip", "netns", "exec", ft.NSR, "tc", "qdisc", "replace", "dev", ifname, "root",
				"tbf", "rate", fmt.Sprintf("%dkbit", r), "burst", strconv.Itoa(burst), "limit", strconv.Itoa(queue)})
		}
	}
	for _, s := range steps {
		if err := run(10*time.Second, s...); err != nil {
			return err
		}
	}
	if err := ft.waitCarrier(10 * time.Second); err != nil {
		return err
	}
	if err := ft.LearnLinkLocals(); err != nil {
		return err
	}
	if ft.Opts.Routed {
		return nil
	}
	return ft.startRelay()
}

func run(timeout time.Duration, argv ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (ft *Topo) waitCarrier(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	ends := [][2]string{{ft.NSA, ft.IfA}, {ft.NSR, ft.IfRA}, {ft.NSR, ft.IfRB}, {ft.NSB, ft.IfB}}
	for {
		down := ""
		for _, e := range ends {
			out, err := exec.Command("ip", "-n", e[0], "-o", "link", "show", e[1]).Output()
			if err != nil || !bytes.Contains(out, []byte("LOWER_UP")) {
				down = e[1]
				break
			}
		}
		if down == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("veth %s not up after %v", down, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// OffloadsOffA turns TX checksum offload and TSO/GSO/GRO off on IfA: do it
// before the kernel in A sends through the relay (kernel-to-kernel runs).
func (ft *Topo) OffloadsOffA() error {
	return run(10*time.Second, offloadsOff(ft.NSA, ft.IfA)...)
}

func (ft *Topo) statsPath() string { return filepath.Join(ft.dir, "stats.json") }

func (ft *Topo) startRelay() error {
	bin := ft.Opts.RelayPath
	if bin == "" {
		var err error
		if bin, err = RelayBinary(); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "ustack-relay-"+ft.ID+"-")
	if err != nil {
		return fmt.Errorf("relay directory: %w", err)
	}
	ft.dir = dir
	cmd := topo.Command(context.Background(), ft.NSR, nil, bin,
		"-a", ft.IfRA, "-b", ft.IfRB, "-seed", strconv.FormatUint(ft.Opts.Seed, 10),
		"-ab", ft.Opts.AB.String(), "-ba", ft.Opts.BA.String(), "-stats", ft.statsPath())
	cmd.Stdout, cmd.Stderr = &ft.relayErr, &ft.relayErr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting relay: %w", err)
	}
	ft.relay, ft.relayDone = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		close(ft.relayDone)
	}()
	// The relay writes its stats file once its sockets are bound.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(ft.statsPath()); err == nil {
			return nil
		}
		select {
		case <-ft.relayDone:
			return fmt.Errorf("relay exited at start: %s", bytes.TrimSpace(ft.relayErr.Bytes()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("relay not ready after 10s")
		}
	}
}

// Stats returns the relay's counters now (the final ones after Close): it
// asks the relay to write them (SIGUSR1) and waits at most 2 s for them.
func (ft *Topo) Stats() (Stats, error) {
	if s, ok := ft.FinalStats(); ok {
		return s, nil
	}
	if ft.dir == "" {
		return Stats{}, errors.New("no relay (routed topology)")
	}
	old, err := readStats(ft.statsPath())
	if err != nil {
		return old, err
	}
	if err := ft.relay.Process.Signal(syscall.SIGUSR1); err != nil {
		return old, fmt.Errorf("asking the relay for its counters: %w", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		s, err := readStats(ft.statsPath())
		if err == nil && s.Seq > old.Seq {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, errors.Join(err, errors.New("relay did not write its counters within 2s"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FinalStats returns the counters the relay wrote when Close stopped it.
func (ft *Topo) FinalStats() (Stats, bool) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.final == nil {
		return Stats{}, false
	}
	return *ft.final, true
}

func readStats(path string) (Stats, error) {
	var s Stats
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("reading relay stats: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decoding relay stats: %w", err)
	}
	return s, nil
}

// stopRelay ends the relay with SIGTERM (it writes its final counters), or
// SIGKILL after 3 s.
func (ft *Topo) stopRelay() error {
	if ft.relay == nil {
		return nil
	}
	var err error
	select {
	case <-ft.relayDone:
		err = fmt.Errorf("relay died: %s", bytes.TrimSpace(ft.relayErr.Bytes()))
	default:
		syscall.Kill(ft.relay.Process.Pid, syscall.SIGTERM)
		select {
		case <-ft.relayDone:
		case <-time.After(3 * time.Second):
			syscall.Kill(-ft.relay.Process.Pid, syscall.SIGKILL)
			<-ft.relayDone
			err = errors.New("relay did not stop on SIGTERM")
		}
	}
	if s, rerr := readStats(ft.statsPath()); rerr == nil {
		ft.mu.Lock()
		ft.final = &s
		ft.mu.Unlock()
	}
	return err
}

// Close stops the relay and the processes started in A and B, and deletes
// the three namespaces (which removes the veth pairs). Safe twice and on nil.
func (ft *Topo) Close() error {
	if ft == nil {
		return nil
	}
	ft.mu.Lock()
	if ft.closed {
		ft.mu.Unlock()
		return nil
	}
	ft.closed = true
	ft.mu.Unlock()
	errs := []error{ft.stopRelay(), ft.Topo.Close(), topo.DeleteNS(ft.NSR)}
	if ft.dir != "" {
		errs = append(errs, os.RemoveAll(ft.dir))
	}
	return errors.Join(errs...)
}

var (
	relayOnce sync.Once
	relayBin  string
	relayErr  error
)

// RelayBinary returns the relay program: $USTACK_RELAY if set, else
// build/tests/relay, built first (go build, once per process) when missing or
// older than a source file of tests/faults.
func RelayBinary() (string, error) {
	if p := os.Getenv("USTACK_RELAY"); p != "" {
		return p, nil
	}
	relayOnce.Do(func() { relayBin, relayErr = buildRelay() })
	return relayBin, relayErr
}

func buildRelay() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "build", "tests", "relay")
	src := filepath.Join(root, "tests", "faults")
	if fresh(bin, src) {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("building relay: %w", err)
	}
	// Build beside it and rename: a relay another test run is executing
	// keeps its inode.
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	// go test puts its own toolchain first in PATH.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "./tests/faults/relay")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building relay: %w: %s", err, bytes.TrimSpace(out))
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building relay: %w", err)
	}
	return bin, nil
}

// fresh reports whether bin exists and is newer than every .go file under src.
func fresh(bin, src string) bool {
	st, err := os.Stat(bin)
	if err != nil {
		return false
	}
	ok := true
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().After(st.ModTime()) {
			ok = false
		}
		return nil
	})
	return ok
}

// moduleRoot walks up from the working directory to the go.mod of module
// ustack.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module ustack\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the module root: no go.mod of module ustack above the working directory")
		}
		dir = parent
	}
}
