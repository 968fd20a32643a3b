package shim

import (
	"fmt"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// epoll over accelerated sockets, through the engine's entry points as the interposer calls them
// (preload/epoll.c): EpollCtl for epoll_ctl(2); EpollCheck, the first look of epoll_wait(2); and
// the application's own epoll fd, a real one, into which the engine puts its wake epoll: the
// interposer sleeps in it, and a program may nest it in an epoll set of its own. Expected
// behaviour: epoll(7), epoll_ctl(2), and Linux where they are silent.

// ctl is epoll_ctl(2) on an accelerated fd, with data = the fd.
func (r *rig) ctl(ep, op, fd int, events uint32) int {
	return r.ctlData(ep, op, fd, events, uint64(fd))
}

func (r *rig) ctlData(ep, op, fd int, events uint32, data uint64) int {
	ev := unix.EpollEvent{Events: events}
	setEpollData(&ev, data)
	return r.e.EpollCtl(ep, op, fd, &ev)
}

func (r *rig) mustCtl(ep, op, fd int, events uint32) {
	r.t.Helper()
	if res := r.ctl(ep, op, fd, events); res != 0 {
		r.t.Fatalf("epoll_ctl(%d, op %d, fd %d, %#x): %v", ep, op, fd, events, unix.Errno(-res))
	}
}

// ready is what one event says: its data and events.
type ready struct {
	data   uint64
	events uint32
}

// check is EpollCheck with room for 16 events, sorted by data.
func (r *rig) check(ep int) []ready {
	return r.checkN(ep, 16)
}

func (r *rig) checkN(ep, max int) []ready {
	r.t.Helper()
	out := make([]unix.EpollEvent, max)
	n := r.e.EpollCheck(ep, out)
	if n < 0 {
		r.t.Fatalf("EpollCheck(%d): %v", ep, unix.Errno(-n))
	}
	got := make([]ready, n)
	for i := range got {
		got[i] = ready{epollData(&out[i]), out[i].Events}
	}
	slices.SortFunc(got, func(a, b ready) int { return int(a.data) - int(b.data) })
	return got
}

func (r *rig) wantCheck(ep int, want ...ready) {
	r.t.Helper()
	if want == nil {
		want = []ready{}
	}
	if got := r.check(ep); !slices.Equal(got, want) {
		r.t.Fatalf("EpollCheck(%d) = %s, want %s", ep, fmtReady(got), fmtReady(want))
	}
}

func fmtReady(rs []ready) string {
	s := "["
	for i, x := range rs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("{%d %s}", x.data, evNames(x.events))
	}
	return s + "]"
}

func evNames(ev uint32) string {
	names := []struct {
		bit  uint32
		name string
	}{{unix.EPOLLIN, "IN"}, {unix.EPOLLOUT, "OUT"}, {unix.EPOLLRDHUP, "RDHUP"}, {unix.EPOLLHUP, "HUP"},
		{unix.EPOLLERR, "ERR"}, {unix.EPOLLPRI, "PRI"}, {pollRdNorm, "RDNORM"}, {pollWrNorm, "WRNORM"}}
	s := ""
	for _, n := range names {
		if ev&n.bit != 0 {
			if s != "" {
				s += "|"
			}
			s += n.name
			ev &^= n.bit
		}
	}
	if ev != 0 || s == "" {
		s += fmt.Sprintf("|%#x", ev)
	}
	return s
}

// kernelReady reports whether the kernel has an event for epoll fd ep (epoll_wait with timeout
// 0): for the application's epoll fd that is the engine's wake entry, for an epoll fd nesting it
// the application's epoll fd.
func kernelReady(t *testing.T, ep int) []unix.EpollEvent {
	t.Helper()
	evs := make([]unix.EpollEvent, 8)
	n, err := unix.EpollWait(ep, evs, 0)
	if err != nil {
		t.Fatalf("epoll_wait(%d, 0): %v", ep, err)
	}
	return evs[:n]
}

