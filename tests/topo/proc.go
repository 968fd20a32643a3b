package topo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"ustack/nic/xdp"
)

// Proc is a background program started with Start.
type Proc struct {
	Pid    int
	Name   string
	cancel context.CancelFunc
	done   chan struct{}
	res    *Result
	stdout syncBuffer
	stderr syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

// Start starts name in namespace ns in the background; Close of the topology
// stops it if the test has not.
func (tp *Topo) Start(ns string, env []string, name string, args ...string) (*Proc, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.closed {
		return nil, fmt.Errorf("starting %s: topology closed", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := Command(ctx, ns, env, name, args...)
	p := &Proc{Name: name, cancel: cancel, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.Pid = cmd.Process.Pid
	start := time.Now()
	go func() {
		err := cmd.Wait()
		p.res = &Result{Pid: p.Pid, Code: cmd.ProcessState.ExitCode(), Err: err,
			Elapsed: time.Since(start), Stdout: p.stdout.Bytes(), Stderr: p.stderr.Bytes()}
		close(p.done)
	}()
	tp.procs = append(tp.procs, p)
	return p, nil
}

// StartServer starts a server in ns and waits, at most timeout, until a TCP
// socket listens on port in that namespace.
func (tp *Topo) StartServer(ns string, env []string, port int, timeout time.Duration, name string, args ...string) (*Proc, error) {
	p, err := tp.Start(ns, env, name, args...)
	if err != nil {
		return nil, err
	}
	if err := p.WaitListen(port, timeout); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%w\n%s", err, p.Output())
	}
	WaitSteered(ns, env, "tcp", port, steerWait)
	return p, nil
}

// steerWait bounds WaitSteered: a ustack server takes its listener into its stack within
// milliseconds of its first wait on it; one that never does (refused by the group, bound to
// another interface) is left to the test's own checks.
const steerWait = 3 * time.Second

// WaitSteered waits, for a program run under ustack (env has LD_PRELOAD and USTACK_IFACE), until
// a process of the interface's group steers proto/port (onloadctl group, beside the preloaded
// library). A socket set up before ustack's stack runs in its process is taken into the stack at
// its first data call or wait (preload/cand.c): a client that connects between the kernel's
// listen and that moment is the kernel's, correctly but not what a test of the user-space path
// means to measure. It reports whether the port is steered.
func WaitSteered(ns string, env []string, proto string, port int, timeout time.Duration) bool {
	var lib, iface string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "LD_PRELOAD="); ok {
			lib = v
		}
		if v, ok := strings.CutPrefix(kv, "USTACK_IFACE="); ok {
			iface = v
		}
	}
	if lib == "" || iface == "" {
		return false
	}
	onloadctl := filepath.Join(filepath.Dir(lib), "onloadctl")
	want := fmt.Sprintf("%s/%d", proto, port)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		out, err := Command(context.Background(), ns, nil, onloadctl, "group", "--json", "--iface", iface).Output()
		if err != nil {
			continue
		}
		var st xdp.GroupStatus
		if json.Unmarshal(out, &st) != nil {
			continue
		}
		for _, m := range st.Members {
			for _, p := range m.Ports {
				if p == want || p == want+" (shared)" {
					return true
				}
			}
		}
	}
	return false
}

// WaitListen waits until a TCP socket listens on port in p's network
// namespace (read from /proc/<pid>/net/tcp and tcp6), at most timeout.
func (p *Proc) WaitListen(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited before listening on port %d: %v", p.Name, port, p.res.Err)
		}
		if ok, _ := Listening(p.Pid, port); ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on port %d after %v", p.Name, port, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Listening reports whether a TCP socket in LISTEN state, IPv4 or IPv6, has
// local port port in the network namespace of process pid.
func Listening(pid, port int) (bool, error) {
	var errs []error
	for _, table := range []string{"tcp", "tcp6"} {
		ok, err := listeningIn(fmt.Sprintf("/proc/%d/net/%s", pid, table), port)
		if ok {
			return true, nil
		}
		errs = append(errs, err)
	}
	return false, errors.Join(errs...)
}

func listeningIn(path string, port int) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// sl local_address rem_address st ...
		if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "0A" {
			return true, nil
		}
	}
	return false, sc.Err()
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits at most timeout for the process to exit by itself; on timeout
// it kills it and the result says TimedOut.
func (p *Proc) Wait(timeout time.Duration) *Result {
	select {
	case <-p.done:
		return p.res
	case <-time.After(timeout):
		p.kill(syscall.SIGKILL)
		<-p.done
		r := *p.res
		r.TimedOut = true
		r.Err = fmt.Errorf("timed out after %v: %w", timeout, r.Err)
		return &r
	}
}

// Stop sends SIGTERM to the process group, waits up to 3 s, then SIGKILLs
// it. Returns the result. Safe to call more than once.
func (p *Proc) Stop() *Result {
	if !p.Exited() {
		p.kill(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			p.kill(syscall.SIGKILL)
			p.cancel()
			<-p.done
		}
	}
	p.cancel()
	return p.res
}

func (p *Proc) kill(sig syscall.Signal) {
	syscall.Kill(-p.Pid, sig)
}

// Output returns what the process printed so far, for failure messages.
func (p *Proc) Output() string {
	return fmt.Sprintf("%s (pid %d) stdout:\n%s\nstderr:\n%s", p.Name, p.Pid, clip(p.stdout.Bytes()), clip(p.stderr.Bytes()))
}

// Stderr returns what the process wrote to stderr so far.
func (p *Proc) Stderr() []byte { return p.stderr.Bytes() }

// TCPSegs returns Tcp InSegs and OutSegs of /proc/net/snmp in namespace ns.
func TCPSegs(ns string) (in, out uint64, err error) {
	r := Run(ns, nil, 10*time.Second, "cat", "/proc/net/snmp")
	if r.Err != nil {
		return 0, 0, fmt.Errorf("reading snmp in %s: %w", ns, r.Err)
	}
	return parseSNMP(r.Stdout)
}

func parseSNMP(b []byte) (in, out uint64, err error) {
	var header []string
	for line := range strings.Lines(string(b)) {
		fs := strings.Fields(line)
		if len(fs) == 0 || fs[0] != "Tcp:" {
			continue
		}
		if header == nil {
			header = fs
			continue
		}
		var gotIn, gotOut bool
		for i := 1; i < len(fs) && i < len(header); i++ {
			switch header[i] {
			case "InSegs":
				in, err = strconv.ParseUint(fs[i], 10, 64)
				gotIn = err == nil
			case "OutSegs":
				out, err = strconv.ParseUint(fs[i], 10, 64)
				gotOut = err == nil
			}
		}
		if gotIn && gotOut {
			return in, out, nil
		}
		break
	}
	return 0, 0, fmt.Errorf("no Tcp InSegs/OutSegs in snmp")
}
