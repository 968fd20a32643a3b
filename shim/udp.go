package shim

import (
	"errors"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// UDP sockets are accelerated for what goes through the interface: datagrams to and from
// destinations the interface routes. Everything else — loopback, other interfaces, broadcast
// and multicast — goes through the socket's kernel shadow, bound to the same port: sends to such
// destinations are made on the shadow, and a receive takes the stack's datagrams first, then the
// shadow's. A socket that joins a multicast group is handed to the kernel altogether.

// neighCacheTTL bounds how long a next hop's Ethernet address is trusted before the kernel's
// neighbour table is read again.
const neighCacheTTL = 5 * time.Second

type neighEntry struct {
	mac     [6]byte
	ok      bool // routed through the interface
	expires time.Time
}

// nextHop says whether dst goes through the accelerated interface and, if so, to which Ethernet
// address. It reads the kernel's tables on a miss: call it without st.mu.
func (st *stack) nextHop(dst [4]byte) ([6]byte, bool) {
	now := time.Now()
	st.neighMu.Lock()
	n, hit := st.neigh[dst]
	st.neighMu.Unlock()
	if hit && now.Before(n.expires) {
		return n.mac, n.ok
	}
	n = neighEntry{expires: now.Add(neighCacheTTL)}
	if dst != st.ifc.addr && dst != [4]byte{255, 255, 255, 255} && dst[0] < 224 {
		if hop, ok := st.cp.routeVia(dst); ok && !st.ifc.isBroadcast(hop) {
			if mac, err := st.cp.resolve(hop, resolveTimeout); err == nil {
				n.mac, n.ok = mac, true
			}
		}
	}
	st.neighMu.Lock()
	st.neigh[dst] = n
	st.neighMu.Unlock()
	return n.mac, n.ok
}

// isBroadcast reports whether ip is the directed broadcast address of the interface's subnet.
func (ifc *iface) isBroadcast(ip [4]byte) bool {
	if ifc.prefix <= 0 || ifc.prefix >= 31 {
		return false
	}
	mask := ^uint32(0) << (32 - ifc.prefix)
	a := uint32(ifc.addr[0])<<24 | uint32(ifc.addr[1])<<16 | uint32(ifc.addr[2])<<8 | uint32(ifc.addr[3])
	b := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
	return a&mask == b&mask && b|mask == ^uint32(0)
}

// udpBindLocked gives s its stack socket on port (0: the shadow's port after an automatic bind).
func (e *Engine) udpBindLocked(s *socket, port uint16) int {
	st := s.st
	bind := st.core.UDPBind
	if s.opts.reuseAddr || s.opts.reusePort {
		bind = st.core.UDPBindReuse // the kernel let the shadows share the port: so do we
	}
	u, err := bind(port)
	if err != nil {
		return errnoOf(err)
	}
	if err := st.steerUDPLocked(port); err != nil {
		u.Close()
		e.Log.Warn().Err(err).Uint16("port", port).Msg("steering UDP port")
		return neg(unix.ENOBUFS)
	}
	u.Cookie = s.cookie
	s.udp = u
	s.bound, s.boundPort = true, port
	return 0
}

// udpAutobind binds an unbound UDP socket the way the kernel does before its first send: the
// shadow to 0.0.0.0 and an ephemeral port, the stack to the same port.
func (e *Engine) udpAutobind(s *socket) int {
	s.st.mu.Lock()
	bound := s.udp != nil
	s.st.mu.Unlock()
	if bound {
		return 0
	}
	if err := unix.Bind(s.fd, &unix.SockaddrInet4{}); err != nil && err != unix.EINVAL {
		return errnoOf(err) // EINVAL: the shadow was bound already (by a kernel-path send)
	}
	port, err := shadowPort(s.fd)
	if err != nil {
		return errnoOf(err)
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if s.udp != nil {
		return 0
	}
	s.boundAny = true
	return e.udpBindLocked(s, port)
}

func (e *Engine) udpBind(s *socket, ip [4]byte, port uint16) int {
	if err := unix.Bind(s.fd, &unix.SockaddrInet4{Port: int(port), Addr: ip}); err != nil {
		return errnoOf(err)
	}
	if ip != [4]byte{} && ip != s.st.ifc.addr {
		e.handOver(s) // loopback, another interface, a multicast group: the kernel's
		return 0
	}
	p, err := shadowPort(s.fd)
	if err != nil {
		return errnoOf(err)
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	s.boundAny = ip == [4]byte{}
	return e.udpBindLocked(s, p)
}

func (e *Engine) udpConnect(s *socket, sa []byte) int {
	if len(sa) >= 2 && sa[0] == unix.AF_UNSPEC && sa[1] == 0 {
		s.st.mu.Lock()
		if s.udp != nil {
			s.udp.Disconnect()
		}
		s.connected = false
		s.st.mu.Unlock()
		return Pass // the shadow forgets its peer too
	}
	dst, dport, ok, errno := parseInet4(sa)
	if errno != 0 {
		return neg(errno)
	}
	if !ok {
		return Pass
	}
	mac, via := s.st.nextHop(dst)
	if !via {
		// a peer the kernel reaches: the whole socket becomes the kernel's
		e.handOver(s)
		return Pass
	}
	if r := e.udpAutobind(s); r != 0 {
		return r
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	s.udp.Connect(stackcore.IPv4(dst), dport, stackcore.MAC(mac))
	s.connected, s.peerIP, s.peerPort, s.peerMAC = true, dst, dport, mac
	return 0
}

// udpRecv takes one datagram: the stack's first, then the shadow's.
func (e *Engine) udpRecv(s *socket, iov []unix.Iovec, flags int, name []byte, nameLen *uint32, msgFlags *int32) int {
	st := s.st
	peek := flags&unix.MSG_PEEK != 0
	st.mu.Lock()
	if u := s.udp; u != nil {
		st.rxLocked()
		buf := s.recvBuffer(iov)
		n, full, src, sport, err := u.RecvFrom(buf, peek)
		if err == nil {
			if len(iov) > 1 {
				scatter(buf[:n], iov)
			}
			if !peek && !s.readableLocked() {
				s.unsignal(&s.rxSignalled, s.rxEfd)
			}
			st.mu.Unlock()
			putInet4(name, nameLen, [4]byte(src), sport)
			if full > n && msgFlags != nil {
				*msgFlags |= unix.MSG_TRUNC
			}
			if flags&unix.MSG_TRUNC != 0 {
				return full
			}
			return n
		}
		if !errors.Is(err, stackcore.ErrWouldBlock) {
			st.mu.Unlock()
			return errnoOf(err)
		}
		if !shadowPending(s.fd) {
			s.unsignal(&s.rxSignalled, s.rxEfd)
		}
	}
	st.mu.Unlock()
	// the kernel's datagrams (loopback, broadcast, or sent before the stack's bind)
	n, recvFlags, from, err := recvShadow(s.fd, iov, flags)
	if err == unix.EAGAIN {
		if s.nonblock || flags&unix.MSG_DONTWAIT != 0 {
			return neg(unix.EAGAIN)
		}
		return Wait
	}
	if err != nil {
		return errnoOf(err)
	}
	if in, ok := from.(*unix.SockaddrInet4); ok {
		putInet4(name, nameLen, in.Addr, uint16(in.Port))
	} else if nameLen != nil {
		*nameLen = 0
	}
	if msgFlags != nil {
		*msgFlags |= int32(recvFlags & unix.MSG_TRUNC)
	}
	return n
}

// recvShadow reads one datagram from the kernel shadow without blocking (the slow path).
func recvShadow(fd int, iov []unix.Iovec, flags int) (int, int, unix.Sockaddr, error) {
	bufs := make([][]byte, len(iov))
	for i := range iov {
		bufs[i] = unsafe.Slice(iov[i].Base, iov[i].Len)
	}
	n, _, rflags, from, err := unix.RecvmsgBuffers(fd, bufs, nil, flags|unix.MSG_DONTWAIT)
	return n, rflags, from, err
}

// recvBuffer is where RecvFrom copies a datagram: the caller's buffer when it is one, else the
// socket's scratch buffer, scattered afterwards.
func (s *socket) recvBuffer(iov []unix.Iovec) []byte {
	switch len(iov) {
	case 0:
		return nil
	case 1:
		return unsafe.Slice(iov[0].Base, iov[0].Len)
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

// udpSend sends one datagram, through the stack when the destination is behind the interface,
// else through the shadow.
func (e *Engine) udpSend(s *socket, iov []unix.Iovec, flags int, name []byte) int {
	st := s.st
	var dst [4]byte
	var dport uint16
	var mac [6]byte
	var direct bool
	if len(name) > 0 {
		ip, port, ok, errno := parseInet4(name)
		if errno != 0 {
			return neg(errno)
		}
		if !ok {
			return Pass
		}
		dst, dport = ip, port
		if mac, direct = st.nextHop(dst); !direct {
			return Pass // the kernel's destination: the shadow sends it
		}
		if r := e.udpAutobind(s); r != 0 {
			return r
		}
	} else {
		st.mu.Lock()
		connected := s.connected
		st.mu.Unlock()
		if !connected {
			if s.udp == nil {
				return Pass // the shadow may be connected (kernel path) or answer EDESTADDRREQ
			}
			return neg(unix.EDESTADDRREQ)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var one []byte
	switch len(iov) {
	case 0:
	case 1:
		one = unsafe.Slice(iov[0].Base, iov[0].Len)
	default:
		one = s.gather(iov)
	}
	u := s.udp
	var n int
	var err error
	if len(name) > 0 {
		n, err = u.SendTo(one, stackcore.IPv4(dst), dport, stackcore.MAC(mac))
	} else {
		n, err = u.SendTo(one, stackcore.IPv4(s.peerIP), s.peerPort, stackcore.MAC(s.peerMAC))
	}
	if err == nil {
		st.txLocked()
		return n
	}
	if errors.Is(err, stackcore.ErrWouldBlock) {
		st.txLocked()
		if !u.Writable() {
			s.unsignal(&s.txSignalled, s.txEfd)
			if s.nonblock || flags&unix.MSG_DONTWAIT != 0 {
				return neg(unix.EAGAIN)
			}
			return Wait
		}
		return neg(unix.EAGAIN)
	}
	return errnoOf(err)
}

// gather copies a datagram given in several buffers into the socket's scratch buffer. Caller
// holds st.mu.
func (s *socket) gather(iov []unix.Iovec) []byte {
	b := s.scratch[:0]
	for i := range iov {
		b = append(b, unsafe.Slice(iov[i].Base, iov[i].Len)...)
	}
	s.scratch = b[:0]
	return b
}

// udpPollEvents is the poll mask of a UDP socket: readable with a datagram (ours or the
// shadow's) or an error, writable with room in the send queue.
func (s *socket) udpPollEvents() int16 {
	var ev int16
	u := s.udp
	if u == nil {
		ev = unix.POLLOUT | pollWrNorm
	} else {
		if u.Readable() {
			ev |= unix.POLLIN | pollRdNorm
		}
		if u.Writable() {
			ev |= unix.POLLOUT | pollWrNorm
		}
		if u.Err() != nil {
			ev |= unix.POLLERR
		}
	}
	if ev&unix.POLLIN == 0 && shadowPending(s.fd) {
		ev |= unix.POLLIN | pollRdNorm
	}
	return ev
}