// epfdReadable reports whether the application's epoll fd ep is readable in the kernel, i.e.
// holds the engine's wake entry: what makes a thread asleep in epoll_wait(ep) wake, and an
// epoll set nesting ep report it.
func epfdReadable(t *testing.T, ep int) bool {
	t.Helper()
	evs := kernelReady(t, ep)
	for i := range evs {
		if epollData(&evs[i]) != epollMagic {
			t.Fatalf("epoll fd %d has a kernel entry that is not the engine's: %+v", ep, evs[i])
		}
	}
	return len(evs) > 0
}

func (r *rig) peerWrite(pc *stackcore.TCPConn, s string) {
	r.t.Helper()
	r.peer.do(func(*stackcore.Stack) {
		if n, err := pc.Write([]byte(s)); n != len(s) {
			r.t.Fatalf("peer write: %d %v", n, err)
		}
	})
}

// drain reads what fd has (non-blocking) and returns it.
func (r *rig) drain(fd int) string {
	r.t.Helper()
	var got []byte
	buf := make([]byte, 4096)
	for {
		n := r.e.Recv(fd, iov(buf), unix.MSG_DONTWAIT, nil, nil, nil)
		if n <= 0 {
			return string(got)
		}
		got = append(got, buf[:n]...)
	}
}

func (r *rig) inq(fd int) int32 {
	var n int32
	if res := r.e.Ioctl(fd, ioctlFIONREAD, unsafePointer(&n)); res != 0 {
		r.t.Fatalf("FIONREAD: %d", res)
	}
	return n
}

// members is how many epoll registrations fd's socket has, and how many members set ep has.
func (r *rig) members(sockFd, ep int) (sockMembers, setMembers int) {
	r.st.with(nil, faultNone, func() int {
		if s := r.e.sock(sockFd); s != nil {
			sockMembers = len(s.base().members)
		}
		if set := r.e.epolls[ep]; set != nil {
			setMembers = len(set.members)
		}
		return 0
	})
	return
}

// Level-triggered (epoll(7)): a ready socket is reported at every wait while it stays ready, and
// the application's epoll fd is readable in the kernel exactly while that is so: not before the
// data arrives, not after it was read and epoll_wait looked.
func TestEpollLevelTriggered(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(100), 100)
	ep, err := o.epoll()
	if err != nil {
		t.Fatal(err)
	}
	r.mustCtl(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
	r.wantCheck(ep)
	if epfdReadable(t, ep) {
		t.Fatal("epoll fd readable after a look that found nothing ready")
	}
	r.peerWrite(pc, "abc")
	if epfdReadable(t, ep) {
		t.Fatal("epoll fd readable before the data left the peer")
	}
	r.until("epoll fd readable", func() bool { return epfdReadable(t, ep) })
	if n := r.inq(fd); n != 3 {
		t.Fatalf("epoll fd readable with %d bytes queued, want 3", n)
	}
	for i := 0; i < 3; i++ {
		r.wantCheck(ep, ready{uint64(fd), unix.EPOLLIN})
		if !epfdReadable(t, ep) {
			t.Fatalf("wait %d: epoll fd not readable while the data is unread (level-triggered)", i)
		}
	}
	if got := r.drain(fd); got != "abc" {
		t.Fatalf("read %q", got)
	}
	r.wantCheck(ep)
	if epfdReadable(t, ep) {
		t.Fatal("epoll fd readable after the data was read and epoll_wait looked")
	}

	// EPOLLOUT: an idle connection is writable at every wait
	ep2, _ := o.epoll()
	r.mustCtl(ep2, unix.EPOLL_CTL_ADD, fd, unix.EPOLLOUT)
	for i := 0; i < 3; i++ {
		r.wantCheck(ep2, ready{uint64(fd), unix.EPOLLOUT})
		if !epfdReadable(t, ep2) {
			t.Fatal("epoll fd not readable with a writable member")
		}
	}
}

