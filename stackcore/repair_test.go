package stackcore

import (
	"bytes"
	"slices"
	"testing"

	"ustack/nic/pair"
)

// Repair gives what TCP_REPAIR restores (tcp(7)): the first unacknowledged sequence number and
// the bytes from it on, split at SND.NXT into sent and unsent (RFC 9293 3.3.1), and the unread
// bytes ending at RCV.NXT (3.3.1, receive sequence space), the peer's FIN excluded.
func TestRepairSnapshot(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a, b, _ := n.connect(7000)
	// b sends 3000 bytes a leaves unread
	in := pattern(3000, 1)
	if k, err := b.Write(in); err != nil || k != len(in) {
		t.Fatalf("write %d %v", k, err)
	}
	n.settle()
	// a sends 5000 bytes that b never acknowledges: the wire to b drops everything from now on
	n.a.end.Hook = func(uint64, []byte) bool { return true }
	out := pattern(5000, 2)
	if k, err := a.Write(out); err != nil || k != len(out) {
		t.Fatalf("write %d %v", k, err)
	}
	n.step()
	if !a.Repairable() {
		t.Fatalf("state %v not repairable", a.State())
	}
	r := a.Repair(n.now)
	if got := append(append([]byte{}, r.Sent...), r.Unsent...); !bytes.Equal(got, out) {
		t.Fatalf("send queue %d+%d bytes, want the %d written", len(r.Sent), len(r.Unsent), len(out))
	}
	if r.SndUna != uint32(a.sndUna) || uint32(len(r.Sent)) != uint32(a.sndNxt-a.sndUna) {
		t.Fatalf("SndUna %d, %d sent; conn una %d nxt %d", r.SndUna, len(r.Sent), a.sndUna, a.sndNxt)
	}
	if !bytes.Equal(r.Unread, in) || r.FinRcvd {
		t.Fatalf("unread %d bytes fin %v, want %d and no FIN", len(r.Unread), r.FinRcvd, len(in))
	}
	if r.RcvNxt != uint32(b.sndNxt) {
		t.Fatalf("RcvNxt %d, peer's SND.NXT %d", r.RcvNxt, uint32(b.sndNxt))
	}
	if r.LocalPort != a.LocalPort() || r.RemotePort != 7000 {
		t.Fatalf("ports %d -> %d", r.LocalPort, r.RemotePort)
	}
	a.Detach()
	if a.State() != StateClosed || n.a.s.conns[a.key] != nil {
		t.Fatalf("detached connection still in the stack: %v", a.State())
	}
	// a segment still on its way for the detached connection is dropped, not reset (a kernel
	// socket carries the connection on)
	n.a.end.Hook = nil
	rsts, drops := n.a.s.stats.TCPRstsSent, n.a.s.stats.DropNoSocket
	if _, err := b.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	n.settle()
	if n.a.s.stats.TCPRstsSent != rsts || n.a.s.stats.DropNoSocket == drops || n.a.s.stats.DropNoPort != 0 {
		t.Fatalf("segment for the detached connection: %d resets sent, %d dropped",
			n.a.s.stats.TCPRstsSent-rsts, n.a.s.stats.DropNoSocket-drops)
	}
}

// The peer's FIN takes a sequence number (RFC 9293 3.4) that is not data: RcvNxt stops before it.
func TestRepairSnapshotPeerFIN(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a, b, _ := n.connect(7001)
	b.CloseWrite()
	n.settle()
	r := a.Repair(n.now)
	if !r.FinRcvd || r.RcvNxt != uint32(b.sndNxt)-1 || len(r.Unread) != 0 {
		t.Fatalf("fin %v RcvNxt %d (peer's FIN at %d) unread %d", r.FinRcvd, r.RcvNxt, uint32(b.sndNxt)-1, len(r.Unread))
	}
}

