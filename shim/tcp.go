package shim

import (
	"errors"
	"io"

	"golang.org/x/sys/unix"

	"ustack/shm"
	"ustack/stackcore"
)

// tcpSock is an accelerated TCP socket before listen(2): fresh, waiting for its next hop,
// connecting, or connected. Its fd is a real kernel socket, the shadow: it gives the program a
// unique fd number, holds the port in the kernel, and becomes the socket itself when the socket
// is handed over to the kernel. listen(2) turns it into a tcpListener. Fields are guarded by
// st.mu.
type tcpSock struct {
	*sockBase

	conn      *stackcore.TCPConn
	resolving *neighbour     // the next hop a connect waits for (no connection yet)
	dst       stackcore.Addr // where the connect goes while it waits
	dport     uint16
	failed    bool       // the connect failed before a connection existed: the socket is closed
	connErrno unix.Errno // its pending error (SO_ERROR), until reported

	shutRd, shutWr  bool
	broken          bool // reset after a panic in the core: ECONNRESET once, then EOF/EPIPE
	connectReported bool // a completed non-blocking connect answered 0 once; EISCONN after
	moreCork        bool // corked by MSG_MORE, not by TCP_CORK
}

func (s *tcpSock) bind(ip stackcore.Addr, port uint16) int {
	st := s.st
	handOver := false
	r := st.with(s, faultNone, func() int {
		fd := s.fd()
		if s.conn != nil || s.bound {
			return neg(unix.EINVAL)
		}
		local := ip.IsUnspecified() || st.core.IsLocal(ip)
		if port != 0 && local {
			// Connections of ours (TIME-WAIT ones too) hold their ports in the core only: the
			// kernel would refuse this bind without SO_REUSEADDR, so we do.
			if st.core.PortInUse(port) && !st.portListened(port) && !s.opts.reuseAddr {
				return neg(unix.EADDRINUSE)
			}
		}
		if err := unix.Bind(fd, s.kernelAddr(ip, port)); err != nil {
			return errnoOf(err)
		}
		if !local {
			handOver = true // bound to loopback or another interface's address: the kernel's socket
			return 0
		}
		p, err := shadowPort(fd)
		if err != nil {
			return errnoOf(err)
		}
		s.bound, s.boundIP, s.boundPort = true, ip, p
		return 0
	})
	if handOver {
		s.e.handOver(s, shm.SockReasonAddress, "bound to an address of another interface")
	}
	return r
}

func (s *tcpSock) listen(backlog int) int {
	st := s.st
	r := st.with(s, faultNone, func() int {
		if s.conn != nil || s.resolving != nil {
			return neg(unix.EINVAL)
		}
		return s.e.listenLocked(s, backlog, listenNew)
	})
	if r == errPortTaken {
		// another process of the interface's group steers the port on its own (its listener
		// has no SO_REUSEPORT, or a connection of its still closes there): this one listens in
		// the kernel
		s.e.handOver(s, shm.SockReasonPort, "listens on a port another process of the interface steers alone")
		return Pass
	}
	return r
}

// connect starts a connection. A next hop the kernel's neighbour table does not know yet is
// resolved in the background: a non-blocking connect answers EINPROGRESS at once, a blocking one
// waits in C (a signal interrupts it), and both fail with EHOSTUNREACH if no neighbour answers.
func (s *tcpSock) connect(sa []byte) int {
	dst, dport, ok, errno := s.parseAddr(sa, false)
	if errno != 0 {
		return neg(errno)
	}
	if !ok {
		return Pass
	}
	st := s.st
	handOver := false
	r := st.with(s, faultNone, func() int {
		switch {
		case s.resolving != nil || s.conn != nil && s.conn.Connecting():
			// Linux: a non-blocking connect says EALREADY; a blocking one waits for the
			// attempt under way (one a signal interrupted) and gives its result
			if s.nonblock {
				return neg(unix.EALREADY)
			}
			return Wait
		case s.failed && !s.connectReported:
			return s.reportConnectLocked()
		case s.conn != nil && !s.connectReported:
			// the first connect after a non-blocking one completed gives its result (Linux)
			return s.reportConnectLocked()
		case s.conn != nil:
			return neg(unix.EISCONN)
		}
		hop, via := st.routeLocked(dst)
		if !via {
			handOver = true // loopback, our own address, another interface: the kernel's
			return Pass
		}
		if !s.bound {
			if r := s.autobindLocked(dst, dport); r != 0 {
				return r
			}
		}
		s.dst, s.dport, s.failed, s.connErrno, s.connectReported = dst, dport, false, 0, false
		n := st.neighLocked(hop)
		if !n.known {
			s.resolving = n
			n.waiting = append(n.waiting, s)
			return s.inProgress()
		}
		if r := s.openLocked(n.mac); r != 0 {
			return r
		}
		return s.inProgress()
	})
	if handOver {
		s.e.handOver(s, shm.SockReasonRoute, "connects to a peer not reached through the interface")
	}
	return r
}