// Edge-triggered (epoll(7)): reported once per change; data left unread is not reported again,
// a new arrival is (even with the old data still unread).
func TestEpollEdgeTriggered(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(101), 101)
	ep, _ := o.epoll()
	r.mustCtl(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLET)
	r.wantCheck(ep)
	r.peerWrite(pc, "abc")
	r.until("epoll fd readable", func() bool { return epfdReadable(t, ep) })
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLIN})
	r.wantCheck(ep)
	if epfdReadable(t, ep) {
		t.Fatal("edge-triggered: epoll fd still readable after the event was reported")
	}
	for i := 0; i < 5; i++ {
		r.step()
	}
	r.wantCheck(ep)
	r.peerWrite(pc, "def")
	r.until("epoll fd readable on new data", func() bool { return epfdReadable(t, ep) })
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLIN})
	r.wantCheck(ep)
	if got := r.drain(fd); got != "abcdef" {
		t.Fatalf("read %q", got)
	}
	r.wantCheck(ep)

	// EPOLLOUT|EPOLLET: writable is reported once, then not again without a change
	ep2, _ := o.epoll()
	r.mustCtl(ep2, unix.EPOLL_CTL_ADD, fd, unix.EPOLLOUT|unix.EPOLLET)
	r.wantCheck(ep2, ready{uint64(fd), unix.EPOLLOUT})
	r.wantCheck(ep2)
	if epfdReadable(t, ep2) {
		t.Fatal("edge-triggered EPOLLOUT: epoll fd readable after the event was reported")
	}

	// a socket already ready when added is reported once
	r.peerWrite(pc, "ghi")
	r.until("data", func() bool { r.step(); return r.inq(fd) == 3 })
	ep3, _ := o.epoll()
	r.mustCtl(ep3, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLET)
	r.wantCheck(ep3, ready{uint64(fd), unix.EPOLLIN})
	r.wantCheck(ep3)
}

// EPOLLONESHOT (epoll_ctl(2)): one event, then the registration is disabled, new data or not,
// until EPOLL_CTL_MOD re-arms it.
func TestEpollOneshot(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(102), 102)
	ep, _ := o.epoll()
	r.mustCtl(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLONESHOT)
	r.wantCheck(ep)
	r.peerWrite(pc, "a")
	r.until("epoll fd readable", func() bool { return epfdReadable(t, ep) })
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLIN})
	r.wantCheck(ep)
	r.peerWrite(pc, "b")
	r.until("data", func() bool { return r.inq(fd) == 2 })
	r.step()
	if epfdReadable(t, ep) {
		t.Fatal("oneshot: epoll fd readable on new data before EPOLL_CTL_MOD")
	}
	r.wantCheck(ep)
	r.mustCtl(ep, unix.EPOLL_CTL_MOD, fd, unix.EPOLLIN|unix.EPOLLONESHOT)
	if !epfdReadable(t, ep) {
		t.Fatal("oneshot: epoll fd not readable after EPOLL_CTL_MOD re-armed a ready socket")
	}
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLIN})
	r.wantCheck(ep)
	// a MOD to EPOLLOUT re-arms for writing
	r.mustCtl(ep, unix.EPOLL_CTL_MOD, fd, unix.EPOLLOUT|unix.EPOLLONESHOT)
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLOUT})
	r.wantCheck(ep)
}

// EPOLLRDHUP (epoll_ctl(2)): the peer's FIN reports EPOLLIN|EPOLLRDHUP to a registration that
// asked for it and EPOLLIN alone to one that did not; once both directions are shut, EPOLLHUP
// comes unasked.
func TestEpollRdhup(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(103), 103)
	a, _ := o.epoll()
	b, _ := o.epoll()
	r.mustCtl(a, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLRDHUP)
	r.mustCtl(b, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
	r.wantCheck(a)
	r.wantCheck(b)
	r.peerWrite(pc, "bye")
	r.peer.do(func(*stackcore.Stack) { pc.CloseWrite() })
	r.until("EPOLLRDHUP", func() bool {
		got := r.check(a)
		return len(got) == 1 && got[0].events&unix.EPOLLRDHUP != 0
	})
	r.wantCheck(a, ready{uint64(fd), unix.EPOLLIN | unix.EPOLLRDHUP})
	r.wantCheck(b, ready{uint64(fd), unix.EPOLLIN})
	if got := r.drain(fd); got != "bye" {
		t.Fatalf("read %q", got)
	}
	// EOF stays readable
	r.wantCheck(a, ready{uint64(fd), unix.EPOLLIN | unix.EPOLLRDHUP})
	if res := r.e.Shutdown(fd, unix.SHUT_WR); res != 0 {
		t.Fatalf("shutdown: %d", res)
	}
	r.wantCheck(a, ready{uint64(fd), unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLHUP})
	r.wantCheck(b, ready{uint64(fd), unix.EPOLLIN | unix.EPOLLHUP})
}

