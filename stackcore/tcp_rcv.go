package stackcore

import "ustack/stackcore/wire"

// input processes a segment for this connection (RFC 9293 3.10.7.3 and 3.10.7.4).
func (c *TCPConn) input(now Time, g *segment) {
	c.s.markReady(c)
	c.segsIn++ // every segment that reaches the connection, as Linux's tcpi_segs_in
	if c.state == StateSynSent {
		c.inputSynSent(now, g)
		return
	}
	st := c.s.stats
	if len(g.payload) > 0 {
		c.dataSegsIn++
	}

	// RFC 7323 5.3 R1 (PAWS): a segment whose timestamp is older than
	// TS.Recent is an old duplicate: ACK it (unless RST) and drop it. A
	// TS.Recent idle for more than 24 days is no longer trusted (5.5).
	ts := c.tsOK && g.opts.HasTS
	if ts && !g.has(wire.TCPFlagRST) && int32(g.opts.TSVal-c.tsRecent) < 0 && now-c.tsRecentAt <= pawsIdle {
		inc(&st.TCPPAWSDrops)
		c.oowAck(now, g)
		return
	}

	// First: sequence number acceptability (3.10.7.4).
	wnd := c.rcvBuf.Free()
	if a := c.rcvAdv.sub(c.rcvNxt); a > wnd {
		wnd = a
	}
	sl := g.segLen()
	ok := false
	switch {
	case sl == 0 && wnd == 0:
		ok = g.seq == c.rcvNxt
	case sl == 0:
		ok = c.inWindow(g.seq, wnd)
	case wnd == 0:
		ok = false
	default:
		ok = c.inWindow(g.seq, wnd) || c.inWindow(g.seq.add(sl-1), wnd)
	}
	if !ok {
		if wnd == 0 && g.seq == c.rcvNxt && g.has(wire.TCPFlagACK) {
			// Zero window: still process the ACK, drop the data (3.10.7.4).
			g.payload = g.payload[:0]
			g.flags &^= wire.TCPFlagFIN | wire.TCPFlagSYN
		} else {
			if c.state == StateTimeWait && g.has(wire.TCPFlagFIN) && !g.has(wire.TCPFlagRST) {
				// Retransmitted FIN: our last ACK was lost. ACK again and
				// restart the 2*MSL timeout (RFC 9293 3.10.7.4 eighth, TIME-WAIT).
				c.closeAt = now + timeWaitLen
				c.ackNow = true
				return
			}
			if ts && len(g.payload) > 0 && !g.has(wire.TCPFlagRST|wire.TCPFlagSYN) &&
				g.seq.add(sl).leq(c.rcvNxt) && g.seq.leq(c.rcvWup) && c.rcvNxt.sub(g.seq) <= c.rcvBuf.Cap() &&
				int32(g.opts.TSVal-c.tsRecent) >= 0 {
				// A retransmission of data we hold (our ACK was lost): RFC
				// 7323 4.3 rule (1) (SEG.SEQ <= Last.ACK.sent, newer TSval)
				// and case C: the ACK it draws echoes its TSval, so the
				// sender, which times retransmitted data by TSecr alone,
				// does not take its own RTO for the RTT. Only within a
				// window below RCV.NXT, so blind old segments cannot move it.
				c.tsRecent, c.tsRecentAt = g.opts.TSVal, now
			}
			if c.sackOK && len(g.payload) > 0 && !g.has(wire.TCPFlagRST|wire.TCPFlagSYN) &&
				g.seq.add(len(g.payload)).leq(c.rcvNxt) && c.rcvNxt.sub(g.seq) <= c.rcvBuf.Cap() {
				// RFC 2883: tell the sender the segment was a duplicate.
				c.dsackS, c.dsackE, c.dsackOK = g.seq, g.seq.add(len(g.payload)), true
			}
			if !g.has(wire.TCPFlagRST) {
				c.oowAck(now, g)
			}
			inc(&st.DropBadSegment)
			return
		}
	}

	// Second: RST (RFC 5961 section 3.2).
	if g.has(wire.TCPFlagRST) {
		if g.seq != c.rcvNxt {
			inc(&st.TCPChallengeAck)
			c.oowAck(now, g)
			return
		}
		inc(&st.TCPRstsRecv)
		switch c.state {
		case StateSynReceived:
			if c.lst != nil {
				c.s.free(c) // passive open: back to LISTEN, silently
			} else {
				c.fail(ErrRefused)
			}
		case StateClosing, StateLastAck, StateTimeWait:
			c.s.free(c)
		default:
			c.fail(ErrReset)
		}
		return
	}

	// Fourth: SYN in a synchronized state (RFC 5961 section 4).
	if g.has(wire.TCPFlagSYN) {
		if c.state == StateSynReceived && g.seq == c.irs && !g.has(wire.TCPFlagACK) {
			// Retransmitted SYN: resend the SYN-ACK.
			c.sndNxt = c.iss
			return
		}
		inc(&st.TCPChallengeAck)
		c.oowAck(now, g)
		return
	}

	// RFC 7323 4.3 (R3): remember the timestamp to echo, from the segment
	// at the left edge of what our last ACK covered.
	if ts && g.seq.leq(c.rcvWup) && (int32(g.opts.TSVal-c.tsRecent) >= 0 || now-c.tsRecentAt > pawsIdle) {
		c.tsRecent, c.tsRecentAt = g.opts.TSVal, now
	}

	// Trim to the window: drop what we already have, cut what does not fit.
	if d := c.rcvNxt.sub(g.seq); d > 0 {
		if d > len(g.payload) {
			// Only a FIN (or nothing) is new.
			d -= len(g.payload)
			g.payload = g.payload[:0]
			if d > 0 {
				g.flags &^= wire.TCPFlagFIN
			}
		} else {
			g.payload = g.payload[d:]
		}
		g.seq = c.rcvNxt
	}
	if room := wnd - g.seq.sub(c.rcvNxt); len(g.payload) > room {
		if room < 0 {
			room = 0
		}
		g.payload = g.payload[:room]
		g.flags &^= wire.TCPFlagFIN
	}

	// Fifth: ACK.
	if !g.has(wire.TCPFlagACK) {
		return
	}
	if c.state == StateSynReceived {
		if g.ack.leq(c.sndUna) || g.ack.gt(c.sndMax) {
			c.s.queueRST(g, g.ack, 0, wire.TCPFlagRST)
			return
		}
		if c.lst != nil && len(c.lst.queue) >= c.lst.backlog {
			// Accept queue full (connections from SYN cookies fill it too):
			// drop the ACK as Linux does; the SYN-ACK retransmission retries.
			inc(&c.s.stats.TCPListenDrops)
			return
		}
		c.sndUna = c.iss + 1
		if c.sndNxt.lt(c.sndUna) {
			c.sndNxt = c.sndUna
		}
		c.sndWnd = g.wnd << c.sndSh
		c.maxWnd = max(c.maxWnd, c.sndWnd)
		c.sndWl1, c.sndWl2 = g.seq, g.ack
		c.rtoAt = Never
		c.utoStart = Never
		c.retries = 0
		c.rttSample(now, g.ack)
		if c.finQ {
			c.setState(StateFinWait1)
		} else {
			c.setState(StateEstablished)
		}
		if c.lst != nil {
			c.lst.established(c)
		}
	}
	// An acceptable ACK: the peer is alive (keepalive, Linux rcv_tstamp).
	c.lastRcvAt = now
	c.kaProbes = 0
	if !c.processAck(now, g) {
		return
	}
	if c.freed {
		return
	}

	// Seventh: segment text.
	if len(g.payload) > 0 || g.has(wire.TCPFlagFIN) {
		if c.appClosed && len(g.payload) > 0 && c.state != StateTimeWait {
			// Data for a closed socket: reset, like Linux (RFC 9293 3.10.7.4 seventh, note).
			c.s.queueRSTTo(&c.hdr, c.key.lport, c.key.rport, c.sndNxt, 0, wire.TCPFlagRST)
			c.hardErr = ErrReset
			c.s.free(c)
			return
		}
		c.receive(now, g)
	}
}

