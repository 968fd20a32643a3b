package stackcore

import (
	"crypto/sha256"
	"testing"

	"ustack/nic/pair"
)

// readAll reads n bytes from r, running the wire for at most dur.
func (n *testNet) readAll(r *TCPConn, want int, dur Time) []byte {
	got := make([]byte, 0, want)
	buf := make([]byte, 64<<10)
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
