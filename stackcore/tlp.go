package stackcore

// Tail loss probe (RFC 8985 7). A flight whose last segments (or whose ACKs)
// are lost leaves too few duplicate ACKs for fast retransmit, and only the
// retransmission timeout, at least 200ms, would repair it. After a probe
// timeout of two round trips (plus 2ms) without an ACK the sender sends one
// probe segment (new data if the peer's window allows, else the last
// segment again) without touching cwnd. Its SACK then shows which segments
// before it are missing: a segment sent before a delivered probe and not
// delivered itself is lost (RFC 8985 6.2's rule, with the probe sent at
// least a PTO after them), and SACK recovery repairs them. In SACK
// recovery each probe timeout without an ACK resends the first hole again
// instead, whose retransmission was lost (RACK's lost-retransmission
// detection, RFC 8985 6.2, reduced to the timeout).

const (
	ptoMin   = 2 * Millisecond   // added to 2*SRTT, as Linux adds TCP_TIMEOUT_MIN (2 jiffies)
	wcDelAck = 200 * Millisecond // RFC 8985 7.2 WCDelAckT
)

// armPTO (re)starts the probe timer while data is outstanding (RFC 8985 7.2).
func (c *TCPConn) armPTO(now Time) {
	c.tlpAt = Never
	if !c.sackOK || c.tlpOut && !c.recovery || c.lossRec || c.sndMax == c.sndUna || c.rtoAt == Never ||
		!c.state.synchronized() || c.sndWnd == 0 {
		return
	}
	pto := rtoInitial
	if c.hasRTT {
		pto = 2*c.srtt + ptoMin
	}
	if c.sndMax.sub(c.sndUna) <= c.mss {
		pto += wcDelAck // one segment out: the peer may be delaying its ACK
	}
	if now+pto < c.rtoAt {
		c.tlpAt = now + pto
	}
}

// onPTO is the probe timeout.
func (c *TCPConn) onPTO(now Time) {
	c.tlpAt = Never
	if c.sndMax == c.sndUna {
		return
	}
	if c.recovery {
		// No ACK for a PTO in recovery: the retransmissions below HighRxt
		// are lost too (or the pipe estimate counts lost segments and
		// holds everything back); resend from the first hole, once per PTO.
		c.highRxt = seqMin(c.highRxt, c.sndUna)
		c.rtxOne = true // regardless of the pipe, which counts lost segments
		c.armPTO(now)
		return
	}
	c.tlpOut = true
	c.tlpProbe = true
}

// sendTLP emits the probe: one new segment if the peer's window allows
// (cwnd does not limit it), else the last segment sent (RFC 8985 7.3).
func (c *TCPConn) sendTLP(now Time, out Output, dataEnd seq) (sent, ok bool) {
	if c.sndMax == c.sndUna {
		c.tlpOut = false
		return false, true
	}
	sq := c.sndMax
	n := min(max(dataEnd.sub(sq), 0), c.mss, max(c.sndUna.add(int(c.sndWnd)).sub(sq), 0))
	fin := false
	if n == 0 || c.sndNxt != c.sndMax {
		// Nothing new may go: the last segment again (with the FIN if sent).
		end := seqMin(c.sndMax, dataEnd)
		n = min(end.sub(c.sndUna), c.mss)
		sq = end.add(-n)
		fin = c.finQ && c.finSent()
		if n == 0 && !fin {
			c.tlpOut = false
			return false, true
		}
	} else if c.finQ && sq.add(n) == dataEnd {
		switch c.state {
		case StateFinWait1, StateClosing, StateLastAck:
			fin = true
		}
	}
	c.tlpSeq = sq
	rto := c.rtoAt
	sent, ok = c.emit(now, out, sq, n, fin, false)
	if sent {
		c.rtoAt = max(rto, now+c.rto) // RFC 8985 7.3: the RTO timer restarts
	}
	return sent, ok
}

// tlpAck looks at an ACK while a probe is outstanding: once the probe is
// delivered (SACKed or covered), the holes below it are lost.
func (c *TCPConn) tlpAck(g *segment) {
	delivered := g.ack.gt(c.tlpSeq)
	for i := 0; i < c.nsb && !delivered; i++ {
		delivered = c.sb[i].end.gt(c.tlpSeq)
	}
	if !delivered {
		return
	}
	c.tlpOut = false
	if c.nsb > 0 && !g.ack.gt(c.tlpSeq) {
		c.lostTo, c.lostOK = c.tlpSeq, true
	}
}