// oowAck schedules the ACK RFC 9293 3.10.7.4 asks for in reply to an
// unacceptable segment, a challenge ACK (RFC 5961), or an ACK of unsent data.
// Like Linux (tcp_oow_rate_limited), replies to segments without data are
// limited to one per 500ms per connection so two desynchronised ends cannot
// ACK each other forever (RFC 9293 3.10.7.4 notes the ACK-war risk).
func (c *TCPConn) oowAck(now Time, g *segment) {
	if len(g.payload) > 0 && !g.has(wire.TCPFlagSYN) {
		c.ackNow = true
		return
	}
	if c.oowSent && now-c.oowAt < oowRateLimit {
		return
	}
	c.oowSent, c.oowAt = true, now
	c.ackNow = true
}

func (c *TCPConn) inWindow(s seq, wnd int) bool {
	return s.geq(c.rcvNxt) && s.lt(c.rcvNxt.add(wnd))
}

// processAck handles the ACK field in a synchronized state; it returns false
// when the segment must be dropped.
func (c *TCPConn) processAck(now Time, g *segment) bool {
	if g.ack.gt(c.sndMax) {
		// ACK for something not yet sent: ACK and drop (3.10.7.4).
		c.oowAck(now, g)
		return false
	}
	wnd := g.wnd << c.sndSh
	if g.ack.lt(c.sndUna) {
		return true // old duplicate, ignore the ACK
	}
	sacked := false
	c.rackFack0, c.ackRTT = c.rackFack, -1
	if c.sackOK && g.opts.NSACK > 0 {
		sacked = c.takeSACK(now, g)
	}
	if c.tlpOut {
		c.tlpAck(g)
	}
	acked := g.ack.sub(c.sndUna)
	if acked > 0 {
		c.newAck(now, g, acked)
	} else if c.sndMax != c.sndUna && (sacked ||
		len(g.payload) == 0 && !g.has(wire.TCPFlagFIN) && wnd == c.sndWnd && !c.dsackAck(g)) {
		// A duplicate ACK (RFC 5681 2), or one that SACKs new data (RFC 6675 2).
		c.dupAck(now)
	}
	if c.tx.n > 0 && (c.tx.sacked > 0 || c.recovery || c.lossRec) && c.rackDetect(now) {
		// With SACK, RACK alone decides that a segment is lost (RFC 8985
		// 6.2; its zero reordering window with DupThresh segments SACKed
		// is the classic rule), as Linux does with RACK on.
		c.enterRecovery(now)
	}
	// Window update (3.10.7.4, SND.WL1/SND.WL2 rule).
	if c.sndWl1.lt(g.seq) || (c.sndWl1 == g.seq && c.sndWl2.leq(g.ack)) {
		c.sndWnd = wnd
		c.maxWnd = max(c.maxWnd, wnd)
		c.sndWl1, c.sndWl2 = g.seq, g.ack
		if wnd > 0 {
			c.persistAt = Never
			c.persistIv = 0
			if c.sndUna == c.sndMax {
				c.utoStart = Never
			}
		}
	}
	// FIN acknowledged?
	if c.finQ && !c.finAckd && c.finSent() && g.ack == c.finSeq()+1 {
		c.finAckd = true
		switch c.state {
		case StateFinWait1:
			c.setState(StateFinWait2)
			if c.appClosed {
				c.closeAt = now + finWait2Timeout
			}
		case StateClosing:
			c.enterTimeWait(now)
		case StateLastAck:
			c.s.free(c)
			return false
		}
	}
	return true
}

