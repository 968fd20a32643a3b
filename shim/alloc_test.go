package shim

import (
	"testing"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// The socket calls of an established connection allocate nothing: send, the peer's echo, poll,
// epoll_wait, recv, and the stack's service in between (DESIGN: the hot path allocates nothing).
func TestEstablishedCallsAllocateNothing(t *testing.T) {
	r := newRig(t)
	fd, pc := r.connected(120)
	msg := make([]byte, 1000)
	buf := make([]byte, 4096)
	v := iov(msg)
	in := iov(buf)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.e.EpollClose(ep); unix.Close(ep) }()
	if res := r.e.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN}); res != 0 {
		t.Fatalf("epoll_ctl: %d", res)
	}
	evs := make([]unix.EpollEvent, 8)
	round := func() {
		if n := r.e.Send(fd, v, 0, nil); n != len(msg) {
			t.Fatalf("send: %d", n)
		}
		r.step()
		r.peer.do(func(*stackcore.Stack) {
			n, _ := pc.Read(buf)
			pc.Write(buf[:n])
		})
		r.step()
		r.e.PollCheck(fds)
		if r.e.EpollCheck(ep, evs) != 1 {
			t.Fatal("epoll: the echo is not reported")
		}
		got := 0
		for got < len(msg) {
			n := r.e.Recv(fd, in, unix.MSG_DONTWAIT, nil, nil, nil)
			if n <= 0 {
				r.step()
				continue
			}
			got += n
		}
	}
	for range 50 {
		round() // buffers and rings reach their steady state
	}
	if a := testing.AllocsPerRun(200, round); a != 0 {
		t.Fatalf("%.1f allocations per round trip, want 0", a)
	}
}
