package shim

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ustack/nic/xdp"
	"ustack/stackcore"
)

// tcpListener is a listening TCP socket. It listens in two places: in the stack for connections
// through the interface, and in its kernel shadow for the others (loopback, other interfaces);
// accept(2) returns whichever comes first. Fields are guarded by st.mu.
type tcpListener struct {
	*sockBase
	share *listenShare
	// connections that were waiting to be accepted when the listener moved to the kernel, each
	// in a kernel socket of its own: accept(2) gives them first (handover.go)
	moved []int
}

// errPortTaken is listenLocked's answer when another process of the interface's group steers
// the port: the socket is handed to the kernel (a value no errno or count takes).
const errPortTaken = -1 << 20

// listenShare is a listening port of the core and the sockets listening on it: one, or several
// with SO_REUSEPORT, which then take connections from the same accept queue.
type listenShare struct {
	l     *stackcore.Listener
	port  uint16
	socks []*tcpListener
}

// systemSomaxconn reads the network namespace's net.core.somaxconn, Linux's default (4096) if
// it cannot.
func systemSomaxconn() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return 4096
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 4096
	}
	return n
}

// clampBacklog is what Linux makes of listen(2)'s backlog (__sys_listen): one above somaxconn,
// or negative, is silently truncated to somaxconn. Programs pass INT_MAX (iperf3) or -1 for
// "as many as the system allows".
func clampBacklog(backlog, somaxconn int) int {
	if backlog < 0 || backlog > somaxconn {
		return somaxconn
	}
	return backlog
}

// listenMode says how listenLocked finds the socket's shadow and shares its port.
type listenMode int

const (
	listenNew     listenMode = iota // listen(2): the shadow listens after the port is steered
	listenAdopted                   // the shadow listens already (a candidate taken: adopt.go)
	listenShared                    // ... and other processes may hold it too (it crossed a fork)
)

// listenLocked turns the TCP socket s into a listener. The stack listens and the port is
// steered before the shadow listens: a SYN that came in between would otherwise make a kernel
// connection whose later segments we steer away. A shadow that listened already has such
// connections perhaps: they stay the kernel's, each steered there on its own
// (keepKernelConnsLocked). Caller holds st.mu.
func (e *Engine) listenLocked(s *tcpSock, backlog int, mode listenMode) int {
	st := s.st
	fd := s.fd()
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
	backlog = max(backlog, 1)
	ls := &tcpListener{sockBase: s.sockBase}
	sh := st.listeners[port]
	fresh := sh == nil
	if fresh {
		l, err := st.core.Listen(port, backlog)
		if err != nil {
			return errnoOf(err)
		}
		steer := st.steerLocked
		if s.opts.reusePort || mode == listenShared {
			// other processes may listen on the port too: each takes a share of its new
			// connections and keeps the ones born in it
			steer = st.steerSharedLocked
			l.SetPinned(true)
		}
		if mode != listenNew {
			st.keepKernelConnsLocked(port)
		}
		err = steer(port)
		if err == nil && mode != listenNew {
			st.keepKernelConnsLocked(port) // those that were born while it was steered
		}
		if err != nil {
			l.Close()
			if errors.Is(err, xdp.ErrPortTaken) {
				return errPortTaken
			}
			e.Log.Warn().Err(err).Uint16("port", port).Msg("steering listener")
			return neg(unix.ENOBUFS)
		}
		l.Cookie = s.cookie
		sh = &listenShare{l: l, port: port}
	}
	// SO_REUSEPORT (the kernel let both shadows bind): the sockets share one accept queue
	if mode == listenNew {
		if err := unix.Listen(fd, backlog); err != nil {
			if fresh {
				sh.l.Close() // the core releases the port; txLocked unsteers it
			}
			return errnoOf(err)
		}
	}
	if fresh {
		st.listeners[port] = sh
	}
	sh.socks = append(sh.socks, ls)
	ls.share = sh
	s.bound, s.boundPort = true, port
	// the shadow listens too (loopback and other interfaces); it is polled, never blocked on
	_ = unix.SetNonblock(fd, true)
	e.becomeLocked(ls)
	return 0
}