func (c *TCPConn) finSeq() seq   { return c.bufSeq.add(c.sndBuf.Len()) }
func (c *TCPConn) finSent() bool { return c.sndMax.gt(c.finSeq()) }

// newAck handles an ACK that advances SND.UNA by acked.
func (c *TCPConn) newAck(now Time, g *segment, acked int) {
	ack := g.ack
	if !c.rttSample(now, ack) && c.tsOK && g.opts.HasTS && g.opts.TSEcr != 0 && !(c.sackOK && c.dsackAck(g)) {
		// RFC 7323 4.1: the echoed timestamp times a retransmitted segment
		// too, where Karn's rule leaves the timer without a sample. Not
		// from an ACK that reports a duplicate (D-SACK): our earlier copy
		// arrived and its ACK was lost, and the receiver echoes the
		// TS.Recent of that earlier segment (RFC 7323 4.3 does not let an
		// out-of-window duplicate update it; Linux receivers do not), so
		// the sample would be our own retransmission timeout, and under
		// loss the RTT estimate would feed on itself.
		if r := int32(c.tsNow(now) - g.opts.TSEcr); r >= 0 && Time(r) < rtoMax/Millisecond {
			c.addRTT(Time(r) * Millisecond)
		}
	}
	// Forward progress ends the exponential backoff, as Linux does: with
	// Karn's rule and no timestamps a lossy path might otherwise not get a
	// fresh sample for a long time and keep a backed-off RTO (RFC 6298 5.7
	// allows keeping it; we follow Linux).
	c.rto = c.baseRTO()
	// Release acknowledged data from the send buffer.
	if d := ack.sub(c.bufSeq); d > 0 {
		d = min(d, c.sndBuf.Len())
		c.sndBuf.discard(d)
		c.bufSeq = c.bufSeq.add(d)
		c.wake()
	}
	c.bytesAcked += uint64(acked)
	c.delivered += uint32((acked + c.mss - 1) / c.mss)
	if c.lossRec && ack.geq(c.recover) {
		c.lossRec = false
	}
	c.sndUna = ack
	if c.sndNxt.lt(ack) {
		c.sndNxt = ack
	}
	c.logAcked(now, g)
	c.retries = 0
	// Congestion control (RFC 5681 3.1, RFC 6582 3.2).
	mss := uint32(c.mss)
	switch {
	case c.recovery && ack.geq(c.recover) && c.sackOK:
		// RFC 6675 5 (end of recovery): cwnd goes to ssthresh, as in
		// Linux. RFC 6582's min(ssthresh, FlightSize + SMSS) would leave
		// a drained pipe at one segment, too few for the duplicate ACKs
		// of the next loss.
		c.recovery = false
		if c.undoDsack == 0 && c.reoSteps > 1 {
			c.reoSteps-- // a real loss: RACK's reordering window shrinks back
		}
		c.cwnd = max(c.ssthresh, 2*mss)
	case c.recovery && ack.geq(c.recover):
		c.recovery = false
		c.cwnd = min(c.ssthresh, uint32(max(c.sndMax.sub(ack), 0))+mss)
	case c.recovery && c.sackOK:
		// RFC 6675 5 (C): the pipe, not cwnd inflation, drives sending.
	case c.recovery:
		// Partial ACK (RFC 6582 3.2 step 5): retransmit the next hole, deflate.
		c.rtxOne = true
		if uint32(acked) < c.cwnd {
			c.cwnd -= uint32(acked)
		}
		c.cwnd += mss
	default:
		c.cc.onAck(c, now, acked)
	}
	if !c.recovery && c.sndUna.sub(c.recover) > 1<<30 {
		c.recover = c.sndUna - 1 // keep RFC 6582's comparison valid across wrap
	}
	c.dupAcks = 0
	c.utoStart = Never // progress: the clock restarts with the next data outstanding
	if c.sndUna == c.sndMax {
		c.rtoAt = Never
	} else {
		c.utoStart = now
		c.rtoAt = now + c.rto
	}
	c.tlpOut = false
	c.armPTO(now)
}

