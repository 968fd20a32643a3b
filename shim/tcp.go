package shim

import (
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// resolveTimeout bounds how long connect waits for the kernel to resolve a next hop (Linux's
// ARP gives up after 3 probes a second apart) before the connection goes to the kernel.
const resolveTimeout = 3500 * time.Millisecond

// socket is an accelerated TCP socket. Its fd is a real kernel socket, the shadow: it gives the
// program a unique fd number, holds the port in the kernel, and becomes the socket itself when
// the socket is handed over to the kernel. Fields below fd are guarded by st.mu.
type socket struct {
	fd     int   // one of fds, for calls on the shadow
	fds    []int // every fd that refers to this socket (dup, dup2, F_DUPFD)
	cookie uintptr
	st     *stack
	rxEfd  int
	txEfd  int

	rxSignalled, txSignalled bool
	wakeGen                  uint64 // bumped each time the stack reports a change (edge-triggered epoll)

	nonblock  bool
	opts      tcpOpts // options the connection takes when it exists
	bound     bool
	boundAny  bool // bound to 0.0.0.0
	boundPort uint16
	listener  *stackcore.Listener // lshare.l
	lshare    *listenShare
	conn      *stackcore.TCPConn
	shutRd    bool
	shutWr    bool
	lingerRST bool        // SO_LINGER on with a zero timeout: close resets
	epolls    []*epollSet // epoll sets this socket is a member of

	// UDP (dgram): the stack's socket once bound, and the connected peer
	dgram     bool
	udp       *stackcore.UDPSocket
	connected bool
	peerIP    [4]byte
	peerPort  uint16
	peerMAC   [6]byte
	scratch   []byte // gathers and scatters datagrams given in several buffers

	connectReported bool // a completed non-blocking connect answered 0 once; EISCONN after
	errReported     bool // a reset was reported once (recv, send or SO_ERROR); then EOF/EPIPE
	moreCork        bool // corked by MSG_MORE, not by TCP_CORK
}

// listenShare is a listening port of the core and the sockets listening on it: one, or several
// with SO_REUSEPORT, which then take connections from the same accept queue.
type listenShare struct {
	l     *stackcore.Listener
	port  uint16
	socks []*socket
}

func removeSock(xs []*socket, x *socket) []*socket {
	for i, v := range xs {
		if v == x {
			return append(xs[:i], xs[i+1:]...)
		}
	}
	return xs
}

// signal makes efd readable unless it already is. Caller holds st.mu.
func (s *socket) signal(flag *bool, efd int) {
	if *flag {
		return
	}
	*flag = true
	var one = [8]byte{1}
	_, _ = unix.Write(efd, one[:])
}

// unsignal empties efd if it was signalled. Caller holds st.mu.
func (s *socket) unsignal(flag *bool, efd int) {
	if !*flag {
		return
	}
	*flag = false
	var buf [8]byte
	_, _ = unix.Read(efd, buf[:])
}

func (s *socket) readableLocked() bool {
	switch {
	case s.dgram:
		return s.udp != nil && s.udp.Readable() // the shadow's datagrams: sleepers watch it
	case s.listener != nil:
		return s.listener.Readable() // kernel connections: the sleeper watches the shadow itself
	case s.conn != nil:
		return s.pollEvents()&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0
	}
	return false
}

func (s *socket) writableLocked() bool {
	if s.dgram {
		return s.udp == nil || s.udp.Writable()
	}
	return s.conn != nil && s.pollEvents()&(unix.POLLOUT|unix.POLLHUP|unix.POLLERR) != 0
}

// Socket makes the new kernel socket fd accelerated if a stack runs (or can be started).
func (e *Engine) Socket(fd, typ int) {
	if fd < 0 || fd >= FDMax {
		return
	}
	st := e.stack()
	if st == nil {
		return
	}
	rx, tx, err := newEventfds()
	if err != nil {
		return
	}
	s := &socket{fd: fd, fds: []int{fd}, st: st, rxEfd: rx, txEfd: tx, nonblock: typ&unix.SOCK_NONBLOCK != 0,
		dgram: typ&0xf == unix.SOCK_DGRAM}
	st.mu.Lock()
	e.adoptLocked(s)
	st.mu.Unlock()
	e.register(s, fd)
	atomic.AddUint64(&st.stats.SocketsAccelerated, 1)
}

// newEventfds makes a socket's two eventfds (readable, writable).
func newEventfds() (rx, tx int, err error) {
	if rx, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return -1, -1, err
	}
	if tx, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		unix.Close(rx)
		return -1, -1, err
	}
	return rx, tx, nil
}

