// Package topo builds the two-namespace test topology of ustack's end-to-end
// tests and runs programs inside it.
//
//	namespace A (accelerated)            namespace B (kernel peer)
//	  IfA 10.X.Y.1/24  <──── veth ────>  IfB 10.X.Y.2/24
//	      fdUU:UUUU:UUUU::1/64               fdUU:UUUU:UUUU::2/64
//	      fe80::<EUI-64 of IfA>/64           fe80::<EUI-64 of IfB>/64
//
// Names and the subnets are unique per run (namespaces "ustk-<pid>-<id>-a/b",
// interfaces "usa<id>"/"usb<id>", a random RFC 4193 unique local /48 per run),
// so concurrent runs never collide; namespaces left by a run that died are
// swept by the next one. IPv6 is quiet and usable at once: the unique local
// addresses are added with nodad, the interfaces do no duplicate address
// detection (their link-locals are never tentative) and send no router
// solicitations. On IfB, TX checksum
// offload and TSO/GSO/GRO are turned off so that the frames reaching IfA carry
// full checksums and are at most one MTU long. Close deletes both namespaces,
// which also removes the veth pair.
package topo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// Topo is one instance of the topology.
type Topo struct {
	ID           string
	NSA, NSB     string // network namespace names (ip netns)
	IfA, IfB     string // veth ends: IfA in NSA, IfB in NSB
	AddrA, AddrB string // IfA's and IfB's IPv4 addresses, without prefix
	PrefixLen    int
	Subnet       string // e.g. "10.123.45.0/24"

	// IPv6: IfA's and IfB's unique local addresses (without prefix, e.g.
	// "fd12:3456:789a::1"), their prefix ("fd12:3456:789a::/64") and its length.
	AddrA6, AddrB6 string
	Prefix6        string
	PrefixLen6     int
	// The link-local addresses the kernel gave IfA and IfB (fe80::..., no
	// "%zone"), and the interfaces' indexes in their namespaces: the
	// sin6_scope_id of a link-local peer.
	LinkLocalA, LinkLocalB string
	IndexA, IndexB         int

	mu     sync.Mutex
	procs  []*Proc
	closed bool
}

const nsPrefix = "ustk-"

// New creates a topology and registers its teardown with t.Cleanup. It skips
// the test when not running as root or when ip/ethtool are missing.
func New(t testing.TB) *Topo {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("topology unavailable: %v", err)
	}
	tp, err := Create()
	if err != nil {
		t.Fatalf("creating topology: %v", err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("tearing down topology: %v", err)
		}
	})
	return tp
}

// Available reports why a topology cannot be created here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root")
	}
	for _, b := range []string{"ip", "ethtool"} {
		if _, err := exec.LookPath(b); err != nil {
			return err
		}
	}
	return nil
}

// Create builds a topology; the caller must Close it.
func Create() (*Topo, error) {
	sweepStale()
	var rb [5]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, fmt.Errorf("random id: %w", err)
	}
	id := hex.EncodeToString(rb[:3])
	x, y := 100+int(rb[3])%100, int(rb[4])
	ula, err := ULA48()
	if err != nil {
		return nil, err
	}
	tp := &Topo{
		ID:         id,
		NSA:        fmt.Sprintf("%s%d-%s-a", nsPrefix, os.Getpid(), id),
		NSB:        fmt.Sprintf("%s%d-%s-b", nsPrefix, os.Getpid(), id),
		IfA:        "usa" + id,
		IfB:        "usb" + id,
		AddrA:      fmt.Sprintf("10.%d.%d.1", x, y),
		AddrB:      fmt.Sprintf("10.%d.%d.2", x, y),
		PrefixLen:  24,
		Subnet:     fmt.Sprintf("10.%d.%d.0/24", x, y),
		AddrA6:     ula + "::1",
		AddrB6:     ula + "::2",
		Prefix6:    ula + "::/64",
		PrefixLen6: 64,
	}
	if err := tp.setup(); err != nil {
		return nil, errors.Join(err, tp.Close())
	}
	return tp, nil
}

