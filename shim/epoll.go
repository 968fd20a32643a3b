package shim

import (
	"golang.org/x/sys/unix"
)

// epollMagic tags the wake epoll fd inside the application's epoll set. Keep in step with
// USTACK_EPOLL_MAGIC in preload/ustack.h.
const epollMagic = 0x75737461636b7721

// epollSet is the accelerated part of one application epoll fd: its members, and a wake epoll
// fd that the application's set contains on their behalf. The wake epoll holds one eventfd for
// the whole set, signalled while a member may be ready; the shadows of listening and UDP members,
// which the kernel makes readable; and, while a thread sleeps in the set, the AF_XDP fd
// (preload/epoll.c). Two kernel fds per set, none per member. Guarded by st.mu.
type epollSet struct {
	epfds     []int // the application's fds of this epoll instance (dups included)
	wakeEp    int
	efd       int
	signalled bool
	members   map[int]*epollMember // by fd
}

type epollMember struct {
	set     *epollSet
	b       *sockBase
	fd      int
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

// readyMask is what of ev a member reports.
func (m *epollMember) readyMask(ev int16) uint32 {
	return uint32(uint16(ev)) & (m.events | unix.EPOLLERR | unix.EPOLLHUP)
}

// changedLocked is the member's socket telling it its readiness may have changed: the set's
// sleepers must look again if the member is ready for what it waits for.
func (m *epollMember) changedLocked(ev int16) {
	if m.armed && m.readyMask(ev) != 0 {
		m.set.signalLocked()
	}
}

func (set *epollSet) signalLocked() {
	if set.signalled {
		return
	}
	set.signalled = true
	var one = [8]byte{1}
	_, _ = unix.Write(set.efd, one[:])
}

func (set *epollSet) unsignalLocked() {
	if !set.signalled {
		return
	}
	set.signalled = false
	var buf [8]byte
	_, _ = unix.Read(set.efd, buf[:])
}

// shadowFd is the kernel fd the wake epoll watches for a member, or -1: a listener's shadow
// (kernel connections) or a UDP socket's (the kernel's datagrams), while it waits for input.
func (m *epollMember) shadowFd() int {
	if m.events&unix.EPOLLIN == 0 {
		return -1
	}
	switch m.b.self.(type) {
	case *tcpListener, *udpSock:
		return m.fd
	}
	return -1
}

func (m *epollMember) watch() {
	if fd := m.shadowFd(); fd >= 0 {
		ev := unix.EpollEvent{Events: unix.EPOLLIN}
		_ = unix.EpollCtl(m.set.wakeEp, unix.EPOLL_CTL_ADD, fd, &ev)
	}
}

func (m *epollMember) unwatch() {
	if fd := m.shadowFd(); fd >= 0 {
		_ = unix.EpollCtl(m.set.wakeEp, unix.EPOLL_CTL_DEL, fd, nil)
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
	b := s.base()
	return b.st.with(s, faultNone, func() int {
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
			m := &epollMember{set: set, b: b, fd: fd, events: ev.Events, data: epollData(ev), armed: true, seenGen: b.wakeGen - 1}
			set.members[fd] = m
			b.members = append(b.members, m)
			m.watch()
			m.changedLocked(s.pollEvents()) // already ready: a nested set must see it
		case unix.EPOLL_CTL_MOD:
			if ev == nil {
				return neg(unix.EFAULT)
			}
			if set == nil || set.members[fd] == nil {
				return neg(unix.ENOENT)
			}
			m := set.members[fd]
			if m.armed {
				m.unwatch()
			}
			m.events, m.data, m.armed, m.seenGen = ev.Events, epollData(ev), true, b.wakeGen-1
			m.watch()
			m.changedLocked(s.pollEvents())
		case unix.EPOLL_CTL_DEL:
			if set == nil || set.members[fd] == nil {
				return neg(unix.ENOENT)
			}
			set.removeLocked(set.members[fd])
		default:
			return neg(unix.EINVAL)
		}
		return 0
	})
}

// removeLocked takes a member out of its set.
func (set *epollSet) removeLocked(m *epollMember) {
	if m.armed {
		m.unwatch()
	}
	delete(set.members, m.fd)
	m.b.members = removeMember(m.b.members, m)
}

func (e *Engine) newEpollSetLocked(epfd int) (*epollSet, int) {
	if epfd < 0 || epfd >= FDMax {
		return nil, neg(unix.EBADF)
	}
	wake, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, errnoOf(err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(wake)
		return nil, errnoOf(err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(wake, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(wake)
		unix.Close(efd)
		return nil, errnoOf(err)
	}
	// the AF_XDP fd joins the wake epoll only while a thread sleeps in the set (preload/epoll.c)
	setEpollData(&ev, epollMagic)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		unix.Close(efd)
		return nil, errnoOf(err) // EBADF, EINVAL: epfd is no epoll fd
	}
	set := &epollSet{epfds: []int{epfd}, wakeEp: wake, efd: efd, members: map[int]*epollMember{}}
	e.epolls[epfd] = set
	e.tab.Publish(epfd, FDEntry{Kind: KindEpoll, ExtraFd: int32(wake)})
	return set, 0
}

// EpollCheck writes the ready accelerated members of epfd into out after driving the stack once.
func (e *Engine) EpollCheck(epfd int, out []unix.EpollEvent) int {
	st := e.st
	if st == nil {
		return 0
	}
	return st.with(nil, faultNone, func() int {
		set := e.epolls[epfd]
		if set == nil {
			return 0
		}
		st.serviceLocked()
		// From here each change signals the set again; what is still ready after this look
		// keeps it signalled (level-triggered members, and what did not fit in out).
		set.unsignalLocked()
		n, more := 0, false
		for _, m := range set.members {
			if !m.armed {
				continue
			}
			ready := m.readyMask(m.b.self.pollEvents())
			if ready == 0 {
				continue
			}
			et := m.events&unix.EPOLLET != 0
			if et && m.seenGen == m.b.wakeGen {
				continue // nothing new until the stack reports a change
			}
			if n == len(out) {
				more = true
				break
			}
			if et {
				m.seenGen = m.b.wakeGen
			} else if m.events&unix.EPOLLONESHOT == 0 {
				more = true // level-triggered: still ready at the next look
			}
			if m.events&unix.EPOLLONESHOT != 0 {
				m.armed = false // until EPOLL_CTL_MOD
				m.unwatch()
			}
			out[n].Events = ready
			setEpollData(&out[n], m.data)
			n++
		}
		if more {
			set.signalLocked()
		}
		return n
	})
}

// leaveEpollsLocked removes a socket that is going away from every epoll set it is in.
func (e *Engine) leaveEpollsLocked(b *sockBase) {
	for len(b.members) > 0 {
		m := b.members[0]
		m.set.removeLocked(m)
	}
}

func removeMember(ms []*epollMember, m *epollMember) []*epollMember {
	for i, x := range ms {
		if x == m {
			return append(ms[:i], ms[i+1:]...)
		}
	}
	return ms
}

// EpollClose forgets an application epoll fd that is being closed; the set goes with its last fd.
func (e *Engine) EpollClose(epfd int) {
	st := e.st
	if st == nil {
		return
	}
	e.tab.Withdraw(epfd)
	var wake, efd int = -1, -1
	st.with(nil, faultNone, func() int {
		set := e.epolls[epfd]
		delete(e.epolls, epfd)
		if set == nil {
			return 0
		}
		set.epfds = removeInt(set.epfds, epfd)
		if len(set.epfds) > 0 {
			return 0
		}
		for _, m := range set.members {
			set.removeLocked(m)
		}
		wake, efd = set.wakeEp, set.efd
		return 0
	})
	if wake >= 0 {
		unix.Close(wake)
		unix.Close(efd)
	}
}