// adoptLocked gives a new socket its cookie. Caller holds st.mu.
func (e *Engine) adoptLocked(s *socket) {
	e.lastCookie++
	s.cookie = e.lastCookie
	e.cookies[s.cookie] = s
}

// register publishes fd as one of s's fds.
func (e *Engine) register(s *socket, fd int) {
	kind, extra := int32(KindTCP), int32(-1)
	if s.listener != nil {
		extra = int32(fd) // a listener's own shadow: kernel connections to accept
	}
	if s.dgram {
		kind, extra = KindUDP, int32(fd) // the shadow: the kernel's datagrams
	}
	e.socks[fd].Store(s)
	e.tab.Publish(fd, FDEntry{Kind: kind, RxEfd: int32(s.rxEfd), TxEfd: int32(s.txEfd), ExtraFd: extra})
}

// handOver gives the socket to the kernel for good: its shadow becomes the socket.
func (e *Engine) handOver(s *socket) {
	s.st.mu.Lock()
	fds := s.fds
	s.fds = nil
	delete(e.cookies, s.cookie)
	e.leaveEpollsLocked(s)
	if s.udp != nil {
		s.udp.Cookie = 0
		s.udp.Close() // its datagrams go to the shadow once the core releases the port
		s.udp = nil
	}
	s.st.mu.Unlock()
	for _, fd := range fds {
		e.tab.Withdraw(fd)
		e.socks[fd].Store(nil)
	}
	unix.Close(s.rxEfd)
	unix.Close(s.txEfd)
	atomic.AddUint64(&s.st.stats.PassedToKernel, 1)
}

// parseInet4 reads a struct sockaddr_in. ok is false for another family.
func parseInet4(sa []byte) (ip [4]byte, port uint16, ok bool, errno unix.Errno) {
	if len(sa) < 2 {
		return ip, 0, false, unix.EINVAL
	}
	if binary.NativeEndian.Uint16(sa) != unix.AF_INET {
		return ip, 0, false, 0
	}
	if len(sa) < unix.SizeofSockaddrInet4 {
		return ip, 0, false, unix.EINVAL
	}
	copy(ip[:], sa[4:8])
	return ip, binary.BigEndian.Uint16(sa[2:4]), true, 0
}

// putInet4 writes a struct sockaddr_in into out (truncating like the kernel) and sets *outLen to
// its full size.
func putInet4(out []byte, outLen *uint32, ip [4]byte, port uint16) {
	var sa [unix.SizeofSockaddrInet4]byte
	binary.NativeEndian.PutUint16(sa[0:], unix.AF_INET)
	binary.BigEndian.PutUint16(sa[2:], port)
	copy(sa[4:8], ip[:])
	if outLen == nil {
		return
	}
	copy(out[:min(int(*outLen), len(out))], sa[:])
	*outLen = unix.SizeofSockaddrInet4
}

func shadowPort(fd int) (uint16, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	in, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return 0, unix.EAFNOSUPPORT
	}
	return uint16(in.Port), nil
}

