package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	panicsPeerPort = 9600
	panicsTimeout  = 3 * time.Minute // the program's own watchdogs (sem.h, per step) are far shorter
)

// panicsKinds are the calls the fault hook makes panic, in the program's order.
var panicsKinds = []string{"accept", "close", "send", "recv", "setsockopt", "poller"}

// TestPanicsLeaveTheHostRunning: a test-only fault hook
// (ioctl(fd, 0x7573fffe, int *where)) makes ustack's core panic inside accept, close,
// send, recv, setsockopt and the poller, one at a time, in a process (tests/c/panics.c, in
// namespace A) with 4 other live connections to tests/c/sem_peer.c (namespace B): after
// each, those connections still move 256 KiB each way byte-identical, a new outgoing and a
// new accepted connection work, the call that panicked failed with EIO (close: returned 0
// and closed the fd) and its socket was reset (the peer saw a RST). On the kernel the
// ioctl fails with ENOTTY and every step runs unarmed: the run proves the data checks.
// Under ustack every step must have been armed, shim.panics must be 6, and the program
// must exit by itself.
//
//	make build && go test -v -count=1 -run TestPanicsLeaveTheHostRunning ./tests/
func TestPanicsLeaveTheHostRunning(t *testing.T) {
	e := setup(t)
	tp := e.tp
	root := repoRoot(t)
	peerBin := semBinary(t, root, "sem_peer")
	prog := semBinary(t, root, "panics")
	peer, err := tp.StartServer(tp.NSB, nil, panicsPeerPort, serverWait, peerBin, fmt.Sprint(panicsPeerPort))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, run := range []struct {
		name string
		env  []string
	}{{"kernel", nil}, {"ustack", e.accel()}} {
		t.Run(run.name, func(t *testing.T) {
			if peer.Exited() {
				t.Fatalf("the peer exited: %s", peer.Output())
			}
			r := tp.RunA(run.env, panicsTimeout, prog, tp.AddrB, fmt.Sprint(panicsPeerPort), tp.AddrA)
			lines := semParse(r.Stdout)
			info := map[string]string{}
			for l := range strings.Lines(string(r.Stdout)) {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "info "); ok {
					name, _, _ := strings.Cut(rest, ":")
					info[name] = rest
					t.Logf("%s: %s", run.name, rest)
				}
			}
			var names []string
			for _, l := range lines {
				names = append(names, l.name)
				if !strings.HasPrefix(l.line, "ok ") {
					t.Errorf("%s: %s", run.name, l.line)
				}
			}
			t.Logf("%s: %d steps in %v", run.name, len(lines), r.Elapsed.Round(time.Millisecond))
			if r.TimedOut {
				t.Errorf("%s: the program did not exit by itself within %v: %s", run.name, panicsTimeout, r)
			} else if r.Err != nil || !strings.Contains(string(r.Stdout), "panics ok") {
				t.Errorf("%s: the run failed: %s", run.name, r)
			}
			if run.env == nil {
				want = names
				return
			}
			if want != nil && strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("ustack run's steps %q, the kernel run's %q", names, want)
			}
			for _, k := range panicsKinds {
				if !strings.HasPrefix(info[k], k+": armed") {
					t.Errorf("ustack: step %s was not armed: %q (the fault hook ioctl 0x7573fffe must arm a panic under ustack)", k, info[k])
				}
			}
			c := e.stats(t, r.Pid)
			e.logStats(t, "panics", c)
			if c["shim.panics"] != uint64(len(panicsKinds)) {
				t.Errorf("shim.panics %d, want %d (one per armed kind)", c["shim.panics"], len(panicsKinds))
			}
			if c["tcp.active_opens"] == 0 || c["tcp.passive_opens"] == 0 {
				t.Errorf("tcp.active_opens %d, tcp.passive_opens %d: the connections were not ustack's",
					c["tcp.active_opens"], c["tcp.passive_opens"])
			}
			if t.Failed() && len(r.Stderr) > 0 {
				t.Logf("ustack run's stderr:\n%s", clipBytes(r.Stderr, 4000))
			}
		})
	}
	if peer.Exited() {
		t.Errorf("the peer exited during the run: %s", peer.Output())
	}
}
