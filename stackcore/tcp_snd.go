package stackcore

import "ustack/stackcore/wire"

// output emits every segment the connection may send now. It returns false
// when the Output ran out of buffers.
func (c *TCPConn) output(now Time, out Output) bool {
	for range 4096 {
		sent, ok := c.outputOne(now, out)
		if !ok {
			return false
		}
		if !sent || c.freed {
			return true
		}
	}
	return true
}

// outputOne emits at most one segment (smoltcp's dispatch): the handshake
// segment, a fast retransmission, a window probe, new or go-back-N data with
// FIN, or a pure ACK. sent reports whether a segment went out.
func (c *TCPConn) outputOne(now Time, out Output) (sent, ok bool) {
	switch c.state {
	case StateClosed, StateListen:
		return false, true
	case StateSynSent:
		if c.sndNxt != c.iss {
			return false, true
		}
		return c.emitSyn(now, out, wire.TCPFlagSYN, 0)
	case StateSynReceived:
		if c.sndNxt == c.iss {
			return c.emitSyn(now, out, wire.TCPFlagSYN|wire.TCPFlagACK, c.rcvNxt)
		}
		if c.ackNow {
			return c.emit(now, out, c.sndNxt, 0, false, false)
		}
		return false, true
	case StateTimeWait:
		if c.ackNow {
			return c.emit(now, out, c.sndNxt, 0, false, false)
		}
		return false, true
	}

	dataEnd := c.finSeq()
	if c.rtxOne {
		// Fast retransmit / NewReno partial ACK: one segment at SND.UNA.
		c.rtxOne = false
		if c.sndUna.lt(c.sndMax) {
			n := min(max(dataEnd.sub(c.sndUna), 0), c.mss)
			fin := c.finQ && c.sndUna.add(n) == dataEnd && c.finSent()
			return c.emit(now, out, c.sndUna, n, fin, false)
		}
	}
	logRecovery := c.tx.n > 0 && (c.recovery || c.lossRec)
	if c.tx.pendingRtx() && int(c.cwnd)-c.pipe() >= c.mss {
		// RFC 6675 5 (C): while cwnd - pipe >= 1 SMSS, send NextSeg: lost
		// segments first (rule 1), then new data (rule 2, the path below).
		// Rule 3 (holes not deemed lost) is left to RACK's timer, as Linux.
		if sq, n := c.nextLost(); n > 0 {
			n = min(n, max(dataEnd.sub(sq), 0))
			fin := c.finQ && sq.add(n) == dataEnd && c.finSent()
			if n > 0 || fin {
				return c.emit(now, out, sq, n, fin, false)
			}
		}
	}
	if c.tlpProbe {
		c.tlpProbe = false
		if sent, ok := c.sendTLP(now, out, dataEnd); sent || !ok {
			return sent, ok
		}
	}
	if c.probe {
		// Zero-window probe: an old sequence number draws an ACK with the
		// current window (as Linux does), without touching the send state.
		c.probe = false
		return c.emit(now, out, c.sndUna-1, 0, false, true)
	}
	unsent := max(dataEnd.sub(c.sndNxt), 0)
	cwndRoom := c.sndUna.add(int(c.cwnd)).sub(c.sndNxt)
	switch {
	case logRecovery:
		cwndRoom = int(c.cwnd) - c.pipe()
	case !c.recovery && c.dupAcks > 0:
		// RFC 3042 (limited transmit): each of the first two duplicate
		// ACKs lets one new segment out beyond cwnd.
		cwndRoom += min(c.dupAcks, 2) * c.mss
	}
	usable := max(min(c.sndUna.add(int(c.sndWnd)).sub(c.sndNxt), cwndRoom), 0)
	n := min(unsent, usable, c.mss)
	inflight := c.sndNxt != c.sndUna
	if n > 0 && n < c.mss && n < unsent && uint32(n) < c.maxWnd/2 && inflight {
		n = 0 // sender silly window avoidance (RFC 9293 3.8.6.2.1)
	}
	if n > 0 && n < c.mss && n == unsent && !c.finQ && c.holdPartial(now) {
		n = 0
	}
	fin := false
	if c.finQ && c.sndNxt.add(n) == dataEnd {
		switch c.state {
		case StateFinWait1, StateClosing, StateLastAck:
			fin = true
		}
	}
	if n > 0 || fin {
		return c.emit(now, out, c.sndNxt, n, fin, false)
	}
	if unsent > 0 && c.sndWnd == 0 && !inflight {
		// Zero window: the persist timer replaces the retransmission timer.
		c.rtoAt = Never
		if c.persistAt == Never {
			c.persistIv = max(c.rto, rtoMin)
			c.persistAt = now + c.persistIv
		}
		c.utoArm(now)
	}
	if c.ackNow || c.dupOwed > 0 {
		if c.dupOwed > 0 {
			// One ACK per out-of-order segment, each with that segment's
			// block first (RFC 2018 4), as if sent when it arrived: a batch
			// of segments into different holes reports every range.
			c.sackHint, c.hintOK = c.dupSeq[c.dupHead], true
			c.dupHead = (c.dupHead + 1) % maxDupOwed
			c.dupOwed--
		}
		sent, ok := c.emit(now, out, c.sndNxt, 0, false, false)
		c.hintOK = false
		return sent, ok
	}
	return false, true
}

