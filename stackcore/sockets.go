package stackcore

// A host's view of all the stack's sockets, as `ss` shows the kernel's: the host copies what it
// wants into a table of its own (TableSlot says where each socket is there).

// EachConn calls fn for every connection the stack holds: handshaking, queued for accept,
// accepted, and closed by the application but not yet finished (FIN-WAIT, TIME-WAIT).
func (s *Stack) EachConn(fn func(*TCPConn)) {
	for _, c := range s.list {
		if !c.freed {
			fn(c)
		}
	}
}

// EachListener calls fn for every listener.
func (s *Stack) EachListener(fn func(*Listener)) {
	for _, l := range s.listeners {
		fn(l)
	}
}

// EachUDP calls fn for every bound UDP socket.
func (s *Stack) EachUDP(fn func(*UDPSocket)) {
	for _, u := range s.udpPorts {
		for ; u != nil; u = u.next {
			fn(u)
		}
	}
}

// LinuxState is the connection's state in Linux's TCP_* numbering (what ss and tcp_info show).
func (c *TCPConn) LinuxState() uint8 { return linuxState[c.state] }

// Segments returns the segments the connection received and sent (tcpi_segs_in, tcpi_segs_out):
// every frame of its flow that reached it or left it, retransmissions included.
func (c *TCPConn) Segments() (in, out uint32) { return c.segsIn, c.segsOut }

// Queue returns the connections established and waiting for accept, those still in their
// handshake, and the backlog that bounds both.
func (l *Listener) Queue() (queued, pending, backlog int) {
	return len(l.queue), l.pending, l.backlog
}

// Datagrams returns the datagrams delivered to the socket and sent by it.
func (u *UDPSocket) Datagrams() (in, out uint64) { return u.dgramsIn, u.dgramsOut }

// Accepting reports whether the connection was born on a listener and not yet accepted (in its
// handshake, or in the accept queue).
func (c *TCPConn) Accepting() bool { return c.lst != nil }

// Bound returns the listener's local address as its socket shows it: the address it is bound to,
// else the unspecified one of its family (0.0.0.0 mapped for IPv4 only, :: otherwise).
func (l *Listener) Bound() Addr { return shownBound(l.fam, l.local) }

// Bound is Listener.Bound for a UDP socket.
func (u *UDPSocket) Bound() Addr { return shownBound(u.fam, u.local) }

func shownBound(fam Family, local Addr) Addr {
	if !local.IsUnspecified() {
		return local
	}
	if fam == Family4 {
		return Addr{10: 0xff, 11: 0xff}
	}
	return Addr{}
}