// errnos maps the stack's errors to what the kernel answers; order matters where errors wrap
// others (the unreachable errors also match ErrTimedOut).
var errnos = []struct {
	err   error
	errno unix.Errno
}{
	{stackcore.ErrWouldBlock, unix.EAGAIN},
	{stackcore.ErrReset, unix.ECONNRESET},
	{stackcore.ErrRefused, unix.ECONNREFUSED},
	{stackcore.ErrHostUnreach, unix.EHOSTUNREACH},
	{stackcore.ErrNetUnreach, unix.ENETUNREACH},
	{stackcore.ErrTimedOut, unix.ETIMEDOUT},
	{stackcore.ErrMsgSize, unix.EMSGSIZE},
	{stackcore.ErrClosed, unix.EPIPE},
	{stackcore.ErrNotConnected, unix.ENOTCONN},
	{stackcore.ErrAddrInUse, unix.EADDRINUSE},
}

// errnoOf turns an error into the negative result convention: 0 for nil, EIO for the unknown.
func errnoOf(err error) int {
	if err == nil {
		return 0
	}
	for _, m := range errnos {
		if errors.Is(err, m.err) {
			return neg(m.errno)
		}
	}
	var en unix.Errno
	if errors.As(err, &en) {
		return neg(en)
	}
	return neg(unix.EIO)
}

func (e *Engine) Bind(fd int, sa []byte) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	ip, port, ok, errno := parseInet4(sa)
	if errno != 0 {
		return neg(errno)
	}
	if !ok {
		return Pass
	}
	if s.dgram {
		return e.udpBind(s, ip, port)
	}
	if port != 0 && (ip == [4]byte{} || ip == s.st.ifc.addr) {
		// Connections of ours (TIME-WAIT ones too) hold their ports in the core only: the
		// kernel would refuse this bind without SO_REUSEADDR, so we do.
		s.st.mu.Lock()
		inUse := s.st.core.PortInUse(port) && s.st.listeners[port] == nil
		reuse := s.opts.reuseAddr
		s.st.mu.Unlock()
		if inUse && !reuse {
			return neg(unix.EADDRINUSE)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port), Addr: ip}); err != nil {
		return errnoOf(err)
	}
	if ip != [4]byte{} && ip != s.st.ifc.addr {
		// bound to loopback or another interface's address: the kernel's socket
		e.handOver(s)
		return 0
	}
	p, err := shadowPort(fd)
	if err != nil {
		return errnoOf(err)
	}
	s.st.mu.Lock()
	s.bound, s.boundAny, s.boundPort = true, ip == [4]byte{}, p
	s.st.mu.Unlock()
	return 0
}

func (e *Engine) Listen(fd, backlog int) int {
	s := e.sock(fd)
	if s == nil || s.dgram {
		return Pass
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if s.conn != nil {
		return neg(unix.EINVAL)
	}
	if s.listener != nil {
		return errnoOf(unix.Listen(fd, backlog)) // a new backlog
	}
	// The stack listens and the port is steered before the shadow listens: a SYN that came
	// in between would otherwise make a kernel connection whose later segments we steer away.
	if !s.bound {
		if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
			return errnoOf(err)
		}
		s.boundAny = true
	}
	port, err := shadowPort(fd)
	if err != nil {
		return errnoOf(err)
	}
	if backlog <= 0 {
		backlog = 1
	}
	var fresh *listenShare
	if sh := st.listeners[port]; sh != nil {
		// SO_REUSEPORT (the kernel let both shadows bind): the sockets share one accept queue
		sh.socks = append(sh.socks, s)
		s.lshare = sh
	} else {
		l, err := st.core.Listen(port, backlog)
		if err != nil {
			return errnoOf(err)
		}
		if err := st.steerLocked(port); err != nil {
			l.Close()
			e.Log.Warn().Err(err).Uint16("port", port).Msg("steering listener")
			return neg(unix.ENOBUFS)
		}
		l.Cookie = s.cookie
		fresh = &listenShare{l: l, port: port, socks: []*socket{s}}
		s.lshare = fresh
		st.listeners[port] = fresh
	}
	if err := unix.Listen(fd, backlog); err != nil {
		s.lshare.socks = removeSock(s.lshare.socks, s)
		if fresh != nil {
			fresh.l.Close() // the core releases the port; txLocked unsteers it
			delete(st.listeners, port)
		}
		s.lshare = nil
		return errnoOf(err)
	}
	s.listener, s.bound, s.boundPort = s.lshare.l, true, port
	// the shadow listens too (loopback and other interfaces); it is polled, never blocked on
	_ = unix.SetNonblock(fd, true)
	for _, a := range s.fds {
		e.register(s, a)
	}
	return 0
}

