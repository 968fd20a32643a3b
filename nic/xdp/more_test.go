package xdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

func TestOpenBadOptions(t *testing.T) {
	for _, o := range []Options{{Mode: "offload"}, {FrameSize: 3000}, {RingSize: 100}, {FrameSize: 8192}} {
		if s, err := Open("lo", 0, o); err == nil {
			s.Close()
			t.Errorf("Open accepted %+v", o)
		}
	}
	needRoot(t)
	if _, err := Open("no-such-if0", 0, Options{}); err == nil {
		t.Error("Open of a missing interface succeeded")
	}
}

func TestGenericMode(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{Mode: "generic"})
	if s.Mode() != "generic/copy" {
		t.Fatalf("mode %q, want generic/copy", s.Mode())
	}
	if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), 9000); err != nil {
		t.Fatal(err)
	}
	c := udpConnB(t, n, "10.99.0.2:0")
	msg := []byte("generic hello")
	c.WriteTo(msg, &net.UDPAddr{IP: net.IP(ipA[:]), Port: 9000})
	if receiveMatch(t, s, 3*time.Second, func(f []byte) bool { p, _ := udpPayload(f); return bytes.Equal(p, msg) }) == nil {
		t.Fatal("datagram not received in generic mode")
	}
}

func tcpSYNTo(port uint16) func([]byte) bool {
	return func(f []byte) bool {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		return tcp != nil && tcp.SYN && !tcp.ACK && uint16(tcp.DstPort) == port
	}
}

// dialB starts a kernel TCP connect from B with a timeout and reports the result.
func dialB(t testing.TB, n *testNet, addr string, d time.Duration) error {
	_, err := in(t, n.hB, func() (struct{}, error) {
		c, err := net.DialTimeout("tcp4", addr, d)
		if err == nil {
			c.Close()
		}
		return struct{}{}, err
	})
	return err
}

func TestSteerTCPAndUnsteer(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_TCP, Mapped4(ipA), 9200); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- dialB(t, n, "10.99.0.1:9200", time.Second) }()
	if receiveMatch(t, s, 3*time.Second, tcpSYNTo(9200)) == nil {
		t.Fatal("steered SYN not received on the XSK")
	}
	if err := <-res; err == nil {
		t.Fatal("connect to a steered port with nobody answering succeeded")
	}
	// UDP to the same port is a different key: not steered.
	if err := s.Unsteer(unix.IPPROTO_TCP, Mapped4(ipA), 9200); err != nil {
		t.Fatal(err)
	}
	if err := s.Unsteer(unix.IPPROTO_TCP, Mapped4(ipA), 9200); err != nil {
		t.Fatalf("second Unsteer: %v", err)
	}
	// Now the kernel in A answers with RST: connection refused, quickly.
	err := dialB(t, n, "10.99.0.1:9200", 2*time.Second)
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("connect after Unsteer: %v, want ECONNREFUSED", err)
	}
}

// TestFragmentsFollowTheFirst sends fragmented datagrams: to a steered port, the first
// fragment carries the ports and is steered, and the later ones, which have no transport
// header, follow it to the socket; to a port that is not steered, none comes.
func TestFragmentsFollowTheFirst(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), 9000); err != nil {
		t.Fatal(err)
	}
	c := udpConnB(t, n, "10.99.0.2:0")
	count := func(port int) (first, later int) {
		t.Helper()
		if _, err := c.WriteTo(make([]byte, 4000), &net.UDPAddr{IP: net.IP(ipA[:]), Port: port}); err != nil {
			t.Fatal(err)
		}
		frames := make([][]byte, 16)
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			k := s.Receive(frames)
			for _, f := range frames[:k] {
				p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
				if ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ip != nil {
					if ip.FragOffset == 0 && ip.Flags&layers.IPv4MoreFragments != 0 {
						first++
					} else if ip.FragOffset != 0 {
						later++
					}
				}
			}
			s.ReleaseRx()
			time.Sleep(10 * time.Millisecond)
		}
		return first, later
	}
	// 4000 bytes over a 1500-byte MTU: three fragments
	if first, later := count(9000); first != 1 || later != 2 {
		t.Fatalf("steered port: XSK got %d first fragments and %d later ones, want 1 and 2", first, later)
	}
	if first, later := count(9001); first != 0 || later != 0 {
		t.Fatalf("port not steered: XSK got %d first fragments and %d later ones, want none", first, later)
	}
}

