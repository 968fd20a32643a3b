package stackcore

// HyStart++ (RFC 9406) for the initial slow start. Slow start doubles cwnd
// each round trip until a loss; with large buffers that overshoots the
// bottleneck queue by up to a window, and the losses cost a long recovery.
// HyStart++ watches the minimum RTT of each round: once it grows by more
// than an eighth (between 4 and 16 ms), the queue is building, and
// Conservative Slow Start grows cwnd four times slower for up to five rounds
// before congestion avoidance, unless the RTT falls back (a spurious exit).
// The RTT samples are RACK's (rack.go): one per ACK that delivers a segment
// sent once, with SACK on.

const (
	hsMinRTTThresh     = 4 * Millisecond  // MIN_RTT_THRESH
	hsMaxRTTThresh     = 16 * Millisecond // MAX_RTT_THRESH
	hsMinRTTDivisor    = 8                // MIN_RTT_DIVISOR
	hsNRTTSample       = 8                // N_RTT_SAMPLE
	hsCSSGrowthDivisor = 4                // CSS_GROWTH_DIVISOR
	hsCSSRounds        = 5                // CSS_ROUNDS
)

type hystart struct {
	started   bool
	roundEnd  seq  // windowEnd: the round ends when SND.UNA passes it
	lastMin   Time // lastRoundMinRTT, Never if none
	curMin    Time // currentRoundMinRTT, Never if none
	samples   int  // rttSampleCount
	css       bool // in Conservative Slow Start
	cssBase   Time // cssBaselineMinRtt
	cssRounds int
}

// hsGrowth returns how many of acked bytes slow start may count (RFC 9406
// 4.2 and 4.3). It may end slow start by setting ssthresh to cwnd.
func (c *TCPConn) hsGrowth(acked int) int {
	h := &c.hs
	if !h.started || c.sndUna.geq(h.roundEnd) {
		if h.css {
			if h.cssRounds++; h.cssRounds >= hsCSSRounds {
				c.ssthresh = c.cwnd // 4.3: on to congestion avoidance
				h.css = false
				return 0
			}
		}
		lastMin := h.curMin
		if !h.started {
			lastMin = Never
		}
		*h = hystart{started: true, roundEnd: c.sndMax, lastMin: lastMin, curMin: Never, css: h.css,
			cssBase: h.cssBase, cssRounds: h.cssRounds}
	}
	if c.ackRTT >= 0 {
		h.curMin = min(h.curMin, c.ackRTT)
		h.samples++
	}
	if h.samples < hsNRTTSample || h.curMin == Never {
		if h.css {
			return acked / hsCSSGrowthDivisor
		}
		return acked
	}
	if h.css {
		if h.curMin < h.cssBase {
			h.css = false // 4.3: the RTT increase was spurious; back to slow start
			return acked
		}
		return acked / hsCSSGrowthDivisor
	}
	if h.lastMin != Never {
		th := min(max(h.lastMin/hsMinRTTDivisor, hsMinRTTThresh), hsMaxRTTThresh)
		if h.curMin >= h.lastMin+th {
			h.css, h.cssBase, h.cssRounds = true, h.curMin, 0
			inc(&c.s.stats.TCPHyStartExits)
			return acked / hsCSSGrowthDivisor
		}
	}
	return acked
}
