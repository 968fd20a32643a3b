package stackcore

import (
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// roundTrips runs k request/response exchanges of small messages without
// advancing the clock between them and returns the frames both ends sent.
func (n *testNet) roundTrips(c, s *TCPConn, k int) uint64 {
	n.t.Helper()
	req, resp := make([]byte, 100), make([]byte, 200)
	buf := make([]byte, 1024)
	sent0 := n.a.end.Sent + n.b.end.Sent
	for i := range k {
		if w, err := c.Write(req); w != len(req) || err != nil {
			n.t.Fatalf("round %d: write %d %v", i, w, err)
		}
		n.settle()
		if r, _ := s.Read(buf); r != len(req) {
			n.t.Fatalf("round %d: server read %d", i, r)
		}
		s.Write(resp)
		n.settle()
		if r, _ := c.Read(buf); r != len(resp) {
			n.t.Fatalf("round %d: client read %d", i, r)
		}
		n.now += Millisecond // think time, below the 40ms ATO
	}
	return n.a.end.Sent + n.b.end.Sent - sent0
}

// RFC 9293 3.8.6.3 / RFC 1122 4.2.3.2: the ACK of a request waits for the
// response and rides on it. Frames per request/response round trip drop from
// 4 (request, ACK, response, ACK) with an immediate ACK for every segment
// (TCP_QUICKACK, the behaviour before delayed ACKs) to 2.
func TestDelayedAckPiggybacksOnResponse(t *testing.T) {
	for _, quick := range []bool{true, false} {
		n := newNet(t, pair.Options{}, Config{}, Config{})
		c, s, _ := n.connect(80)
		c.SetQuickAck(quick)
		s.SetQuickAck(quick)
		n.roundTrips(c, s, 3) // quick-ack start, then ping-pong mode
		frames := n.roundTrips(c, s, 100)
		perRT := float64(frames) / 100
		t.Logf("TCP_QUICKACK=%v: %.2f frames per round trip", quick, perRT)
		want := 2.0
		if quick {
			want = 4
		}
		if perRT != want {
			t.Fatalf("quickack %v: %.2f frames per round trip, want %v", quick, perRT, want)
		}
		// The last response's ACK still goes out, after the delayed-ACK timeout.
		if !quick {
			sent := n.a.end.Sent
			start := n.now
			n.runUntil(Second, func() bool { return n.a.end.Sent > sent })
			if d := n.now - start; n.a.end.Sent != sent+1 || d > atoMin {
				t.Fatalf("delayed ACK after %dus (%d frames)", d, n.a.end.Sent-sent)
			}
			if c.sndUna != c.sndMax || s.sndUna != s.sndMax {
				t.Fatal("data left unacknowledged")
			}
		}
	}
}

// RFC 9293 3.8.6.3 (SHLD-19, MUST-40) and RFC 5681 4.2: after the quick-ack
// start (Linux ACKs the first 16 segments at once), a receiver ACKs every
// second full-sized segment; a lone segment is ACKed after the 40ms ATO,
// never later than 500ms. Out-of-order data and FIN are ACKed at once.
func TestDelayedAckEverySecondSegment(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetNoDelay(true)
	seg := make([]byte, c.mss)
	buf := make([]byte, 64<<10)
	acks := func() uint64 { return n.b.end.Sent }
	// Quick-ack start: each of the first 16 segments is ACKed immediately.
	for i := range maxQuickAcks {
		a := acks()
		c.Write(seg)
		n.settle()
		if acks() != a+1 {
			t.Fatalf("segment %d: %d ACKs, want an immediate one", i, acks()-a)
		}
		s.Read(buf)
	}
	// A lone segment now waits for the delayed-ACK timer.
	a := acks()
	c.Write(seg)
	n.settle()
	if acks() != a {
		t.Fatal("lone segment ACKed at once after the quick-ack start")
	}
	start := n.now
	if !n.runUntil(Second, func() bool { return acks() > a }) || n.now-start != atoMin {
		t.Fatalf("delayed ACK after %dus, want %dus", n.now-start, atoMin)
	}
	s.Read(buf)
	// Ten full segments in one burst, delivered one per Poll: one ACK per
	// two. (Segments that arrive in one batch share one ACK, like GRO.)
	a = acks()
	c.Write(make([]byte, 10*c.mss))
	n.a.next = n.a.s.Poll(n.now, n.a.end)
	n.a.end.Flush()
	k := n.b.end.Receive(n.b.rx)
	if k != 10 {
		t.Fatalf("%d frames in the burst", k)
	}
	for _, f := range n.b.rx[:k] {
		n.b.s.Input(n.now, f)
		n.b.s.Poll(n.now, n.b.end)
		n.b.end.Flush()
	}
	n.b.end.ReleaseRx()
	if got := acks() - a; got != 5 {
		t.Fatalf("%d ACKs for 10 segments, want 5", got)
	}
	n.settle()
	if c.sndUna != c.sndMax {
		t.Fatal("burst not fully ACKed")
	}
	s.Read(buf)
	// An out-of-order segment is ACKed at once (duplicate ACK), and so is
	// the retransmission that fills the hole (RFC 5681 4.2). On this wire
	// without delay RACK's reordering window is zero, so the
	// retransmission follows the duplicate ACK in the same instant.
	hook, dropped := dropNth(0, hasData)
	n.a.end.Hook = hook
	c.Write(make([]byte, 2*c.mss))
	a = acks()
	n.settle()
	if *dropped != 1 || acks() != a+2 {
		t.Fatalf("out-of-order segment: %d ACKs", acks()-a)
	}
	n.a.end.Hook = nil
	n.runUntil(Second, func() bool { return c.sndUna == c.sndMax })
	s.Read(buf)
	// A FIN is ACKed at once even after a delayed segment.
	c.Write(make([]byte, 100))
	n.settle()
	a = acks()
	c.CloseWrite()
	n.settle()
	if acks() != a+1 || c.State() != StateFinWait2 {
		t.Fatalf("FIN: %d ACKs, client %v", acks()-a, c.State())
	}
}

// TCP_QUICKACK: with SetQuickAck(true) every segment is ACKed at once, also
// after the quick-ack start; setting it sends a pending delayed ACK.
func TestSetQuickAck(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetNoDelay(true)
	buf := make([]byte, 4096)
	for range maxQuickAcks {
		c.Write(make([]byte, c.mss))
		n.settle()
		s.Read(buf)
	}
	c.Write(make([]byte, c.mss))
	n.settle()
	a := n.b.end.Sent
	s.SetQuickAck(true)
	n.settle()
	if n.b.end.Sent != a+1 {
		t.Fatal("SetQuickAck(true) did not flush the delayed ACK")
	}
	for i := range 5 {
		a := n.b.end.Sent
		c.Write(make([]byte, c.mss))
		n.settle()
		if n.b.end.Sent != a+1 {
			t.Fatalf("segment %d not ACKed at once", i)
		}
	}
	// A pure ACK has no payload and ACKs everything.
	var last wire.TCP
	n.b.end.Hook = func(_ uint64, f []byte) bool { last = append(last[:0], tcpOf(f)...); return false }
	c.Write(make([]byte, 10))
	n.settle()
	if last == nil || len(last.Payload()) != 0 || last.Ack() != uint32(s.rcvNxt) {
		t.Fatal("no ACK")
	}
}