// dupAck counts duplicate ACKs; without SACK the third starts fast
// retransmit (RFC 5681 3.2).
func (c *TCPConn) dupAck(now Time) {
	c.dupAcks++
	mss := uint32(c.mss)
	if c.recovery {
		if !c.sackOK {
			c.cwnd += mss // RFC 6582 3.2 step 4: inflate
		}
		return
	}
	if !c.sndUna.gt(c.recover) && !(c.sndUna == c.recover && c.sndMax.gt(c.recover)) {
		// RFC 6582 4.1: no new recovery for losses of the old window. Once
		// SND.UNA reaches the recovery point every byte of that window is
		// acknowledged, and duplicate ACKs report a loss of newer data
		// (Linux leaves recovery at snd_una == high_seq too).
		return
	}
	if !c.sackOK && c.dupAcks == dupThresh {
		c.ssthresh = c.cc.onLoss(c, now)
		c.cwnd = c.ssthresh + 3*mss
		c.recovery = true
		c.recover = c.sndMax
		c.rtxOne = true
		inc(&c.s.stats.TCPFastRetrans)
	}
}

// enterRecovery starts SACK-based loss recovery (RFC 6675 5 (4)) once a
// segment is deemed lost: ssthresh from the congestion control, and the
// pipe, not cwnd, limits sending. Not during a recovery or after a
// timeout, whose lost segments the same loop repairs.
func (c *TCPConn) enterRecovery(now Time) {
	if c.recovery || c.lossRec {
		return
	}
	c.undoOK, c.undoCwnd, c.undoSsthresh, c.undoRtx, c.undoDsack = true, c.cwnd, c.ssthresh, 0, 0
	c.ssthresh = c.cc.onLoss(c, now)
	c.cwnd = c.ssthresh
	c.recovery = true
	c.recover = c.sndMax
	if c.tx.n > 0 && c.tx.at(0).flags&(recLost|recRtx) == recLost {
		c.rtxOne = true // (4.3): the first retransmission goes out regardless of the pipe
	}
	inc(&c.s.stats.TCPFastRetrans)
}

