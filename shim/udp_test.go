package shim

import (
	"testing"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

func (r *rig) udpSocket() int {
	r.t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	r.e.Socket(fd, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK)
	r.t.Cleanup(func() { r.close(fd) })
	if r.entry(fd).Kind != KindUDP || r.entry(fd).ExtraFd != int32(fd) {
		r.t.Fatalf("udp socket %d not published with its shadow: %+v", fd, r.entry(fd))
	}
	return fd
}

// sendto(2)/recvfrom(2) on an unconnected UDP socket (RFC 768): the first send binds it (like
// the kernel's autobind), datagrams cross both ways with their source addresses, and the port
// is steered to the stack.
func TestUDPSendToRecvFrom(t *testing.T) {
	r := newRig(t)
	var pu *stackcore.UDPSocket
	r.peer.do(func(s *stackcore.Stack) {
		var err error
		if pu, err = s.UDPBind(5353); err != nil {
			t.Fatal(err)
		}
	})
	fd := r.udpSocket()
	if n := r.e.Send(fd, iov([]byte("query")), 0, sockaddr(peerAddr, 5353)); n != 5 {
		t.Fatalf("sendto: %d", n)
	}
	port, _ := shadowPort(fd)
	if port == 0 || !r.e.st.steeredUDP[port] {
		t.Fatalf("autobound port %d not steered", port)
	}
	buf := make([]byte, 64)
	var n, sport int
	r.until("peer datagram", func() bool {
		r.peer.do(func(*stackcore.Stack) {
			var p uint16
			n, _, _, p, _ = pu.RecvFrom(buf, false)
			sport = int(p)
		})
		return n > 0
	})
	if string(buf[:n]) != "query" || sport != int(port) {
		t.Fatalf("peer got %q from port %d, want from %d", buf[:n], sport, port)
	}
	r.peer.do(func(*stackcore.Stack) { pu.SendTo([]byte("a longer answer"), mapped(engAddr), port, engMAC) })
	var sa [16]byte
	salen := uint32(len(sa))
	var mflags int32
	small := make([]byte, 8)
	got := r.block(func() int {
		res := r.e.Recv(fd, iov(small), unix.MSG_TRUNC, sa[:], &salen, &mflags)
		if res == neg(unix.EAGAIN) {
			return Wait
		}
		return res
	})
	// MSG_TRUNC in flags: the real length; in msg_flags: the datagram was cut (udp(7))
	if got != 15 || string(small) != "a longer" || mflags&unix.MSG_TRUNC == 0 {
		t.Fatalf("recv: %d %q flags %#x", got, small, mflags)
	}
	if ip, p, _, _ := parseInet4(sa[:]); ip != peerAddr || p != 5353 {
		t.Fatalf("source %v:%d", ip, p)
	}
}

// connect(2) on a UDP socket: send without an address goes to the peer, getpeername answers,
// and connect(AF_UNSPEC) dissolves it (EDESTADDRREQ after).
func TestUDPConnected(t *testing.T) {
	r := newRig(t)
	var pu *stackcore.UDPSocket
	r.peer.do(func(s *stackcore.Stack) { pu, _ = s.UDPBind(7777) })
	fd := r.udpSocket()
	if res := r.e.Connect(fd, sockaddr(peerAddr, 7777)); res != 0 {
		t.Fatalf("connect: %d", res)
	}
	if n := r.e.Send(fd, iov([]byte("hi")), 0, nil); n != 2 {
		t.Fatalf("send: %d", n)
	}
	var n int
	r.until("peer datagram", func() bool {
		r.peer.do(func(*stackcore.Stack) { n, _, _, _, _ = pu.RecvFrom(make([]byte, 8), false) })
		return n == 2
	})
	var sa [16]byte
	salen := uint32(len(sa))
	if r.e.Getpeername(fd, sa[:], &salen) != 0 {
		t.Fatal("getpeername on a connected UDP socket")
	}
	unspec := make([]byte, 16)
	binary16(unspec, unix.AF_UNSPEC)
	r.e.Connect(fd, unspec)
	if res := r.e.Send(fd, iov([]byte("hi")), 0, nil); res != neg(unix.EDESTADDRREQ) {
		t.Fatalf("send after disconnect: %d, want EDESTADDRREQ", res)
	}
}

// Destinations the interface does not route (here loopback) go through the kernel shadow,
// bound to the same port, and their answers are received through it.
func TestUDPKernelPath(t *testing.T) {
	r := newRig(t)
	k, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(k)
	if err := unix.Bind(k, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	kport, _ := shadowPort(k)
	fd := r.udpSocket()
	if res := r.e.Send(fd, iov([]byte("x")), 0, sockaddr([4]byte{127, 0, 0, 1}, kport)); res != Pass {
		t.Fatalf("sendto loopback: %d, want Pass (the shadow sends it)", res)
	}
	// what the interposer does on Pass
	if err := unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(kport)}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	_, from, err := unix.Recvfrom(k, buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(k, []byte("back"), 0, from); err != nil {
		t.Fatal(err)
	}
	var sa [16]byte
	salen := uint32(len(sa))
	n := r.block(func() int {
		res := r.e.Recv(fd, iov(buf), 0, sa[:], &salen, nil)
		if res == neg(unix.EAGAIN) {
			return Wait
		}
		return res
	})
	if n != 4 || string(buf[:4]) != "back" {
		t.Fatalf("recv through the shadow: %d %q", n, buf)
	}
	if ip, p, _, _ := parseInet4(sa[:]); ip != [4]byte{127, 0, 0, 1} || p != kport {
		t.Fatalf("source %v:%d", ip, p)
	}
}

func binary16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