// frag4 is an IPv4 fragment from remote to local of datagram id, protocol proto, at offset
// (8-byte units), whose payload starts with the ports rport, lport.
func frag4(t testing.TB, proto uint8, local, remote [4]byte, id, offset uint16, more bool, rport, lport uint16) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: macY, DstMAC: macX, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, FragOffset: offset, Protocol: layers.IPProtocol(proto),
		SrcIP: net.IP(remote[:]), DstIP: net.IP(local[:])}
	if more {
		ip.Flags = layers.IPv4MoreFragments
	}
	p := make([]byte, 16)
	binary.BigEndian.PutUint16(p, rport)
	binary.BigEndian.PutUint16(p[2:], lport)
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, gopacket.Payload(p)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFragmentRules runs IPv4 fragments through the program: a later fragment goes where its
// datagram's first fragment went, found by (source, destination, id, protocol); a first
// fragment that is not steered makes the id's later fragments the kernel's again.
func TestFragmentRules(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	const udp, tcp = unix.IPPROTO_UDP, unix.IPPROTO_TCP
	if err := s.Steer(udp, Mapped4(ipA), 9000); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		f    []byte
		want uint32
	}{
		{"later fragment, first not seen", frag4(t, udp, ipA, ipB, 1, 185, true, 9, 9), xdpPass},
		{"first fragment", frag4(t, udp, ipA, ipB, 1, 0, true, 5000, 9000), xdpRedirect},
		{"its later fragment", frag4(t, udp, ipA, ipB, 1, 185, true, 9, 9), xdpRedirect},
		{"its last fragment", frag4(t, udp, ipA, ipB, 1, 370, false, 9, 9), xdpRedirect},
		{"same id, other protocol", frag4(t, tcp, ipA, ipB, 1, 185, true, 9, 9), xdpPass},
		{"same id, other source", frag4(t, udp, ipA, ipC, 1, 185, true, 9, 9), xdpPass},
		{"other id", frag4(t, udp, ipA, ipB, 2, 185, true, 9, 9), xdpPass},
		{"unfragmented datagram with the id", frag4(t, udp, ipA, ipB, 1, 0, false, 5000, 9001), xdpPass},
		{"later fragment still steered", frag4(t, udp, ipA, ipB, 1, 185, true, 9, 9), xdpRedirect},
		{"first fragment to a port not steered, the id reused", frag4(t, udp, ipA, ipB, 1, 0, true, 5000, 9001), xdpPass},
		{"its later fragment", frag4(t, udp, ipA, ipB, 1, 185, true, 9, 9), xdpPass},
	}
	for _, c := range cases {
		if got := verdict(t, s, c.f); got != c.want {
			t.Errorf("%s: action %d, want %d", c.name, got, c.want)
		}
	}
}

// TestVolume moves many more frames than the UMEM holds in both directions,
// so receive frames go round the fill ring and transmit frames come back
// through the completion ring many times.
func TestVolume(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{NumFrames: 64, RingSize: 32, FrameSize: 2048})
	if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), 9000); err != nil {
		t.Fatal(err)
	}
	c := udpConnB(t, n, "10.99.0.2:9001")
	dst := &net.UDPAddr{IP: net.IP(ipA[:]), Port: 9000}
	const total = 2000
	got := 0
	frames := make([][]byte, 8)
	for sent := 0; sent < total; {
		for range 16 {
			c.WriteTo([]byte{byte(sent), byte(sent >> 8)}, dst)
			sent++
		}
		deadline := time.Now().Add(2 * time.Second)
		for got < sent && time.Now().Before(deadline) {
			k := s.Receive(frames)
			for _, f := range frames[:k] {
				if p, port := udpPayload(f); port == 9000 && len(p) == 2 {
					got++
				}
			}
			s.ReleaseRx()
		}
	}
	if got != total {
		s.RefreshKernelStats()
		t.Fatalf("received %d of %d; stats %+v", got, total, *s.Stats())
	}

	macA := ifaceMAC(t, n, n.hA, n.VethA)
	macB := ifaceMAC(t, n, n.hB, n.VethB)
	frame := buildUDP(t, macA, macB, ipA, ipB, 4242, 9001, []byte("x"))
	done := make(chan int, 1)
	go func() {
		buf := make([]byte, 100)
		k := 0
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for k < total {
			if _, _, err := c.ReadFromUDP(buf); err != nil {
				break
			}
			k++
		}
		done <- k
	}()
	for i := 0; i < total; i++ {
		var buf []byte
		for start := time.Now(); buf == nil && time.Since(start) < 2*time.Second; {
			if buf = s.AllocTx(); buf == nil {
				s.Flush()
				time.Sleep(time.Millisecond)
			}
		}
		if buf == nil {
			t.Fatalf("no tx frame after %d sent; stats %+v", i, *s.Stats())
		}
		s.SubmitTx(buf, copy(buf, frame))
		if i%8 == 7 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Microsecond) // don't overrun B's socket buffer
		}
	}
	s.Flush()
	if k := <-done; k != total {
		t.Fatalf("B received %d of %d; stats %+v", k, total, *s.Stats())
	}
}