func (e *Engine) Accept(fd int, sa []byte, saLen *uint32, flags int) int {
	s := e.sock(fd)
	if s == nil || s.dgram {
		return Pass
	}
	if s.listener == nil {
		return neg(unix.EINVAL)
	}
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		return neg(unix.EINVAL)
	}
	st := s.st
	st.mu.Lock()
	st.rxLocked()
	if s.listener.Readable() {
		nfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|(flags&unix.SOCK_CLOEXEC)|(flags&unix.SOCK_NONBLOCK), 0)
		if err != nil {
			st.mu.Unlock()
			return errnoOf(err)
		}
		if nfd >= FDMax {
			unix.Close(nfd)
			st.mu.Unlock()
			return neg(unix.EMFILE)
		}
		rx, tx, err := newEventfds()
		if err != nil {
			unix.Close(nfd)
			st.mu.Unlock()
			return errnoOf(err)
		}
		c := s.listener.Accept()
		ns := &socket{fd: nfd, fds: []int{nfd}, st: st, rxEfd: rx, txEfd: tx, nonblock: flags&unix.SOCK_NONBLOCK != 0, conn: c, opts: s.opts}
		ns.opts.apply(c)
		e.adoptLocked(ns)
		c.Cookie = ns.cookie
		if !s.listener.Readable() {
			s.unsignal(&s.rxSignalled, s.rxEfd)
		}
		e.register(ns, nfd)
		if ns.readableLocked() {
			ns.signal(&ns.rxSignalled, ns.rxEfd)
		}
		if ns.writableLocked() {
			ns.signal(&ns.txSignalled, ns.txEfd)
		}
		atomic.AddUint64(&st.stats.SocketsAccelerated, 1)
		ip, port := c.Remote()
		st.mu.Unlock()
		putInet4(sa, saLen, ip, port)
		return nfd
	}
	s.unsignal(&s.rxSignalled, s.rxEfd)
	st.txLocked()
	st.mu.Unlock()

	// a connection that came through the kernel (loopback, another interface)
	nfd, rsa, err := unix.Accept4(fd, flags)
	if err == nil {
		atomic.AddUint64(&st.stats.KernelAccepts, 1)
		if in, ok := rsa.(*unix.SockaddrInet4); ok {
			putInet4(sa, saLen, in.Addr, uint16(in.Port))
		} else if saLen != nil {
			*saLen = 0
		}
		return nfd
	}
	if err != unix.EAGAIN {
		return errnoOf(err)
	}
	if s.nonblock {
		return neg(unix.EAGAIN)
	}
	return Wait
}

