package stackcore

import (
	"crypto/sha256"
	"testing"

	"ustack/nic/pair"
)

// RFC 8985 7: the last two segments of a flight are lost. Without enough
// duplicate ACKs for fast retransmit, a tail loss probe after the PTO
// (2*SRTT + 2ms here) resends the last segment; its SACK shows the
// segment before it missing, which SACK recovery resends, all well before
// the 200ms retransmission timeout.
func TestTailLossProbe(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetNoDelay(true)
	n.a.end.Hook = dropSegs(8, 9)
	data := pattern(10*c.mss, 4)
	start := n.now
	got := n.transfer(c, s, data, false, 10*Second)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("mismatch")
	}
	if c.totalRTO != 0 || c.totalRetrans != 2 || n.now-start > 50*Millisecond {
		t.Fatalf("tail loss repaired after %dms with %d timeouts, %d retransmissions", (n.now-start)/Millisecond,
			c.totalRTO, c.totalRetrans)
	}
}

// RFC 6675 5 and RFC 6582 4.1: at the end of SACK recovery cwnd is ssthresh
// (not FlightSize + 1 segment, which leaves a drained pipe at one segment
// and the next loss to the retransmission timeout), and duplicate ACKs at
// exactly the recovery point start a new recovery for newer data.
func TestSACKRecoveryExitCwnd(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetNoDelay(true)
	n.a.end.Hook = dropSegs(3)
	data := pattern(20*c.mss, 5)
	n.transfer(c, s, data, false, 10*Second)
	if c.recovery || c.totalRetrans != 1 || c.cwnd < c.ssthresh || c.cwnd < 2*uint32(c.mss) {
		t.Fatalf("after recovery: in recovery %v, %d retransmissions, cwnd %d, ssthresh %d", c.recovery,
			c.totalRetrans, c.cwnd, c.ssthresh)
	}
}

// Under 5 % loss in both directions a 2 MB transfer recovers from nearly
// every loss by fast retransmit, SACK recovery and tail loss probes, not by
// retransmission timeouts (RFC 6675, RFC 8985).
func TestSenderFewTimeoutsUnderLoss(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		n := newNet(t, pair.Options{}, Config{}, Config{})
		c, s, _ := n.connect(80)
		drops, ackDrops := 0, 0
		n.a.end.Hook = lossHook(seed, 0.05, &drops)
		n.b.end.Hook = lossHook(seed+100, 0.05, &ackDrops)
		data := pattern(2<<20, seed)
		start := n.now
		if got := n.transfer(c, s, data, true, 3600*Second); sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatal("mismatch")
		}
		t.Logf("seed %d: %d data segments lost, %d retransmitted, %d timeouts, %dms", seed, drops, c.totalRetrans,
			c.totalRTO, (n.now-start)/Millisecond)
		if int(c.totalRTO) > drops/15 || int(c.totalRetrans) > drops*5/4 {
			t.Errorf("seed %d: %d timeouts and %d retransmissions for %d lost segments", seed, c.totalRTO,
				c.totalRetrans, drops)
		}
	}
}

// RFC 8985 6.2 (lost retransmission), reduced to the probe timeout: in SACK
// recovery the retransmission of the first hole is lost as well. With no
// ACK for a PTO the hole is resent, well before the 200ms retransmission
// timeout.
func TestLostRetransmissionInRecovery(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetNoDelay(true)
	// Segment 2 of 20 is lost, then its fast retransmission.
	lost := uint32(c.sndNxt) + 2*uint32(c.mss)
	drops := 0
	n.a.end.Hook = func(_ uint64, f []byte) bool {
		if tc := tcpOf(f); hasData(tc) && tc.Seq() == lost && drops < 2 {
			drops++
			return true
		}
		return false
	}
	data := pattern(20*c.mss, 6)
	start := n.now
	got := n.transfer(c, s, data, false, 10*Second)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("mismatch")
	}
	if drops != 2 || c.totalRTO != 0 || n.now-start > 100*Millisecond {
		t.Fatalf("lost retransmission repaired after %dms with %d timeouts, %d retransmissions",
			(n.now-start)/Millisecond, c.totalRTO, c.totalRetrans)
	}
}

// RFC 8985 (RACK-TLP) under 20 % loss in both directions: retransmissions
// are lost as often as new data, and RACK's time-based detection repairs
// them from later deliveries instead of a chain of backed-off
// retransmission timeouts (RFC 6298 5.5). Timeouts remain where a whole
// small flight, or every ACK for it, is lost.
func TestSenderUnderHeavyLoss(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		n := newNet(t, pair.Options{}, Config{}, Config{})
		c, s, _ := n.connect(80)
		drops, ackDrops := 0, 0
		n.a.end.Hook = lossHook(seed, 0.20, &drops)
		n.b.end.Hook = lossHook(seed+100, 0.20, &ackDrops)
		data := pattern(1<<20, seed)
		start := n.now
		if got := n.transfer(c, s, data, true, 3600*Second); sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatal("mismatch")
		}
		took := n.now - start
		t.Logf("seed %d: %d data segments lost, %d retransmitted, %d timeouts, %dms", seed, drops, c.totalRetrans,
			c.totalRTO, took/Millisecond)
		if int(c.totalRTO) > drops/5 || took > 10*Second {
			t.Errorf("seed %d: %d timeouts for %d lost segments, %dms", seed, c.totalRTO, drops, took/Millisecond)
		}
	}
}