func TestNoAllocs(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), 9000); err != nil {
		t.Fatal(err)
	}
	c := udpConnB(t, n, "10.99.0.2:9001")
	const burst = 300
	for range burst {
		c.WriteTo([]byte("alloc test"), &net.UDPAddr{IP: net.IP(ipA[:]), Port: 9000})
	}
	frames := make([][]byte, 1)
	// Wait until all are on the RX ring.
	deadline := time.Now().Add(3 * time.Second)
	for s.rx.Unconsumed() < burst && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	got := 0
	a := testing.AllocsPerRun(200, func() {
		got += s.Receive(frames)
		s.ReleaseRx()
	})
	if a != 0 || got < 200 {
		t.Fatalf("receive path: %v allocs per frame, %d frames", a, got)
	}
	a = testing.AllocsPerRun(200, func() { s.Receive(frames); s.ReleaseRx() }) // idle
	if a != 0 {
		t.Fatalf("idle receive: %v allocs", a)
	}

	macA := ifaceMAC(t, n, n.hA, n.VethA)
	macB := ifaceMAC(t, n, n.hB, n.VethB)
	frame := buildUDP(t, macA, macB, ipA, ipB, 4242, 9001, []byte("x"))
	a = testing.AllocsPerRun(200, func() {
		buf := s.AllocTx()
		s.SubmitTx(buf, copy(buf, frame))
		s.Flush()
	})
	if a != 0 {
		t.Fatalf("transmit path: %v allocs per frame", a)
	}
	if err := s.RefreshKernelStats(); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(10, func() { s.RefreshKernelStats() }); a != 0 {
		t.Fatalf("RefreshKernelStats: %v allocs", a)
	}
}

func TestPollFd(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), 9000); err != nil {
		t.Fatal(err)
	}
	pfd := []unix.PollFd{{Fd: int32(s.Fd()), Events: unix.POLLIN}}
	if k, _ := unix.Poll(pfd, 50); k != 0 {
		t.Fatalf("poll on an idle socket returned %d (revents %#x)", k, pfd[0].Revents)
	}
	c := udpConnB(t, n, "10.99.0.2:0")
	c.WriteTo([]byte("wake"), &net.UDPAddr{IP: net.IP(ipA[:]), Port: 9000})
	pfd[0].Revents = 0
	if k, err := unix.Poll(pfd, 3000); k != 1 || pfd[0].Revents&unix.POLLIN == 0 {
		t.Fatalf("poll after a steered datagram: %d %v revents %#x", k, err, pfd[0].Revents)
	}
	frames := make([][]byte, 4)
	if k := s.Receive(frames); k != 1 {
		t.Fatalf("Receive returned %d", k)
	}
	s.ReleaseRx()
}

func TestMTUTooLarge(t *testing.T) {
	n := newTestNet(t)
	run(t, "ip", "-n", n.NsA, "link", "set", "dev", n.VethA, "mtu", "3000")
	_, err := in(t, n.hA, func() (*Socket, error) { return Open(n.VethA, 0, Options{FrameSize: 2048}) })
	if err == nil {
		t.Fatal("Open accepted mtu 3000 with 2048-byte frames")
	}
	t.Log(err)
}

// The default frame is the smallest that holds the interface's frames after the XDP headroom: the
// kernel pins the whole UMEM, so that is the memory it costs.
func TestDefaultFrameSizeFollowsMTU(t *testing.T) {
	n := newTestNet(t)
	for _, c := range []struct{ mtu, frame int }{{1500, 2048}, {3000, 4096}} {
		run(t, "ip", "-n", n.NsA, "link", "set", "dev", n.VethA, "mtu", fmt.Sprint(c.mtu))
		s := openIn(t, n, Options{})
		if buf := s.AllocTx(); len(buf) != c.frame {
			t.Errorf("mtu %d: frames of %d bytes, want %d", c.mtu, len(buf), c.frame)
		}
		s.Close()
	}
}

// TestIPOptions checks the program finds the ports behind a longer IPv4
// header (IHL 6: four bytes of options).
func TestIPOptions(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), 9000); err != nil {
		t.Fatal(err)
	}
	c := udpConnB(t, n, "10.99.0.2:0")
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IP, unix.IP_OPTIONS, "\x01\x01\x01\x00")
	})
	if serr != nil {
		t.Fatalf("IP_OPTIONS: %v", serr)
	}
	msg := []byte("with options")
	c.WriteTo(msg, &net.UDPAddr{IP: net.IP(ipA[:]), Port: 9000})
	f := receiveMatch(t, s, 3*time.Second, func(f []byte) bool { p, _ := udpPayload(f); return bytes.Equal(p, msg) })
	if f == nil {
		t.Fatal("datagram with IP options not steered")
	}
	if ihl := f[14] & 0x0f; ihl != 6 {
		t.Fatalf("IHL %d, want 6", ihl)
	}
}