// autobindLocked binds an unbound socket before its connect, as the kernel does, to a port
// that neither the kernel nor the stack uses: the stack's connections live in the core only,
// and one still closing (TIME-WAIT, FIN-WAIT) holds its port there after its shadow is gone,
// where the kernel's own choice would not see it. The range is the socket's
// IP_LOCAL_PORT_RANGE, else the system's. Caller holds st.mu.
func (s *tcpSock) autobindLocked(dst stackcore.Addr, dport uint16) int {
	st, fd := s.st, s.fd()
	lo, hi := st.ports.lo, st.ports.hi
	if r, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_LOCAL_PORT_RANGE); err == nil && r != 0 {
		// each half 0 means the system's bound (ip(7))
		if l := uint16(r); l != 0 {
			lo = l
		}
		if h := uint16(uint32(r) >> 16); h != 0 {
			hi = h
		}
	}
	src := st.core.SourceFor(dst)
	p := st.core.PickPort(dst, dport, lo, hi, func(p uint16) bool {
		return unix.Bind(fd, s.kernelAddr(src, p)) == nil
	})
	if p == 0 {
		return neg(unix.EADDRNOTAVAIL) // what the kernel answers when no ephemeral port is left
	}
	s.bound, s.boundIP, s.boundPort = true, src, p
	return 0
}

func (s *tcpSock) inProgress() int {
	if s.nonblock {
		return neg(unix.EINPROGRESS)
	}
	return Wait
}

// openLocked sends the SYN. Caller holds st.mu.
func (s *tcpSock) openLocked(mac [6]byte) int {
	st := s.st
	local := s.boundIP
	if local.Is4() != s.dst.Is4() {
		local = stackcore.Addr{} // bound to :: (any): the source for the destination
	}
	c, err := st.core.ConnectFrom(st.now(), local, s.boundPort, s.dst, s.dport, stackcore.MAC(mac))
	if err != nil {
		return errnoOf(err)
	}
	if err := st.steerLocked(s.boundPort); err != nil {
		c.Abort()
		s.e.Log.Warn().Err(err).Msg("steering connection")
		return neg(unix.ENOBUFS)
	}
	c.Cookie = s.cookie
	s.opts.apply(c)
	s.conn = c
	st.txLocked()
	return 0
}

// resolvedLocked goes on with a connect whose next hop was resolved, or fails it. Caller holds
// st.mu.
func (s *tcpSock) resolvedLocked(n *neighbour) {
	if s.resolving != n {
		return // closed, or connecting elsewhere since
	}
	s.resolving = nil
	if n.state != neighReachable {
		s.failed, s.connErrno = true, unix.EHOSTUNREACH
	} else if r := s.openLocked(n.mac); r != 0 {
		s.failed, s.connErrno = true, unix.Errno(-r)
	}
	s.wakeLocked()
}

// reportConnectLocked answers a connect's outcome once. Caller holds st.mu.
func (s *tcpSock) reportConnectLocked() int {
	s.connectReported = true
	if s.failed {
		e := s.connErrno
		s.connErrno = 0
		if e == 0 {
			return neg(unix.ECONNABORTED)
		}
		s.errReported = true
		return neg(e)
	}
	err := s.conn.TakeErr()
	if err != nil {
		s.errReported = true
	}
	return errnoOf(err)
}

// connectWait finishes a blocking connect: Wait while the next hop is resolved and the
// handshake runs, then its result.
func (s *tcpSock) connectWait() int {
	st := s.st
	return st.with(s, faultNone, func() int {
		if s.conn == nil && s.resolving == nil && !s.failed {
			return neg(unix.EBADF)
		}
		st.rxLocked()
		st.txLocked()
		if s.resolving != nil || s.conn != nil && s.conn.Connecting() {
			return Wait
		}
		return s.reportConnectLocked()
	})
}

