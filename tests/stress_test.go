package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Ports of the peers of TestStress in namespace B.
const (
	stressPeerPort = 9300
	stressUDPPort  = 9301
)

// stressBinary returns build/tests/<name>, compiling it with the Makefile's flags when it is
// missing or older than its source.
func stressBinary(t *testing.T, root, name string) string {
	t.Helper()
	src := filepath.Join(root, "tests", "c", name+".c")
	bin := filepath.Join(root, "build", "tests", name)
	bst, err := os.Stat(bin)
	if sst, serr := os.Stat(src); err == nil && (serr != nil || !sst.ModTime().After(bst.ModTime())) {
		return bin
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skipf("SKIP: %s missing or stale and no gcc: run `make deps build`", bin)
	}
	os.MkdirAll(filepath.Dir(bin), 0o755)
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", src, err, out)
	}
	t.Logf("built %s", bin)
	return bin
}

// stressChecks returns the names of the "ok NAME: ..." lines and the "FAIL ..." lines of a run.
func stressChecks(out []byte) (ok, fail []string) {
	for l := range strings.Lines(string(out)) {
		l = strings.TrimRight(l, "\n")
		switch {
		case strings.HasPrefix(l, "ok "):
			name, _, _ := strings.Cut(strings.TrimPrefix(l, "ok "), ":")
			ok = append(ok, name)
		case strings.HasPrefix(l, "FAIL"):
			fail = append(fail, l)
		}
	}
	return ok, fail
}

// Stress tests of fork, exec, signals and threads around accelerated sockets.
// Each C program (tests/c/stress_*.c) runs in namespace A against tests/c/sem_peer
// (TCP echo and chunked sends) and a UDP echo server (stress_fork udpecho), both kernel
// programs in namespace B: once on the kernel, where every check must pass (that proves the
// expectation), and once under LD_PRELOAD=libustack.so, where it must print the same checks,
// with onloadctl's counters showing that its sockets were accelerated.
//
//	stress_fork     1000 forks without exec while the parent holds two TCP sockets and a UDP
//	                socket, a thread doing echo round trips on one of them all along: the
//	                children close their copies (0) and use a new loopback socket; the parent
//	                reaps them and its sockets echo every 100 iterations
//	stress_signals  1000+ pthread_kill signals on 4 threads blocked in recv, SA_RESTART (recv
//	                returns only data) and not (EINTR, retried); every byte accounted for
//	stress_exec     fork+exec, vfork+exec, posix_spawn, system() of /bin/true; CLOEXEC
//	                respected in the exec'd program (sh, and the program re-exec'd)
//	stress_threads  8 threads on 8 connections (blocking; non-blocking with poll) and 2
//	                threads sharing one, for 3 s: byte counts and checksums match
//
//	make build && go test -v -run TestStress ./tests/ -count=1
//	go test -v -run 'TestStress/stress_signals/' ./tests/ -count=1   # one program
//
// By hand: build/tests/sem_peer 9300 & build/tests/stress_fork udpecho 9301 & in one
// namespace, build/tests/stress_xxx PEER_IP 9300 [9301] in the other.
func TestStress(t *testing.T) {
	e := setup(t)
	tp := e.tp
	root := repoRoot(t)
	bin := func(name string) string { return stressBinary(t, root, name) }
	if _, err := tp.StartServer(tp.NSB, nil, stressPeerPort, serverWait, bin("sem_peer"), fmt.Sprint(stressPeerPort)); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Start(tp.NSB, nil, bin("stress_fork"), "udpecho", fmt.Sprint(stressUDPPort)); err != nil {
		t.Fatal(err)
	}
	port, uport := fmt.Sprint(stressPeerPort), fmt.Sprint(stressUDPPort)
	for deadline := time.Now().Add(serverWait); ; time.Sleep(20 * time.Millisecond) {
		r := tp.RunB(nil, 5*time.Second, "ss", "-Hlun", "sport = :"+uport)
		if r.Err == nil && len(strings.TrimSpace(string(r.Stdout))) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the UDP echo server does not listen on %s: %s", uport, r)
		}
	}
	for _, c := range []struct {
		prog    string
		args    []string
		timeout time.Duration // each run; the program's own alarm() is shorter
	}{
		{"stress_fork", []string{tp.AddrB, port, uport, "1000"}, 60 * time.Second},
		{"stress_signals", []string{tp.AddrB, port, "1000"}, 50 * time.Second},
		{"stress_exec", []string{tp.AddrB, port, uport, "25"}, 60 * time.Second},
		{"stress_threads", []string{tp.AddrB, port, "3"}, 45 * time.Second},
	} {
		t.Run(c.prog, func(t *testing.T) {
			prog := bin(c.prog)
			var want []string
			for _, run := range []struct {
				name string
				env  []string
			}{{"kernel", nil}, {"ustack", e.accel()}} {
				r := tp.RunA(run.env, c.timeout, prog, c.args...)
				ok, fail := stressChecks(r.Stdout)
				for l := range strings.Lines(string(r.Stdout)) {
					if strings.HasPrefix(l, "info") {
						t.Logf("%s: %s", run.name, strings.TrimSpace(l))
					}
				}
				t.Logf("%s: %d checks ok, %v", run.name, len(ok), r.Elapsed.Round(time.Millisecond))
				if r.Err != nil || len(fail) > 0 || !strings.Contains(string(r.Stdout), c.prog+" ok") {
					t.Errorf("%s run of %s failed: %s", run.name, c.prog, r)
					continue
				}
				if run.env == nil {
					want = ok
				} else if want != nil && !slices.Equal(ok, want) {
					t.Errorf("ustack run: checks %q, the kernel run's %q", ok, want)
				}
				if run.env != nil {
					if c.prog == "stress_exec" {
						// The re-exec'd "check" programs load ustack afresh, but while the parent
						// holds the interface's XDP program they cannot attach theirs: they say so
						// on stderr and stay on the kernel (their echo round trip is checked).
						t.Logf("ustack run: %d exec'd programs fell back to the kernel (\"acceleration off\")",
							strings.Count(string(r.Stderr), "acceleration off"))
					}
					s := e.stats(t, r.Pid)
					e.logStats(t, "ustack "+c.prog, s)
					if s["tcp.active_opens"] == 0 || s["shim.sockets_accelerated"] == 0 {
						t.Errorf("ustack run: tcp.active_opens %d, shim.sockets_accelerated %d: the sockets were not accelerated",
							s["tcp.active_opens"], s["shim.sockets_accelerated"])
					}
					// the children that used the inherited TCP and UDP sockets had them moved
					// to the kernel with their state, and the echo rounds after that passed
					if c.prog == "stress_fork" && (s["shim.moved_to_kernel"] < 2 || s["shim.conns_repaired"] < 1) {
						t.Errorf("ustack run: shim.moved_to_kernel %d, shim.conns_repaired %d: want the inherited TCP and UDP sockets moved",
							s["shim.moved_to_kernel"], s["shim.conns_repaired"])
					}
				}
			}
		})
	}
}
