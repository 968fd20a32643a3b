package stackcore

import (
	"testing"

	"ustack/nic/pair"
)

// hsRound feeds one round of HyStart++: the previous round's flight is
// acknowledged, a new one is sent, and acks ACKs of one MSS each arrive
// with the given RTT sample. It returns the bytes slow start counted.
func hsRound(c *TCPConn, acks int, rtt Time) int {
	if c.hs.started {
		c.sndUna = c.hs.roundEnd
	}
	c.sndMax = c.sndMax.add(acks * c.mss)
	grown := 0
	for range acks {
		c.ackRTT = rtt
		before := c.cwnd
		slowStart(c, c.mss)
		grown += int(c.cwnd - before)
	}
	return grown
}

// RFC 9406 4.2, 4.3: a round whose minimum RTT exceeds the last round's by
// more than max(4ms, lastRoundMinRTT/8) starts Conservative Slow Start,
// which grows cwnd by a quarter of what slow start would, and after
// CSS_ROUNDS rounds ends slow start (ssthresh = cwnd).
func TestHyStartExitsOnRTTIncrease(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _, _ := n.connect(80)
	mss := c.mss
	if got := hsRound(c, 10, 20*Millisecond); got != 10*mss {
		t.Fatalf("first round grew %d, want %d", got, 10*mss)
	}
	// +3ms: below the 4ms threshold, still slow start.
	if got := hsRound(c, 10, 23*Millisecond); got != 10*mss || c.hs.css {
		t.Fatalf("RTT +3ms: grew %d, css %v", got, c.hs.css)
	}
	// +5ms over the last round's minimum: CSS once N_RTT_SAMPLE samples
	// are in, from the ACK that brings the eighth.
	got := hsRound(c, 16, 28*Millisecond)
	if !c.hs.css || got != 7*mss+9*(mss/hsCSSGrowthDivisor) {
		t.Fatalf("RTT +5ms: css %v, grew %d", c.hs.css, got)
	}
	for i := 0; i < hsCSSRounds-1; i++ {
		hsRound(c, 8, 28*Millisecond)
		if c.ssthresh != ssthreshInitial {
			t.Fatalf("slow start ended after %d CSS rounds", i+1)
		}
	}
	hsRound(c, 1, 28*Millisecond)
	if c.ssthresh != c.cwnd || c.hs.css || n.a.s.Stats().TCPHyStartExits != 1 {
		t.Fatalf("after %d CSS rounds: ssthresh %d cwnd %d", hsCSSRounds, c.ssthresh, c.cwnd)
	}
}

// RFC 9406 4.3: an RTT below the CSS baseline means the increase was
// spurious: back to slow start.
func TestHyStartSpuriousExit(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _, _ := n.connect(80)
	hsRound(c, 10, 20*Millisecond)
	hsRound(c, 10, 30*Millisecond)
	if !c.hs.css {
		t.Fatal("no CSS after +10ms")
	}
	if got := hsRound(c, 10, 19*Millisecond); c.hs.css || got <= 10*c.mss/hsCSSGrowthDivisor {
		t.Fatalf("RTT back below the baseline: css %v, grew %d", c.hs.css, got)
	}
}