func (l *tcpListener) bind([4]byte, uint16) int { return neg(unix.EINVAL) }
func (l *tcpListener) connect([]byte) int       { return neg(unix.EISCONN) }
func (l *tcpListener) shutdown(int) int         { return Pass }

func (l *tcpListener) listen(backlog int) int {
	return l.st.with(l, faultNone, func() int {
		return errnoOf(unix.Listen(l.fd(), backlog)) // a new backlog
	})
}

func (l *tcpListener) accept(sa []byte, saLen *uint32, flags int) int {
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		return neg(unix.EINVAL)
	}
	st := l.st
	var shadow int
	var nonblock bool
	r := st.with(l, faultAccept, func() int {
		shadow, nonblock = l.fd(), l.nonblock
		if l.share == nil {
			return l.acceptMovedLocked(sa, saLen, flags)
		}
		st.rxLocked()
		core := l.share.l
		if !core.Readable() {
			st.txLocked()
			if !l.shadowWorthLookLocked() {
				return noShadow
			}
			return Pass // look in the shadow
		}
		nfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|(flags&(unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)), 0)
		if err != nil {
			return errnoOf(err)
		}
		if nfd >= FDMax {
			unix.Close(nfd)
			return neg(unix.EMFILE)
		}
		c := core.Accept()
		for _, sl := range l.share.socks {
			sl.refreshLocked() // they share the accept queue
		}
		ns := l.e.newTCPLocked(nfd, flags&unix.SOCK_NONBLOCK != 0)
		ns.opts = l.opts
		ns.bound, ns.boundPort = true, c.LocalPort()
		ns.conn = c
		ns.opts.apply(c)
		c.Cookie = ns.cookie
		l.e.publishLocked(ns.sockBase, nfd)
		count(&st.stats.SocketsAccelerated)
		ip, port := c.Remote()
		putInet4(sa, saLen, ip, port)
		return nfd
	})
	nfd, err := -1, error(unix.EAGAIN)
	var rsa unix.Sockaddr
	if r == Pass {
		// a connection that came through the kernel (loopback, another interface)
		nfd, rsa, err = unix.Accept4(shadow, flags)
		l.shadowFound(err != unix.EAGAIN)
	} else if r != noShadow {
		return r
	}
	if err == nil {
		count(&st.stats.KernelAccepts)
		putSockaddr(sa, saLen, rsa)
		return nfd
	}
	if err != unix.EAGAIN {
		return errnoOf(err)
	}
	if nonblock {
		return neg(unix.EAGAIN)
	}
	return Wait
}

func (l *tcpListener) sockname(out []byte, outLen *uint32) int {
	return l.st.with(l, faultNone, func() int {
		ip := l.st.ifc.addr
		if l.boundAny {
			ip = [4]byte{}
		}
		putInet4(out, outLen, ip, l.boundPort)
		return 0
	})
}

func (l *tcpListener) queuedLocked(bool) int { return neg(unix.EINVAL) }

func (l *tcpListener) events() int16 {
	if l.share == nil && len(l.moved) > 0 || l.share != nil && l.share.l.Readable() {
		return unix.POLLIN | pollRdNorm
	}
	return 0
}

func (l *tcpListener) pollEvents() int16 {
	if ev := l.events(); ev != 0 || !l.shadowWorthLookLocked() {
		return ev
	}
	pending := shadowPending(l.fd())
	l.shadowFound(pending)
	if !pending {
		return 0
	}
	return unix.POLLIN | pollRdNorm
}

func (l *tcpListener) releaseLocked() {
	for _, fd := range l.moved {
		unix.Close(fd) // the kernel closes them as it would its unaccepted connections
	}
	l.moved = nil
	l.releaseShareLocked()
}

