package tests

import (
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Signals and accelerated calls (tests/c/signals.c), on the kernel and under ustack: SA_RESTART
// resumes a blocking recv, no SA_RESTART gives EINTR (signal(7)), sigaction reports the flags
// the program set, a fault inside ustack with the program's own SIGSEGV handler installed fails
// the call with EIO (ENOTTY on the kernel, which has no such ioctl), and a fault in the
// program's code still reaches the program's handler.
func TestSignalsAroundBlockingCalls(t *testing.T) {
	e := setup(t, "socat")
	tp := e.tp
	prog := filepath.Join(repoRoot(t), "build", "tests", "signals")
	if _, err := tp.StartServer(tp.NSB, nil, 9000, serverWait, "socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:sleep 2; echo hi"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		env   []string
		panic string
	}{{"kernel", nil, "ok panic: ENOTTY"}, {"ustack", e.accel(), "ok panic: EIO"}} {
		r := tp.RunA(c.env, 30*time.Second, prog, tp.AddrB, "9000")
		if r.Err != nil || !strings.Contains(string(r.Stdout), "signals ok") {
			t.Errorf("%s: %s", c.name, r)
			continue
		}
		if !strings.Contains(string(r.Stdout), c.panic) {
			t.Errorf("%s: want %q in\n%s", c.name, c.panic, r.Stdout)
		}
		if c.env != nil {
			if s := e.stats(t, r.Pid); s["tcp.active_opens"] < 2 || s["shim.panics"] != 1 {
				t.Errorf("ustack run: active_opens %d (want 2), shim.panics %d (want 1)", s["tcp.active_opens"], s["shim.panics"])
			}
		}
	}
}

// SIGINT to a python3 process blocked in an accelerated recv raises
// KeyboardInterrupt within 100 ms (CPython installs its handler without SA_RESTART).
func TestSIGINTInterruptsPythonRecv(t *testing.T) {
	e := setup(t, "socat")
	tp := e.tp
	if _, err := tp.StartServer(tp.NSB, nil, 9001, serverWait, "socat", "TCP-LISTEN:9001,reuseaddr,fork", "SYSTEM:sleep 30"); err != nil {
		t.Fatal(err)
	}
	script := `import socket, sys, time
s = socket.create_connection((sys.argv[1], 9001))
print("blocked", flush=True)
try:
    s.recv(10)
    print("recv returned")
except KeyboardInterrupt:
    print("KeyboardInterrupt %.6f" % time.time(), flush=True)
`
	p, err := tp.Start(tp.NSA, e.accel(), python, "-c", script, tp.AddrB)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(string(p.Output()), "blocked") {
		if time.Now().After(deadline) {
			t.Fatalf("python never blocked in recv:\n%s", p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let it sleep in the wait
	sent := time.Now()
	if err := syscall.Kill(p.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	res := p.Wait(5 * time.Second)
	out := string(res.Stdout)
	i := strings.Index(out, "KeyboardInterrupt ")
	if i < 0 {
		t.Fatalf("no KeyboardInterrupt: %s", res)
	}
	f := strings.Fields(out[i:])
	at, _ := strconv.ParseFloat(f[1], 64)
	lat := time.Duration((at - float64(sent.UnixNano())/1e9) * 1e9)
	t.Logf("KeyboardInterrupt %v after SIGINT", lat.Round(time.Microsecond))
	if lat > 100*time.Millisecond {
		t.Errorf("KeyboardInterrupt took %v, want < 100 ms", lat)
	}
	if s := e.stats(t, p.Pid); s["tcp.active_opens"] < 1 {
		t.Errorf("the connection did not go through ustack: active_opens %d", s["tcp.active_opens"])
	}
}

// A single-threaded program that blocks SIGCHLD and waits for it in sigsuspend (timeout(1))
// must get it although the Go runtime's threads live in its process: 100 runs of
// `timeout 5 true`, none may hang (before the fix about 2 in 100 did).
func TestSigsuspendProgramsGetTheirSignals(t *testing.T) {
	e := setup(t)
	lib := e.accel()[0] // LD_PRELOAD=...
	for i := 0; i < 100; i++ {
		r := e.tp.RunA([]string{lib}, 10*time.Second, "timeout", "5", "true")
		if r.Code != 0 {
			t.Fatalf("run %d: timeout 5 true: %s", i, r)
		}
	}
}