// A reset connection reports EPOLLERR and EPOLLHUP without being asked (epoll_ctl(2)), with
// EPOLLOUT (a write would not block: it fails). EPOLLERR goes once the error was reported.
func TestEpollResetErrHup(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(104), 104)
	ep, _ := o.epoll()
	r.mustCtl(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLOUT|unix.EPOLLET)
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLOUT})
	r.peer.do(func(*stackcore.Stack) { pc.Abort() })
	r.until("epoll fd readable on the reset", func() bool { return epfdReadable(t, ep) })
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLOUT | unix.EPOLLERR | unix.EPOLLHUP})
	r.mustCtl(ep, unix.EPOLL_CTL_MOD, fd, unix.EPOLLOUT) // level-triggered from now on
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLOUT | unix.EPOLLERR | unix.EPOLLHUP})
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLOUT | unix.EPOLLERR | unix.EPOLLHUP})
	if res := r.e.Recv(fd, iov(make([]byte, 8)), 0, nil, nil, nil); res != neg(unix.ECONNRESET) {
		t.Fatalf("recv after RST: %d, want ECONNRESET", res)
	}
	r.wantCheck(ep, ready{uint64(fd), unix.EPOLLOUT | unix.EPOLLHUP})
}

// A listening socket is readable while a connection waits to be accepted.
func TestEpollListener(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	lfd, _ := o.socket(0)
	if r.e.Bind(lfd, sockaddr([4]byte{}, 0)) != 0 || r.e.Listen(lfd, 16) != 0 {
		t.Fatal("bind/listen")
	}
	port, _ := shadowPort(lfd)
	ep, _ := o.epoll()
	r.mustCtl(ep, unix.EPOLL_CTL_ADD, lfd, unix.EPOLLIN|unix.EPOLLET)
	r.wantCheck(ep)
	if epfdReadable(t, ep) {
		t.Fatal("epoll fd readable with no connection pending")
	}
	r.peer.do(func(s *stackcore.Stack) {
		if _, err := s.Connect(r.peerNow(), 0, mapped(engAddr), port, engMAC); err != nil {
			t.Fatal(err)
		}
	})
	r.until("epoll fd readable", func() bool { return epfdReadable(t, ep) })
	r.wantCheck(ep, ready{uint64(lfd), unix.EPOLLIN})
	r.wantCheck(ep)
	nfd := r.e.Accept(lfd, nil, nil, unix.SOCK_NONBLOCK)
	if nfd < 0 {
		t.Fatalf("accept: %d", nfd)
	}
	o.hold(nfd)
	r.mustCtl(ep, unix.EPOLL_CTL_MOD, lfd, unix.EPOLLIN)
	r.wantCheck(ep)
}

