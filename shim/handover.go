package shim

import (
	"sync/atomic"

	"golang.org/x/sys/unix"

	"ustack/shm"
	"ustack/stackcore"
)

// A socket changes hands in two ways: it changes kind (a TCP socket that listens becomes a
// listener, under the same fds), or it leaves the stack for good and its shadow becomes a plain
// kernel socket (a connect to a destination the interface does not reach, a bind to another
// address, a multicast group): the hand-over. The program keeps its fd either way.

// becomeLocked makes the socket s.base() of kind s from now on (a TCP socket that listens).
// Caller holds st.mu.
func (e *Engine) becomeLocked(s sock) {
	b := s.base()
	b.self = s
	for _, fd := range b.fds {
		e.publishLocked(b, fd)
	}
	b.kindChangedLocked()
}

// forgetLocked takes the socket out of the engine: its cookie, its epoll sets, its stack
// state. Caller holds st.mu.
func (e *Engine) forgetLocked(s sock) {
	b := s.base()
	delete(e.cookies, b.cookie)
	b.st.socksChanged()
	e.leaveEpollsLocked(b)
	s.releaseLocked()
}

// handOver gives the socket to the kernel for good: its shadow becomes the socket. reason and
// why say what made it the kernel's (onloadctl sockets, USTACK_LOG=debug).
func (e *Engine) handOver(s sock, reason uint8, why string) {
	b := s.base()
	var fds []int
	b.st.with(nil, faultNone, func() int {
		fds, b.fds = b.fds, nil
		e.forgetLocked(s)
		for _, fd := range fds {
			e.tab.Withdraw(fd)
			e.socks[fd].Store(nil)
		}
		b.st.noteKernelLocked(fds, s, reason)
		return 0
	})
	e.Log.Debug().Ints("fds", fds).Str("reason", shm.SockReasonName(reason)).Str("why", why).
		Msg("socket handed to the kernel")
	count(&b.st.stats.PassedToKernel)
}

// noteKernelLocked lists the fds of s, now kernel sockets, in the socket table. Caller holds
// st.mu.
func (st *stack) noteKernelLocked(fds []int, s sock, reason uint8) {
	if st.pub == nil || len(fds) == 0 {
		return
	}
	proto := uint8(unix.IPPROTO_TCP)
	if _, udp := s.(*udpSock); udp {
		proto = unix.IPPROTO_UDP
	}
	st.pub.noteKernelLocked(fds[0], proto, reason, st.now())
	st.socksChanged()
}

// errNotYet is what moveLocked answers for a socket that cannot move in its present state (a
// connection still in its handshake): ask again later.
const errNotYet = Wait

// errKeep is what moveLocked answers for a socket whose state moved but that stays here a while
// longer (a listener with moved connections to hand out).
const errKeep = 1

// moveToKernel gives the socket to the kernel for good together with its state, so that a
// process that cannot drive the stack (a fork child, an exiting process) can carry it on: a
// connection with its sequence numbers, windows and data (TCP_REPAIR), a listener with its
// queued connections, a UDP socket with its queued datagrams. Its fds become plain kernel
// sockets in this process too. It answers 0, errNotYet, or -errno (the socket stays here).
// reason says why it moves (shm.SockReasonFork, Exec, Exit).
func (e *Engine) moveToKernel(s sock, reason uint8) int {
	b := s.base()
	st := b.st
	var fds []int
	r := st.with(nil, faultNone, func() int {
		if e.sock(b.fd()) != s && len(b.fds) > 0 {
			return 0 // moved already
		}
		r := s.moveLocked()
		if r == errKeep {
			count(&st.stats.MovedToKernel)
			return 0
		}
		if r != 0 {
			if r != errNotYet {
				count(&st.stats.MoveFailed)
			}
			return r
		}
		fds = append(fds, b.fds...)
		e.dropLocked(s)
		st.noteKernelLocked(fds, s, reason)
		count(&st.stats.MovedToKernel)
		return 0
	})
	if r != 0 && r != errNotYet {
		e.Log.Debug().Int("fd", b.fd()).Str("reason", shm.SockReasonName(reason)).Int("errno", -r).
			Msg("moving a socket to the kernel failed: it stays with the stack")
	} else if fds != nil {
		e.Log.Debug().Ints("fds", fds).Str("reason", shm.SockReasonName(reason)).
			Msg("socket moved to the kernel with its state")
	}
	return r
}

