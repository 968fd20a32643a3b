package stackcore

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// readAll reads n bytes from r, running the wire for at most dur.
func (n *testNet) readAll(r *TCPConn, want int, dur Time) []byte {
	return n.readInto(make([]byte, 0, want), make([]byte, 64<<10), r, want, dur)
}

// readInto is readAll into got[:0], reading through buf.
func (n *testNet) readInto(got, buf []byte, r *TCPConn, want int, dur Time) []byte {
	got = got[:0]
	n.runUntil(dur, func() bool {
		k, _ := r.Read(buf)
		got = append(got, buf[:k]...)
		return len(got) >= want
	})
	return got
}

// RFC 8985 6.2: a lost retransmission is detected by the delivery of
// segments sent after it, at once (this wire has no delay, so RACK.rtt and
// the reordering window are zero), not by a probe or retransmission timeout.
func TestRACKLostRetransmission(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetNoDelay(true)
	lost := uint32(c.sndNxt) + 2*uint32(c.mss)
	drops := 0
	n.a.end.Hook = func(_ uint64, f []byte) bool {
		// The original and the fast retransmission are lost.
		if tc := tcpOf(f); hasData(tc) && tc.Seq() == lost && drops < 2 {
			drops++
			return true
		}
		return false
	}
	data := pattern(60*c.mss, 7)
	start := n.now
	c.Write(data)
	if got := n.readAll(s, len(data), 10*Second); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("mismatch: %d of %d bytes", len(got), len(data))
	}
	if drops != 2 || c.totalRTO != 0 || n.now-start >= ptoMin {
		t.Fatalf("%d drops, lost retransmission repaired after %dus with %d timeouts", drops,
			(n.now-start)/Microsecond, c.totalRTO)
	}
}

// RFC 6675 5.1 leaves SACK information in place after a timeout (as Linux
// does unless the receiver reneged, RFC 2018 8): the timeout resends the
// hole, not the segments the receiver holds.
func TestRTOKeepsSACKed(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetNoDelay(true)
	on, drops := true, 0
	first, sixth := uint32(c.sndNxt), uint32(c.sndNxt)+5*uint32(c.mss)
	n.a.end.Hook = func(_ uint64, f []byte) bool {
		if tc := tcpOf(f); on && hasData(tc) && (tc.Seq() == first || tc.Seq() == sixth) {
			drops++
			return true
		}
		return false
	}
	data := pattern(10*c.mss, 8)
	c.Write(data)
	// The first and sixth segments, and every resend of them before the
	// timeout, are lost.
	n.runUntil(rtoMin-Millisecond, func() bool { return false })
	on = false
	if got := n.readAll(s, len(data), 10*Second); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("mismatch: %d of %d bytes", len(got), len(data))
	}
	if c.totalRTO != 1 || int(c.totalRetrans) != drops {
		t.Fatalf("%d timeouts, %d retransmissions for %d lost transmissions of two segments", c.totalRTO,
			c.totalRetrans, drops)
	}
}

// checkLog verifies the transmission log's invariants: records cover
// (SND.UNA, SND.MAX] in increasing order and the counts match the flags.
func checkLog(t *testing.T, c *TCPConn) {
	t.Helper()
	l := &c.tx
	at, sacked, lost, lostRtx := c.sndUna, 0, 0, 0
	for i := 0; i < l.n; i++ {
		r := l.at(i)
		if !r.end.gt(at) || r.end.gt(c.sndMax) {
			t.Fatalf("record %d ends at %d, after %d (una %d max %d)", i, r.end-c.iss, at-c.iss, c.sndUna-c.iss,
				c.sndMax-c.iss)
		}
		at = r.end
		if r.flags&recSacked != 0 {
			sacked++
		}
		if r.flags&recLost != 0 {
			lost++
			if r.flags&recRtx != 0 {
				lostRtx++
			}
		}
	}
	if l.n > 0 && at != c.sndMax {
		t.Fatalf("log ends at %d, SND.MAX %d", at-c.iss, c.sndMax-c.iss)
	}
	if sacked != l.sacked || lost != l.lost || lostRtx != l.lostRtx {
		t.Fatalf("counts %d/%d/%d, flags %d/%d/%d", l.sacked, l.lost, l.lostRtx, sacked, lost, lostRtx)
	}
}

// FuzzSACKScoreboard feeds ACKs with arbitrary SACK blocks (RFC 2018 3:
// blocks may be anything a peer sends, false ones too) to a connection
// with a flight of 40 segments, interleaved with time, timeouts and
// sending. The log keeps its invariants and the data still arrives.
func FuzzSACKScoreboard(f *testing.F) {
	f.Add([]byte{0, 2, 3, 1, 5, 2, 9, 9, 1, 0, 0, 0, 3, 30, 4, 40, 2})
	f.Add([]byte{255, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7})
	// Buffers that hold the flight (A's send, B's receive buffer) and no
	// more: each input allocates its connections' buffers.
	fn := newFuzzNet(f, pair.Options{}, Config{SendBuf: 64 << 10, RecvBuf: 4 << 10},
		Config{SendBuf: 4 << 10, RecvBuf: 64 << 10}, nil)
	var data, got []byte
	buf := make([]byte, 64<<10)
	f.Fuzz(func(t *testing.T, b []byte) {
		hang := time.AfterFunc(5*time.Second, func() { panic("fuzz input hangs the stack") })
		defer hang.Stop()
		n := fn.reset(t)
		c, s, _ := n.connect(80)
		c.SetNoDelay(true)
		drop := true
		n.a.end.Hook = func(uint64, []byte) bool { return drop }
		if len(data) != 40*c.mss {
			data = pattern(40*c.mss, 9)
		}
		c.Write(data)
		n.settle()
		base := c.sndUna
		mss := c.mss
		for i := 0; i+5 <= len(b) && i < 400; i += 5 {
			// The cumulative ACK cannot lie (the sender frees what it
			// covers): the peer has nothing while drop holds.
			g := &segment{seq: c.rcvNxt, ack: c.sndUna, flags: 0x10, wnd: uint32(0xff00 | uint32(b[i]))}
			nb := int(b[i+1] % 4)
			for k := 0; k < nb && k < 3; k++ {
				s0 := base.add(int(b[i+2+k]%44)*mss/2 - mss)
				e0 := s0.add(int(b[i+3]%8+1) * mss / 2)
				g.opts.SACK[k] = wire.SACKBlock{Start: uint32(s0), End: uint32(e0)}
			}
			g.opts.NSACK = min(nb, 3)
			if c.processAck(n.now, g) {
				c.output(n.now, n.a.end)
				n.a.end.Flush()
			}
			checkLog(t, c)
			n.now += Time(b[i+4]) * Millisecond
			if b[i+4] > 200 {
				c.timers(n.now)
				c.output(n.now, n.a.end)
				n.a.end.Flush()
				checkLog(t, c)
			}
		}
		// Whatever the peer claimed, a peer that has everything but kept
		// nothing SACKed still gets the data (RFC 2018 8: reneging).
		drop = false
		if got = n.readInto(got, buf, s, len(data), 600*Second); !bytes.Equal(got, data) {
			t.Fatalf("mismatch: %d of %d bytes", len(got), len(data))
		}
	})
}
