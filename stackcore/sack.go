package stackcore

import "ustack/stackcore/wire"

// SACK (RFC 2018) and SACK-based loss recovery (RFC 6675).
//
// Receive side: the out-of-order ranges of the receive ring are reported as
// SACK blocks, the range holding the most recent segment first (RFC 2018 4).
//
// Send side: the SACK blocks mark records of the transmission log, which
// is the scoreboard (rack.go).

const (
	dupThresh   = 3  // RFC 6675 2: DupThresh
	maxReoSteps = 64 // ceiling of RACK's reordering window multiplier
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

// takeSACK marks the records the SACK blocks of an acceptable ACK cover
// (rack.go); it reports whether new data was SACKed.
func (c *TCPConn) takeSACK(now Time, g *segment) bool {
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
	una := c.sndUna
	if g.ack.gt(una) && g.ack.leq(c.sndMax) {
		una = g.ack
	}
	grew := false
	for i := 0; i < g.opts.NSACK; i++ {
		b := g.opts.SACK[i]
		s, e := seq(b.Start), seq(b.End)
		// RFC 2018 3 / RFC 6675 5.1: ignore blocks outside (SND.UNA, SND.MAX]
		// (a D-SACK below SND.UNA among them).
		if !s.lt(e) || e.leq(una) || e.gt(c.sndMax) {
			continue
		}
		if c.logSacked(now, g, seqMax(s, una), e) {
			grew = true
		}
	}
	return grew
}

// dsackSeen counts a duplicate reported by the peer against the
// retransmissions of the last recovery. When every one of them was a
// duplicate the recovery was spurious, caused by reordering (RFC 3708 3):
// cwnd and ssthresh go back to their values before it (RFC 4015 style),
// and the duplicate ACK threshold grows so the same reordering no longer
// looks like loss (as Linux raises tp->reordering).
func (c *TCPConn) dsackSeen(s, e seq) {
	// A duplicate means a segment was retransmitted that needed no
	// retransmission: the path reorders (or duplicates), and RACK's
	// reordering window opens (RFC 8985 6.2 step 4, Linux's reord_seen).
	c.rackReo = true
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
	c.reoSteps = min(c.reoSteps+1, maxReoSteps)
	inc(&c.s.stats.TCPSpuriousRecoveries)
}
