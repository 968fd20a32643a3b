package shim

import (
	"testing"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// poll(2) and select(2) on accelerated sockets: PollCheck is the interposer's look at the
// accelerated entries of a poll set (preload/poll.c); select is built in C on top of it.
// Expected masks: poll(2), select(2), and Linux's tcp_poll where they are silent; where a case
// can be made on a kernel socket too, the kernel's answer is the expectation.

// pollOne is PollCheck of one fd for events; it checks the count PollCheck returns.
func (r *rig) pollOne(fd int, events int16) int16 {
	r.t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n := r.e.PollCheck(fds)
	if want := 0; fds[0].Revents != 0 {
		want = 1
		if n != want {
			r.t.Fatalf("PollCheck returned %d with revents %#x, want %d", n, fds[0].Revents, want)
		}
	} else if n != 0 {
		r.t.Fatalf("PollCheck returned %d with no revents", n)
	}
	return fds[0].Revents
}

func (r *rig) wantPoll(fd int, events, want int16) {
	r.t.Helper()
	if got := r.pollOne(fd, events); got != want {
		r.t.Fatalf("poll(fd %d, %s) = %s, want %s", fd, evNames(uint32(uint16(events))), evNames(uint32(uint16(got))),
			evNames(uint32(uint16(want))))
	}
}

// kernelPoll is poll(2) with timeout 0 on a kernel fd.
func kernelPoll(t *testing.T, fd int, events int16) int16 {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	if _, err := unix.Poll(fds, 0); err != nil {
		t.Fatal(err)
	}
	return fds[0].Revents
}

const (
	pollIO  = unix.POLLIN | unix.POLLOUT
	pollAll = unix.POLLIN | unix.POLLOUT | unix.POLLRDHUP | unix.POLLPRI
)

// A TCP socket neither connected nor listening: POLLOUT|POLLHUP, as the kernel answers for one.
func TestPollUnconnected(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, _ := o.socket(0)
	k, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	o.hold(k)
	for _, ev := range []int16{unix.POLLIN, unix.POLLOUT, pollIO, pollAll, 0} {
		want := kernelPoll(t, k, ev)
		r.wantPoll(fd, ev, want)
	}
	r.wantPoll(fd, pollIO, unix.POLLOUT|unix.POLLHUP)
	// bound, still neither: the same
	if res := r.e.Bind(fd, sockaddr([4]byte{}, 0)); res != 0 {
		t.Fatalf("bind: %d", res)
	}
	r.wantPoll(fd, pollIO, unix.POLLOUT|unix.POLLHUP)
}

// A connection: POLLOUT while the send buffer has room; POLLIN once data is queued (POLLRDNORM
// too when asked), and not once it was read; events 0 reports nothing on a healthy connection.
func TestPollConnected(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(120), 120)
	r.wantPoll(fd, pollAll, unix.POLLOUT)
	r.wantPoll(fd, unix.POLLIN, 0)
	r.wantPoll(fd, 0, 0)
	r.peerWrite(pc, "data")
	r.until("POLLIN", func() bool { return r.pollOne(fd, unix.POLLIN) != 0 })
	r.wantPoll(fd, pollAll, unix.POLLIN|unix.POLLOUT)
	r.wantPoll(fd, unix.POLLIN|pollRdNorm, unix.POLLIN|pollRdNorm)
	r.wantPoll(fd, unix.POLLOUT|pollWrNorm, unix.POLLOUT|pollWrNorm)
	r.wantPoll(fd, 0, 0)
	if got := r.drain(fd); got != "data" {
		t.Fatalf("read %q", got)
	}
	r.wantPoll(fd, pollAll, unix.POLLOUT)
}

// A connection whose send buffer is full is not writable; it is again once the peer reads and
// acknowledges.
func TestPollOutWhenWritable(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(121), 121)
	chunk := make([]byte, 64<<10)
	full := false
	for i := 0; i < 1000 && !full; i++ {
		n := r.e.Send(fd, iov(chunk), unix.MSG_DONTWAIT, nil)
		switch {
		case n == neg(unix.EAGAIN):
			full = true
		case n <= 0:
			t.Fatalf("send: %d", n)
		}
	}
	if !full {
		t.Fatal("the send buffer never filled")
	}
	r.wantPoll(fd, pollIO, 0)
	buf := make([]byte, 64<<10)
	r.until("POLLOUT", func() bool {
		r.peer.do(func(*stackcore.Stack) {
			for {
				if n, _ := pc.Read(buf); n <= 0 {
					break
				}
			}
		})
		return r.pollOne(fd, unix.POLLOUT) == unix.POLLOUT
	})
}