// holdPartial reports whether a partial (less than MSS) segment holding all
// unsent data must wait: under TCP_CORK until uncorked or 200ms have passed;
// otherwise Nagle's algorithm (RFC 9293 3.7.4, RFC 896) in Minshall's
// variant, as Linux: while a previously sent small segment is still
// unacknowledged (draft-minshall-nagle). A queued FIN sends it regardless.
func (c *TCPConn) holdPartial(now Time) bool {
	if c.cork {
		if c.corkAt == Never {
			c.corkAt = now + corkMax
		}
		return now < c.corkAt
	}
	if c.noDelay {
		return false
	}
	return c.sndMax != c.sndUna && c.sndSml.gt(c.sndUna) && c.sndSml.leq(c.sndNxt)
}

// advertise returns the window field for an outgoing segment and records the
// right edge (receiver silly window avoidance, RFC 9293 3.8.6.2.2; the edge
// never moves left).
func (c *TCPConn) advertise() uint16 {
	edge := c.rcvNxt.add(c.rcvBuf.Free())
	if edge.sub(c.rcvAdv) < c.swsThreshold() && c.rcvAdv.geq(c.rcvNxt) {
		edge = c.rcvAdv
	}
	w := max(edge.sub(c.rcvNxt), 0) >> c.rcvSh
	if w > 0xffff {
		w = 0xffff
	}
	c.rcvAdv = seqMax(c.rcvAdv, c.rcvNxt.add(w<<c.rcvSh))
	return uint16(w)
}

func (c *TCPConn) emitSyn(now Time, out Output, flags uint8, ack seq) (bool, bool) {
	buf := out.AllocTx()
	if buf == nil {
		inc(&c.s.stats.DropTxNoBuffer)
		return false, false
	}
	ws := -1
	if flags&wire.TCPFlagACK == 0 || c.wsOK {
		ws = int(c.rcvSh)
	}
	wnd := uint16(min(c.rcvBuf.Free(), 0xffff))
	if flags&wire.TCPFlagACK != 0 {
		c.rcvAdv = c.rcvNxt.add(int(wnd))
	}
	retrans := c.sndMax != c.iss
	o := wire.SynOptions{MSS: uint16(c.advMSS()), WScale: ws, TSVal: c.tsNow(now)}
	if flags&wire.TCPFlagACK != 0 {
		o.TS, o.SACKPerm, o.TSEcr = c.tsOK, c.sackOK, c.tsRecent
	} else {
		o.TS, o.SACKPerm = !c.s.cfg.NoTimestamps, !c.s.cfg.NoSACK
	}
	nopt := wire.PutSynOptionsFull(c.optBuf[:], o)
	n := c.s.encodeTCPRaw(buf, &c.hdr, c.key.lport, c.key.rport, c.iss, ack, flags, wnd, nil, 0, 0,
		c.optBuf[:nopt])
	out.SubmitTx(buf, n)
	c.segsOut++
	if retrans {
		c.totalRetrans++
		inc(&c.s.stats.TCPRetransSegs)
		c.rttOn = false
	} else {
		c.rttOn, c.rttSeq, c.rttAt = true, c.iss+1, now
	}
	c.sndNxt = c.iss + 1
	c.sndMax = seqMax(c.sndMax, c.sndNxt)
	if c.rtoAt == Never {
		c.rtoAt = now + c.rto
	}
	c.utoArm(now)
	c.ackSent()
	return true, true
}