// rttSample updates SRTT/RTTVAR/RTO when ack covers the timed segment
// (RFC 6298 section 2; Karn's rule: timing is off after a retransmission).
func (c *TCPConn) rttSample(now Time, ack seq) bool {
	if !c.rttOn || ack.lt(c.rttSeq) {
		return false
	}
	c.rttOn = false
	c.addRTT(max(now-c.rttAt, 0))
	return true
}

// addRTT feeds one RTT measurement r to the estimator (RFC 6298 2.2, 2.3).
func (c *TCPConn) addRTT(r Time) {
	if !c.hasRTT || r < c.minRTT {
		c.minRTT = r
	}
	if !c.hasRTT {
		c.hasRTT = true
		c.srtt = r
		c.rttvar = r / 2
	} else {
		d := c.srtt - r
		if d < 0 {
			d = -d
		}
		c.rttvar = (3*c.rttvar + d) / 4
		c.srtt = (7*c.srtt + r) / 8
	}
	c.rto = c.baseRTO()
}

// baseRTO is SRTT + max(G, 4*RTTVAR) clamped to [200ms, 120s] (RFC 6298 2.3,
// 2.4 with Linux's floor), or the initial 1s before any sample.
func (c *TCPConn) baseRTO() Time {
	if !c.hasRTT {
		return rtoInitial
	}
	return min(max(c.srtt+max(Millisecond, 4*c.rttvar), rtoMin), rtoMax)
}

// receive places segment text in the receive ring (in order or out of order)
// and handles FIN (RFC 9293 3.10.7.4 seventh and eighth).
func (c *TCPConn) receive(now Time, g *segment) {
	st := c.s.stats
	switch c.state {
	case StateEstablished, StateFinWait1, StateFinWait2:
	default:
		// CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer already sent FIN.
		c.ackNow = true
		return
	}
	off := g.seq.sub(c.rcvNxt)
	if len(g.payload) > 0 {
		n := c.rcvBuf.writeAt(off, g.payload)
		if n == 0 {
			c.ackNow = true // window full: tell the peer at once
			return
		}
		add(&st.TCPBytesIn, uint64(n))
		if off == 0 {
			hole := c.nooo > 0
			c.advance(n)
			c.scheduleAck(now, n, hole)
			c.rcvTune(now, n)
		} else if !c.addOOO(g.seq, g.seq.add(n)) {
			inc(&st.TCPOOODropped)
			c.ackNow = true
			return
		} else {
			inc(&st.TCPOOOQueued)
			c.oooPkts++
			// Out-of-order data is ACKed at once (RFC 5681 4.2) and puts the
			// receiver in quick-ack mode, as Linux does.
			c.ackNow = true
			c.incrQuickAck()
			// RFC 5681 3.2: one duplicate ACK per out-of-order segment, even
			// when several arrive in one batch, so fast retransmit works.
			if c.dupOwed < maxDupOwed {
				c.dupSeq[(c.dupHead+c.dupOwed)%maxDupOwed] = g.seq
				c.dupOwed++
			}
		}
	}
	if g.has(wire.TCPFlagFIN) {
		fs := g.seq.add(len(g.payload))
		if fs != c.rcvNxt {
			c.oooFin, c.oooFinS = true, fs
			c.ackNow = true
			return
		}
		c.finReceived(now)
	} else if c.oooFin && c.oooFinS == c.rcvNxt {
		c.finReceived(now)
	}
}