// Our FIN, once acknowledged (FIN-WAIT-2, RFC 9293 3.3.2), is past SND.UNA: a kernel socket
// that takes the connection over must send it again at its own sequence number (the peer
// acknowledges the duplicate and the kernel reaches FIN-WAIT-2 too), not one past it, which the
// peer would never acknowledge.
func TestRepairSnapshotOurFINAcked(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a, b, _ := n.connect(7002)
	out := pattern(2000, 3)
	if k, err := a.Write(out); err != nil || k != len(out) {
		t.Fatalf("write %d %v", k, err)
	}
	a.CloseWrite()
	n.settle()
	if a.State() != StateFinWait2 || !a.Repairable() {
		t.Fatalf("state %v, want FIN-WAIT-2 and repairable", a.State())
	}
	r := a.Repair(n.now)
	fin := uint32(b.rcvNxt) - 1 // the FIN's sequence number as the peer counted it
	if !r.FinQueued || r.SndUna != fin || len(r.Sent) != 0 || len(r.Unsent) != 0 {
		t.Fatalf("FinQueued %v SndUna %d (FIN at %d) sent %d unsent %d", r.FinQueued, r.SndUna, fin, len(r.Sent), len(r.Unsent))
	}
}

// SIOCOUTQ (OutQueue) counts the sequence space not yet acknowledged, as Linux does
// (write_seq - snd_una): the FIN takes one (RFC 9293 3.4) until it is acknowledged.
func TestOutQueueCountsFIN(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a, _, _ := n.connect(7003)
	n.a.end.Hook = func(uint64, []byte) bool { return true } // nothing reaches the peer
	if k, err := a.Write(pattern(100, 4)); err != nil || k != 100 {
		t.Fatalf("write %d %v", k, err)
	}
	a.CloseWrite()
	n.step()
	if q := a.OutQueue(); q != 101 {
		t.Fatalf("OutQueue %d with 100 bytes and a FIN unacknowledged, want 101", q)
	}
	n.a.end.Hook = nil
	n.runUntil(10*Second, func() bool { return a.State() == StateFinWait2 }) // a retransmission
	if q := a.OutQueue(); q != 0 || a.State() != StateFinWait2 {
		t.Fatalf("OutQueue %d in %v once all is acknowledged, want 0 in FIN-WAIT-2", q, a.State())
	}
}

// A pinned listener (a port shared with other stacks) reports each connection born on it and
// its end, so that the steering keeps the connection here; a connection handed to a kernel
// socket is not reported as ended (its steering is the kernel's).
func TestPinnedListenerReportsConnections(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	l, err := n.b.s.Listen(7004, 8)
	if err != nil {
		t.Fatal(err)
	}
	l.SetPinned(true)
	c1, _ := n.a.s.Connect(n.now, 40001, mapB, 7004, macB)
	c2, _ := n.a.s.Connect(n.now, 40002, mapB, 7004, macB)
	n.runUntil(10*Second, func() bool { return c1.State() == StateEstablished && c2.State() == StateEstablished })
	pin, unpin := n.b.s.Pins(nil, nil)
	want := []Flow{{7004, mapB, mapA, 40001}, {7004, mapB, mapA, 40002}}
	if len(pin) != 2 || len(unpin) != 0 || !slices.ContainsFunc(pin, func(f Flow) bool { return f == want[0] }) ||
		!slices.ContainsFunc(pin, func(f Flow) bool { return f == want[1] }) {
		t.Fatalf("pins %v unpins %v, want %v and none", pin, unpin, want)
	}
	s1, s2 := l.Accept(), l.Accept()
	s1.Abort()
	s2.Detach()
	n.settle()
	pin, unpin = n.b.s.Pins(pin[:0], nil)
	if len(pin) != 0 || len(unpin) != 1 || unpin[0] != (Flow{7004, mapB, mapA, s1.key.rport}) {
		t.Fatalf("after an abort and a detach: pins %v unpins %v, want the aborted one only", pin, unpin)
	}
}
