package shim

import (
	"slices"

	"golang.org/x/sys/unix"
)

// epollMagic tags the wake epoll fd inside the application's epoll set. Keep in step with
// USTACK_EPOLL_MAGIC in preload/ustack.h.
const epollMagic = 0x75737461636b7721

// shadowTag | fd tags a shadow's entry in the application's epoll set (USTACK_SHADOW_TAG).
const shadowTag = 0x75736861646f0000

// epollSet is the accelerated part of one application epoll fd: its members, and a wake epoll
// fd that the application's set contains on their behalf. The wake epoll holds one eventfd for
// the whole set, signalled while a member may be ready; the shadows of listening and UDP members,
// which the kernel makes readable; and, while a thread sleeps in the set, the AF_XDP fd
// (preload/epoll.c). Two kernel fds per set, none per member. Guarded by st.mu.
type epollSet struct {
	epfds     []int // the application's fds of this epoll instance (dups included)
	wakeEp    int
	efd       int
	signalled bool           // efd is readable: len(ready) > 0
	ready     []*epollMember // members with something to report: what a look goes through
	shadows   []*epollMember // listener and UDP members, whose shadows the kernel makes readable unreported
	scratch   []*epollMember // the members of one look
	round     uint64         // counts looks
	ebuf      [8]byte        // the eventfd's counter, read or written (a local would escape)
	tab       FDTable
	members   map[memberKey]*epollMember
}

// memberKey identifies a registration as Linux does: the fd number and the open file (socket)
// it referred to when it was added. Closing one of a socket's fds keeps its registrations while
// a dup lives, and the number may then be reused for another socket's registration.
type memberKey struct {
	fd int
	b  *sockBase
}