// scheduleAck decides between an immediate and a delayed ACK for n
// in-order bytes just received (RFC 9293 3.8.6.3, RFC 1122 4.2.3.2, RFC 5681
// 4.2), with Linux's engine (tcp_event_data_recv, __tcp_ack_snd_check): ACK
// at once in quick-ack mode (the first segments of a connection or after an
// idle period, unless the connection is interactive), when the segment
// fills a hole, or when more than one full-sized segment is unacknowledged;
// otherwise start the delayed-ACK timer (ATO, at least 40ms), hoping to
// piggyback the ACK on data.
func (c *TCPConn) scheduleAck(now Time, n int, hole bool) {
	c.rcvMss = max(c.rcvMss, min(n, c.advMSS()))
	if c.ato == 0 {
		// First data: start the delayed-ACK engine in quick-ack mode.
		c.ato = atoMin
		c.incrQuickAck()
	} else {
		m := now - c.lrcvAt
		switch {
		case m <= atoMin/2:
			c.ato = c.ato/2 + atoMin/2
		case m < c.ato:
			c.ato = min(c.ato/2+m, c.rto)
		case m > c.rto:
			c.incrQuickAck() // the peer was idle: restart quickly
		}
	}
	c.lrcvAt = now
	if c.quickAck || hole || (c.quickAcks > 0 && !c.pingpong) || c.rcvNxt.sub(c.rcvWup) > c.rcvMss {
		c.ackNow = true
		return
	}
	if c.delackAt == Never {
		d := c.ato
		bound := atoMax
		if c.hasRTT {
			bound = min(bound, max(c.srtt, atoMin))
		}
		c.delackAt = now + min(d, bound)
	}
}

// incrQuickAck enters quick-ack mode for about a window's worth of segments
// (Linux tcp_incr_quickack).
func (c *TCPConn) incrQuickAck() {
	mss := max(c.rcvMss, defaultPeerMSS)
	q := c.rcvBuf.Cap() / (2 * mss)
	if q == 0 {
		q = 2
	}
	c.quickAcks = max(c.quickAcks, min(q, maxQuickAcks))
}

// advance commits n in-order bytes and any out-of-order ranges they join.
func (c *TCPConn) advance(n int) {
	end := c.rcvNxt.add(n)
	i := 0
	for i < c.nooo && c.ooo[i].start.leq(end) {
		end = seqMax(end, c.ooo[i].end)
		i++
	}
	if i > 0 {
		copy(c.ooo[:], c.ooo[i:c.nooo])
		c.nooo -= i
		if c.nooo == 0 {
			c.oooStamp = 0 // stamps only order the ranges held now
		}
	}
	c.bytesRcvd += uint64(end.sub(c.rcvNxt))
	c.rcvBuf.commit(end.sub(c.rcvNxt))
	c.rcvNxt = end
	c.wake()
}