func (e *Engine) Connect(fd int, sa []byte) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	if s.dgram {
		return e.udpConnect(s, sa)
	}
	dst, dport, ok, errno := parseInet4(sa)
	if errno != 0 {
		return neg(errno)
	}
	if !ok {
		return Pass
	}
	st := s.st
	st.mu.Lock()
	switch {
	case s.listener != nil:
		st.mu.Unlock()
		return neg(unix.EISCONN)
	case s.conn != nil && s.conn.Connecting():
		st.mu.Unlock()
		return neg(unix.EALREADY)
	case s.conn != nil && !s.connectReported:
		// the first connect after a non-blocking one completed gives its result (Linux)
		s.connectReported = true
		err := s.conn.TakeErr()
		if err != nil {
			s.errReported = true
		}
		st.mu.Unlock()
		return errnoOf(err)
	case s.conn != nil:
		st.mu.Unlock()
		return neg(unix.EISCONN)
	}
	st.mu.Unlock()

	if dst == [4]byte{} || dst == st.ifc.addr {
		e.handOver(s) // the kernel's local delivery
		return Pass
	}
	nextHop, ok := st.cp.routeVia(dst)
	if !ok {
		e.handOver(s) // loopback, another interface, unreachable: the kernel's
		return Pass
	}
	mac, err := st.cp.resolve(nextHop, resolveTimeout)
	if err != nil {
		e.Log.Info().Err(err).Msg("next hop unresolved, connection stays on the kernel")
		e.handOver(s)
		return Pass
	}
	if !s.bound {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: st.ifc.addr}); err != nil {
			return errnoOf(err)
		}
		p, err := shadowPort(fd)
		if err != nil {
			return errnoOf(err)
		}
		s.bound, s.boundPort = true, p
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	c, err := st.core.Connect(st.now(), s.boundPort, stackcore.IPv4(dst), dport, stackcore.MAC(mac))
	if err != nil {
		return errnoOf(err)
	}
	if err := st.steerLocked(s.boundPort); err != nil {
		c.Abort()
		e.Log.Warn().Err(err).Msg("steering connection")
		return neg(unix.ENOBUFS)
	}
	c.Cookie = s.cookie
	s.opts.apply(c)
	s.conn = c
	st.txLocked()
	if s.nonblock {
		return neg(unix.EINPROGRESS)
	}
	return Wait
}

// ConnectWait finishes a blocking connect: Wait while the handshake runs, then its result.
func (e *Engine) ConnectWait(fd int) int {
	s := e.sock(fd)
	if s == nil || s.conn == nil {
		return neg(unix.EBADF)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.rxLocked()
	st.txLocked()
	if s.conn.Connecting() {
		s.unsignal(&s.txSignalled, s.txEfd)
		return Wait
	}
	s.connectReported = true
	err := s.conn.TakeErr()
	if err != nil {
		s.errReported = true
	}
	return errnoOf(err)
}

// Recv reads into iov. flags: MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC, MSG_WAITALL (looped in C).
// name/nameLen receive a datagram's source (TCP reports none); msgFlags gets MSG_TRUNC.
func (e *Engine) Recv(fd int, iov []unix.Iovec, flags int, name []byte, nameLen *uint32, msgFlags *int32) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	if s.dgram {
		return e.udpRecv(s, iov, flags, name, nameLen, msgFlags)
	}
	if nameLen != nil {
		*nameLen = 0
	}
	peek := flags&unix.MSG_PEEK != 0
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	c := s.conn
	if c == nil {
		return neg(unix.ENOTCONN)
	}
	if s.shutRd && c.InQueue() == 0 {
		return 0
	}
	st.rxLocked()
	// SO_RCVLOWAT: wait for min(low-water mark, buffer) bytes unless the stream has ended
	if lowat := s.opts.rcvLowat; lowat > 1 && c.InQueue() < min(lowat, iovLen(iov)) && !c.PeerClosed() && c.State() != stackcore.StateClosed {
		return s.wouldBlockRecv(flags)
	}
	total := 0
	var err error
	for i := range iov {
		if iov[i].Len == 0 {
			continue
		}
		var n int
		if peek {
			n, err = c.Peek(total, unsafe.Slice(iov[i].Base, iov[i].Len))
		} else {
			n, err = c.Read(unsafe.Slice(iov[i].Base, iov[i].Len))
		}
		total += n
		if err != nil || uint64(n) < iov[i].Len {
			break
		}
	}
	if total > 0 {
		if !peek {
			st.txLocked() // a window update may be due
			if !s.readableLocked() {
				s.unsignal(&s.rxSignalled, s.rxEfd)
			}
		}
		return total
	}
	switch {
	case err == io.EOF:
		return 0
	case errors.Is(err, stackcore.ErrWouldBlock):
		return s.wouldBlockRecv(flags)
	case isHardErr(err):
		// a reset is reported once, by whichever call sees it first; the stream then reads EOF
		if s.errReported {
			return 0
		}
		s.errReported = true
		c.TakeErr()
	}
	return errnoOf(err)
}

