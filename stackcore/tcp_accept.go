package stackcore

import "ustack/stackcore/wire"

// Listener is a TCP socket in LISTEN with an accept queue.
type Listener struct {
	Cookie uintptr
	// TableSlot is the host's place for the listener in a table of its own (0: none).
	TableSlot int32

	s       *Stack
	port    uint16
	fam     Family
	local   Addr      // the address it is bound to; unspecified: any
	next    *Listener // the next listener on the port
	backlog int
	queue   []*TCPConn // established, not yet accepted
	pending int        // children in SYN-RECEIVED
	closed  bool
	woken   bool
	pinned  bool // its connections are reported by Pins (SetPinned)

	cookieSent bool // SYN cookies sent, the last at cookieAt (syncookie.go)
	cookieAt   Time
}

// Listen opens a listener on port of the stack's address. backlog bounds
// the connections not yet accepted (handshaking plus queued); <= 0 means 128.
// The accept queue starts with room for at most 128 and grows as connections
// queue: a backlog is a bound, not a size (programs pass INT_MAX, as iperf3
// does, for "as many as the system allows").
func (s *Stack) Listen(port uint16, backlog int) (*Listener, error) {
	return s.ListenOn(port, backlog, FamilyBoth, Addr{})
}

// ListenOn is Listen for the segments of family fam to local (unspecified: any
// of the interface's addresses). Listeners of one port may coexist when they
// take disjoint segments: an AF_INET one and an IPV6_V6ONLY one, as in Linux.
func (s *Stack) ListenOn(port uint16, backlog int, fam Family, local Addr) (*Listener, error) {
	if port == 0 {
		return nil, ErrAddrInUse
	}
	for o := s.listeners[port]; o != nil; o = o.next {
		if overlaps(fam, &local, o.fam, &o.local) {
			return nil, ErrAddrInUse
		}
	}
	if backlog <= 0 {
		backlog = defaultBacklog
	}
	l := &Listener{s: s, port: port, fam: fam, local: local, backlog: backlog, next: s.listeners[port],
		queue: make([]*TCPConn, 0, min(backlog, defaultBacklog))}
	s.listeners[port] = l
	s.refPort(port)
	return l, nil
}

// Port returns the listening port.
func (l *Listener) Port() uint16 { return l.port }

// listenerFor returns the listener that takes g, nil if none.
func (s *Stack) listenerFor(g *segment) *Listener {
	for l := s.listeners[g.dport]; l != nil; l = l.next {
		if l.fam.takes(&l.local, &g.dst) {
			return l
		}
	}
	return nil
}

// Accept returns the next established connection, nil if none.
func (l *Listener) Accept() *TCPConn {
	if len(l.queue) == 0 {
		return nil
	}
	c := l.queue[0]
	copy(l.queue, l.queue[1:])
	l.queue[len(l.queue)-1] = nil
	l.queue = l.queue[:len(l.queue)-1]
	c.lst = nil
	c.inAcc = false
	return c
}

// Readable reports whether the accept queue is non-empty.
func (l *Listener) Readable() bool { return len(l.queue) > 0 }

// Close resets the connections not yet accepted and frees the port.
func (l *Listener) Close() {
	if l.closed {
		return
	}
	l.closed = true
	s := l.s
	for _, c := range s.list {
		if c.lst == l && !c.freed {
			c.inAcc = false
			c.Abort()
		}
	}
	clear(l.queue)
	l.queue = l.queue[:0]
	l.pending = 0
	if head := s.listeners[l.port]; head == l {
		if l.next == nil {
			delete(s.listeners, l.port)
		} else {
			s.listeners[l.port] = l.next
		}
	} else {
		for o := head; o != nil; o = o.next {
			if o.next == l {
				o.next = l.next
				break
			}
		}
	}
	s.unrefPort(l.port)
}

func (l *Listener) wake() {
	if !l.woken {
		l.woken = true
		l.s.wokenLns = append(l.s.wokenLns, l)
	}
}

