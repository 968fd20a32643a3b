package shim

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/nic/xdp"
	"ustack/shm"
	"ustack/stackcore"
)

// udpSock is an accelerated UDP socket, accelerated for what goes through the interface:
// datagrams to and from destinations the interface routes. Everything else — loopback, other
// interfaces, broadcast, next hops still being resolved — goes through the socket's kernel
// shadow, bound to the same port: sends to such destinations are made on the shadow, and a
// receive takes the stack's datagrams first, then the shadow's. Multicast memberships on the
// interface are the stack's too (mcast.go). Fields are guarded by st.mu.
type udpSock struct {
	*sockBase

	udp       *stackcore.UDPSocket // the stack's socket, once bound
	mc        udpMcast             // groups and multicast options (mcast.go)
	connected bool
	peerIP    stackcore.Addr
	peerPort  uint16
	scratch   []byte // gathers and scatters datagrams given in several buffers
}

// bindStackLocked gives s its stack socket on port (the shadow's port). Caller holds st.mu.
func (s *udpSock) bindStackLocked(port uint16) int {
	st := s.st
	// the kernel let the shadows share the port with SO_REUSEADDR/SO_REUSEPORT: so do we
	reuse := s.opts.reuseAddr || s.opts.reusePort
	local := s.boundIP
	if local.IsUnspecified() || local.IsMulticast() { // a group's receiver: mcast.go
		local = stackcore.Addr{}
	}
	u, err := st.core.UDPBindOn(port, reuse, s.stackFamily(), local)
	if err != nil {
		return errnoOf(err)
	}
	if err := st.steerUDPLocked(port); reuse && errors.Is(err, xdp.ErrPortTaken) {
		// another process of the interface's group shares the port (the kernel let both bind
		// it): the port's unicast datagrams stay there, as the kernel gives them to one socket
		// of the port; this one takes its multicast groups (mcast.go) and its shadow's
	} else if err != nil {
		u.Close()
		s.e.Log.Warn().Err(err).Uint16("port", port).Msg("steering UDP port")
		return neg(unix.ENOBUFS)
	}
	u.Cookie = s.cookie
	tclass, hops := s.opts.ipFields(s.family == unix.AF_INET)
	u.SetTrafficClass(tclass)
	u.SetHopLimit(hops)
	s.udp = u
	s.bound, s.boundPort = true, port
	s.bindMcastLocked() // mcast.go
	return 0
}

// autobindLocked binds an unbound socket the way the kernel does before its first send: the
// shadow to 0.0.0.0 and an ephemeral port, the stack to the same port. Caller holds st.mu.
func (s *udpSock) autobindLocked() int {
	if s.udp != nil {
		return 0
	}
	fd := s.fd()
	if err := unix.Bind(fd, s.kernelAddr(stackcore.Addr{}, 0)); err != nil && err != unix.EINVAL {
		return errnoOf(err) // EINVAL: the shadow was bound already (by a kernel-path send)
	}
	port, err := shadowPort(fd)
	if err != nil {
		return errnoOf(err)
	}
	s.boundIP = stackcore.Addr{}
	return s.bindStackLocked(port)
}

func (s *udpSock) bind(ip stackcore.Addr, port uint16) int {
	st := s.st
	handOver := false
	r := st.with(s, faultNone, func() int {
		fd := s.fd()
		if err := unix.Bind(fd, s.kernelAddr(ip, port)); err != nil {
			return errnoOf(err)
		}
		if ip.IsMulticast() {
			s.mc.only = ip // a group's receiver: its datagrams only (mcast.go)
		} else if !ip.IsUnspecified() && !st.core.IsLocal(ip) {
			handOver = true // loopback, another interface: the kernel's
			return 0
		}
		p, err := shadowPort(fd)
		if err != nil {
			return errnoOf(err)
		}
		s.boundIP = ip
		return s.bindStackLocked(p)
	})
	if handOver {
		s.e.handOver(s, shm.SockReasonAddress, "bound to an address of another interface or a group")
	}
	return r
}

func (s *udpSock) listen(int) int { return neg(unix.EOPNOTSUPP) }

