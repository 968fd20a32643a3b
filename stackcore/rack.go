package stackcore

// The transmission log and RACK loss detection (RFC 8985 6).
//
// With SACK the sender keeps one record per segment sent and not yet
// cumulatively acknowledged: its end, the time of its last transmission and
// whether it is SACKed, deemed lost, or retransmitted since (the flags Linux
// keeps on its retransmission queue). The log is the SACK scoreboard of RFC
// 6675 and the clock of RACK: a segment sent before one that was delivered,
// by more than a reordering window, is lost. Because it compares send times
// RACK also finds lost retransmissions, which duplicate ACK counting leaves
// to the retransmission timeout; under heavy loss that is the difference
// between repairing a hole in a round trip and a chain of backed-off
// timeouts.
//
// The log is a ring that starts small and doubles, up to txLogMax records,
// as the flight grows; a full log extends its last record (coarser SACK
// accounting, never a wrong one).

const (
	recSacked  uint8 = 1 << iota // covered by a SACK block
	recLost                      // deemed lost (Linux TCPCB_LOST)
	recRtx                       // retransmitted since it was deemed lost (TCPCB_SACKED_RETRANS)
	recEverRtx                   // retransmitted at least once (TCPCB_EVER_RETRANS)

	reoFloor = Millisecond

	txLogInit = 16
	txLogMax  = 4096
)

// txRec is one segment (or, in a full log, several) in flight.
type txRec struct {
	end   seq
	flags uint8
	at    Time // last transmission
}

// txLog is the ring of records covering [SND.UNA, SND.MAX) in order, with
// counts of SACKed, lost, and lost-and-retransmitted records.
type txLog struct {
	r       []txRec // len is zero or a power of two
	head, n int
	sacked  int
	lost    int
	lostRtx int
}

func (l *txLog) at(i int) *txRec { return &l.r[(l.head+i)&(len(l.r)-1)] }

func (l *txLog) count(f uint8, d int) {
	if f&recSacked != 0 {
		l.sacked += d
	}
	if f&recLost != 0 {
		l.lost += d
		if f&recRtx != 0 {
			l.lostRtx += d
		}
	}
}

// set gives r the flags f, keeping the counts.
func (l *txLog) set(r *txRec, f uint8) {
	l.count(r.flags, -1)
	r.flags = f
	l.count(f, 1)
}

// grow doubles the ring (at most to txLogMax); it reports whether there is room.
func (l *txLog) grow() bool {
	if l.n < len(l.r) {
		return true
	}
	if len(l.r) >= txLogMax {
		return false
	}
	r := make([]txRec, max(2*len(l.r), txLogInit))
	for i := 0; i < l.n; i++ {
		r[i] = *l.at(i)
	}
	l.r, l.head = r, 0
	return true
}

// pendingRtx reports whether a lost segment waits for its retransmission.
func (l *txLog) pendingRtx() bool { return l.lost > l.lostRtx }

// recStart is the first sequence number of record i.
func (c *TCPConn) recStart(i int) seq {
	if i == 0 {
		return c.sndUna
	}
	return c.tx.at(i - 1).end
}