// dropLocked takes the socket out of the engine and withdraws its fds: from now on they are
// kernel sockets. The application's epoll sets keep watching them, now in the kernel. Caller
// holds st.mu.
func (e *Engine) dropLocked(s sock) {
	b := s.base()
	fds := b.fds
	b.fds = nil
	for len(b.members) > 0 {
		m := b.members[0]
		set, events, data, armed := m.set, m.events, m.data, m.armed
		set.removeLocked(m)
		if armed && len(set.epfds) > 0 {
			ev := unix.EpollEvent{Events: events}
			setEpollData(&ev, data)
			_ = unix.EpollCtl(set.epfds[0], unix.EPOLL_CTL_ADD, m.fd, &ev)
		}
	}
	e.forgetLocked(s)
	for _, fd := range fds {
		e.tab.Withdraw(fd)
		e.socks[fd].Store(nil)
		e.tab.Wake(fd, true, true) // a thread asleep on it looks again, in the kernel
	}
}

// MoveFd gives the socket behind fd to the kernel with its state (see moveToKernel). A fork
// child asks for it through the parent that owns the stack (forkserve.go).
func (e *Engine) MoveFd(fd int) int {
	s := e.sock(fd)
	if s == nil {
		return 0
	}
	return e.moveToKernel(s, shm.SockReasonFork)
}

// moveLocked of a TCP socket: a connection moves into the shadow with its state; a socket
// without one has nothing to move (its shadow holds its bind). Caller holds st.mu.
func (s *tcpSock) moveLocked() int {
	st := s.st
	if s.resolving != nil {
		return errNotYet
	}
	c := s.conn
	if c == nil || c.State() == stackcore.StateClosed || c.State() == stackcore.StateTimeWait {
		return 0 // the kernel answers as for a closed socket
	}
	if !c.Repairable() {
		return errNotYet // in its handshake
	}
	if r := st.moveConnLocked(c, s.fd(), &s.opts); r != 0 {
		return r
	}
	s.conn = nil
	return 0
}

// moveConnLocked moves connection c into the kernel TCP socket fd. Its frames are dropped while
// it moves (the peer retransmits what is lost), those already queued here are taken in first,
// and the kernel gets them from then on. On failure c stays here, untouched. Caller holds st.mu.
func (st *stack) moveConnLocked(c *stackcore.TCPConn, fd int, o *sockOpts) int {
	ip, rport := c.Remote()
	lport := c.LocalPort()
	key := flowKey{lport: lport, laddr: c.Local(), raddr: ip, rport: rport}
	if err := st.steerFlowLocked(key, flowDrop); err != nil {
		st.eng.Log.Warn().Err(err).Msg("moving a connection to the kernel")
		return neg(unix.ENOBUFS)
	}
	st.rxLocked()
	if !c.Repairable() {
		st.unsteerFlowLocked(key)
		return errNotYet // the frames just taken in closed it
	}
	r := c.Repair(st.now())
	if err := repairInto(fd, st.ifc.index, &r); err != nil {
		st.unsteerFlowLocked(key)
		st.eng.Log.Warn().Err(err).Uint16("port", lport).Msg("moving a connection to the kernel")
		return errnoOf(err)
	}
	o.applyKernel(fd)
	c.Detach()
	if err := st.steerFlowLocked(key, flowKernel); err != nil {
		st.eng.Log.Warn().Err(err).Msg("moving a connection to the kernel")
	}
	count(&st.stats.ConnsRepaired)
	atomic.AddUint64(&st.stats.BytesMoved, uint64(len(r.Sent)+len(r.Unsent)+len(r.Unread)))
	return 0
}