// The peer's FIN: POLLIN|POLLRDHUP (RDHUP only when asked), no POLLHUP while we can still send;
// POLLHUP once both directions are shut (tcp_poll: sk_shutdown == SHUTDOWN_MASK), asked or not.
// Our own SHUT_WR alone: writable (a write fails at once), no HUP.
func TestPollHupAfterFinBothWays(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	l := r.peerListen(122)
	fd, pc := o.dial(l, 122)
	r.peer.do(func(*stackcore.Stack) { pc.CloseWrite() })
	r.until("POLLRDHUP", func() bool { return r.pollOne(fd, unix.POLLRDHUP) != 0 })
	r.wantPoll(fd, pollAll, unix.POLLIN|unix.POLLOUT|unix.POLLRDHUP)
	r.wantPoll(fd, unix.POLLIN, unix.POLLIN)
	r.wantPoll(fd, 0, 0)
	if res := r.e.Shutdown(fd, unix.SHUT_WR); res != 0 {
		t.Fatalf("shutdown: %d", res)
	}
	r.wantPoll(fd, pollAll, unix.POLLIN|unix.POLLOUT|unix.POLLRDHUP|unix.POLLHUP)
	r.wantPoll(fd, 0, unix.POLLHUP)
	r.wantPoll(fd, unix.POLLIN, unix.POLLIN|unix.POLLHUP)

	// the other order: our FIN first
	fd2, pc2 := o.dial(l, 122)
	if res := r.e.Shutdown(fd2, unix.SHUT_WR); res != 0 {
		t.Fatalf("shutdown: %d", res)
	}
	r.wantPoll(fd2, pollAll, unix.POLLOUT)
	r.peer.do(func(*stackcore.Stack) { pc2.CloseWrite() })
	r.until("POLLHUP", func() bool { return r.pollOne(fd2, 0) != 0 })
	r.wantPoll(fd2, pollAll, unix.POLLIN|unix.POLLOUT|unix.POLLRDHUP|unix.POLLHUP)
}

// The peer's RST: POLLERR and POLLHUP, asked or not, with POLLIN|POLLOUT|POLLRDHUP (every call
// would return at once); POLLERR goes once the error was reported, POLLHUP stays.
func TestPollErrAfterReset(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, pc := o.dial(r.peerListen(123), 123)
	r.peer.do(func(*stackcore.Stack) { pc.Abort() })
	r.until("POLLERR", func() bool { return r.pollOne(fd, 0) != 0 })
	r.wantPoll(fd, 0, unix.POLLERR|unix.POLLHUP)
	r.wantPoll(fd, pollAll, unix.POLLIN|unix.POLLOUT|unix.POLLRDHUP|unix.POLLERR|unix.POLLHUP)
	val := make([]byte, 4)
	vlen := uint32(4)
	if r.e.Getsockopt(fd, unix.SOL_SOCKET, unix.SO_ERROR, val, &vlen) != 0 || unix.Errno(val[0]) != unix.ECONNRESET {
		t.Fatalf("SO_ERROR %v, want ECONNRESET", val)
	}
	r.wantPoll(fd, pollAll, unix.POLLIN|unix.POLLOUT|unix.POLLRDHUP|unix.POLLHUP)
}

// A refused connect: POLLERR with POLLHUP (and POLLOUT: the connect is over), as on Linux.
func TestPollConnectRefused(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, _ := o.socket(unix.SOCK_NONBLOCK)
	if res := r.e.Connect(fd, sockaddr(peerAddr, 9)); res != neg(unix.EINPROGRESS) {
		t.Fatalf("connect: %d", res)
	}
	r.wantPoll(fd, pollIO, 0) // SYN-SENT: nothing yet
	r.until("POLLERR", func() bool { return r.pollOne(fd, 0) != 0 })
	r.wantPoll(fd, unix.POLLOUT, unix.POLLOUT|unix.POLLERR|unix.POLLHUP)
}

// A listener: POLLIN while a connection waits to be accepted, nothing before or after.
func TestPollListener(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	lfd, _ := o.socket(0)
	if r.e.Bind(lfd, sockaddr([4]byte{}, 0)) != 0 || r.e.Listen(lfd, 16) != 0 {
		t.Fatal("bind/listen")
	}
	port, _ := shadowPort(lfd)
	r.wantPoll(lfd, pollAll, 0)
	r.peer.do(func(s *stackcore.Stack) {
		if _, err := s.Connect(r.peerNow(), 0, mapped(engAddr), port, engMAC); err != nil {
			t.Fatal(err)
		}
	})
	r.until("listener POLLIN", func() bool { return r.pollOne(lfd, unix.POLLIN) != 0 })
	r.wantPoll(lfd, pollAll, unix.POLLIN)
	r.wantPoll(lfd, unix.POLLIN|pollRdNorm, unix.POLLIN|pollRdNorm)
	r.wantPoll(lfd, unix.POLLOUT, 0)
	nfd := r.e.Accept(lfd, nil, nil, 0)
	if nfd < 0 {
		t.Fatalf("accept: %d", nfd)
	}
	o.hold(nfd)
	r.wantPoll(lfd, pollAll, 0)
	r.wantPoll(nfd, pollAll, unix.POLLOUT)
}

// An unbound UDP socket is writable, as the kernel's is.
func TestPollUDPUnbound(t *testing.T) {
	r := newRig(t)
	fd := r.udpSocket()
	k, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(k)
	r.wantPoll(fd, pollIO, kernelPoll(t, k, pollIO))
}

