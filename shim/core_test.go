package shim

import (
	"bytes"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// arm makes the next call of kind op panic inside the core (IoctlArmPanic).
func (r *rig) arm(fd int, op faultOp) {
	r.t.Helper()
	v := int32(op)
	if res := r.e.Ioctl(fd, IoctlArmPanic, unsafe.Pointer(&v)); res != 0 {
		r.t.Fatalf("arming %s: %d", op, res)
	}
}

// echo sends msg on fd and checks the peer's end pc receives it, then the reverse.
func (r *rig) echo(fd int, pc *stackcore.TCPConn, msg []byte) {
	r.t.Helper()
	if n := r.e.Send(fd, iov(msg), 0, nil); n != len(msg) {
		r.t.Fatalf("send: %d", n)
	}
	got := make([]byte, 0, len(msg))
	buf := make([]byte, len(msg))
	r.until("the peer's read", func() bool {
		r.peer.do(func(*stackcore.Stack) {
			n, _ := pc.Read(buf)
			got = append(got, buf[:n]...)
		})
		return len(got) == len(msg)
	})
	if !bytes.Equal(got, msg) {
		r.t.Fatalf("peer got %q, want %q", got, msg)
	}
	r.peer.do(func(*stackcore.Stack) { pc.Write(msg) })
	back := make([]byte, len(msg))
	n := r.block(func() int { return r.e.Recv(fd, iov(back), unix.MSG_WAITALL, nil, nil, nil) })
	if n != len(msg) || !bytes.Equal(back, msg) {
		r.t.Fatalf("recv %d %q, want %q", n, back[:max(n, 0)], msg)
	}
}

// A panic inside the core, in each kind of call: the call fails with EIO, the socket it hit is
// reset (a connection: ECONNRESET once, RST to the peer), the stack is not left locked, and the
// other connections and new ones carry on. (The poller's case runs end to end in
// tests/panics_test.go: the rig has no poller.)
func TestPanicInCoreLeavesStackUsable(t *testing.T) {
	r := newRig(t)
	other, opc := r.connected(100)
	r.echo(other, opc, []byte("before"))
	for i, op := range []faultOp{faultRecv, faultSend, faultSetsockopt, faultClose, faultAccept} {
		t.Run(op.String(), func(t *testing.T) {
			r.t = t
			victim, vpc := r.connected(uint16(200 + i))
			r.arm(victim, op)
			var res int
			switch op {
			case faultRecv:
				res = r.e.Recv(victim, iov(make([]byte, 8)), unix.MSG_DONTWAIT, nil, nil, nil)
			case faultSend:
				res = r.e.Send(victim, iov([]byte("x")), 0, nil)
			case faultSetsockopt:
				one := []byte{1, 0, 0, 0}
				res = r.e.Setsockopt(victim, unix.IPPROTO_TCP, unix.TCP_NODELAY, one)
			case faultClose:
				r.e.CloseFD(victim)
				if _, ours := r.tab.Entry(victim); ours || r.e.sock(victim) != nil {
					t.Fatal("the closed fd is still ours")
				}
				res = neg(unix.EIO)
			case faultAccept:
				lfd := r.socket(0)
				if res := r.e.Listen(lfd, 8); res != 0 {
					t.Fatalf("listen: %d", res)
				}
				port, _ := shadowPort(lfd)
				r.peer.do(func(s *stackcore.Stack) { s.Connect(r.peerNow(), 0, mapped(engAddr), port, engMAC) })
				fds := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
				r.until("a pending connection", func() bool { return r.e.PollCheck(fds) == 1 })
				r.arm(lfd, op)
				res = r.e.Accept(lfd, nil, nil, 0)
				// the listener was not reset: the connection is still there to accept
				if nfd := r.block(func() int { return r.e.Accept(lfd, nil, nil, 0) }); nfd < 0 {
					t.Fatalf("accept after the panic: %d", nfd)
				} else {
					r.close(nfd)
				}
			}
			if res != neg(unix.EIO) {
				t.Fatalf("%s with a panic armed: %d, want EIO", op, res)
			}
			if got := r.st.stats.Panics; got != uint64(i+1) {
				t.Fatalf("shim.panics %d, want %d", got, i+1)
			}
			if !r.st.mu.TryLock() {
				t.Fatal("the stack is still locked after the panic")
			}
			r.st.mu.Unlock()
			if op != faultAccept && op != faultClose {
				// the victim was reset: ECONNRESET once, and the peer got the RST
				if res := r.e.Recv(victim, iov(make([]byte, 8)), 0, nil, nil, nil); res != neg(unix.ECONNRESET) {
					t.Fatalf("recv on the reset socket: %d, want ECONNRESET", res)
				}
				r.until("the peer's reset", func() bool {
					var st stackcore.State
					r.peer.do(func(*stackcore.Stack) { st = vpc.State() })
					return st == stackcore.StateClosed
				})
			}
			r.echo(other, opc, []byte("after a panic in "+op.String()))
			fresh, fpc := r.connected(uint16(300 + i))
			r.echo(fresh, fpc, []byte("a new connection"))
		})
	}
}

// connect(2) to a next hop the kernel's neighbour table does not know: a non-blocking connect
// answers EINPROGRESS at once (the resolution runs in the background, never on the caller's
// thread), and when no neighbour answers the connect fails with EHOSTUNREACH, reported through
// POLLERR and SO_ERROR, as Linux's does (tests/c/sem_noneigh.c checks the kernel).
func TestConnectNoNeighbour(t *testing.T) {
	r := newRig(t)
	fd := r.socket(unix.SOCK_NONBLOCK)
	if res := r.e.Connect(fd, sockaddr(silentAddr, 80)); res != neg(unix.EINPROGRESS) {
		t.Fatalf("connect: %d, want EINPROGRESS", res)
	}
	if r.cp.started != 1 {
		t.Fatalf("%d resolutions started, want 1", r.cp.started)
	}
	if res := r.e.Connect(fd, sockaddr(silentAddr, 80)); res != neg(unix.EALREADY) {
		t.Fatalf("connect while resolving: %d, want EALREADY", res)
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if r.e.PollCheck(fds) != 0 {
		t.Fatalf("ready while resolving: %#x", fds[0].Revents)
	}
	wakes := r.tab.Wakes(fd)
	r.cp.finishResolutions()
	if r.tab.Wakes(fd) == wakes {
		t.Fatal("the failed resolution woke nobody")
	}
	if r.e.PollCheck(fds) != 1 || fds[0].Revents&(unix.POLLOUT|unix.POLLERR|unix.POLLHUP) != unix.POLLOUT|unix.POLLERR|unix.POLLHUP {
		t.Fatalf("revents %#x, want POLLOUT|POLLERR|POLLHUP", fds[0].Revents)
	}
	val := make([]byte, 4)
	vlen := uint32(4)
	if r.e.Getsockopt(fd, unix.SOL_SOCKET, unix.SO_ERROR, val, &vlen) != 0 || unix.Errno(val[0]) != unix.EHOSTUNREACH {
		t.Fatalf("SO_ERROR %v, want EHOSTUNREACH", val)
	}
	if r.st.stats.NeighFailed != 1 {
		t.Fatalf("shim.neigh_failed %d", r.st.stats.NeighFailed)
	}
}

// A blocking connect whose next hop is being resolved waits (in C, where a signal interrupts
// it), then goes on once the neighbour answered.
func TestConnectWaitsForNeighbour(t *testing.T) {
	r := newRig(t)
	r.cp.known = false
	var l *stackcore.Listener
	r.peer.do(func(s *stackcore.Stack) { l, _ = s.Listen(82, 8) })
	fd := r.socket(0)
	if res := r.e.Connect(fd, sockaddr(peerAddr, 82)); res != Wait {
		t.Fatalf("connect: %d, want Wait", res)
	}
	for range 10 {
		r.step()
		if res := r.e.ConnectWait(fd); res != Wait {
			t.Fatalf("connect went on before the neighbour answered: %d", res)
		}
	}
	r.cp.finishResolutions()
	if res := r.block(func() int { return r.e.ConnectWait(fd) }); res != 0 {
		t.Fatalf("connect: %d", res)
	}
	var pc *stackcore.TCPConn
	r.until("peer accept", func() bool {
		r.peer.do(func(*stackcore.Stack) { pc = l.Accept() })
		return pc != nil
	})
	r.echo(fd, pc, []byte("resolved"))
	// the next connect to the same next hop needs no resolution
	fd2 := r.socket(unix.SOCK_NONBLOCK)
	if res := r.e.Connect(fd2, sockaddr(peerAddr, 82)); res != neg(unix.EINPROGRESS) || r.cp.started != 1 {
		t.Fatalf("second connect: %d, %d resolutions", res, r.cp.started)
	}
}