type epollMember struct {
	set     *epollSet
	b       *sockBase
	fd      int
	events  uint32 // EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET|EPOLLONESHOT…
	data    uint64
	seenGen uint64 // wakeGen of the socket when last reported (edge-triggered)
	armed   bool   // EPOLLONESHOT: false after one report, until EPOLL_CTL_MOD
	readyAt int    // its index in set.ready, -1 when it has nothing to report
	round   uint64 // the look that last went through it
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

// changedLocked is the member's socket telling it its readiness (ev) may have changed.
func (m *epollMember) changedLocked(ev int16) { m.setPendingLocked(m.hasNewsLocked(ev)) }

// hasNewsLocked says whether the member has something to report with its socket at ev: it is
// armed and ready for what it waits for, and, edge-triggered, the socket changed since the
// last report.
func (m *epollMember) hasNewsLocked(ev int16) bool {
	return m.armed && m.readyMask(ev) != 0 && (m.events&unix.EPOLLET == 0 || m.seenGen != m.b.wakeGen)
}

// setPendingLocked keeps the set's eventfd readable exactly while a member has something to
// report: the application's epoll fd then looks readable to whatever watches it (a nested set,
// poll), as a kernel epoll fd does, and a thread asleep in it wakes.
// The members with news are kept in a list (Linux's ready list), so that a look costs what is
// ready, not what is registered: a server with 15,000 idle connections in its set would
// otherwise pay for all of them at every epoll_wait.
func (m *epollMember) setPendingLocked(p bool) {
	set := m.set
	switch {
	case p && m.readyAt < 0:
		m.readyAt = len(set.ready)
		set.ready = append(set.ready, m)
	case !p && m.readyAt >= 0:
		last := set.ready[len(set.ready)-1]
		set.ready[m.readyAt], last.readyAt = last, m.readyAt
		set.ready[len(set.ready)-1] = nil
		set.ready = set.ready[:len(set.ready)-1]
		m.readyAt = -1
	default:
		return
	}
	set.syncSignalLocked()
}

func (set *epollSet) syncSignalLocked() {
	switch {
	case len(set.ready) > 0 && !set.signalled:
		set.signalled = true
		set.ebuf = [8]byte{1}
		_, _ = unix.Write(set.efd, set.ebuf[:])
	case len(set.ready) == 0 && set.signalled:
		set.signalled = false
		_, _ = unix.Read(set.efd, set.ebuf[:])
	default:
		return
	}
	for _, fd := range set.epfds {
		set.tab.SetEpollReady(fd, set.signalled)
	}
}

// refreshLocked re-evaluates the socket's epoll registrations after a call that may have made
// it less ready (a read that drained it, a write that filled it); the stack reports only what
// arrives. Caller holds st.mu.
func (b *sockBase) refreshLocked() {
	if len(b.members) == 0 {
		return
	}
	ev := b.self.events()
	for _, m := range b.members {
		m.changedLocked(ev)
	}
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

// watch registers the member's shadow in the application's epoll instance itself, tagged with
// its fd (shadowTag): the real wait that the interposer makes anyway then says which shadow has
// input, and a look pays a system call for a shadow only then (sockBase.shadowWorthLookLocked).
func (m *epollMember) watch() {
	if fd := m.shadowFd(); fd >= 0 {
		ev := unix.EpollEvent{Events: unix.EPOLLIN}
		setEpollData(&ev, shadowTag|uint64(fd))
		_ = unix.EpollCtl(m.set.epfds[0], unix.EPOLL_CTL_ADD, fd, &ev)
	}
}

func (m *epollMember) unwatch() {
	if fd := m.shadowFd(); fd >= 0 {
		_ = unix.EpollCtl(m.set.epfds[0], unix.EPOLL_CTL_DEL, fd, nil)
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
		if set == nil {
			set = e.adoptEpollLocked(epfd)
		}
		key := memberKey{fd, b}
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
			if set.members[key] != nil {
				return neg(unix.EEXIST)
			}
			m := &epollMember{set: set, b: b, fd: fd, events: ev.Events, data: epollData(ev), armed: true, seenGen: b.wakeGen - 1,
				readyAt: -1}
			set.members[key] = m
			b.members = append(b.members, m)
			m.watch()
			set.kindLocked(m)
			m.changedLocked(s.events()) // already ready: a nested set must see it
		case unix.EPOLL_CTL_MOD:
			if ev == nil {
				return neg(unix.EFAULT)
			}
			if set == nil || set.members[key] == nil {
				return neg(unix.ENOENT)
			}
			m := set.members[key]
			if m.armed {
				m.unwatch()
			}
			m.events, m.data, m.armed, m.seenGen = ev.Events, epollData(ev), true, b.wakeGen-1
			m.watch()
			m.changedLocked(s.events())
		case unix.EPOLL_CTL_DEL:
			if set == nil || set.members[key] == nil {
				return neg(unix.ENOENT)
			}
			set.removeLocked(set.members[key])
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
	m.setPendingLocked(false)
	set.shadows = removeMember(set.shadows, m)
	delete(set.members, memberKey{m.fd, m.b})
	m.b.members = removeMember(m.b.members, m)
}

// kindLocked notes whether a member is one whose shadow the kernel makes readable, which a look
// must always go through.
func (set *epollSet) kindLocked(m *epollMember) {
	switch m.b.self.(type) {
	case *tcpListener, *udpSock:
		if !slices.Contains(set.shadows, m) {
			set.shadows = append(set.shadows, m)
		}
	}
}

// kindChangedLocked follows a socket that became a listener after it joined epoll sets.
func (b *sockBase) kindChangedLocked() {
	for _, m := range b.members {
		m.set.kindLocked(m)
		if m.armed {
			m.watch()
		}
	}
}

// adoptEpollLocked finds the set of an epoll instance that the program reaches through an fd we
// have not seen (a dup made before the set existed) and makes epfd one of its fds; nil if
// epfd is no fd of a set's instance. Caller holds st.mu.
func (e *Engine) adoptEpollLocked(epfd int) *epollSet {
	if epfd < 0 || epfd >= FDMax {
		return nil
	}
	for _, set := range e.epolls {
		if sameFile(set.epfds[0], epfd) {
			set.epfds = append(set.epfds, epfd)
			e.epolls[epfd] = set
			e.tab.Publish(epfd, FDEntry{Kind: KindEpoll, ExtraFd: int32(set.wakeEp)})
			e.tab.SetEpollReady(epfd, set.signalled)
			return set
		}
	}
	return nil
}

// EpollAdopt is told by the interposer that epfd, which it did not know as ours, reported the
// wake entry of a set: epfd is a dup of that set's epoll fd. It answers whether it is now ours.
func (e *Engine) EpollAdopt(epfd int) bool {
	st := e.st
	if st == nil {
		return false
	}
	return st.with(nil, faultNone, func() int {
		if e.epolls[epfd] != nil || e.adoptEpollLocked(epfd) != nil {
			return 1
		}
		return 0
	}) == 1
}

// sameFile reports whether two fds of this process refer to the same open file (kcmp(2)).
func sameFile(a, b int) bool {
	const kcmpFile = 0
	pid := uintptr(unix.Getpid())
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, pid, pid, kcmpFile, uintptr(a), uintptr(b), 0)
	return errno == 0 && r == 0
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
	// the AF_XDP fd joins the wake epoll when a thread first sleeps in the set (preload/epoll.c)
	setEpollData(&ev, epollMagic)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		unix.Close(efd)
		return nil, errnoOf(err) // EBADF, EINVAL: epfd is no epoll fd
	}
	set := &epollSet{epfds: []int{epfd}, wakeEp: wake, efd: efd, members: map[memberKey]*epollMember{}, tab: e.tab}
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
			if set = e.adoptEpollLocked(epfd); set == nil {
				return 0
			}
		}
		st.serviceLocked()
		set.round++
		set.scratch = append(append(set.scratch[:0], set.ready...), set.shadows...)
		n := 0
		for _, m := range set.scratch {
			if m.round == set.round || !m.armed {
				continue
			}
			m.round = set.round
			ev := m.b.self.pollEvents()
			if !m.hasNewsLocked(ev) || n == len(out) {
				m.changedLocked(ev) // what did not fit stays pending
				continue
			}
			if m.events&unix.EPOLLET != 0 {
				m.seenGen = m.b.wakeGen // nothing new until the stack reports a change
			}
			if m.events&unix.EPOLLONESHOT != 0 {
				m.armed = false // until EPOLL_CTL_MOD
				m.unwatch()
			}
			out[n].Events = m.readyMask(ev)
			setEpollData(&out[n], m.data)
			n++
			m.changedLocked(ev) // level-triggered: still pending while ready
		}
		clear(set.scratch)
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
