package shim

import (
	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// pollEvents computes the poll(2) mask of an accelerated socket the way Linux's tcp_poll does:
// HUP once both directions are shut (or the connection is gone), IN|RDHUP once the receive side
// is, OUT while the send side has room or is shut (a write would not block), ERR while an error
// is pending. Caller holds st.mu.
func (s *socket) pollEvents() int16 {
	switch {
	case s.dgram:
		return s.udpPollEvents()
	case s.listener != nil:
		if s.listener.Readable() || shadowPending(s.fd) {
			return unix.POLLIN | pollRdNorm
		}
		return 0
	case s.conn == nil:
		// neither listening nor connected: Linux reports POLLOUT|POLLHUP
		return unix.POLLOUT | unix.POLLHUP
	}
	c := s.conn
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
