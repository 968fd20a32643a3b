package stackcore

import "math"

// CUBIC constants (RFC 9438 4.1, 4.2, 4.3).
const (
	cubicC     = 0.4
	cubicBeta  = 0.7
	cubicAlpha = 3 * (1 - cubicBeta) / (1 + cubicBeta)
)

// cubicCC is CUBIC (RFC 9438), in segments and seconds as the RFC writes it:
// the window follows W_cubic(t) = C*(t-K)^3 + W_max from the last congestion
// event, never below the Reno-friendly estimate W_est, with fast convergence
// (4.7). Slow start is as in Reno (no HyStart).
type cubicCC struct {
	wMax       float64 // window before the last reduction (segments)
	k          float64 // seconds to reach wMax again
	epoch      Time    // start of the current congestion avoidance epoch; 0 = none
	wEst       float64 // Reno-friendly window (segments)
	fracBytes  float64 // fractional cwnd increase carried between ACKs
	lastCwnd   uint32  // cwnd we last set (detects outside changes)
	lastSsthr  uint32
	epochValid bool
}

func (*cubicCC) name() string { return CongestionCubic }

func (q *cubicCC) onAck(c *TCPConn, now Time, acked int) {
	acked = slowStart(c, acked)
	if acked == 0 {
		return
	}
	mss := float64(c.mss)
	cwnd := float64(c.cwnd) / mss
	if !q.epochValid || q.lastCwnd != c.cwnd || q.lastSsthr != c.ssthresh {
		// New epoch (RFC 9438 4.2): the first ACK in congestion avoidance
		// after a reduction, or after cwnd was changed by recovery code.
		q.epochValid = true
		q.epoch = now
		q.wEst = cwnd
		q.fracBytes = 0
		if q.wMax < cwnd {
			q.wMax = cwnd
			q.k = 0
		} else {
			q.k = math.Cbrt((q.wMax - cwnd) / cubicC)
		}
	}
	rtt := float64(max(c.srtt, Millisecond)) / float64(Second)
	t := float64(now-q.epoch) / float64(Second)
	// W_est (4.3): alpha_cubic per RTT worth of ACKs; 1 once past W_max.
	alpha := cubicAlpha
	if q.wEst >= q.wMax {
		alpha = 1
	}
	q.wEst += alpha * (float64(acked) / mss) / cwnd
	d := t + rtt - q.k
	target := cubicC*d*d*d + q.wMax // W_cubic(t + RTT) (4.2)
	target = min(max(target, cwnd), 1.5*cwnd)
	var inc float64 // segments
	if wc := cubicC*(t-q.k)*(t-q.k)*(t-q.k) + q.wMax; wc < q.wEst {
		inc = q.wEst - cwnd // Reno-friendly region (4.3)
		inc = max(inc, 0)
	} else {
		inc = (target - cwnd) / cwnd * (float64(acked) / mss) // concave and convex regions (4.4, 4.5)
	}
	q.fracBytes += inc * mss
	if q.fracBytes >= 1 {
		add := uint32(q.fracBytes)
		q.fracBytes -= float64(add)
		c.cwnd += add
	}
	q.lastCwnd, q.lastSsthr = c.cwnd, c.ssthresh
}

// reduce records a congestion event: fast convergence (4.7) and the
// multiplicative decrease (4.6).
func (q *cubicCC) reduce(c *TCPConn) uint32 {
	cwnd := float64(c.cwnd) / float64(c.mss)
	if cwnd < q.wMax {
		q.wMax = cwnd * (1 + cubicBeta) / 2
	} else {
		q.wMax = cwnd
	}
	q.epochValid = false
	return max(uint32(float64(c.cwnd)*cubicBeta), 2*uint32(c.mss))
}

func (q *cubicCC) onLoss(c *TCPConn, _ Time) uint32 { return q.reduce(c) }

func (q *cubicCC) onRTO(c *TCPConn, _ Time) uint32 { return q.reduce(c) }