// addOOO records [start,end) as received beyond rcvNxt, merging the ranges
// it touches and keeping them sorted; false if it needs a new range and all
// maxOOO are in use (the bytes themselves are bounded by the receive
// buffer: writeAt stores nothing beyond the window).
func (c *TCPConn) addOOO(start, end seq) bool {
	// ranges [i, j) touch [start, end).
	i := 0
	for i < c.nooo && c.ooo[i].end.lt(start) {
		i++
	}
	j := i
	for j < c.nooo && c.ooo[j].start.leq(end) {
		start = seqMin(start, c.ooo[j].start)
		end = seqMax(end, c.ooo[j].end)
		j++
	}
	c.oooStamp++
	r := rcvRange{start, end, c.oooStamp}
	switch {
	case j > i:
		c.ooo[i] = r
		copy(c.ooo[i+1:], c.ooo[j:c.nooo])
		c.nooo -= j - i - 1
	case c.nooo == maxOOO:
		return false
	default:
		copy(c.ooo[i+1:c.nooo+1], c.ooo[i:c.nooo])
		c.ooo[i] = r
		c.nooo++
	}
	return true
}

func (c *TCPConn) finReceived(now Time) {
	c.oooFin = false
	c.rcvNxt++
	c.finRcvd = true
	c.ackNow = true
	switch c.state {
	case StateEstablished:
		c.setState(StateCloseWait)
	case StateFinWait1:
		if c.finAckd {
			c.enterTimeWait(now)
		} else {
			c.setState(StateClosing)
		}
	case StateFinWait2:
		c.enterTimeWait(now)
	}
	c.wake()
}

func (c *TCPConn) enterTimeWait(now Time) {
	c.setState(StateTimeWait)
	c.rtoAt = Never
	c.persistAt = Never
	c.utoStart = Never
	c.closeAt = now + timeWaitLen
}

// inputSynSent handles a segment in SYN-SENT (RFC 9293 3.10.7.3).
func (c *TCPConn) inputSynSent(now Time, g *segment) {
	s := c.s
	ackOK := false
	if g.has(wire.TCPFlagACK) {
		if g.ack.leq(c.iss) || g.ack.gt(c.sndMax) {
			if !g.has(wire.TCPFlagRST) {
				s.queueRST(g, g.ack, 0, wire.TCPFlagRST)
			}
			return
		}
		ackOK = true
	}
	if g.has(wire.TCPFlagRST) {
		if ackOK {
			inc(&s.stats.TCPRstsRecv)
			c.fail(ErrRefused)
		}
		return
	}
	if !g.has(wire.TCPFlagSYN) {
		return
	}
	c.irs = g.seq
	c.rcvNxt = g.seq + 1
	c.rcvAdv = c.rcvNxt
	c.rcvWup = c.rcvNxt
	c.takeSynOptions(now, g)
	c.ackNow = true
	if ackOK {
		c.lastRcvAt = now
		c.sndUna = g.ack
		c.sndNxt = seqMax(c.sndNxt, g.ack)
		c.sndWnd = g.wnd // never scaled in a SYN (RFC 7323 2.2)
		c.maxWnd = c.sndWnd
		c.sndWl1, c.sndWl2 = g.seq, g.ack
		c.rtoAt = Never
		c.utoStart = Never
		c.retries = 0
		c.rttSample(now, g.ack)
		if c.finQ {
			c.setState(StateFinWait1)
		} else {
			c.setState(StateEstablished)
		}
		return
	}
	// Simultaneous open: SYN-RECEIVED, resend our SYN as SYN-ACK.
	c.sndWnd = g.wnd
	c.sndWl1, c.sndWl2 = g.seq, c.iss
	c.sndNxt = c.iss
	c.setState(StateSynReceived)
}

// dsackAck reports whether g's first SACK block is a D-SACK (RFC 2883):
// such an ACK answers a duplicate, not a loss, and is no duplicate ACK.
func (c *TCPConn) dsackAck(g *segment) bool {
	if g.opts.NSACK == 0 {
		return false
	}
	s, e := seq(g.opts.SACK[0].Start), seq(g.opts.SACK[0].End)
	if e.leq(g.ack) {
		return true
	}
	return g.opts.NSACK > 1 && s.geq(seq(g.opts.SACK[1].Start)) && e.leq(seq(g.opts.SACK[1].End))
}
