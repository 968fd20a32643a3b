package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"ustack/tests/topo"
)

// A socket set up before the stack runs in its process is taken into the stack when it first
// carries data (preload/cand.c, shim/adopt.go). A listener taken at its first accept may have
// connections the kernel made meanwhile: in their handshake, waiting in its accept queue, their
// data still arriving. They must stay with the kernel to the end (RFC 9293 §3.10.7: a segment for
// a connection a TCP does not know draws a reset), while the connections that come after are the
// stack's. Here 4 clients from B connect and send 4 MB each before the server's first accept; 6
// more come after it; every byte is checked by sha256, and the counters show which path each took.
func TestAdoptListenerWithKernelConns(t *testing.T) {
	e := setup(t)
	tp := e.tp
	server, client := appScript(t, "adopt_server.py"), appScript(t, "adopt_client.py")
	const early, late, size = 4, 6, 4 << 20
	port := nextForkPort()
	// not startServer: it would wait for the port to be steered, which is what the first
	// accept does, 1.5 s after listen
	srv, err := tp.Start(tp.NSA, e.accel(), python, server, fmt.Sprint(port), fmt.Sprint(early+late), "1.5")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	if err := srv.WaitListen(port, serverWait); err != nil {
		t.Fatalf("%v\n%s", err, srv.Output())
	}
	runAdoptClient(t, e, srv, client, port, early, late, size, "2.5")
	c := e.counters(t, "adopt_server.py", srv.Pid)
	atLeast(t, "adopt_server.py", c, "shim.sockets_adopted", 1)
	// the early ones: made by the kernel, kept there, accepted through the listener's shadow
	atLeast(t, "adopt_server.py", c, "shim.kernel_conns_kept", early)
	atLeast(t, "adopt_server.py", c, "shim.kernel_accepts", early)
	// the late ones: the stack's
	atLeast(t, "adopt_server.py", c, "tcp.passive_opens", late)
	atLeast(t, "adopt_server.py", c, "tcp.segs_in", late*size/1500)
	if c["tcp.rsts_sent"] != 0 {
		t.Errorf("the stack sent %d resets: a segment of a kernel connection reached it", c["tcp.rsts_sent"])
	}
	// The kernel's connections have ended: their entries go (a client that takes the same port
	// again is the stack's), within the sweep's 2 s.
	var flows int
	if !waitFor(10*time.Second, func() bool {
		st, err := e.groupStatus(t)
		if err != nil {
			return false
		}
		m := memberOf(st, srv.Pid)
		if m == nil {
			return false
		}
		flows = m.Flows
		return flows == 0
	}) {
		t.Errorf("10 s after the kernel's connections ended, the server still has %d flow entries", flows)
	}
}

// A handshake the kernel has answered and not completed when the listener is adopted (Linux's
// TCP_NEW_SYN_RECV request sockets, which inet_diag lists only when asked for state 12) stays
// with the kernel too: its last ACK must reach the kernel, not the stack. A SYN from an address
// no host has keeps one open in A's kernel (the SYN-ACK goes nowhere) while the server adopts.
func TestAdoptListenerKeepsHandshakes(t *testing.T) {
	e := setup(t)
	tp := e.tp
	server, client := appScript(t, "adopt_server.py"), appScript(t, "adopt_client.py")
	port := nextForkPort()
	srv, err := tp.Start(tp.NSA, e.accel(), python, server, fmt.Sprint(port), "1", "1.5")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	if err := srv.WaitListen(port, serverWait); err != nil {
		t.Fatalf("%v\n%s", err, srv.Output())
	}
	ghost := strings.TrimSuffix(tp.AddrA, ".1") + ".77"
	if r := tp.RunB(nil, 10*time.Second, python, appScript(t, "ghost_syn.py"), ghost, tp.AddrA, fmt.Sprint(port), "40777"); r.Err != nil {
		t.Fatalf("ghost_syn.py: %s", r)
	}
	if !waitFor(2*time.Second, func() bool {
		r := tp.RunA(nil, 5*time.Second, "ss", "-Htn", "state", "syn-recv")
		return strings.Contains(string(r.Stdout), ghost+":40777")
	}) {
		t.Fatalf("A's kernel has no handshake open with %s:40777", ghost)
	}
	// the server's first accept (1.5 s after listen) adopts the listener; one client then
	runAdoptClient(t, e, srv, client, port, 0, 1, 1<<20, "2.5")
	c := e.counters(t, "adopt_server.py", srv.Pid)
	atLeast(t, "adopt_server.py", c, "shim.sockets_adopted", 1)
	atLeast(t, "adopt_server.py", c, "shim.kernel_conns_kept", 1)
	atLeast(t, "adopt_server.py", c, "tcp.passive_opens", 1)
}

// A candidate duplicated (dup) and closed before its first accept: the copy is the same socket,
// taken into the stack at its first accept (preload/cand.c take_siblings, ustack_cand_dup).
func TestAdoptDupListener(t *testing.T) {
	e := setup(t)
	tp := e.tp
	server, client := appScript(t, "adopt_server.py"), appScript(t, "adopt_client.py")
	const n, size = 5, 1 << 20
	port := nextForkPort()
	srv := startServer(t, tp, tp.NSA, e.accel(), port, false, python, server, fmt.Sprint(port), fmt.Sprint(n), "0", "dup")
	runAdoptClient(t, e, srv, client, port, 0, n, size, "0")
	c := e.counters(t, "adopt_server.py dup", srv.Pid)
	atLeast(t, "adopt_server.py dup", c, "shim.sockets_adopted", 1)
	atLeast(t, "adopt_server.py dup", c, "tcp.passive_opens", n)
	if c["shim.kernel_accepts"] != 0 {
		t.Errorf("%d connections accepted through the kernel: the copy was not the stack's", c["shim.kernel_accepts"])
	}
}

// runAdoptClient runs adopt_client.py in B against srv (adopt_server.py) and waits until the
// server has served them all: every sha256 matched.
func runAdoptClient(t *testing.T, e *env, srv *topo.Proc, client string, port, early, late, size int, delay string) {
	t.Helper()
	r := e.tp.RunB(nil, 90*time.Second, python, client, e.tp.AddrA, fmt.Sprint(port), fmt.Sprint(early), fmt.Sprint(late), fmt.Sprint(size), delay)
	if r.Err != nil || !strings.Contains(string(r.Stdout), fmt.Sprintf("ok %d %d", early, late)) {
		t.Fatalf("adopt_client.py: %s\nserver:\n%s", r, srv.Output())
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(srv.Output(), "served") }) {
		t.Fatalf("the server did not finish:\n%s", srv.Output())
	}
}