func (s *socket) wouldBlockRecv(flags int) int {
	s.unsignal(&s.rxSignalled, s.rxEfd)
	if s.nonblock || flags&unix.MSG_DONTWAIT != 0 {
		return neg(unix.EAGAIN)
	}
	return Wait
}

func iovLen(iov []unix.Iovec) int {
	n := 0
	for i := range iov {
		n += int(iov[i].Len)
	}
	return n
}

// isHardErr tells the errors that end a connection (as opposed to would-block or EOF).
func isHardErr(err error) bool {
	return errors.Is(err, stackcore.ErrReset) || errors.Is(err, stackcore.ErrTimedOut) || errors.Is(err, stackcore.ErrRefused)
}

// Send queues iov for sending; partial results are normal. MSG_MORE holds a partial segment
// back like TCP_CORK until a send without it.
func (e *Engine) Send(fd int, iov []unix.Iovec, flags int, name []byte) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	if s.dgram {
		return e.udpSend(s, iov, flags, name)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	c := s.conn
	if c == nil {
		return neg(unix.ENOTCONN)
	}
	if s.shutWr {
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
		n, err = c.Write(unsafe.Slice(iov[i].Base, iov[i].Len))
		total += n
		if err != nil || uint64(n) < iov[i].Len {
			break
		}
	}
	st.txLocked()
	if total > 0 {
		if !s.writableLocked() {
			s.unsignal(&s.txSignalled, s.txEfd)
		}
		return total
	}
	switch {
	case errors.Is(err, stackcore.ErrWouldBlock) || (err == nil && c.Connecting()):
		s.unsignal(&s.txSignalled, s.txEfd)
		if s.nonblock || flags&unix.MSG_DONTWAIT != 0 {
			return neg(unix.EAGAIN)
		}
		return Wait
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
}

// CloseFD lets go of fd, about to be closed; the socket goes when its last fd does.
func (e *Engine) CloseFD(fd int) {
	s := e.sock(fd)
	if s == nil {
		return
	}
	e.tab.Withdraw(fd)
	e.socks[fd].Store(nil)
	st := s.st
	st.mu.Lock()
	s.fds = removeInt(s.fds, fd)
	if len(s.fds) > 0 {
		// a dup lives on: so does the socket (and, as on Linux, its epoll registrations)
		if s.fd == fd {
			s.fd = s.fds[0]
		}
		st.mu.Unlock()
		return
	}
	delete(e.cookies, s.cookie)
	e.leaveEpollsLocked(s)
	if sh := s.lshare; sh != nil {
		sh.socks = removeSock(sh.socks, s)
		if len(sh.socks) == 0 {
			sh.l.Cookie = 0
			sh.l.Close() // the core releases the port once its connections are gone too
			delete(st.listeners, sh.port)
		} else if sh.l.Cookie == s.cookie {
			sh.l.Cookie = sh.socks[0].cookie
		}
	}
	if s.udp != nil {
		s.udp.Cookie = 0
		s.udp.Close() // the port is unsteered once the core reports it released
	}
	if s.conn != nil {
		s.conn.Cookie = 0
		if s.lingerRST {
			s.conn.Abort()
		} else {
			s.conn.Close()
			st.orphanLocked(s.conn)
		}
	}
	st.txLocked()
	st.mu.Unlock()
	unix.Close(s.rxEfd)
	unix.Close(s.txEfd)
}

// Dup makes newfd, a kernel duplicate of oldfd's shadow, another fd of the same socket (or of
// the same epoll set).
func (e *Engine) Dup(oldfd, newfd int) {
	if newfd < 0 || newfd >= FDMax {
		return
	}
	if s := e.sock(oldfd); s != nil {
		s.st.mu.Lock()
		s.fds = append(s.fds, newfd)
		s.st.mu.Unlock()
		e.register(s, newfd)
		return
	}
	if st := e.st; st != nil {
		st.mu.Lock()
		defer st.mu.Unlock()
		if set := e.epolls[oldfd]; set != nil {
			set.epfds = append(set.epfds, newfd)
			e.epolls[newfd] = set
			e.tab.Publish(newfd, FDEntry{Kind: KindEpoll, RxEfd: -1, TxEfd: -1, ExtraFd: int32(set.wakeEp)})
		}
	}
}

func (e *Engine) Shutdown(fd, how int) int {
	s := e.sock(fd)
	if s == nil || s.dgram {
		return Pass
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if s.conn == nil {
		if s.listener != nil {
			return Pass
		}
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
	e.wake(s.cookie)
	return 0
}

func (e *Engine) Getsockname(fd int, out []byte, outLen *uint32) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case s.dgram && s.udp != nil && (s.connected || !s.boundAny):
		putInet4(out, outLen, st.ifc.addr, s.boundPort)
	case s.dgram:
		return Pass // the shadow is bound to 0.0.0.0 and the same port
	case s.conn != nil:
		putInet4(out, outLen, st.ifc.addr, s.conn.LocalPort())
	case s.listener != nil && s.boundAny:
		putInet4(out, outLen, [4]byte{}, s.boundPort)
	case s.listener != nil:
		putInet4(out, outLen, st.ifc.addr, s.boundPort)
	default:
		return Pass
	}
	return 0
}

func (e *Engine) Getpeername(fd int, out []byte, outLen *uint32) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if s.dgram {
		if !s.connected {
			return neg(unix.ENOTCONN)
		}
		putInet4(out, outLen, s.peerIP, s.peerPort)
		return 0
	}
	if s.conn == nil || s.conn.Connecting() {
		return neg(unix.ENOTCONN)
	}
	ip, port := s.conn.Remote()
	putInet4(out, outLen, ip, port)
	return 0
}