// Recv reads into iov. flags: MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC, MSG_WAITALL (looped in C).
func (s *tcpSock) recv(iov []unix.Iovec, flags int, _ []byte, nameLen *uint32, _ *int32) int {
	if nameLen != nil {
		*nameLen = 0 // a stream reports no source
	}
	peek := flags&unix.MSG_PEEK != 0
	st := s.st
	return st.with(s, faultRecv, func() int {
		c := s.conn
		switch {
		case s.broken:
			return s.brokenLocked(0)
		case c == nil:
			return neg(unix.ENOTCONN)
		case s.shutRd && c.InQueue() == 0:
			return 0
		}
		st.rxLocked()
		// SO_RCVLOWAT: wait for min(low-water mark, buffer) bytes unless the stream has ended
		if lowat := s.opts.rcvLowat; lowat > 1 && c.InQueue() < min(lowat, iovLen(iov)) && !c.PeerClosed() && c.State() != stackcore.StateClosed {
			return s.wouldBlock(flags)
		}
		total := 0
		var err error
		for i := range iov {
			if iov[i].Len == 0 {
				continue
			}
			var n int
			if peek {
				n, err = c.Peek(total, iovBytes(iov[i]))
			} else {
				n, err = c.Read(iovBytes(iov[i]))
			}
			total += n
			if err != nil || uint64(n) < iov[i].Len {
				break
			}
		}
		if total > 0 {
			if !peek {
				st.txLocked() // a window update may be due
				s.refreshLocked()
			}
			return total
		}
		switch {
		case err == io.EOF:
			return 0
		case errors.Is(err, stackcore.ErrWouldBlock):
			return s.wouldBlock(flags)
		case isHardErr(err):
			// a reset is reported once, by whichever call sees it first; the stream then reads EOF
			if s.errReported {
				return 0
			}
			s.errReported = true
			c.TakeErr()
		}
		return errnoOf(err)
	})
}

// brokenLocked answers a call on a socket reset after a panic: ECONNRESET once, then what a
// reset stream answers (EOF to a read, EPIPE to a write).
func (s *tcpSock) brokenLocked(after unix.Errno) int {
	if !s.errReported {
		s.errReported = true
		return neg(unix.ECONNRESET)
	}
	return neg(after)
}

// send queues iov; partial results are normal. MSG_MORE holds a partial segment back like
// TCP_CORK until a send without it.
func (s *tcpSock) send(iov []unix.Iovec, flags int, _ []byte) int {
	st := s.st
	return st.with(s, faultSend, func() int {
		c := s.conn
		switch {
		case s.broken:
			return s.brokenLocked(unix.EPIPE)
		case c == nil:
			return neg(unix.ENOTCONN)
		case s.shutWr:
			return neg(unix.EPIPE)
		}
		st.rxLocked()
		if more := flags&unix.MSG_MORE != 0; more != s.moreCork {
			s.moreCork = more
			c.SetCork(more || s.opts.cork)
		}
		total := 0
		var err error
		for i := range iov {
			if iov[i].Len == 0 {
				continue
			}
			var n int
			n, err = c.Write(iovBytes(iov[i]))
			total += n
			if err != nil || uint64(n) < iov[i].Len {
				break
			}
		}
		st.txLocked()
		if total > 0 {
			s.refreshLocked()
			return total
		}
		switch {
		case errors.Is(err, stackcore.ErrWouldBlock) || (err == nil && c.Connecting()):
			return s.wouldBlock(flags)
		case err == nil:
			return 0
		case isHardErr(err):
			// ECONNRESET once, then EPIPE (and SIGPIPE, raised in C), as Linux does
			if s.errReported {
				return neg(unix.EPIPE)
			}
			s.errReported = true
			c.TakeErr()
		}
		return errnoOf(err)
	})
}

func (s *tcpSock) shutdown(how int) int {
	st := s.st
	return st.with(s, faultNone, func() int {
		if s.conn == nil {
			return neg(unix.ENOTCONN)
		}
		switch how {
		case unix.SHUT_RD:
			s.shutRd = true
		case unix.SHUT_WR:
			s.shutWr = true
			s.conn.CloseWrite()
		case unix.SHUT_RDWR:
			s.shutRd, s.shutWr = true, true
			s.conn.CloseWrite()
		default:
			return neg(unix.EINVAL)
		}
		st.txLocked()
		s.wakeLocked()
		return 0
	})
}

func (s *tcpSock) sockname(out []byte, outLen *uint32) int {
	st := s.st
	return st.with(s, faultNone, func() int {
		if s.conn == nil {
			return Pass // the shadow is bound as we are
		}
		s.putAddr(out, outLen, s.conn.Local(), s.conn.LocalPort())
		return 0
	})
}

func (s *tcpSock) peername(out []byte, outLen *uint32) int {
	return s.st.with(s, faultNone, func() int {
		if s.conn == nil || s.conn.Connecting() {
			return neg(unix.ENOTCONN)
		}
		ip, port := s.conn.Remote()
		s.putAddr(out, outLen, ip, port)
		return 0
	})
}

