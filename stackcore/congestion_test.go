package stackcore

import (
	"errors"
	"math"
	"testing"

	"ustack/nic/pair"
)

// ackClock feeds c's congestion control one ACK per full segment for dur,
// at RTT c.srtt with a full window acknowledged per RTT, and returns cwnd
// in segments at the end.
func ackClock(c *TCPConn, now *Time, dur Time) float64 {
	end := *now + dur
	for *now < end {
		segs := max(int(c.cwnd)/c.mss, 1)
		step := c.srtt / Time(segs)
		for range segs {
			c.cc.onAck(c, *now, c.mss)
			*now += step
		}
	}
	return float64(c.cwnd) / float64(c.mss)
}

// RFC 9438 (CUBIC, the default as in Linux): a loss at W_max = 100 segments
// cuts cwnd to beta*W_max = 70 (4.6); the window then follows the cubic
// curve W(t) = C*(t-K)^3 + W_max, K = cbrt(W_max*(1-beta)/C) = 4.22s (4.2):
// concave growth back to W_max at t = K, a plateau, then convex probing.
// NewReno (RFC 5681 3.1) after the same loss grows by one segment per RTT.
func TestCubicWindowCurve(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _, _ := n.connect(80)
	if c.Congestion() != CongestionCubic {
		t.Fatalf("default %q", c.Congestion())
	}
	c.srtt = 100 * Millisecond
	mss := uint32(c.mss)
	c.cwnd = 100 * mss
	now := n.now
	c.ssthresh = c.cc.onLoss(c, now)
	c.cwnd = c.ssthresh
	if c.ssthresh != 70*mss {
		t.Fatalf("ssthresh %d segments", c.ssthresh/mss)
	}
	k := math.Cbrt(100 * (1 - cubicBeta) / cubicC)
	kT := Time(k * float64(Second))
	w := func(tt Time) float64 {
		d := float64(tt)/float64(Second) - k
		return cubicC*d*d*d + 100
	}
	half := ackClock(c, &now, kT/2)
	if want := w(kT/2 + c.srtt); math.Abs(half-want) > 2 {
		t.Fatalf("at K/2: cwnd %.1f segments, W_cubic %.1f", half, want)
	}
	atK := ackClock(c, &now, kT-kT/2)
	if math.Abs(atK-100) > 2 {
		t.Fatalf("at K: cwnd %.1f segments, want about W_max 100", atK)
	}
	// Past W_max, W_est grows one segment per RTT (4.3) and here overtakes
	// the slow start of the convex region: cwnd is the larger of the two.
	later := ackClock(c, &now, 3*Second)
	if want := max(w(kT+3*Second+c.srtt), c.cubic.wEst); math.Abs(later-want) > 3 || later < 105 {
		t.Fatalf("at K+3s: cwnd %.1f, W_cubic %.1f, W_est %.1f", later, w(kT+3*Second+c.srtt), c.cubic.wEst)
	}
	t.Logf("cubic: %.1f at K/2, %.1f at K=%.2fs, %.1f at K+3s", half, atK, k, later)

	// Reno from the same point: one segment per RTT.
	if err := c.SetCongestion(CongestionReno); err != nil {
		t.Fatal(err)
	}
	c.cwnd, c.ssthresh = 70*mss, 70*mss
	reno := ackClock(c, &now, kT/2)
	if rtts := float64(kT/2) / float64(c.srtt); math.Abs(reno-(70+rtts)) > 2 {
		t.Fatalf("reno: %.1f segments after %.0f RTTs", reno, rtts)
	}
	if reno >= half {
		t.Fatalf("reno %.1f not below cubic %.1f at K/2", reno, half)
	}
	if err := c.SetCongestion("bbr"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown name: %v", err)
	}
}

// RFC 9438 4.7 (fast convergence): a loss below the previous W_max lowers
// W_max further, to cwnd*(1+beta)/2.
func TestCubicFastConvergence(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _, _ := n.connect(80)
	mss := uint32(c.mss)
	c.cwnd = 100 * mss
	c.cc.onLoss(c, n.now)
	c.cwnd = 80 * mss
	c.cc.onLoss(c, n.now)
	if got := c.cubic.wMax; math.Abs(got-80*(1+cubicBeta)/2) > 1e-9 {
		t.Fatalf("W_max %.2f", got)
	}
}

// TCP_CONGESTION through Config, and both algorithms move 1 MB over a lossy
// wire intact.
func TestCongestionSelectable(t *testing.T) {
	for _, name := range []string{CongestionReno, CongestionCubic} {
		cfg := Config{Congestion: name}
		n := newNet(t, pair.Options{Seed: 3, DropRate: 0.02}, cfg, cfg)
		c, s, _ := n.connect(80)
		if c.Congestion() != name || s.Congestion() != name {
			t.Fatalf("%s: %q %q", name, c.Congestion(), s.Congestion())
		}
		data := pattern(1<<20, 3)
		if got := n.transfer(c, s, data, true, 600*Second); string(got) != string(data) {
			t.Fatalf("%s: mismatch", name)
		}
	}
}