func (e *Engine) Fcntl(fd, cmd int, arg uintptr) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	switch cmd {
	case unix.F_GETFL:
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			return errnoOf(err)
		}
		fl &^= unix.O_NONBLOCK
		if s.nonblock {
			fl |= unix.O_NONBLOCK
		}
		return fl
	case unix.F_SETFL:
		fl := int(arg)
		s.st.mu.Lock()
		s.nonblock = fl&unix.O_NONBLOCK != 0
		if s.listener != nil {
			fl |= unix.O_NONBLOCK
		}
		s.st.mu.Unlock()
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl); err != nil {
			return errnoOf(err)
		}
		return 0
	}
	return Pass
}

// IoctlSelfTestPanic makes the call panic inside Go on purpose (a nil dereference, so the fault
// takes the SIGSEGV path): tests use it to prove a panic fails the call with EIO and leaves the
// program running, even when the program installed its own SIGSEGV handler.
const IoctlSelfTestPanic = 0x7573ffff

func (e *Engine) Ioctl(fd int, req uint, arg unsafe.Pointer) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	switch req {
	case IoctlSelfTestPanic:
		var nilSock *socket
		return nilSock.fd
	case ioctlFIONBIO:
		if arg == nil {
			return neg(unix.EFAULT)
		}
		on := *(*int32)(arg) != 0
		s.st.mu.Lock()
		s.nonblock = on
		listener := s.listener != nil
		s.st.mu.Unlock()
		if !listener {
			_ = unix.SetNonblock(fd, on)
		}
		return 0
	case ioctlFIONREAD, ioctlSIOCOUTQ:
		if arg == nil {
			return neg(unix.EFAULT)
		}
		s.st.mu.Lock()
		defer s.st.mu.Unlock()
		var n int
		switch {
		case s.dgram && s.udp == nil:
			return Pass
		case s.dgram && req == ioctlSIOCOUTQ:
			n = s.udp.OutQueue()
		case s.dgram:
			if n = s.udp.NextLen(); n == 0 {
				return Pass // maybe the shadow has one
			}
		case s.conn == nil:
			return neg(unix.EINVAL)
		case req == ioctlSIOCOUTQ:
			n = s.conn.OutQueue()
		default:
			n = s.conn.InQueue()
		}
		*(*int32)(arg) = int32(n)
		return 0
	}
	return Pass
}
