package stackcore

// Poll visits only the connections that have work (smoltcp's poll_at, iip's
// next_us): a ready list of connections that may have something to send
// (an ACK due, data, FIN, RST, a window update) and a binary min-heap of
// connection timers keyed by each connection's earliest deadline. Whatever
// can change a connection's output or deadlines (an input segment, an API
// call, an ICMP error) puts it on the ready list; Poll runs its output and
// files its deadline again. Both structures are slices that grow with the
// number of connections and are reused, so the steady state allocates nothing.

// markReady queues c for output at the next Poll.
func (s *Stack) markReady(c *TCPConn) {
	if c.inReady || c.freed {
		return
	}
	c.inReady = true
	s.ready = append(s.ready, c)
}

// refile puts c in the timer heap under its current deadline (or takes it
// out when it has none).
func (s *Stack) refile(c *TCPConn) {
	d := c.deadline()
	if d == Never {
		s.heapRemove(c)
		return
	}
	if c.heapIdx < 0 {
		c.heapAt = d
		c.heapIdx = len(s.timers)
		s.timers = append(s.timers, c)
		s.heapUp(c.heapIdx)
		return
	}
	old := c.heapAt
	c.heapAt = d
	if d < old {
		s.heapUp(c.heapIdx)
	} else if d > old {
		s.heapDown(c.heapIdx)
	}
}

// heapRemove takes c out of the timer heap if it is there.
func (s *Stack) heapRemove(c *TCPConn) {
	i := c.heapIdx
	if i < 0 {
		return
	}
	last := len(s.timers) - 1
	if i != last {
		s.heapSwap(i, last)
	}
	s.timers[last] = nil
	s.timers = s.timers[:last]
	c.heapIdx = -1
	if i != last {
		s.heapDown(i)
		s.heapUp(i)
	}
}

func (s *Stack) heapSwap(i, j int) {
	h := s.timers
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (s *Stack) heapUp(i int) {
	h := s.timers
	for i > 0 {
		p := (i - 1) / 2
		if h[p].heapAt <= h[i].heapAt {
			return
		}
		s.heapSwap(i, p)
		i = p
	}
}

func (s *Stack) heapDown(i int) {
	h := s.timers
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].heapAt < h[l].heapAt {
			m = r
		}
		if h[i].heapAt <= h[m].heapAt {
			return
		}
		s.heapSwap(i, m)
		i = m
	}
}

// nextTimer is the earliest deadline in the heap.
func (s *Stack) nextTimer() Time {
	if len(s.timers) == 0 {
		return Never
	}
	return s.timers[0].heapAt
}