func (tp *Topo) setup() error {
	steps := [][]string{
		{"ip", "netns", "add", tp.NSA},
		{"ip", "netns", "add", tp.NSB},
		{"ip", "link", "add", tp.IfA, "netns", tp.NSA, "type", "veth", "peer", "name", tp.IfB, "netns", tp.NSB},
		QuietIPv6(tp.NSA, tp.IfA),
		QuietIPv6(tp.NSB, tp.IfB),
		{"ip", "-n", tp.NSA, "addr", "add", fmt.Sprintf("%s/%d", tp.AddrA, tp.PrefixLen), "dev", tp.IfA},
		{"ip", "-n", tp.NSB, "addr", "add", fmt.Sprintf("%s/%d", tp.AddrB, tp.PrefixLen), "dev", tp.IfB},
		{"ip", "-n", tp.NSA, "addr", "add", fmt.Sprintf("%s/%d", tp.AddrA6, tp.PrefixLen6), "dev", tp.IfA, "nodad"},
		{"ip", "-n", tp.NSB, "addr", "add", fmt.Sprintf("%s/%d", tp.AddrB6, tp.PrefixLen6), "dev", tp.IfB, "nodad"},
		{"ip", "netns", "exec", tp.NSB, "ethtool", "-K", tp.IfB, "tx", "off", "tso", "off", "gso", "off", "gro", "off"},
		{"ip", "-n", tp.NSA, "link", "set", "lo", "up"},
		{"ip", "-n", tp.NSB, "link", "set", "lo", "up"},
		{"ip", "-n", tp.NSA, "link", "set", tp.IfA, "up"},
		{"ip", "-n", tp.NSB, "link", "set", tp.IfB, "up"},
	}
	for _, s := range steps {
		if err := run(10*time.Second, s...); err != nil {
			return err
		}
	}
	// Wait for the carrier on both ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, errA := exec.Command("ip", "-n", tp.NSA, "-o", "link", "show", tp.IfA).Output()
		b, errB := exec.Command("ip", "-n", tp.NSB, "-o", "link", "show", tp.IfB).Output()
		if errA == nil && errB == nil && bytes.Contains(a, []byte("LOWER_UP")) && bytes.Contains(b, []byte("LOWER_UP")) {
			return tp.LearnLinkLocals()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("veth %s/%s not up after 10s: %s %s", tp.IfA, tp.IfB, a, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// Close stops the processes started with Start and deletes both namespaces
// (which removes the veth pair). Safe twice and on nil.
func (tp *Topo) Close() error {
	if tp == nil {
		return nil
	}
	tp.mu.Lock()
	if tp.closed {
		tp.mu.Unlock()
		return nil
	}
	tp.closed = true
	procs := tp.procs
	tp.mu.Unlock()
	for _, p := range procs {
		p.Stop()
	}
	var errs []error
	for _, ns := range []string{tp.NSA, tp.NSB} {
		if err := deleteNS(ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func deleteNS(ns string) error {
	if _, err := os.Stat("/run/netns/" + ns); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// Kill whatever still runs inside (a leaked server would pin the
	// namespace and its veth).
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return run(10*time.Second, "ip", "netns", "del", ns)
}

// sweepStale deletes namespaces "ustk-<pid>-..." whose creating process is
// gone (a run killed before its cleanup).
func sweepStale() {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		f := strings.SplitN(name[len(nsPrefix):], "-", 2)
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			deleteNS(name)
		}
	}
}

// CleanEnv is the environment given to programs run in the topology: ours
// without LD_PRELOAD and USTACK_* (tests add those explicitly), plus extra.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LD_PRELOAD=") || strings.HasPrefix(kv, "USTACK_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// Command returns a command that runs name in namespace ns with the extra
// environment variables env (KEY=VALUE), set only after entering the
// namespace so that `ip` itself never runs preloaded. `ip netns exec` and
// `env` both exec, so the command's pid is the program's pid. The command is
// in its own process group; cancelling kills the group.
func Command(ctx context.Context, ns string, env []string, name string, args ...string) *exec.Cmd {
	argv := []string{"netns", "exec", ns, "env"}
	argv = append(argv, env...)
	argv = append(argv, name)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Env = CleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 3 * time.Second
	return cmd
}

// Result is the outcome of Run.
type Result struct {
	Pid      int
	Code     int // exit status; -1 when killed by a signal or not started
	TimedOut bool
	Err      error // nil when the program exited 0
	Stdout   []byte
	Stderr   []byte
	Elapsed  time.Duration
}

func (r *Result) String() string {
	return fmt.Sprintf("pid %d code %d timedout %v err %v elapsed %v\nstdout: %s\nstderr: %s",
		r.Pid, r.Code, r.TimedOut, r.Err, r.Elapsed.Round(time.Millisecond), clip(r.Stdout), clip(r.Stderr))
}

func clip(b []byte) []byte {
	if !utf8.Valid(b) {
		return fmt.Appendf(nil, "<%d bytes of binary data>", len(b))
	}
	if len(b) > 4000 {
		return append(append([]byte{}, b[:2000]...), append([]byte("\n...\n"), b[len(b)-2000:]...)...)
	}
	return b
}

// Run runs name in namespace ns and waits for it, at most timeout.
func Run(ns string, env []string, timeout time.Duration, name string, args ...string) *Result {
	return RunStdin(ns, env, timeout, nil, name, args...)
}

// RunStdin is Run with the program's standard input read from stdin.
func RunStdin(ns string, env []string, timeout time.Duration, stdin io.Reader, name string, args ...string) *Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := Command(ctx, ns, env, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	start := time.Now()
	r := &Result{Code: -1}
	r.Err = cmd.Start()
	if r.Err == nil {
		r.Pid = cmd.Process.Pid
		r.Err = cmd.Wait()
		r.Code = cmd.ProcessState.ExitCode()
	}
	r.Elapsed = time.Since(start)
	r.TimedOut = ctx.Err() != nil
	if r.TimedOut {
		r.Err = fmt.Errorf("timed out after %v: %w", timeout, r.Err)
	}
	r.Stdout, r.Stderr = stdout.Bytes(), stderr.Bytes()
	return r
}

// RunA runs name in namespace A.
func (tp *Topo) RunA(env []string, timeout time.Duration, name string, args ...string) *Result {
	return Run(tp.NSA, env, timeout, name, args...)
}

// RunB runs name in namespace B.
func (tp *Topo) RunB(env []string, timeout time.Duration, name string, args ...string) *Result {
	return Run(tp.NSB, env, timeout, name, args...)
}

// RunStdinA runs name in namespace A with standard input from stdin.
func (tp *Topo) RunStdinA(env []string, stdin io.Reader, timeout time.Duration, name string, args ...string) *Result {
	return RunStdin(tp.NSA, env, timeout, stdin, name, args...)
}

// RunStdinB runs name in namespace B (the kernel side, no extra environment)
// with standard input from stdin.
func (tp *Topo) RunStdinB(stdin io.Reader, timeout time.Duration, name string, args ...string) *Result {
	return RunStdin(tp.NSB, nil, timeout, stdin, name, args...)
}