// connect sets the default peer, in the stack and in the shadow (which then takes only that
// peer's datagrams and sends to it while its next hop is resolved).
func (s *udpSock) connect(sa []byte) int {
	st := s.st
	if isUnspec(sa) {
		st.with(s, faultNone, func() int {
			if s.udp != nil {
				s.udp.Disconnect()
			}
			s.connected = false
			return 0
		})
		return Pass // the shadow forgets its peer too
	}
	dst, dport, ok, errno := s.parsePeer(sa, false)
	if errno != 0 {
		return neg(errno)
	}
	if !ok {
		return Pass
	}
	handOver := false
	r := st.with(s, faultNone, func() int {
		if _, via := st.routeLocked(dst); !via {
			handOver = true // a peer the kernel reaches: the whole socket becomes the kernel's
			return Pass
		}
		if r := s.autobindLocked(); r != 0 {
			return r
		}
		if err := unix.Connect(s.fd(), s.kernelAddr(dst, dport)); err != nil {
			return errnoOf(err)
		}
		mac, _ := st.nextHopLocked(dst)
		if dst.IsMulticast() {
			mac, _ = s.mcastDestLocked(dst)
		}
		s.udp.Connect(dst, dport, stackcore.MAC(mac))
		s.connected, s.peerIP, s.peerPort = true, dst, dport
		return 0
	})
	if handOver {
		s.e.handOver(s, shm.SockReasonRoute, "connects to a peer not reached through the interface")
	}
	return r
}

// recv takes one datagram: the stack's first, then the shadow's.
func (s *udpSock) recv(iov []unix.Iovec, flags int, name []byte, nameLen *uint32, msgFlags *int32) int {
	st := s.st
	peek := flags&unix.MSG_PEEK != 0
	var shadow int
	var nonblock bool
	r := st.with(s, faultRecv, func() int {
		shadow, nonblock = s.fd(), s.nonblock
		u := s.udp
		if u == nil {
			return Pass
		}
		st.rxLocked()
		buf := s.recvBuffer(iov)
		n, full, src, sport, err := u.RecvFrom(buf, peek)
		if err != nil {
			if errors.Is(err, stackcore.ErrWouldBlock) {
				if !s.shadowWorthLookLocked() {
					return noShadow
				}
				return Pass
			}
			return errnoOf(err)
		}
		if len(iov) > 1 {
			scatter(buf[:n], iov)
		}
		if !peek {
			s.refreshLocked()
		}
		s.putAddr(name, nameLen, src, sport)
		if full > n && msgFlags != nil {
			*msgFlags |= unix.MSG_TRUNC
		}
		if flags&unix.MSG_TRUNC != 0 {
			return full
		}
		return n
	})
	n, recvFlags, from, err := 0, 0, unix.Sockaddr(nil), error(unix.EAGAIN)
	if r == Pass {
		// the kernel's datagrams (loopback, broadcast, or sent before the stack's bind)
		n, recvFlags, from, err = recvShadow(shadow, iov, flags)
		s.shadowFound(err != unix.EAGAIN)
	} else if r != noShadow {
		return r
	}
	if err == unix.EAGAIN {
		if nonblock || flags&unix.MSG_DONTWAIT != 0 {
			return neg(unix.EAGAIN)
		}
		return Wait
	}
	if err != nil {
		return errnoOf(err)
	}
	putSockaddr(name, nameLen, from)
	if msgFlags != nil {
		*msgFlags |= int32(recvFlags & unix.MSG_TRUNC)
	}
	return n
}

// recvShadow reads one datagram from the kernel shadow without blocking (the slow path).
func recvShadow(fd int, iov []unix.Iovec, flags int) (int, int, unix.Sockaddr, error) {
	bufs := make([][]byte, len(iov))
	for i := range iov {
		bufs[i] = iovBytes(iov[i])
	}
	n, _, rflags, from, err := unix.RecvmsgBuffers(fd, bufs, nil, flags|unix.MSG_DONTWAIT)
	return n, rflags, from, err
}

