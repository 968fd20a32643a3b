package shim

import (
	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// pollEvents computes the poll(2) mask of an accelerated socket, the way Linux's tcp_poll does.
// Caller holds st.mu.
func (s *socket) pollEvents() int16 {
	var ev int16
	switch {
	case s.listener != nil:
		if s.listener.Readable() || shadowPending(s.fd) {
			ev |= unix.POLLIN | pollRdNorm
		}
	case s.conn != nil:
		c := s.conn
		if c.Connecting() {
			break
		}
		if c.Err() != nil {
			ev |= unix.POLLERR
		}
		if c.Readable() || s.shutRd {
			ev |= unix.POLLIN | pollRdNorm
		}
		if c.Writable() {
			ev |= unix.POLLOUT | pollWrNorm
		}
		switch c.State() {
		case stackcore.StateClosed, stackcore.StateTimeWait:
			// both directions are done (or the connection was reset)
			ev |= unix.POLLHUP
		}
		if c.PeerClosed() {
			ev |= unix.POLLRDHUP
		}
	default:
		// a socket that is neither listening nor connected: Linux reports POLLOUT|POLLHUP
		ev |= unix.POLLOUT | unix.POLLHUP
	}
	return ev
}

// shadowPending reports whether a listener's kernel shadow has a connection to accept.
func shadowPending(fd int) bool {
	p := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(p[:], 0)
	return n > 0
}

// settle empties the eventfds of directions that are not ready, so a later sleep on them only
// ends when the stack signals a change. Caller holds st.mu.
func (s *socket) settle(ev int16) {
	if ev&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) == 0 {
		s.unsignal(&s.rxSignalled, s.rxEfd)
	}
	if ev&(unix.POLLOUT|unix.POLLHUP|unix.POLLERR) == 0 {
		s.unsignal(&s.txSignalled, s.txEfd)
	}
}

// PollCheck fills revents of the accelerated entries of fds after driving the stack once, and
// returns how many of them are ready. Kernel entries are left alone.
func (e *Engine) PollCheck(fds []unix.PollFd) int {
	st := e.st
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.serviceLocked()
	ready := 0
	for i := range fds {
		s := e.sock(int(fds[i].Fd))
		if s == nil {
			continue
		}
		ev := s.pollEvents()
		s.settle(ev)
		want := fds[i].Events | unix.POLLERR | unix.POLLHUP | unix.POLLNVAL
		fds[i].Revents = ev & want
		if fds[i].Revents != 0 {
			ready++
		}
	}
	return ready
}