// releaseShareLocked takes the listener off its listening port; the port closes in the stack
// with its last listener. Caller holds st.mu.
func (l *tcpListener) releaseShareLocked() {
	sh := l.share
	if sh == nil {
		return
	}
	l.share = nil
	sh.socks = removeListener(sh.socks, l)
	if len(sh.socks) == 0 {
		sh.l.Cookie = 0
		sh.l.Close() // the core releases the port once its connections are gone too
		delete(l.st.listeners, sh.port)
	} else if sh.l.Cookie == l.cookie {
		sh.l.Cookie = sh.socks[0].cookie
	}
}

// A listener a panic interrupted keeps listening: resetting it would take the program's server
// down, and the accept queue holds no state of the program's.
func (l *tcpListener) resetLocked() {}

// wakeLocked wakes every socket on the listening port: they share one accept queue.
func (sh *listenShare) wakeLocked() {
	for _, l := range sh.socks {
		l.sockBase.wakeLocked()
	}
}

func removeListener(xs []*tcpListener, x *tcpListener) []*tcpListener {
	for i, v := range xs {
		if v == x {
			return append(xs[:i], xs[i+1:]...)
		}
	}
	return xs
}

// moveLocked gives the listening port to the kernel's listener, the shadow, which every process
// holding the socket can accept from: new connections go there. Connections already accepted
// stay in the stack, each steered on its own; those still waiting to be accepted move into kernel
// sockets of their own, which accept(2) here gives first. Caller holds st.mu.
func (l *tcpListener) moveLocked() int {
	st, sh := l.st, l.share
	if sh == nil {
		if len(l.moved) > 0 {
			return errKeep // moved already, connections still to hand out
		}
		return 0
	}
	for _, c := range st.core.Conns(nil, sh.port) {
		ip, rport := c.Remote()
		if err := st.steerFlowLocked(flowKey{lport: sh.port, raddr: [4]byte(ip), rport: rport}, flowUs); err != nil {
			l.e.Log.Warn().Err(err).Msg("moving a listener to the kernel")
			return neg(unix.ENOBUFS)
		}
	}
	if err := st.link.SteerListed(unix.IPPROTO_TCP, xdp.Mapped4(st.ifc.addr), sh.port); err != nil {
		l.e.Log.Warn().Err(err).Msg("moving a listener to the kernel")
		return neg(unix.ENOBUFS)
	}
	for sh.l.Readable() {
		c := sh.l.Accept()
		nfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil && st.moveConnLocked(c, nfd, &l.opts) != 0 {
			unix.Close(nfd)
			err = unix.EIO
		}
		if err != nil {
			c.Abort()
			continue
		}
		l.moved = append(l.moved, nfd)
	}
	for _, o := range sh.socks {
		if o != l {
			o.share = nil // SO_REUSEPORT siblings: the kernel's group serves them all now
		}
	}
	sh.socks = []*tcpListener{l}
	l.releaseShareLocked()
	_ = unix.SetNonblock(l.fd(), l.nonblock) // the shadow was polled, never blocked on
	if len(l.moved) > 0 {
		return errKeep
	}
	return 0
}

// acceptMovedLocked gives a connection that moved to the kernel with its listener; the listener
// leaves the stack with the last. Caller holds st.mu.
func (l *tcpListener) acceptMovedLocked(sa []byte, saLen *uint32, flags int) int {
	if len(l.moved) == 0 {
		return Pass
	}
	fd := l.moved[0]
	l.moved = l.moved[1:]
	if flags&unix.SOCK_CLOEXEC == 0 {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
	}
	if flags&unix.SOCK_NONBLOCK != 0 {
		_ = unix.SetNonblock(fd, true)
	}
	if rsa, err := unix.Getpeername(fd); err == nil {
		putSockaddr(sa, saLen, rsa)
	}
	if len(l.moved) == 0 {
		l.e.dropLocked(l)
	} else {
		l.refreshLocked()
	}
	return fd
}