// established moves a child from SYN-RECEIVED into the accept queue.
func (l *Listener) established(c *TCPConn) {
	l.pending--
	c.inAcc = true
	l.queue = append(l.queue, c)
	l.wake()
}

// input handles a segment for the listening port (RFC 9293 3.10.7.2).
func (l *Listener) input(now Time, g *segment) {
	s := l.s
	if g.has(wire.TCPFlagRST) {
		return
	}
	if g.has(wire.TCPFlagACK) {
		if !g.has(wire.TCPFlagSYN) && l.cookieAck(now, g) {
			return
		}
		inc(&s.stats.DropNoSocket)
		s.replyReset(g)
		return
	}
	if !g.has(wire.TCPFlagSYN) || g.has(wire.TCPFlagFIN) {
		inc(&s.stats.DropBadSegment)
		return
	}
	if len(l.queue) >= l.backlog {
		inc(&s.stats.TCPListenDrops) // accept queue full: drop even with cookies, as Linux
		return
	}
	if l.pending+len(l.queue) >= l.backlog {
		l.sendCookie(now, g) // SYN queue full: RFC 4987 3.6
		return
	}
	c := s.newConn(connKey{g.src, g.sport, l.port}, g.dst, g.srcMAC, now)
	c.segsIn = 1 // the SYN (Linux's tcp_create_openreq_child counts it too)
	l.born(c)
	c.lst = l
	l.pending++
	c.irs = g.seq
	c.rcvNxt = g.seq + 1
	c.rcvAdv = c.rcvNxt
	c.rcvWup = c.rcvNxt
	c.takeSynOptions(now, g)
	c.sndWnd = g.wnd // never scaled in a SYN
	c.maxWnd = c.sndWnd
	c.sndWl1, c.sndWl2 = g.seq, c.iss
	c.setState(StateSynReceived)
	inc(&s.stats.TCPPassiveOpens)
	// Data in the SYN is not accepted; the peer retransmits it.
}

// takeSynOptions applies the peer's MSS and window scale (RFC 7323 2.2).
func (c *TCPConn) takeSynOptions(now Time, g *segment) {
	mss := int(g.opts.MSS)
	if mss == 0 {
		mss = defaultPeerMSS // RFC 9293 3.7.1
		if !c.key.raddr.Is4() {
			mss = defaultPeerMSS6
		}
	}
	if mss > c.advMSS() {
		mss = c.advMSS()
	}
	if c.pmtu != 0 {
		mss = min(mss, c.pmtu-c.hdrLen()) // RFC 1191: fragmentation needed during the handshake
	}
	if mss < 64 && c.pmtu == 0 {
		mss = 64
	}
	c.mss = max(mss, 8)
	c.wsOK = g.opts.HasWScale
	if g.opts.HasWScale {
		c.sndSh = min(g.opts.WScale, 14)
	} else {
		c.sndSh, c.rcvSh = 0, 0
	}
	c.cwnd = uint32(initialCwndSegs * c.mss)
	// RFC 7323 3.2 and RFC 2018 2: used only when both SYNs carry them.
	c.tsOK = g.opts.HasTS && !c.s.cfg.NoTimestamps
	if c.tsOK {
		c.tsRecent, c.tsRecentAt = g.opts.TSVal, now
	}
	c.sackOK = g.opts.SACKPerm && !c.s.cfg.NoSACK
	if c.tsOK {
		// Every segment carries the 12-byte timestamp option (Linux mss_cache).
		c.mss = max(c.mss-12, min(64, c.mss))
		c.cwnd = uint32(initialCwndSegs * c.mss)
	}
}

// SetPinned makes the listener report each connection born on it, and its end, through
// Stack.Pins: its port is shared with other stacks, and the steering keeps each connection
// with the stack it was born in.
func (l *Listener) SetPinned(v bool) { l.pinned = v }

// born notes a connection born on the listener (a SYN, or a SYN cookie's ACK).
func (l *Listener) born(c *TCPConn) {
	if l.pinned {
		c.pinned = true
		l.s.pins = append(l.s.pins, c.flow())
	}
}
