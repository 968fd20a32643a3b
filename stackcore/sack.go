package stackcore

import "ustack/stackcore/wire"

// SACK (RFC 2018) and SACK-based loss recovery (RFC 6675).
//
// Receive side: the out-of-order ranges of the receive ring are reported as
// SACK blocks, the range holding the most recent segment first (RFC 2018 4).
//
// Send side: a scoreboard of up to maxSACKRanges SACKed ranges above
// SND.UNA, sorted by sequence number. A block that would need another range
// is ignored (the data is then simply retransmitted). The scoreboard is
// cleared after a retransmission timeout (RFC 2018 8, RFC 6675 5.1).

const (
	maxSACKRanges = 8
	dupThresh     = 3  // RFC 6675 2: DupThresh
	maxReorder    = 64 // ceiling of the adaptive duplicate ACK threshold
)

// sackBlocks writes up to max blocks describing the out-of-order queue into
// b: a D-SACK first if one is due, then the range holding the segment this
// ACK answers (sackHint) or else the most recent segment, then the other
// ranges from the most recently touched down (RFC 2018 4: repeat the most recently
// reported blocks), so every range is reported while it changes.
func (c *TCPConn) sackBlocks(b []byte, maxBlocks int) int {
	if c.nooo == 0 && !c.dsackOK || maxBlocks <= 0 {
		return 0
	}
	var blocks [wire.TCPMaxSACKBlocks]wire.SACKBlock
	k := 0
	if c.dsackOK {
		// RFC 2883 4: a duplicate segment is reported in the first block.
		blocks[0] = wire.SACKBlock{Start: uint32(c.dsackS), End: uint32(c.dsackE)}
		k++
	}
	hint := -1
	if c.hintOK {
		for i := 0; i < c.nooo && k < maxBlocks; i++ {
			if r := c.ooo[i]; c.sackHint.geq(r.start) && c.sackHint.lt(r.end) {
				hint = i
				blocks[k] = wire.SACKBlock{Start: uint32(r.start), End: uint32(r.end)}
				k++
				break
			}
		}
	}
	prev := ^uint32(0)
	for k < maxBlocks && k < len(blocks) {
		best := -1
		for i := 0; i < c.nooo; i++ {
			st := c.ooo[i].stamp
			if i != hint && st < prev && (best < 0 || st > c.ooo[best].stamp) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		prev = c.ooo[best].stamp
		blocks[k] = wire.SACKBlock{Start: uint32(c.ooo[best].start), End: uint32(c.ooo[best].end)}
		k++
	}
	return wire.PutSACK(b, blocks[:k])
}

// takeSACK merges the SACK blocks of an acceptable ACK into the scoreboard
// and prunes what SND.UNA covers; it reports whether new data was SACKed.
func (c *TCPConn) takeSACK(g *segment) bool {
	// Prune below SND.UNA (g.ack is processed by the caller afterwards, so
	// use the larger of the two).
	una := c.sndUna
	if g.ack.gt(una) && g.ack.leq(c.sndMax) {
		una = g.ack
	}
	j := 0
	for i := 0; i < c.nsb; i++ {
		r := c.sb[i]
		if r.end.leq(una) {
			continue
		}
		if r.start.lt(una) {
			r.start = una
		}
		c.sb[j] = r
		j++
	}
	c.nsb = j
	grew := false
	if g.opts.NSACK > 0 {
		// RFC 2883 4: a first block below the cumulative ACK, or inside the
		// second block, reports a duplicate segment (RFC 3708 counts them).
		b0 := g.opts.SACK[0]
		s, e := seq(b0.Start), seq(b0.End)
		dup := s.lt(e) && e.leq(g.ack)
		if g.opts.NSACK > 1 {
			b1 := g.opts.SACK[1]
			dup = dup || s.lt(e) && s.geq(seq(b1.Start)) && e.leq(seq(b1.End))
		}
		if dup {
			c.dsackSeen(s, e)
		}
	}
	for i := 0; i < g.opts.NSACK; i++ {
		b := g.opts.SACK[i]
		s, e := seq(b.Start), seq(b.End)
		// RFC 2018 3 / RFC 6675 5.1: ignore blocks outside (SND.UNA, SND.MAX]
		// (a D-SACK below SND.UNA among them).
		if !s.lt(e) || e.leq(una) || e.gt(c.sndMax) {
			continue
		}
		if s.lt(una) {
			s = una
		}
		if c.addSACK(s, e) {
			grew = true
		}
	}
	return grew
}

// addSACK inserts [s,e) keeping the scoreboard sorted and merged; it reports
// whether any new sequence space was covered.
func (c *TCPConn) addSACK(s, e seq) bool {
	before := c.sackedBytes()
	// Merge every range that touches [s,e).
	j := 0
	for i := 0; i < c.nsb; i++ {
		r := c.sb[i]
		if r.end.geq(s) && r.start.leq(e) {
			if r.start.lt(s) {
				s = r.start
			}
			e = seqMax(e, r.end)
			continue
		}
		c.sb[j] = r
		j++
	}
	c.nsb = j
	if c.nsb == maxSACKRanges {
		return false
	}
	i := c.nsb
	for i > 0 && c.sb[i-1].start.gt(s) {
		c.sb[i] = c.sb[i-1]
		i--
	}
	c.sb[i] = oooRange{s, e}
	c.nsb++
	return c.sackedBytes() > before
}

func (c *TCPConn) sackedBytes() int {
	n := 0
	for i := 0; i < c.nsb; i++ {
		n += c.sb[i].end.sub(c.sb[i].start)
	}
	return n
}

// isLost is RFC 6675 IsLost for a sequence number in a hole that ends at
// range i of the scoreboard: DupThresh discontiguous SACKed ranges above
// it, or more than (DupThresh-1)*SMSS SACKed bytes above it.
func (c *TCPConn) isLostBelow(i int) bool {
	if i >= c.nsb {
		return false
	}
	if c.lostOK && c.sb[i].start.leq(c.lostTo) {
		return true // a tail loss probe sent after this hole was delivered (RFC 8985 7.4)
	}
	if c.nsb-i >= c.reorder {
		return true
	}
	n := 0
	for ; i < c.nsb; i++ {
		n += c.sb[i].end.sub(c.sb[i].start)
	}
	return n > (c.reorder-1)*c.mss
}

// pipe is RFC 6675 SetPipe: bytes in flight, counting unSACKed bytes not
// deemed lost, plus bytes retransmitted (below HighRxt).
func (c *TCPConn) pipe() int {
	p := 0
	at := c.sndUna
	for i := 0; i <= c.nsb; i++ {
		end := c.sndMax
		if i < c.nsb {
			end = c.sb[i].start
		}
		if end.gt(at) {
			if i == c.nsb || !c.isLostBelow(i) {
				p += end.sub(at)
			}
			if c.recovery && c.highRxt.gt(at) {
				p += min(c.highRxt, end).sub(at)
			}
		}
		if i < c.nsb {
			at = seqMax(at, c.sb[i].end)
		}
	}
	return p
}

// nextSeg is RFC 6675 NextSeg rules (1) and (3): the first unSACKed hole at
// or above HighRxt below the highest SACKed byte, lost ones first. It
// returns the sequence number and the length (at most one MSS) to resend,
// or n == 0 (rule (2), new data, is the caller's normal path).
func (c *TCPConn) nextSeg(lostOnly bool) (seq, int) {
	at := c.sndUna
	for i := 0; i < c.nsb; i++ {
		hs, he := seqMax(at, c.highRxt), c.sb[i].start
		if he.gt(hs) && (!lostOnly || c.isLostBelow(i)) {
			return hs, min(he.sub(hs), c.mss)
		}
		at = seqMax(at, c.sb[i].end)
	}
	return at, 0
}

// lostBytes is the unSACKed bytes below the highest SACKed byte that
// IsLost marks as lost (tcpi_lost).
func (c *TCPConn) lostBytes() int {
	n := 0
	at := c.sndUna
	for i := 0; i < c.nsb; i++ {
		if e := c.sb[i].start; e.gt(at) && c.isLostBelow(i) {
			n += e.sub(at)
		}
		at = seqMax(at, c.sb[i].end)
	}
	return n
}

// dsackSeen counts a duplicate reported by the peer against the
// retransmissions of the last recovery. When every one of them was a
// duplicate the recovery was spurious, caused by reordering (RFC 3708 3):
// cwnd and ssthresh go back to their values before it (RFC 4015 style),
// and the duplicate ACK threshold grows so the same reordering no longer
// looks like loss (as Linux raises tp->reordering).
func (c *TCPConn) dsackSeen(s, e seq) {
	if !c.undoOK || c.undoRtx == 0 {
		return
	}
	c.undoDsack += max((e.sub(s)+c.mss-1)/c.mss, 1)
	if c.undoDsack < c.undoRtx {
		return
	}
	c.undoOK = false
	c.cwnd = max(c.cwnd, c.undoCwnd)
	c.ssthresh = max(c.ssthresh, c.undoSsthresh)
	c.recovery = false
	c.reorder = min(c.reorder+2, maxReorder)
	inc(&c.s.stats.TCPSpuriousRecoveries)
}
