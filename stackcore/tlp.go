package stackcore

// Tail loss probe (RFC 8985 7). A flight whose last segments (or whose ACKs)
// are lost leaves too few duplicate ACKs for fast retransmit, and only the
// retransmission timeout, at least 200ms, would repair it. After a probe
// timeout of two round trips (plus 2ms) without an ACK the sender sends one
// probe segment (new data if the peer's window allows, else the last
// segment again) without touching cwnd. Its delivery lets RACK (rack.go)
// find the segments before it that are missing, and SACK recovery repairs
// them. In SACK recovery, and after a timeout, a probe timeout without an
// ACK resends the first hole again instead. RFC 8985 7.2 schedules no probe
// in loss recovery; we do, one per ACK or timeout, because under heavy loss
// (20 % each way) a timeout's single retransmission fails a third of the
// time, and the chains of backed-off timeouts that follow stall a transfer
// for a minute; a second chance per timeout makes such chains rare. The
// backoff stays exponential: a peer that has gone gets two segments per
// timeout instead of one.

const (
	ptoMin   = 2 * Millisecond   // added to 2*SRTT, as Linux adds TCP_TIMEOUT_MIN (2 jiffies)
	wcDelAck = 200 * Millisecond // RFC 8985 7.2 WCDelAckT
)

// armPTO (re)starts the probe timer while data is outstanding (RFC 8985 7.2).
func (c *TCPConn) armPTO(now Time) {
	c.tlpAt = Never
	if !c.sackOK || c.tlpOut || c.sndMax == c.sndUna || c.rtoAt == Never ||
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
	if c.recovery || c.lossRec {
		// No ACK for a PTO in recovery (or after a timeout, where the
		// backed-off RTO is the alternative): nothing was delivered that
		// RACK could judge by, so the first hole's retransmission is lost
		// too; resend it. Like a probe it is one per ACK.
		c.markFirstLost()
		c.rtxOne = true // regardless of the pipe
		c.tlpOut, c.tlpSeq = true, c.sndUna
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
		if c.tx.n > 0 {
			n = min(n, max(end.sub(c.recStart(c.tx.n-1)), 0)) // as it was sent
		}
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
// delivered (SACKed or covered) another may go; RACK judges the segments
// sent before it (rack.go).
func (c *TCPConn) tlpAck(g *segment) {
	if g.ack.gt(c.tlpSeq) || c.sackedAt(c.tlpSeq) {
		c.tlpOut = false
	}
}