// An epoll set nesting the application's epoll fd (epoll(7): an epoll fd is itself pollable)
// reports it while an accelerated member is ready, and not after the member was read and the
// application's epoll_wait looked.
func TestEpollNested(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(105), 105)
	inner, _ := o.epoll()
	outer, _ := o.epoll()
	r.mustCtl(inner, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(inner)}
	if err := unix.EpollCtl(outer, unix.EPOLL_CTL_ADD, inner, &ev); err != nil {
		t.Fatal(err)
	}
	r.wantCheck(inner)
	if evs := kernelReady(t, outer); len(evs) != 0 {
		t.Fatalf("outer set reports %+v with nothing pending", evs)
	}
	r.peerWrite(pc, "x")
	r.until("outer set readable", func() bool { return len(kernelReady(t, outer)) > 0 })
	if evs := kernelReady(t, outer); len(evs) != 1 || evs[0].Fd != int32(inner) || evs[0].Events != unix.EPOLLIN {
		t.Fatalf("outer set: %+v, want EPOLLIN from the inner epoll fd %d", evs, inner)
	}
	r.wantCheck(inner, ready{uint64(fd), unix.EPOLLIN})
	if len(kernelReady(t, outer)) != 1 {
		t.Fatal("outer set does not report the inner one while its member is still readable")
	}
	if got := r.drain(fd); got != "x" {
		t.Fatalf("read %q", got)
	}
	r.wantCheck(inner)
	if evs := kernelReady(t, outer); len(evs) != 0 {
		t.Fatalf("outer set reports %+v after the data was read", evs)
	}
}