// tsNow is our TSval clock: milliseconds plus a per-connection offset (RFC 7323 5.4).
func (c *TCPConn) tsNow(now Time) uint32 { return uint32(now/Millisecond) + c.tsOff }

// segOptions builds the options of a non-SYN segment in c.optBuf: timestamps
// (RFC 7323 3.2) and SACK blocks (RFC 2018 4).
func (c *TCPConn) segOptions(now Time) []byte {
	n := 0
	if c.tsOK {
		n = wire.PutTimestamp(c.optBuf[:], c.tsNow(now), c.tsRecent)
	}
	if c.sackOK && (c.nooo > 0 || c.dsackOK) {
		n += c.sackBlocks(c.optBuf[n:], (len(c.optBuf)-n-4)/8)
	}
	return c.optBuf[:n]
}

// ackSent records that a segment carrying ACK = RCV.NXT went out: it
// satisfies any pending or delayed ACK (Linux tcp_event_ack_sent).
func (c *TCPConn) ackSent() {
	c.ackNow = false
	c.dsackOK = false
	c.delackAt = Never
	if c.rcvNxt != c.rcvWup && c.quickAcks > 0 {
		c.quickAcks--
		if c.quickAcks == 0 {
			c.ato = atoMin
		}
	}
	c.rcvWup = c.rcvNxt
}

// emit sends one segment at sq with n bytes from the send buffer and FIN if
// fin. probe segments leave the send state alone.
func (c *TCPConn) emit(now Time, out Output, sq seq, n int, fin, probe bool) (bool, bool) {
	buf := out.AllocTx()
	if buf == nil {
		inc(&c.s.stats.DropTxNoBuffer)
		return false, false
	}
	flags := uint8(wire.TCPFlagACK)
	dataEnd := c.finSeq()
	opts := c.segOptions(now)
	if room := c.PathMTU() - c.hdrLen() - len(opts); n > room {
		n = room // SACK blocks take payload room (Linux tcp_current_mss)
		fin = false
	}
	if n > 0 && sq.add(n) == dataEnd {
		flags |= wire.TCPFlagPSH
	}
	if fin {
		flags |= wire.TCPFlagFIN
	}
	wnd := c.advertise()
	fl := c.s.encodeTCPRaw(buf, &c.hdr, c.key.lport, c.key.rport, sq, c.rcvNxt, flags, wnd,
		&c.sndBuf, sq.sub(c.bufSeq), n, opts)
	out.SubmitTx(buf, fl)
	c.segsOut++
	if n > 0 {
		c.dataSegsOut++
		c.bytesSent += uint64(n)
		c.lsndAt = now
	}
	c.ackSent()
	if n > 0 && c.ato != 0 && now-c.lrcvAt < c.ato {
		// Data sent soon after data arrived: an interactive exchange, where
		// ACKs wait to ride on the reply (Linux tcp_event_data_sent).
		c.pingpong = true
	}
	if probe {
		return true, true
	}
	l := n
	if fin {
		l++
	}
	if l == 0 {
		return true, true
	}
	if c.sackOK {
		c.logSent(now, sq, l)
	}
	if sq.lt(c.sndMax) {
		if c.undoOK && n > 0 {
			c.undoRtx++
		}
		c.totalRetrans++
		c.bytesRetrans += uint64(n)
		inc(&c.s.stats.TCPRetransSegs)
		c.rttOn = false // Karn's rule
	} else if !c.rttOn {
		c.rttOn, c.rttSeq, c.rttAt = true, sq.add(l), now
	}
	end := sq.add(l)
	if n < c.mss && end.gt(c.sndMax) {
		c.sndSml = end
	}
	if end.gt(c.sndNxt) {
		c.sndNxt = end
	}
	if c.sndNxt.geq(dataEnd) {
		c.corkAt = Never
	}
	c.sndMax = seqMax(c.sndMax, end)
	if c.rtoAt == Never {
		c.rtoAt = now + c.rto
	}
	c.utoArm(now)
	c.armPTO(now)
	return true, true
}

