package shim

import (
	"golang.org/x/sys/unix"
)

// epollMagic tags the wake epoll fd inside the application's epoll set. Keep in step with
// USTACK_EPOLL_MAGIC in preload/ustack.h.
const epollMagic = 0x75737461636b7721

// epollSet is the accelerated part of one application epoll fd: its members and the wake epoll
// fd that the application's set contains on their behalf.
type epollSet struct {
	epfds   []int // the application's fds of this epoll instance (dups included)
	wakeEp  int   // readable when a member's eventfd is signalled or frames wait on the link
	members map[int]*epollMember
}

type epollMember struct {
	s       *socket
	events  uint32 // EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET|EPOLLONESHOT…
	data    uint64
	seenGen uint64 // wakeGen of the socket when last reported (edge-triggered)
	armed   bool   // EPOLLONESHOT: false after one report, until EPOLL_CTL_MOD
}

func epollData(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

func setEpollData(ev *unix.EpollEvent, d uint64) {
	ev.Fd, ev.Pad = int32(uint32(d)), int32(uint32(d>>32))
}

// wakeFds lists what the wake epoll watches for a member with the given interest.
func (m *epollMember) wakeFds() (fds [3]int, n int) {
	if m.events&unix.EPOLLIN != 0 {
		fds[n] = m.s.rxEfd
		n++
		if m.s.listener != nil || m.s.dgram {
			fds[n] = m.s.fd // the shadow: kernel connections or datagrams
			n++
		}
	}
	if m.events&unix.EPOLLOUT != 0 {
		fds[n] = m.s.txEfd
		n++
	}
	return fds, n
}

func (set *epollSet) watch(m *epollMember) {
	fds, n := m.wakeFds()
	for _, fd := range fds[:n] {
		ev := unix.EpollEvent{Events: unix.EPOLLIN}
		_ = unix.EpollCtl(set.wakeEp, unix.EPOLL_CTL_ADD, fd, &ev)
	}
}

func (set *epollSet) unwatch(m *epollMember) {
	fds, n := m.wakeFds()
	for _, fd := range fds[:n] {
		_ = unix.EpollCtl(set.wakeEp, unix.EPOLL_CTL_DEL, fd, nil)
	}
}

// EpollCtl adds, changes or removes an accelerated socket in the application's epoll set epfd.
func (e *Engine) EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	if epfd == fd {
		return neg(unix.EINVAL)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	set := e.epolls[epfd]
	switch op {
	case unix.EPOLL_CTL_ADD:
		if ev == nil {
			return neg(unix.EFAULT)
		}
		if set == nil {
			var errno int
			if set, errno = e.newEpollSetLocked(epfd); errno != 0 {
				return errno
			}
		}
		if set.members[fd] != nil {
			return neg(unix.EEXIST)
		}
		m := &epollMember{s: s, events: ev.Events, data: epollData(ev), armed: true, seenGen: s.wakeGen - 1}
		set.members[fd] = m
		s.epolls = append(s.epolls, set)
		set.watch(m)
	case unix.EPOLL_CTL_MOD:
		if ev == nil {
			return neg(unix.EFAULT)
		}
		if set == nil || set.members[fd] == nil {
			return neg(unix.ENOENT)
		}
		m := set.members[fd]
		if m.armed {
			set.unwatch(m)
		}
		m.events, m.data, m.armed, m.seenGen = ev.Events, epollData(ev), true, s.wakeGen-1
		set.watch(m)
	case unix.EPOLL_CTL_DEL:
		if set == nil || set.members[fd] == nil {
			return neg(unix.ENOENT)
		}
		if m := set.members[fd]; m.armed {
			set.unwatch(m)
		}
		delete(set.members, fd)
		s.epolls = removeSet(s.epolls, set)
	default:
		return neg(unix.EINVAL)
	}
	return 0
}

func (e *Engine) newEpollSetLocked(epfd int) (*epollSet, int) {
	if epfd < 0 || epfd >= FDMax {
		return nil, neg(unix.EBADF)
	}
	wake, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, errnoOf(err)
	}
	// the AF_XDP fd joins the wake epoll only while a thread sleeps in the set (preload/epoll.c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEpollData(&ev, epollMagic)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		return nil, errnoOf(err) // EBADF, EINVAL: epfd is no epoll fd
	}
	set := &epollSet{epfds: []int{epfd}, wakeEp: wake, members: map[int]*epollMember{}}
	e.epolls[epfd] = set
	e.tab.Publish(epfd, FDEntry{Kind: KindEpoll, RxEfd: -1, TxEfd: -1, ExtraFd: int32(wake)})
	return set, 0
}

// EpollCheck writes the ready accelerated members of epfd into out after driving the stack once.
func (e *Engine) EpollCheck(epfd int, out []unix.EpollEvent) int {
	st := e.st
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	set := e.epolls[epfd]
	if set == nil {
		return 0
	}
	st.serviceLocked()
	n := 0
	for _, m := range set.members {
		if n == len(out) {
			break
		}
		if !m.armed {
			continue
		}
		pev := m.s.pollEvents()
		m.s.settle(pev)
		ready := uint32(uint16(pev)) & (m.events | unix.EPOLLERR | unix.EPOLLHUP)
		if ready == 0 {
			continue
		}
		if m.events&unix.EPOLLET != 0 {
			if m.seenGen == m.s.wakeGen {
				continue
			}
			m.seenGen = m.s.wakeGen
			// nothing new until the stack reports a change: let the wake epoll sleep
			m.s.unsignal(&m.s.rxSignalled, m.s.rxEfd)
			m.s.unsignal(&m.s.txSignalled, m.s.txEfd)
		}
		if m.events&unix.EPOLLONESHOT != 0 {
			// disarmed until EPOLL_CTL_MOD: its eventfds must not wake the set meanwhile
			m.armed = false
			set.unwatch(m)
		}
		out[n].Events = ready
		setEpollData(&out[n], m.data)
		n++
	}
	return n
}

// leaveEpollsLocked removes a socket that is going away from every epoll set it is in.
func (e *Engine) leaveEpollsLocked(s *socket) {
	for _, set := range s.epolls {
		for fd, m := range set.members {
			if m.s == s {
				if m.armed {
					set.unwatch(m)
				}
				delete(set.members, fd)
			}
		}
	}
	s.epolls = nil
}

func removeSet(sets []*epollSet, set *epollSet) []*epollSet {
	for i, x := range sets {
		if x == set {
			return append(sets[:i], sets[i+1:]...)
		}
	}
	return sets
}

// EpollClose forgets an application epoll fd that is being closed; the set goes with its last fd.
func (e *Engine) EpollClose(epfd int) {
	st := e.st
	if st == nil {
		return
	}
	e.tab.Withdraw(epfd)
	st.mu.Lock()
	set := e.epolls[epfd]
	delete(e.epolls, epfd)
	if set == nil {
		st.mu.Unlock()
		return
	}
	set.epfds = removeInt(set.epfds, epfd)
	if len(set.epfds) > 0 {
		st.mu.Unlock()
		return
	}
	for fd, m := range set.members {
		m.s.epolls = removeSet(m.s.epolls, set)
		delete(set.members, fd)
	}
	st.mu.Unlock()
	unix.Close(set.wakeEp)
}

func removeInt(xs []int, x int) []int {
	for i, v := range xs {
		if v == x {
			return append(xs[:i], xs[i+1:]...)
		}
	}
	return xs
}