// recFind returns the index of the record holding sq (the first whose end is
// above it), or tx.n.
func (c *TCPConn) recFind(sq seq) int {
	lo, hi := 0, c.tx.n
	for lo < hi {
		m := (lo + hi) / 2
		if c.tx.at(m).end.gt(sq) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// recSplit makes sq a record boundary, if the log has room for one more.
func (c *TCPConn) recSplit(sq seq) {
	l := &c.tx
	i := c.recFind(sq)
	if i == l.n || !c.recStart(i).lt(sq) || !l.grow() {
		return
	}
	for j := l.n; j > i; j-- {
		*l.at(j) = *l.at(j - 1)
	}
	l.n++
	l.at(i).end = sq
	l.count(l.at(i).flags, 1)
}

// logSent records the transmission of [sq, sq+n) before SND.MAX moves.
func (c *TCPConn) logSent(now Time, sq seq, n int) {
	end := sq.add(n)
	if sq.lt(c.sndMax) {
		e := seqMin(end, c.sndMax)
		c.recSplit(sq)
		c.recSplit(e)
		for i := c.recFind(sq); i < c.tx.n && c.recStart(i).lt(e); i++ {
			r := c.tx.at(i)
			c.tx.set(r, r.flags|recRtx|recEverRtx)
			r.at = now
		}
	}
	if !end.gt(c.sndMax) {
		return
	}
	l := &c.tx
	if !l.grow() {
		// Full: the last record grows. Its flags go, as for new data.
		r := l.at(l.n - 1)
		l.set(r, 0)
		r.end, r.at = end, now
		return
	}
	l.n++
	*l.at(l.n - 1) = txRec{end: end, at: now}
}

// logAcked drops the records SND.UNA (already moved to ack) now covers: they
// are delivered (RFC 8985 6.2 step 2).
func (c *TCPConn) logAcked(now Time, g *segment) {
	l := &c.tx
	for l.n > 0 && l.at(0).end.leq(c.sndUna) {
		r := l.at(0)
		if r.flags&recSacked == 0 {
			c.rackDelivered(now, r, g)
		}
		l.set(r, 0)
		l.head = (l.head + 1) & (len(l.r) - 1)
		l.n--
	}
	c.rackFack = seqMax(c.rackFack, c.sndUna)
}

// logSacked marks the records inside a SACK block [s, e); it reports whether
// any was new.
func (c *TCPConn) logSacked(now Time, g *segment, s, e seq) bool {
	grew := false
	for i := c.recFind(s); i < c.tx.n; i++ {
		r := c.tx.at(i)
		if r.end.gt(e) {
			break
		}
		if r.flags&recSacked != 0 || c.recStart(i).lt(s) {
			continue
		}
		c.rackDelivered(now, r, g)
		c.tx.set(r, recSacked|r.flags&recEverRtx)
		grew = true
	}
	return grew
}

// rackDelivered is RFC 8985 6.2 steps 2 and 3 for one newly delivered record.
func (c *TCPConn) rackDelivered(now Time, r *txRec, g *segment) {
	rtt := now - r.at
	if r.flags&recEverRtx != 0 {
		// Possibly the ACK of an earlier transmission: an RTT below the
		// minimum cannot time this one. (Not the echoed timestamp, which
		// for a SACKed segment is TS.Recent of the last in-order one,
		// RFC 7323 4.3, so older than any retransmission.)
		if rtt < c.minRTT {
			return
		}
	} else if r.end.lt(c.rackFack0) {
		c.rackReo = true // delivered below a segment delivered by an earlier ACK (step 3)
	}
	if r.flags&recEverRtx == 0 {
		c.ackRTT = rtt
	}
	c.rackFack = seqMax(c.rackFack, r.end)
	c.rackRTT = rtt
	if !c.rackOK || r.at > c.rackAt || r.at == c.rackAt && r.end.gt(c.rackEnd) {
		c.rackAt, c.rackEnd, c.rackOK = r.at, r.end, true
	}
}

// reoWnd is RFC 8985 6.2 step 4: no reordering window while no reordering
// has been seen and the connection is in recovery or has DupThresh
// segments SACKed; otherwise a quarter of the minimum RTT times reoSteps,
// at most SRTT. reoSteps grows with each recovery D-SACKs prove spurious
// (dsackSeen) and shrinks with each real one (newAck). Once reordering
// has been seen the window is at least reoSteps*reoFloor: on a
// sub-millisecond path SRTT is shorter than the reordering a relay or a
// multi-queue NIC causes (Linux's reordering timer, in jiffies, cannot
// fire sooner either), and only the measured spurious recoveries say how
// much longer to wait.
func (c *TCPConn) reoWnd() Time {
	seen := c.rackReo || c.reoSteps > 1
	if !seen && (c.recovery || c.lossRec || c.tx.sacked >= dupThresh) {
		return 0
	}
	steps := Time(c.reoSteps)
	w := min(steps*c.minRTT/4, c.srtt)
	if seen {
		w = max(w, steps*reoFloor)
	}
	return w
}

// rackDetect is RFC 8985 6.2 step 5: every record in flight sent before the
// most recently delivered one, longer ago than RACK.rtt plus the reordering
// window, is lost; the earliest of the others arms the reordering timer.
// It reports whether it marked a loss.
func (c *TCPConn) rackDetect(now Time) bool {
	c.reoAt = Never
	if !c.rackOK {
		return false
	}
	reo := c.reoWnd()
	found := false
	for i := 0; i < c.tx.n; i++ {
		r := c.tx.at(i)
		if r.flags&recSacked != 0 || r.flags&(recLost|recRtx) == recLost {
			continue // delivered, or waiting for its retransmission
		}
		if !(c.rackAt > r.at || c.rackAt == r.at && c.rackEnd.gt(r.end)) {
			continue // sent after the delivered one: not judged yet
		}
		if left := r.at + c.rackRTT + reo - now; left > 0 {
			c.reoAt = min(c.reoAt, now+left)
			continue
		}
		c.tx.set(r, r.flags&^recRtx|recLost)
		found = true
	}
	return found
}

// markFirstLost marks record 0 lost (waiting for retransmission).
func (c *TCPConn) markFirstLost() {
	if c.tx.n > 0 {
		if r := c.tx.at(0); r.flags&recSacked == 0 {
			c.tx.set(r, r.flags&^recRtx|recLost)
		}
	}
}

// logTimeout is RFC 6675 5.1 after a retransmission timeout, as Linux does
// it (tcp_timeout_mark_lost): every segment not SACKed is lost. SACK
// information is kept, unless the receiver dropped data it had SACKed
// (RFC 2018 8: the ACK stops at a SACKed segment), when it all goes.
func (c *TCPConn) logTimeout() {
	l := &c.tx
	reneged := l.n > 0 && l.at(0).flags&recSacked != 0
	for i := 0; i < l.n; i++ {
		r := l.at(i)
		f := r.flags &^ recRtx
		if reneged {
			f &^= recSacked
		}
		if f&recSacked == 0 {
			f |= recLost
		}
		l.set(r, f)
	}
	c.reoAt = Never
}

// pipe is RFC 6675 SetPipe over the log: bytes in flight, not SACKed and
// not lost, or retransmitted since they were lost.
func (c *TCPConn) pipe() int {
	p := 0
	at := c.sndUna
	for i := 0; i < c.tx.n; i++ {
		r := c.tx.at(i)
		if r.flags&recSacked == 0 && r.flags&(recLost|recRtx) != recLost {
			p += r.end.sub(at)
		}
		at = r.end
	}
	return p
}

// nextLost is RFC 6675 NextSeg rule (1) with RACK's marks: the first lost
// segment not retransmitted since, at most one MSS of it (n == 0: none).
func (c *TCPConn) nextLost() (seq, int) {
	if !c.tx.pendingRtx() {
		return 0, 0
	}
	at := c.sndUna
	for i := 0; i < c.tx.n; i++ {
		r := c.tx.at(i)
		if r.flags&(recSacked|recLost|recRtx) == recLost {
			return at, min(r.end.sub(at), c.mss)
		}
		at = r.end
	}
	return 0, 0
}

// sackedAt reports whether the record holding sq is SACKed.
func (c *TCPConn) sackedAt(sq seq) bool {
	i := c.recFind(sq)
	return i < c.tx.n && c.tx.at(i).flags&recSacked != 0
}