// PollCheck answers the accelerated entries only: a kernel fd's entry is the interposer's to
// fill (it passes it to the real poll), and the count is of accelerated entries ready.
func TestPollCheckLeavesKernelEntries(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	fd, _ := o.dial(r.peerListen(124), 124)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	o.hold(p[0])
	o.hold(p[1])
	fds := []unix.PollFd{
		{Fd: int32(p[1]), Events: unix.POLLOUT, Revents: 0x7777},
		{Fd: int32(fd), Events: pollIO},
		{Fd: -1, Events: unix.POLLIN, Revents: 0x7777},
	}
	if n := r.e.PollCheck(fds); n != 1 {
		t.Fatalf("PollCheck: %d, want 1", n)
	}
	if fds[0].Revents != 0x7777 || fds[2].Revents != 0x7777 || fds[1].Revents != unix.POLLOUT {
		t.Fatalf("revents %#x %#x %#x", fds[0].Revents, fds[1].Revents, fds[2].Revents)
	}
}

// selectSets is how select(2) reads a poll mask, as the kernel does (fs/select.c: POLLIN_SET,
// POLLOUT_SET, POLLEX_SET) and preload/poll.c select_impl does after asking poll for
// POLLIN (read set), POLLOUT (write set) and POLLPRI (except set): readable includes POLLHUP
// and POLLERR, writable includes POLLERR.
func selectSets(revents int16) (rd, wr, ex bool) {
	rd = revents&(unix.POLLIN|pollRdNorm|unix.POLLHUP|unix.POLLERR) != 0
	wr = revents&(unix.POLLOUT|pollWrNorm|unix.POLLERR) != 0
	ex = revents&unix.POLLPRI != 0
	return
}

// selectOne is select(2) of fd in all three sets through PollCheck, as preload/poll.c builds it.
func (r *rig) selectOne(fd int) (rd, wr, ex bool) {
	return selectSets(r.pollOne(fd, unix.POLLIN|unix.POLLOUT|unix.POLLPRI))
}

// kernelSelect is select(2) with timeout 0 of fd in all three sets on a kernel socket.
func kernelSelect(t *testing.T, fd int) (rd, wr, ex bool) {
	t.Helper()
	var r, w, e unix.FdSet
	r.Set(fd)
	w.Set(fd)
	e.Set(fd)
	if _, err := unix.Select(fd+1, &r, &w, &e, &unix.Timeval{}); err != nil {
		t.Fatal(err)
	}
	return r.IsSet(fd), w.IsSet(fd), e.IsSet(fd)
}

// The readiness select(2) relies on: read set = POLLIN|POLLHUP|POLLERR, write set =
// POLLOUT|POLLERR, except set = POLLPRI (never, we have no urgent data). An unconnected socket
// is readable (HUP) and writable, as the kernel's; a reset one both too.
func TestSelectReadiness(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	type sets struct{ rd, wr, ex bool }
	want := func(what string, fd int, w sets) {
		t.Helper()
		rd, wr, ex := r.selectOne(fd)
		if got := (sets{rd, wr, ex}); got != w {
			t.Fatalf("select on %s: %+v, want %+v", what, got, w)
		}
	}

	fresh, _ := o.socket(0)
	k, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	o.hold(k)
	krd, kwr, kex := kernelSelect(t, k)
	want("an unconnected socket (as the kernel's)", fresh, sets{krd, kwr, kex})
	want("an unconnected socket", fresh, sets{rd: true, wr: true})
	if rd, _, _ := selectSets(r.pollOne(fresh, unix.POLLIN)); !rd || r.pollOne(fresh, unix.POLLIN)&unix.POLLIN != 0 {
		t.Fatal("an unconnected socket must be in the read set through POLLHUP alone")
	}

	l := r.peerListen(125)
	fd, pc := o.dial(l, 125)
	want("an idle connection", fd, sets{wr: true})
	r.peerWrite(pc, "x")
	r.until("readable", func() bool { rd, _, _ := r.selectOne(fd); return rd })
	want("a connection with data", fd, sets{rd: true, wr: true})
	r.drain(fd)
	r.peer.do(func(*stackcore.Stack) { pc.CloseWrite() })
	r.until("readable at EOF", func() bool { rd, _, _ := r.selectOne(fd); return rd })
	want("a connection at EOF", fd, sets{rd: true, wr: true})

	fd2, pc2 := o.dial(l, 125)
	r.peer.do(func(*stackcore.Stack) { pc2.Abort() })
	r.until("readable after RST", func() bool { rd, _, _ := r.selectOne(fd2); return rd })
	want("a reset connection", fd2, sets{rd: true, wr: true})

	lfd, _ := o.socket(0)
	if r.e.Bind(lfd, sockaddr([4]byte{}, 0)) != 0 || r.e.Listen(lfd, 16) != 0 {
		t.Fatal("bind/listen")
	}
	port, _ := shadowPort(lfd)
	want("an idle listener", lfd, sets{})
	r.peer.do(func(s *stackcore.Stack) { s.Connect(r.peerNow(), 0, mapped(engAddr), port, engMAC) })
	r.until("listener readable", func() bool { rd, _, _ := r.selectOne(lfd); return rd })
	want("a listener with a connection pending", lfd, sets{rd: true})
}
