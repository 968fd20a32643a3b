package shim

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
	e.leaveEpollsLocked(b)
	s.releaseLocked()
}

// handOver gives the socket to the kernel for good: its shadow becomes the socket.
func (e *Engine) handOver(s sock) {
	b := s.base()
	var fds []int
	b.st.with(nil, faultNone, func() int {
		fds, b.fds = b.fds, nil
		e.forgetLocked(s)
		for _, fd := range fds {
			e.tab.Withdraw(fd)
			e.socks[fd].Store(nil)
		}
		return 0
	})
	count(&b.st.stats.PassedToKernel)
}