// recvBuffer is where RecvFrom copies a datagram: the caller's buffer when it is one, else the
// socket's scratch buffer, scattered afterwards. Caller holds st.mu.
func (s *udpSock) recvBuffer(iov []unix.Iovec) []byte {
	switch len(iov) {
	case 0:
		return nil
	case 1:
		return iovBytes(iov[0])
	}
	if cap(s.scratch) < 65536 {
		s.scratch = make([]byte, 65536)
	}
	return s.scratch[:min(iovLen(iov), 65536)]
}

func scatter(b []byte, iov []unix.Iovec) {
	for i := range iov {
		if len(b) == 0 {
			return
		}
		b = b[copy(unsafe.Slice(iov[i].Base, iov[i].Len), b):]
	}
}

// send sends one datagram, through the stack when the destination is behind the interface and
// its next hop known, else through the shadow (Pass).
func (s *udpSock) send(iov []unix.Iovec, flags int, name []byte) int {
	st := s.st
	var dst stackcore.Addr
	var dport uint16
	if len(name) > 0 {
		ip, port, ok, errno := s.parsePeer(name, true)
		if errno != 0 {
			return neg(errno)
		}
		if !ok {
			return Pass
		}
		dst, dport = ip, port
	}
	return st.with(s, faultSend, func() int {
		if len(name) == 0 {
			if !s.connected {
				if s.udp == nil {
					return Pass // the shadow may be connected (kernel path) or answer EDESTADDRREQ
				}
				return neg(unix.EDESTADDRREQ)
			}
			dst, dport = s.peerIP, s.peerPort
		}
		mac, direct := st.nextHopLocked(dst)
		if dst.IsMulticast() {
			mac, direct = s.mcastDestLocked(dst) // mcast.go
		}
		if !direct {
			return Pass // the kernel's destination, or one the kernel is still resolving
		}
		if r := s.autobindLocked(); r != 0 {
			return r
		}
		var one []byte
		switch len(iov) {
		case 0:
		case 1:
			one = iovBytes(iov[0])
		default:
			one = s.gather(iov)
		}
		u := s.udp
		n, err := u.SendTo(one, dst, dport, stackcore.MAC(mac))
		st.txLocked()
		s.refreshLocked()
		switch {
		case err == nil:
			return n
		case errors.Is(err, stackcore.ErrWouldBlock) && !u.Writable():
			return s.wouldBlock(flags)
		}
		return errnoOf(err)
	})
}

// gather copies a datagram given in several buffers into the socket's scratch buffer. Caller
// holds st.mu.
func (s *udpSock) gather(iov []unix.Iovec) []byte {
	b := s.scratch[:0]
	for i := range iov {
		b = append(b, iovBytes(iov[i])...)
	}
	s.scratch = b[:0]
	return b
}

func (s *udpSock) shutdown(int) int { return Pass }

func (s *udpSock) sockname(out []byte, outLen *uint32) int {
	st := s.st
	return st.with(s, faultNone, func() int {
		if s.udp != nil && s.connected && s.boundIP.IsUnspecified() && s.mc.only == (stackcore.Addr{}) {
			s.putAddr(out, outLen, st.core.SourceFor(s.peerIP), s.boundPort) // the kernel's source for the peer
			return 0
		}
		return Pass // the shadow is bound as we are
	})
}

func (s *udpSock) peername(out []byte, outLen *uint32) int {
	return s.st.with(s, faultNone, func() int {
		if !s.connected {
			return neg(unix.ENOTCONN)
		}
		s.putAddr(out, outLen, s.peerIP, s.peerPort)
		return 0
	})
}

func (s *udpSock) getsockopt(level, name int, val []byte, valLen *uint32) int {
	if level != unix.SOL_SOCKET || name != unix.SO_ERROR {
		return Pass
	}
	return s.st.with(s, faultNone, func() int {
		if s.udp == nil {
			return Pass
		}
		if err := s.udp.TakeErr(); err != nil {
			return putInt(val, valLen, -errnoOf(err))
		}
		return Pass // the shadow's pending error, if any
	})
}

