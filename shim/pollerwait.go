package shim

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollerWait is where the poller sleeps: an epoll set of the kick eventfd, the fork children's
// socket and, while no application thread sleeps on it, the AF_XDP fd; the set itself waits in
// the Go runtime's netpoller. A goroutine parked there holds no thread and no P. A poller asleep
// in poll(2) kept a P in a system call: with the application's thread holding the other P
// between its calls, the runtime's monitor then woke every 20 µs to take the Ps back and handed
// them to freshly woken threads (futex wake-ups and context switches on the application's CPU).
type pollerWait struct {
	epfd   int
	file   *os.File
	rc     syscall.RawConn
	linkFd int
	linkOn bool
	kickFd int
	moveFd int
	// the multicast relay socket and its connections (relay.go), edge-triggered; relay: one had news
	relay bool

	events    [5]unix.EpollEvent
	n         int
	readyFunc func(uintptr) bool // w.ready, bound once: RawConn.Read would allocate a closure per wait
}

func newPollerWait(kickFd, moveFd, linkFd int) (*pollerWait, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating the poller's epoll set: %w", err)
	}
	w := &pollerWait{epfd: epfd, linkFd: linkFd, kickFd: kickFd, moveFd: moveFd}
	for _, fd := range []int{kickFd, moveFd} {
		if fd < 0 {
			continue
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			unix.Close(epfd)
			return nil, fmt.Errorf("adding fd %d to the poller's epoll set: %w", fd, err)
		}
	}
	// the netpoller takes only non-blocking fds
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("poller epoll set: %w", err)
	}
	w.file = os.NewFile(uintptr(epfd), "ustack-poller")
	if w.rc, err = w.file.SyscallConn(); err != nil {
		w.file.Close()
		return nil, fmt.Errorf("poller epoll set: %w", err)
	}
	w.readyFunc = w.ready
	return w, nil
}

// watchLink puts the AF_XDP fd in the set or takes it out.
func (w *pollerWait) watchLink(on bool) {
	if on == w.linkOn || w.linkFd < 0 {
		return
	}
	op := unix.EPOLL_CTL_DEL
	if on {
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(w.linkFd)}
	if err := unix.EpollCtl(w.epfd, op, w.linkFd, &ev); err == nil || on && errors.Is(err, unix.EEXIST) {
		w.linkOn = on
	}
}

func (w *pollerWait) ready(uintptr) bool {
	n, err := unix.EpollWait(w.epfd, w.events[:], 0)
	if err != nil {
		n = 0
	}
	w.n = n
	return n > 0
}

// wait sleeps until a member is ready or d has passed (d < 0: no limit). It reports whether the
// poller was kicked, whether a fork child asked for a move, and whether the wait timed out.
func (w *pollerWait) wait(d time.Duration) (kicked, move, timedOut bool) {
	w.n = 0
	if d == 0 {
		// due now: look without waiting (a deadline in the past fails the read before it
		// looks, and a fork child's request would wait for a round that sleeps)
		timedOut = !w.ready(0)
	} else {
		if d > 0 {
			_ = w.file.SetReadDeadline(time.Now().Add(d))
		} else {
			_ = w.file.SetReadDeadline(time.Time{})
		}
		err := w.rc.Read(w.readyFunc)
		timedOut = err != nil && w.n == 0
	}
	for _, ev := range w.events[:w.n] {
		switch int(ev.Fd) {
		case w.kickFd:
			kicked = true
		case w.moveFd:
			move = true
		case w.linkFd:
		default:
			w.relay = true // the relay socket or one of its connections
		}
	}
	return kicked, move, timedOut
}

// watchRelay adds the multicast relay socket or one of its connections to the set,
// edge-triggered: the stack takes what waits there whenever it next runs. A connection leaves
// the set when it is closed.
func (w *pollerWait) watchRelay(fd int) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(fd)}
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// takeRelay reports, and forgets, whether the relay socket had news in the last wait.
func (w *pollerWait) takeRelay() bool {
	r := w.relay
	w.relay = false
	return r
}

func (w *pollerWait) close() { w.file.Close() }