// timers runs the connection's due timers (smoltcp's Timer values).
func (c *TCPConn) timers(now Time) {
	if c.closeAt <= now {
		c.s.free(c)
		return
	}
	if c.utoAt() <= now {
		// RFC 5482 / Linux tcp_write_timeout with icsk_user_timeout.
		inc(&c.s.stats.TCPTimeouts)
		if c.softErr != nil {
			c.fail(c.softErr)
		} else {
			c.fail(ErrTimedOut)
		}
		return
	}
	if c.rtoAt <= now {
		c.onRTO(now)
		if c.freed {
			return
		}
	} else if c.tlpAt <= now {
		c.onPTO(now)
	}
	if c.reoAt <= now && c.rackDetect(now) {
		c.enterRecovery(now) // RFC 8985 6.3: the reordering window has passed
	}
	if c.delackAt <= now {
		// Delayed-ACK timer (Linux tcp_delack_timer_handler): send it; an
		// interactive connection whose reply did not come in time leaves
		// ping-pong mode, otherwise the ATO grows.
		c.delackAt = Never
		c.ackNow = true
		if c.pingpong {
			c.pingpong = false
			c.ato = atoMin
		} else {
			c.ato = min(2*c.ato, c.rto)
		}
	}
	if c.kaAt <= now {
		c.keepalive(now)
		if c.freed {
			return
		}
	}
	if c.persistAt <= now {
		c.probe = true
		c.persistIv = min(c.persistIv*2, persistMax)
		c.persistAt = now + c.persistIv
	}
}

// keepalive is the keepalive timer (Linux tcp_keepalive_timer): probe a
// peer idle for kaIdle every kaIntvl while nothing is outstanding, give up
// after kaCnt unanswered probes.
func (c *TCPConn) keepalive(now Time) {
	if !c.state.synchronized() || c.state == StateTimeWait {
		c.kaAt = now + c.kaIdle
		return
	}
	if c.sndMax != c.sndUna || c.finSeq().gt(c.sndNxt) {
		// Data outstanding: the retransmission and persist timers watch the peer.
		c.kaAt = now + c.kaIdle
		return
	}
	elapsed := now - c.lastRcvAt
	if elapsed < c.kaIdle {
		c.kaAt = c.lastRcvAt + c.kaIdle
		return
	}
	// Linux tcp_keepalive_timer: TCP_USER_TIMEOUT, when set, replaces the count.
	if c.userTO > 0 && elapsed >= c.userTO && c.kaProbes > 0 || c.userTO <= 0 && c.kaProbes >= c.kaCnt {
		inc(&c.s.stats.TCPTimeouts)
		c.s.queueRSTTo(&c.hdr, c.key.lport, c.key.rport, c.sndNxt, 0, wire.TCPFlagRST)
		c.fail(ErrTimedOut)
		return
	}
	c.probe = true
	c.kaProbes++
	c.kaAt = now + c.kaIntvl
}

// onRTO is the retransmission timeout (RFC 6298 5.4-5.6, RFC 5681 3.1):
// back off, collapse cwnd, and go back to SND.UNA.
func (c *TCPConn) onRTO(now Time) {
	c.retries++
	limit := dataRetries
	if c.state == StateSynSent || c.state == StateSynReceived {
		limit = synRetries
	}
	if c.retries > limit {
		inc(&c.s.stats.TCPTimeouts)
		if c.state == StateSynReceived && c.lst != nil {
			c.s.free(c)
			return
		}
		if c.softErr != nil {
			c.fail(c.softErr) // Linux reports sk_err_soft instead of ETIMEDOUT
			return
		}
		c.fail(ErrTimedOut)
		return
	}
	inc(&c.s.stats.TCPTimeouts)
	c.totalRTO++
	c.lossRec = true
	mss := uint32(c.mss)
	c.ssthresh = c.cc.onRTO(c, now)
	c.cwnd = mss
	c.recovery = false
	c.recover = c.sndMax
	c.dupAcks = 0
	c.rtxOne = false
	c.tlpAt, c.tlpProbe, c.tlpOut = Never, false, false
	c.undoOK = false
	if c.tx.n > 0 {
		c.logTimeout() // the lost segments go out as cwnd allows
	} else {
		c.sndNxt = c.sndUna // go back N
	}
	c.rttOn = false
	c.rto = min(2*c.rto, rtoMax)
	c.rtoAt = now + c.rto
}

// deadline is the earliest timer of the connection.
func (c *TCPConn) deadline() Time {
	if c.freed {
		return Never
	}
	d := min(c.rtoAt, c.persistAt, c.closeAt, c.delackAt, c.kaAt, c.tlpAt, c.reoAt, c.utoAt())
	if c.cork {
		d = min(d, c.corkAt)
	}
	return d
}