// setsockoptLocked: buffer sizes reach the stack's socket. Caller holds st.mu.
func (s *udpSock) setsockoptLocked(level, name int, v int, isInt bool, _ []byte) int {
	if s.udp != nil {
		tclass, hops := s.opts.ipFields(s.family == unix.AF_INET)
		s.udp.SetTrafficClass(tclass)
		s.udp.SetHopLimit(hops)
	}
	if level == unix.SOL_SOCKET && s.udp != nil && isInt && v > 0 {
		switch name {
		case unix.SO_RCVBUF:
			s.udp.SetBuffers(2*v, 0) // Linux doubles the value for its bookkeeping
		case unix.SO_SNDBUF:
			s.udp.SetBuffers(0, 2*v)
		}
	}
	return Pass
}

func (s *udpSock) queuedLocked(out bool) int {
	switch {
	case s.udp == nil:
		return Pass
	case out:
		return s.udp.OutQueue()
	}
	if n := s.udp.NextLen(); n > 0 {
		return n
	}
	return Pass // maybe the shadow has one
}

// events: readable with a datagram or an error, writable with room in the send queue. The
// shadow's datagrams wake sleepers by themselves (they watch it).
func (s *udpSock) events() int16 {
	u := s.udp
	if u == nil {
		return unix.POLLOUT | pollWrNorm
	}
	var ev int16
	if u.Readable() {
		ev |= unix.POLLIN | pollRdNorm
	}
	if u.Writable() {
		ev |= unix.POLLOUT | pollWrNorm
	}
	if u.Err() != nil {
		ev |= unix.POLLERR
	}
	return ev
}

func (s *udpSock) pollEvents() int16 {
	ev := s.events()
	if ev&unix.POLLIN == 0 && s.shadowWorthLookLocked() {
		pending := shadowPending(s.fd())
		s.shadowFound(pending)
		if pending {
			ev |= unix.POLLIN | pollRdNorm
		}
	}
	return ev
}

func (s *udpSock) releaseLocked() {
	s.unsteerMcastLocked()
	if s.udp != nil {
		s.udp.Cookie = 0
		s.udp.Close() // the port is unsteered once the core reports it released
		s.udp = nil
	}
}

func (s *udpSock) resetLocked() {}

// moveLocked gives the port to the shadow, which every process holding the socket can use: new
// datagrams go there, and those queued here follow them through loopback, from their senders.
// Caller holds st.mu.
func (s *udpSock) moveLocked() int {
	st, u := s.st, s.udp
	if u == nil {
		return 0
	}
	st.txLocked() // what is queued to send goes first
	port := u.LocalPort()
	s.unsteerMcastLocked() // the shadow is a member of the groups already
	st.unsteerUDPLocked(port)
	st.rxLocked() // what came in before
	buf := make([]byte, 65536)
	for u.Readable() {
		n, _, src, sport, err := u.RecvFrom(buf, false)
		if err != nil {
			if errors.Is(err, stackcore.ErrWouldBlock) {
				break
			}
			continue // a pending error (ICMP): the kernel socket starts afresh
		}
		dst := st.core.SourceFor(src)
		if !s.udp.Local().IsUnspecified() {
			dst = s.udp.Local()
		}
		if err := injectUDP(src, sport, dst, port, buf[:n]); err != nil {
			s.e.Log.Warn().Err(err).Msg("moving a UDP socket to the kernel: a queued datagram is lost")
			continue
		}
		count(&st.stats.DgramsReinjected)
	}
	return 0
}

// parsePeer is parseAddr for a peer (connect, sendto): an AF_INET6 socket that is not
// IPV6_V6ONLY takes a sockaddr_in too and sends to its address mapped, as Linux's UDP does
// (ip6_datagram_connect, udpv6_sendmsg; TCP refuses it).
func (s *udpSock) parsePeer(sa []byte, sending bool) (ip stackcore.Addr, port uint16, ok bool, errno unix.Errno) {
	if s.family == unix.AF_INET6 && !s.v6only && len(sa) >= unix.SizeofSockaddrInet4 &&
		binary.NativeEndian.Uint16(sa) == unix.AF_INET {
		return stackcore.AddrFrom4(stackcore.IPv4(sa[4:8])), binary.BigEndian.Uint16(sa[2:4]), true, 0
	}
	return s.parseAddr(sa, sending)
}