// The application's epoll fd is readable only while a member is ready (epoll(7): an epoll fd
// polls readable when it has events to report), also before the interposer's epoll_wait looked:
// an epoll set nesting it must not report it right after an idle socket was added, nor after
// the member's data was read. tests/c/sem_epoll.c ("nested") checks the first on a real program.
func TestEpollNestedNoSpuriousReadiness(t *testing.T) {
	setup := func(t *testing.T) (*rig, int, *stackcore.TCPConn, int, int) {
		r := newRig(t)
		o := r.owner()
		fd, pc := o.dial(r.peerListen(106), 106)
		inner, _ := o.epoll()
		outer, _ := o.epoll()
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(inner)}
		if err := unix.EpollCtl(outer, unix.EPOLL_CTL_ADD, inner, &ev); err != nil {
			t.Fatal(err)
		}
		return r, fd, pc, inner, outer
	}
	t.Run("after ADD of an idle socket", func(t *testing.T) {
		r, fd, _, inner, outer := setup(t)
		r.mustCtl(inner, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
		if evs := kernelReady(t, outer); len(evs) != 0 {
			t.Errorf("outer set reports the inner epoll fd right after an idle socket was added (Linux: nothing)")
		}
		r.wantCheck(inner)
	})
	t.Run("after the data was read", func(t *testing.T) {
		r, fd, pc, inner, outer := setup(t)
		r.mustCtl(inner, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
		r.wantCheck(inner)
		r.peerWrite(pc, "x")
		r.until("outer set readable", func() bool { return len(kernelReady(t, outer)) > 0 })
		if got := r.drain(fd); got != "x" {
			t.Fatalf("read %q", got)
		}
		r.step()
		if evs := kernelReady(t, outer); len(evs) != 0 {
			t.Errorf("outer set reports the inner epoll fd after its only member's data was read (Linux: nothing)")
		}
		r.wantCheck(inner)
	})
}

// One socket in two sets is reported in both, each with its own events; removing it from one
// leaves the other.
func TestEpollSocketInTwoSets(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(107), 107)
	a, _ := o.epoll()
	b, _ := o.epoll()
	r.mustCtl(a, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
	r.mustCtl(b, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLOUT)
	r.wantCheck(a)
	r.wantCheck(b, ready{uint64(fd), unix.EPOLLOUT})
	r.peerWrite(pc, "x")
	r.until("both sets readable", func() bool { return epfdReadable(t, a) && epfdReadable(t, b) })
	r.wantCheck(a, ready{uint64(fd), unix.EPOLLIN})
	r.wantCheck(b, ready{uint64(fd), unix.EPOLLIN | unix.EPOLLOUT})
	r.mustCtl(a, unix.EPOLL_CTL_DEL, fd, 0)
	r.wantCheck(a)
	if epfdReadable(t, a) {
		t.Fatal("set a readable after its only member was removed")
	}
	r.wantCheck(b, ready{uint64(fd), unix.EPOLLIN | unix.EPOLLOUT})
	if sm, _ := r.members(fd, b); sm != 1 {
		t.Fatalf("socket has %d registrations, want 1", sm)
	}
}

// moveTo makes the accelerated socket fd take the number num (dup2(2), then close(2) of fd), as
// a program reusing a number does.
func (o *fdOwner) moveTo(fd, num int) int {
	o.r.t.Helper()
	if fd == num {
		return fd
	}
	if err := unix.Dup2(fd, num); err != nil {
		o.r.t.Fatal(err)
	}
	o.r.e.Dup(fd, num)
	o.hold(num)
	o.close(fd)
	return num
}

// close(2) of a socket's last fd takes it out of every set (epoll(7), Q6); the number, reused
// by a new socket, can be added again.
func TestEpollCloseRemovesFromSets(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	l := r.peerListen(108)
	fd, pc := o.dial(l, 108)
	a, _ := o.epoll()
	b, _ := o.epoll()
	r.mustCtl(a, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
	r.mustCtl(b, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLET)
	r.peerWrite(pc, "x")
	r.until("ready", func() bool { return epfdReadable(t, a) })
	num := fd
	o.close(fd)
	r.wantCheck(a)
	r.wantCheck(b)
	if epfdReadable(t, a) || epfdReadable(t, b) {
		t.Fatal("a set is readable after its only member was closed")
	}
	if _, n := r.members(fd, a); n != 0 {
		t.Fatalf("set a still has %d members", n)
	}
	if _, n := r.members(fd, b); n != 0 {
		t.Fatalf("set b still has %d members", n)
	}
	fd2, pc2 := o.dial(l, 108)
	fd2 = o.moveTo(fd2, num)
	if res := r.ctl(a, unix.EPOLL_CTL_ADD, fd2, unix.EPOLLIN); res != 0 {
		t.Fatalf("EPOLL_CTL_ADD of a new socket on the closed one's number: %v", unix.Errno(-res))
	}
	r.peerWrite(pc2, "y")
	r.until("new socket ready", func() bool { return epfdReadable(t, a) })
	r.wantCheck(a, ready{uint64(num), unix.EPOLLIN})
	r.wantCheck(b)
}

// Linux registers (fd, open file description) and removes a registration only when the last
// fd of the description is closed (epoll(7), Q6): closing the registered fd while a dup keeps
// the socket open leaves the registration reporting, under the old data; EPOLL_CTL_DEL through
// the dup is ENOENT (the dup was never registered); the last close removes it.
func TestEpollCloseOneDupKeepsRegistration(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(109), 109)
	ep, _ := o.epoll()
	r.mustCtl(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
	d, _ := o.dup(fd)
	num := fd
	o.close(fd)
	r.wantCheck(ep)
	r.peerWrite(pc, "x")
	r.until("ready", func() bool { return epfdReadable(t, ep) })
	r.wantCheck(ep, ready{uint64(num), unix.EPOLLIN})
	if res := r.ctl(ep, unix.EPOLL_CTL_DEL, d, 0); res != neg(unix.ENOENT) {
		t.Fatalf("EPOLL_CTL_DEL through the unregistered dup: %d, want ENOENT", res)
	}
	if got := r.drain(d); got != "x" {
		t.Fatalf("read %q", got)
	}
	r.peerWrite(pc, "y")
	r.until("data again", func() bool { return r.inq(d) == 1 })
	if !epfdReadable(t, ep) {
		t.Fatal("epoll fd not readable with the data unread")
	}
	r.wantCheck(ep, ready{uint64(num), unix.EPOLLIN})
	o.close(d)
	r.wantCheck(ep)
	if _, n := r.members(d, ep); n != 0 {
		t.Fatalf("set still has %d members after the last fd closed", n)
	}
}

// After the registered fd was closed while a dup keeps the old socket (and its registration),
// a new socket that takes the number is a different open file: Linux lets it be added (its key
// is (fd, file)), and both registrations report, each with its own data. Removing the new one
// must not touch the old one.
func TestEpollAddReusedNumberWhileDupOpen(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	l := r.peerListen(110)
	fd, pc := o.dial(l, 110)
	ep, _ := o.epoll()
	if res := r.ctlData(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN, 1); res != 0 {
		t.Fatal(res)
	}
	d, _ := o.dup(fd)
	num := fd
	o.close(fd)
	fd2, pc2 := o.dial(l, 110)
	fd2 = o.moveTo(fd2, num)
	if res := r.ctlData(ep, unix.EPOLL_CTL_ADD, fd2, unix.EPOLLIN, 2); res != 0 {
		t.Fatalf("EPOLL_CTL_ADD of a new socket on the number of a closed fd whose dup %d still holds "+
			"the old registration: %v, want success (Linux keys registrations by fd and open file)", d, unix.Errno(-res))
	}
	r.peerWrite(pc, "old")
	r.peerWrite(pc2, "new")
	r.until("both ready", func() bool { return len(r.check(ep)) == 2 })
	r.wantCheck(ep, ready{1, unix.EPOLLIN}, ready{2, unix.EPOLLIN})
	r.mustCtl(ep, unix.EPOLL_CTL_DEL, fd2, 0)
	r.wantCheck(ep, ready{1, unix.EPOLLIN})
}

// dup'd fds of one socket registered in one set are two registrations, each reported with its
// own data; closing one of them leaves its registration as long as the other fd keeps the
// socket open (epoll(7), Q6); the last close removes both.
func TestEpollDupsInOneSet(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(111), 111)
	d, _ := o.dup(fd)
	ep, _ := o.epoll()
	if r.ctlData(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN, 1) != 0 || r.ctlData(ep, unix.EPOLL_CTL_ADD, d, unix.EPOLLIN|unix.EPOLLET, 2) != 0 {
		t.Fatal("EPOLL_CTL_ADD")
	}
	r.wantCheck(ep)
	r.peerWrite(pc, "x")
	r.until("ready", func() bool { return epfdReadable(t, ep) })
	r.wantCheck(ep, ready{1, unix.EPOLLIN}, ready{2, unix.EPOLLIN})
	r.wantCheck(ep, ready{1, unix.EPOLLIN}) // the dup's registration is edge-triggered
	o.close(d)
	r.peerWrite(pc, "y")
	r.until("ready", func() bool { r.step(); return r.inq(fd) == 2 })
	r.wantCheck(ep, ready{1, unix.EPOLLIN}, ready{2, unix.EPOLLIN})
	r.mustCtl(ep, unix.EPOLL_CTL_DEL, fd, 0)
	r.peerWrite(pc, "z")
	r.until("ready", func() bool { r.step(); return r.inq(fd) == 3 })
	r.wantCheck(ep, ready{2, unix.EPOLLIN})
	o.close(fd)
	r.wantCheck(ep)
	if _, n := r.members(fd, ep); n != 0 {
		t.Fatalf("set still has %d members after the last fd closed", n)
	}
}

// epoll_ctl(2)'s errors on accelerated sockets.
func TestEpollCtlErrors(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, _ := o.dial(r.peerListen(112), 112)
	ep, _ := o.epoll()
	if res := r.ctl(ep, unix.EPOLL_CTL_MOD, fd, unix.EPOLLIN); res != neg(unix.ENOENT) {
		t.Errorf("MOD of an unregistered socket: %d, want ENOENT", res)
	}
	if res := r.ctl(ep, unix.EPOLL_CTL_DEL, fd, 0); res != neg(unix.ENOENT) {
		t.Errorf("DEL of an unregistered socket: %d, want ENOENT", res)
	}
	r.mustCtl(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
	if res := r.ctl(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN); res != neg(unix.EEXIST) {
		t.Errorf("second ADD: %d, want EEXIST", res)
	}
	if res := r.e.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, nil); res != neg(unix.EFAULT) {
		t.Errorf("MOD with no event: %d, want EFAULT", res)
	}
	if res := r.ctl(ep, 99, fd, unix.EPOLLIN); res != neg(unix.EINVAL) {
		t.Errorf("unknown op: %d, want EINVAL", res)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	o.hold(efd)
	if res := r.ctl(efd, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN); res != neg(unix.EINVAL) {
		t.Errorf("ADD into an fd that is no epoll fd: %d, want EINVAL", res)
	}
	if res := r.ctl(FDMax-1, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN); res != neg(unix.EBADF) {
		t.Errorf("ADD into a closed epoll fd: %d, want EBADF", res)
	}
	if _, ours := r.tab.Entry(efd); ours {
		t.Error("a failed ADD made the non-epoll fd an epoll set of ours")
	}
}

// epoll_wait returns at most maxevents; what did not fit is reported by the next wait, and the
// epoll fd stays readable meanwhile. The 64-bit data comes back whole.
func TestEpollCheckMoreThanFits(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	l := r.peerListen(113)
	ep, _ := o.epoll()
	var pcs []*stackcore.TCPConn
	for i := 0; i < 3; i++ {
		fd, pc := o.dial(l, 113)
		pcs = append(pcs, pc)
		data := uint64(0xfeedface00000000) | uint64(i)
		if res := r.ctlData(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLET, data); res != 0 {
			t.Fatal(res)
		}
	}
	r.wantCheck(ep)
	for _, pc := range pcs {
		r.peerWrite(pc, "x")
	}
	r.until("all three ready", func() bool { r.step(); return epfdReadable(t, ep) })
	for i := 0; i < 4; i++ {
		r.step()
	}
	seen := map[uint64]bool{}
	for _, want := range []int{2, 1, 0} {
		got := r.checkN(ep, 2)
		if len(got) != want {
			t.Fatalf("EpollCheck with room for 2: %s, want %d events", fmtReady(got), want)
		}
		for _, g := range got {
			if g.data>>32 != 0xfeedface || seen[g.data] {
				t.Fatalf("data %#x: lost its upper half, or reported twice", g.data)
			}
			seen[g.data] = true
		}
		if want == 2 && !epfdReadable(t, ep) {
			t.Fatal("epoll fd not readable with an event left over")
		}
	}
}

// close(2) of the application's epoll fd takes its registrations off the sockets; a dup of the
// epoll fd keeps the set (it is the same epoll instance).
func TestEpollCloseEpfd(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(114), 114)
	ep, _ := o.epoll()
	r.mustCtl(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
	ep2, _ := o.dup(ep)
	o.close(ep)
	r.peerWrite(pc, "x")
	r.until("ready", func() bool { return epfdReadable(t, ep2) })
	r.wantCheck(ep2, ready{uint64(fd), unix.EPOLLIN})
	o.close(ep2)
	if sm, _ := r.members(fd, ep2); sm != 0 {
		t.Fatalf("socket keeps %d registrations after its epoll set was closed", sm)
	}
	r.st.with(nil, faultNone, func() int {
		if len(r.e.epolls) != 0 {
			t.Errorf("engine keeps %d epoll sets", len(r.e.epolls))
		}
		return 0
	})
}

// An epoll fd dup'd before its first accelerated member (the interposer learns of no dup of an
// fd that is not ours yet) is still the same epoll instance (epoll(7)): a socket added through
// one number is reported through the other, and adding it again through the other is EEXIST.
func TestEpollDupOfEpfdBeforeFirstAdd(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(115), 115)
	ep, _ := o.epoll()
	ep2, _ := o.dup(ep) // not ours yet: the engine is not told, as preload/sock.c ustack_adopt does
	r.mustCtl(ep, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN)
	r.peerWrite(pc, "x")
	r.until("ready", func() bool { return epfdReadable(t, ep) })
	if !epfdReadable(t, ep2) {
		t.Fatal("the kernel does not see the dup as the same epoll instance")
	}
	if got := r.check(ep2); len(got) != 1 || got[0].data != uint64(fd) {
		t.Errorf("epoll_wait through the dup of the epoll fd: %s, want the socket's EPOLLIN (the kernel reports "+
			"the engine's wake entry through it, so the interposer's epoll_wait looks again and again)", fmtReady(got))
	}
	if res := r.ctl(ep2, unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN); res != neg(unix.EEXIST) {
		t.Errorf("ADD through a dup of the epoll fd of a socket already in it: %d, want EEXIST", res)
	}
}