// getsockopt answers what only the stack knows (SO_ERROR, TCP_INFO); the shadow the rest, since
// every option set is set on it too.
func (s *tcpSock) getsockopt(level, name int, val []byte, valLen *uint32) int {
	st := s.st
	switch {
	case level == unix.SOL_SOCKET && name == unix.SO_ERROR:
		return st.with(s, faultNone, func() int {
			r := 0
			switch {
			case s.connErrno != 0:
				r, s.connErrno, s.errReported = int(s.connErrno), 0, true
			case s.conn != nil:
				if err := s.conn.TakeErr(); err != nil {
					r, s.errReported = -errnoOf(err), true
				}
			}
			return putInt(val, valLen, r)
		})
	case level == unix.IPPROTO_TCP && name == unix.TCP_INFO:
		if valLen == nil {
			return neg(unix.EFAULT)
		}
		return st.with(s, faultNone, func() int {
			if s.conn == nil {
				return Pass // the kernel's answer for a socket with no connection
			}
			var buf [stackcore.TCPInfoLen]byte
			info := s.conn.AppendTCPInfo(buf[:0], st.now())
			*valLen = uint32(copy(val[:min(int(*valLen), len(val))], info))
			return 0
		})
	}
	return Pass
}

// setsockoptLocked gives the connection the options just recorded; held data or a pending ACK
// may go now. Caller holds st.mu.
func (s *tcpSock) setsockoptLocked(level, name int, v int, isInt bool, _ []byte) int {
	if s.conn == nil {
		return Pass
	}
	s.opts.apply(s.conn)
	if level == unix.IPPROTO_TCP && (name == unix.TCP_NODELAY && v != 0 || name == unix.TCP_CORK && v == 0 ||
		name == unix.TCP_QUICKACK && v != 0) {
		s.st.txLocked()
	}
	return Pass
}

func (s *tcpSock) queuedLocked(out bool) int {
	switch {
	case s.conn == nil:
		return neg(unix.EINVAL)
	case out:
		return s.conn.OutQueue()
	}
	return s.conn.InQueue()
}

func (s *tcpSock) events() int16 { return s.pollEvents() }

// pollEvents is the poll(2) mask the way Linux's tcp_poll computes it: HUP once both directions
// are shut (or the connection is gone), IN|RDHUP once the receive side is, OUT while the send
// side has room or is shut (a write would not block), ERR while an error is pending.
func (s *tcpSock) pollEvents() int16 {
	c := s.conn
	switch {
	case s.broken || s.failed:
		ev := int16(unix.POLLIN | pollRdNorm | unix.POLLRDHUP | unix.POLLOUT | pollWrNorm | unix.POLLHUP)
		if s.connErrno != 0 || s.broken && !s.errReported {
			ev |= unix.POLLERR
		}
		return ev
	case s.resolving != nil:
		return 0 // a connect in progress
	case c == nil:
		// neither listening nor connected: Linux reports POLLOUT|POLLHUP
		return unix.POLLOUT | unix.POLLHUP
	}
	var ev int16
	state := c.State()
	gone := state == stackcore.StateClosed // reset, refused, timed out, or closed both ways
	rcvShut := s.shutRd || c.PeerClosed() || gone
	sndShut := s.shutWr || gone
	if rcvShut && sndShut {
		ev |= unix.POLLHUP
	}
	if rcvShut {
		ev |= unix.POLLIN | pollRdNorm | unix.POLLRDHUP
	}
	if state != stackcore.StateSynSent && state != stackcore.StateSynReceived {
		if c.InQueue() >= max(s.opts.rcvLowat, 1) {
			ev |= unix.POLLIN | pollRdNorm
		}
		if sndShut || c.Writable() {
			ev |= unix.POLLOUT | pollWrNorm
		}
	}
	if c.Err() != nil {
		ev |= unix.POLLERR
	}
	return ev
}

func (s *tcpSock) releaseLocked() {
	if n := s.resolving; n != nil {
		n.waiting = removeTCP(n.waiting, s)
		s.resolving = nil
	}
	c := s.conn
	if c == nil {
		return
	}
	s.conn = nil
	c.Cookie = 0
	if s.opts.lingerRST {
		c.Abort()
		return
	}
	c.Close()
	s.st.orphanLocked(c)
}

func (s *tcpSock) resetLocked() {
	if s.conn != nil {
		s.conn.Cookie = 0
		s.conn.Abort()
		s.conn = nil
		s.broken, s.errReported = true, false
	}
}

func removeTCP(xs []*tcpSock, x *tcpSock) []*tcpSock {
	for i, v := range xs {
		if v == x {
			return append(xs[:i], xs[i+1:]...)
		}
	}
	return xs
}
