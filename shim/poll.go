package shim

import (
	"golang.org/x/sys/unix"
)

// PollCheck fills revents of the accelerated entries of fds after driving the stack once, and
// returns how many of them are ready. Kernel entries are left alone.
func (e *Engine) PollCheck(fds []unix.PollFd) int {
	st := e.st
	if st == nil {
		return 0
	}
	return st.with(nil, faultNone, func() int {
		st.serviceLocked()
		ready := 0
		for i := range fds {
			s := e.sock(int(fds[i].Fd))
			if s == nil {
				continue
			}
			want := fds[i].Events | unix.POLLERR | unix.POLLHUP | unix.POLLNVAL
			fds[i].Revents = s.base().self.pollEvents() & want
			if fds[i].Revents != 0 {
				ready++
			}
		}
		return ready
	})
}
