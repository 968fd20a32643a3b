package xdp

import (
	"bytes"
	"encoding/binary"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// IPv6 addresses of the test network's two ends (newTestNet6) and of a third host.
var (
	ip6A = [16]byte{0xfd, 0, 0, 0x99, 15: 1}
	ip6B = [16]byte{0xfd, 0, 0, 0x99, 15: 2}
	ip6C = [16]byte{0xfd, 0, 0, 0x99, 15: 3}
)

// newTestNet6 is newTestNet with IPv6 addresses too: fd00:99::1 on A, fd00:99::2 on B, with no
// duplicate address detection to wait for.
func newTestNet6(t testing.TB) *testNet {
	t.Helper()
	n := newTestNet(t)
	run(t, "ip", "-n", n.NsA, "addr", "add", "fd00:99::1/64", "dev", n.VethA, "nodad")
	run(t, "ip", "-n", n.NsB, "addr", "add", "fd00:99::2/64", "dev", n.VethB, "nodad")
	return n
}

// frame6 is an Ethernet frame with an IPv6 packet from src to dst whose first next header is
// nh and whose payload (extension headers, then the upper-layer message) is p.
func frame6(t testing.TB, src, dst [16]byte, nh uint8, p []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: macY, DstMAC: macX, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocol(nh), SrcIP: net.IP(src[:]), DstIP: net.IP(dst[:])}
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true}, eth, ip, gopacket.Payload(p)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// extHdr is an options extension header (hop-by-hop, destination options) or a routing header
// of 8*(units+1) bytes, padded with PadN, followed by next header nh.
func extHdr(nh uint8, units int) []byte {
	h := make([]byte, 8*(units+1))
	h[0], h[1] = nh, uint8(units)
	h[2], h[3] = 1, uint8(len(h)-4) // PadN over the rest
	return h
}

// fragHdr is a fragment header followed by next header nh, at offset (8-byte units).
func fragHdr(nh uint8, offset uint16, more bool, id uint32) []byte {
	h := make([]byte, 8)
	h[0] = nh
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:], v)
	binary.BigEndian.PutUint32(h[4:], id)
	return h
}

// ports is the start of a UDP or TCP header from sport to dport, with a few bytes of payload
// (a TCP header's full 20 bytes).
func ports(proto uint8, sport, dport uint16) []byte {
	h := make([]byte, 8)
	if proto == unix.IPPROTO_TCP {
		h = make([]byte, 20)
		h[12], h[13] = 5<<4, 0x10 // data offset 5, ACK
	}
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	return append(h, "flow"...)
}

// ext is an extension header of type typ.
type ext struct {
	typ uint8
	b   []byte
}

func hopByHop(units int) ext { return ext{0, extHdr(0, units)} }
func routing(units int) ext  { return ext{43, extHdr(0, units)} }
func dstOpts(units int) ext  { return ext{60, extHdr(0, units)} }
func fragment(offset uint16, more bool, id uint32) ext {
	return ext{44, fragHdr(0, offset, more, id)}
}

// l6Frame is a TCP or UDP frame from remote:rport to local:lport behind the extension headers
// exts, chained in order.
func l6Frame(t testing.TB, proto uint8, local [16]byte, lport uint16, remote [16]byte, rport uint16, exts ...ext) []byte {
	t.Helper()
	nh := proto
	var p []byte
	for i := len(exts) - 1; i >= 0; i-- {
		h := append([]byte(nil), exts[i].b...)
		h[0] = nh
		p = append(h, p...)
		nh = exts[i].typ
	}
	return frame6(t, remote, local, nh, append(p, ports(proto, rport, lport)...))
}

// icmp6Frame is an ICMPv6 message of type typ from remote to local whose body (after the
// 4-byte field following the checksum) is body.
func icmp6Frame(t testing.TB, typ uint8, local, remote [16]byte, body []byte) []byte {
	t.Helper()
	m := append([]byte{typ, 0, 0, 0, 0, 0, 0x05, 0x00}, body...) // for packet too big: MTU 1280
	return frame6(t, remote, local, unix.IPPROTO_ICMPV6, m)
}

// quote6 is the start of an IPv6 datagram this host sent from local:lport to remote:rport, as
// an ICMPv6 error quotes it, cut to cut bytes after the IPv6 header.
func quote6(proto uint8, local [16]byte, lport uint16, remote [16]byte, rport uint16, cut int) []byte {
	q := make([]byte, 40)
	q[0] = 0x60
	binary.BigEndian.PutUint16(q[4:], 100)
	q[6], q[7] = proto, 64
	copy(q[8:], local[:])
	copy(q[24:], remote[:])
	return append(q, ports(proto, lport, rport)[:cut]...)
}

// TestIPv6SteeringRules runs IPv6 frames through the program: ports and flows decide as for
// IPv4, behind chains of extension headers; later fragments, NDP, echo and MLD pass; ICMPv6
// errors are decided by the flow they quote; the IPv4-mapped entries are IPv4's alone.
func TestIPv6SteeringRules(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	const (
		udp   = unix.IPPROTO_UDP
		tcp   = unix.IPPROTO_TCP
		all   = 7100 // Steer
		listd = 7101 // SteerListed
		v4    = 7102 // Steer of IPv4 (mapped) only
	)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	type frame struct {
		name string
		f    []byte
		want uint32
	}
	check := func(step string, fs ...frame) {
		t.Helper()
		for _, c := range fs {
			if got := verdict(t, s, c.f); got != c.want {
				t.Errorf("%s: %s: action %d, want %d", step, c.name, got, c.want)
			}
		}
	}
	to := func(proto uint8, lport uint16, remote [16]byte, rport uint16, exts ...ext) []byte {
		return l6Frame(t, proto, ip6A, lport, remote, rport, exts...)
	}
	ptb := func(proto uint8, lport uint16, remote [16]byte, rport uint16) []byte {
		return icmp6Frame(t, 2, ip6A, remote, quote6(proto, ip6A, lport, remote, rport, 8))
	}

	must(s.Steer(udp, ip6A, all))
	must(s.Steer(tcp, ip6A, all))
	must(s.SteerListed(udp, ip6A, listd))
	must(s.Steer(udp, Mapped4(ipA), v4))
	check("ports",
		frame{"UDP to a steered port", to(udp, all, ip6B, 5000), xdpRedirect},
		frame{"TCP to a steered port", to(tcp, all, ip6B, 5000), xdpRedirect},
		frame{"listed port without flow", to(udp, listd, ip6B, 5000), xdpPass},
		frame{"unsteered port", to(udp, 7109, ip6B, 5000), xdpPass},
		frame{"other local address", frame6(t, ip6B, ip6C, udp, ports(udp, 5000, all)), xdpPass},
		frame{"TCP header cut before the ports", frame6(t, ip6B, ip6A, tcp, []byte{0x13, 0x88, 0x1b}), xdpPass},
	)
	check("extension headers",
		frame{"hop-by-hop, destination options", to(udp, all, ip6B, 5000, hopByHop(0), dstOpts(0)), xdpRedirect},
		frame{"long hop-by-hop, routing, destination options, TCP", to(tcp, all, ip6B, 5000, hopByHop(3), routing(1), dstOpts(2)), xdpRedirect},
		frame{"four headers", to(udp, all, ip6B, 5000, hopByHop(0), dstOpts(0), routing(0), dstOpts(1)), xdpRedirect},
		frame{"five headers: too many", to(udp, all, ip6B, 5000, hopByHop(0), dstOpts(0), routing(0), dstOpts(0), dstOpts(0)), xdpPass},
		frame{"headers on an unsteered port", to(udp, 7109, ip6B, 5000, hopByHop(0), dstOpts(0)), xdpPass},
		frame{"no next header (59)", frame6(t, ip6B, ip6A, 59, ports(udp, 5000, all)), xdpPass},
		frame{"unknown header (ESP, 50)", frame6(t, ip6B, ip6A, 50, ports(udp, 5000, all)), xdpPass},
		frame{"truncated hop-by-hop", frame6(t, ip6B, ip6A, 0, []byte{17, 0, 1}), xdpPass},
		frame{"hop-by-hop longer than the frame", frame6(t, ip6B, ip6A, 0, append(extHdr(17, 200)[:8], ports(udp, 5000, all)...)), xdpPass},
	)
	// A later fragment has no ports: those l6Frame writes are the payload's bytes.
	check("fragments",
		frame{"later fragment, first not seen", to(udp, all, ip6B, 5000, fragment(185, true, 1)), xdpPass},
		frame{"first fragment", to(udp, all, ip6B, 5000, fragment(0, true, 1)), xdpRedirect},
		frame{"its later fragment", to(udp, 9, ip6B, 9, fragment(185, true, 1)), xdpRedirect},
		frame{"its last fragment, behind destination options", to(udp, 9, ip6B, 9, dstOpts(0), fragment(370, false, 1)), xdpRedirect},
		frame{"later fragment of another id", to(udp, all, ip6B, 5000, fragment(185, true, 2)), xdpPass},
		frame{"later fragment from another source", to(udp, all, ip6C, 5000, fragment(185, true, 1)), xdpPass},
		frame{"hop-by-hop, first fragment", to(udp, all, ip6B, 5000, hopByHop(0), fragment(0, true, 3)), xdpRedirect},
		frame{"its later fragment", to(udp, 9, ip6B, 9, hopByHop(0), fragment(1, false, 3)), xdpRedirect},
		frame{"first fragment to a port not steered, the id reused", to(udp, 7109, ip6B, 5000, fragment(0, true, 1)), xdpPass},
		frame{"its later fragment", to(udp, all, ip6B, 5000, fragment(185, true, 1)), xdpPass},
	)

	must(s.SteerFlow(udp, ip6A, all, ip6B, 5001, FlowToKernel))
	must(s.SteerFlow(udp, ip6A, listd, ip6B, 5002, FlowToUs))
	must(s.SteerFlow(udp, ip6A, all, ip6B, 5003, FlowDrop))
	must(s.SteerFlow(tcp, ip6A, all, ip6C, 5004, FlowToKernel))
	check("flows",
		frame{"flow to the kernel", to(udp, all, ip6B, 5001), xdpPass},
		frame{"flow to the kernel behind headers", to(udp, all, ip6B, 5001, hopByHop(0), dstOpts(0)), xdpPass},
		frame{"other remote port", to(udp, all, ip6B, 5000), xdpRedirect},
		frame{"other remote address", to(udp, all, ip6C, 5001), xdpRedirect},
		frame{"listed flow ours", to(udp, listd, ip6B, 5002), xdpRedirect},
		frame{"listed flow ours, first fragment", to(udp, listd, ip6B, 5002, fragment(0, true, 4)), xdpRedirect},
		frame{"listed port, other flow", to(udp, listd, ip6C, 5002), xdpPass},
		frame{"flow moving", to(udp, all, ip6B, 5003), xdpDrop},
		frame{"TCP flow to the kernel", to(tcp, all, ip6C, 5004), xdpPass},
		frame{"UDP on the ports of a TCP flow", to(udp, all, ip6C, 5004), xdpRedirect},
	)

	q := func(proto uint8, lport uint16, remote [16]byte, rport uint16, cut int) []byte {
		return quote6(proto, ip6A, lport, remote, rport, cut)
	}
	check("ICMPv6",
		frame{"packet too big, steered port", ptb(udp, all, ip6B, 5000), xdpRedirect},
		frame{"packet too big, TCP", ptb(tcp, all, ip6B, 5000), xdpRedirect},
		frame{"packet too big, flow to the kernel", ptb(udp, all, ip6B, 5001), xdpPass},
		frame{"packet too big, listed flow ours", ptb(udp, listd, ip6B, 5002), xdpRedirect},
		frame{"packet too big, listed port, other flow", ptb(udp, listd, ip6C, 5002), xdpPass},
		frame{"packet too big, unsteered port", ptb(udp, 7109, ip6B, 5000), xdpPass},
		frame{"destination unreachable", icmp6Frame(t, 1, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpRedirect},
		frame{"time exceeded", icmp6Frame(t, 3, ip6A, ip6C, q(tcp, all, ip6B, 5000, 8)), xdpRedirect},
		frame{"parameter problem", icmp6Frame(t, 4, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpRedirect},
		frame{"truncated quote", icmp6Frame(t, 2, ip6A, ip6B, q(udp, all, ip6B, 5000, 4)), xdpPass},
		frame{"quote with a hop-by-hop header", icmp6Frame(t, 2, ip6A, ip6B, append(quote6(0, ip6A, all, ip6B, 5000, 0), append(extHdr(udp, 0), ports(udp, all, 5000)...)...)), xdpPass},
		frame{"packet too big behind hop-by-hop", frame6(t, ip6B, ip6A, 0, append(extHdr(unix.IPPROTO_ICMPV6, 0), icmp6Frame(t, 2, ip6A, ip6B, q(udp, all, ip6B, 5000, 8))[54:]...)), xdpRedirect},
		frame{"echo request quoting nothing", icmp6Frame(t, 128, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpPass},
		frame{"echo reply", icmp6Frame(t, 129, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpPass},
		frame{"router solicitation", icmp6Frame(t, 133, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpPass},
		frame{"router advertisement", icmp6Frame(t, 134, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpPass},
		frame{"neighbour solicitation", icmp6Frame(t, 135, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpPass},
		frame{"neighbour advertisement", icmp6Frame(t, 136, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpPass},
		frame{"redirect", icmp6Frame(t, 137, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpPass},
		frame{"MLDv2 report behind hop-by-hop", frame6(t, ip6B, ip6A, 0, append(extHdr(unix.IPPROTO_ICMPV6, 0), icmp6Frame(t, 143, ip6A, ip6B, q(udp, all, ip6B, 5000, 8))[54:]...)), xdpPass},
		frame{"type 0", icmp6Frame(t, 0, ip6A, ip6B, q(udp, all, ip6B, 5000, 8)), xdpPass},
	)

	mappedA := Mapped4(ipA)
	check("IPv4-mapped entries",
		frame{"IPv4 to the IPv4-mapped steering", l4Frame(t, udp, ipA, v4, ipB, 5000), xdpRedirect},
		frame{"IPv4 ICMP error quoting it", icmpErrFrame(t, udp, ipA, v4, ipB, 5000), xdpRedirect},
		frame{"IPv6 to the same port", to(udp, v4, ip6B, 5000), xdpPass},
		frame{"IPv6 to the IPv4-mapped address", frame6(t, ip6B, mappedA, udp, ports(udp, 5000, v4)), xdpPass},
		frame{"IPv4 to a port steered for IPv6", l4Frame(t, udp, ipA, all, ipB, 5000), xdpPass},
	)
	must(s.SteerFlow(udp, mappedA, v4, Mapped4(ipB), 5001, FlowToKernel))
	check("IPv4-mapped flows",
		frame{"IPv4 flow to the kernel", l4Frame(t, udp, ipA, v4, ipB, 5001), xdpPass},
		frame{"IPv4, other flow", l4Frame(t, udp, ipA, v4, ipB, 5000), xdpRedirect},
	)

	must(s.UnsteerFlow(udp, ip6A, all, ip6B, 5001))
	must(s.Unsteer(udp, ip6A, listd))
	check("after Unsteer",
		frame{"flow back to its port's mode", to(udp, all, ip6B, 5001), xdpRedirect},
		frame{"listed flow of an unsteered port", to(udp, listd, ip6B, 5002), xdpPass},
	)
}

// ipv6Of is the IPv6 layer of frame f, or nil.
func ipv6Of(f []byte) *layers.IPv6 {
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	return ip
}

// TestIPv6Wire steers IPv6 over the veth pair: B's datagrams and connection attempts to
// steered ports reach the socket, while neighbour discovery (B must resolve A) and ping stay
// with A's kernel; a fragmented datagram comes whole, its later fragments after the first;
// an ICMPv6 packet too big quoting a steered port comes too.
func TestIPv6Wire(t *testing.T) {
	n := newTestNet6(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_UDP, ip6A, 9600); err != nil {
		t.Fatal(err)
	}
	if err := s.Steer(unix.IPPROTO_TCP, ip6A, 9601); err != nil {
		t.Fatal(err)
	}
	c, err := in(t, n.hB, func() (*net.UDPConn, error) {
		return net.ListenUDP("udp6", &net.UDPAddr{IP: net.IP(ip6B[:])})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := &net.UDPAddr{IP: net.IP(ip6A[:]), Port: 9600}
	msg := []byte("over IPv6")
	if _, err := c.WriteTo(msg, dst); err != nil {
		t.Fatal(err)
	}
	f := receiveMatch(t, s, 3*time.Second, func(f []byte) bool {
		ip := ipv6Of(f)
		return ip != nil && ip.NextHeader == layers.IPProtocolUDP && bytes.HasSuffix(ip.Payload, msg)
	})
	if f == nil {
		t.Fatalf("IPv6 datagram to a steered port not received (neighbour discovery steered?); stats %+v", *s.Stats())
	}

	// Ping: A's kernel answers, the XSK sees no echo request.
	out, err := exec.Command("ip", "netns", "exec", n.NsB, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "fd00:99::1").CombinedOutput()
	if err != nil {
		t.Fatalf("ping -6 with steering: %v\n%s", err, out)
	}
	echo := func(f []byte) bool {
		ip := ipv6Of(f)
		return ip != nil && ip.NextHeader == layers.IPProtocolICMPv6 && len(ip.Payload) > 0 && ip.Payload[0] == 128
	}
	if receiveMatch(t, s, 300*time.Millisecond, echo) != nil {
		t.Fatal("echo request steered to the XSK")
	}

	// TCP: the SYN comes here, the kernel never answers it.
	res := make(chan error, 1)
	go func() {
		_, err := in(t, n.hB, func() (struct{}, error) {
			c, err := net.DialTimeout("tcp6", "[fd00:99::1]:9601", time.Second)
			if err == nil {
				c.Close()
			}
			return struct{}{}, err
		})
		res <- err
	}()
	syn := func(f []byte) bool {
		ip := ipv6Of(f)
		return ip != nil && ip.NextHeader == layers.IPProtocolTCP && len(ip.Payload) >= 14 &&
			binary.BigEndian.Uint16(ip.Payload[2:]) == 9601 && ip.Payload[13]&0x02 != 0
	}
	if receiveMatch(t, s, 3*time.Second, syn) == nil {
		t.Fatal("IPv6 SYN to a steered port not received")
	}
	if err := <-res; err == nil {
		t.Fatal("IPv6 connection to a steered port reached the kernel")
	}

	// A fragmented datagram: all its fragments.
	if _, err := c.WriteTo(make([]byte, 4000), dst); err != nil {
		t.Fatal(err)
	}
	frames := make([][]byte, 16)
	first, later := 0, 0
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		k := s.Receive(frames)
		for _, f := range frames[:k] {
			p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
			if fr, _ := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); fr != nil {
				if fr.FragmentOffset == 0 {
					first++
				} else {
					later++
				}
			}
		}
		s.ReleaseRx()
		time.Sleep(10 * time.Millisecond)
	}
	if first != 1 || later != 2 {
		t.Fatalf("XSK got %d first fragments and %d later ones, want 1 and 2", first, later)
	}

	// Packet too big from B over a raw socket (the kernel sums ICMPv6), quoting a datagram
	// from A's steered port; and one quoting an unsteered port, which stays with the kernel.
	fd, err := in(t, n.hB, func() (int, error) { return unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6) })
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	quoting := func(lport, rport uint16) func([]byte) bool {
		return func(f []byte) bool {
			ip := ipv6Of(f)
			if ip == nil || ip.NextHeader != layers.IPProtocolICMPv6 || len(ip.Payload) < 8+40+4 || ip.Payload[0] != 2 {
				return false
			}
			qp := ip.Payload[8+40:]
			return binary.BigEndian.Uint16(qp) == lport && binary.BigEndian.Uint16(qp[2:]) == rport
		}
	}
	for _, c := range []struct {
		lport uint16
		want  bool
	}{{9600, true}, {9602, false}} {
		m := append([]byte{2, 0, 0, 0, 0, 0, 0x05, 0x00}, quote6(unix.IPPROTO_UDP, ip6A, c.lport, ip6B, 5000, 8)...)
		if err := unix.Sendto(fd, m, 0, &unix.SockaddrInet6{Addr: ip6A}); err != nil {
			t.Fatal(err)
		}
		wait := 3 * time.Second
		if !c.want {
			wait = 300 * time.Millisecond
		}
		if got := receiveMatch(t, s, wait, quoting(c.lport, 5000)) != nil; got != c.want {
			t.Errorf("packet too big quoting port %d: steered %v, want %v", c.lport, got, c.want)
		}
	}
}

// shareIndex is the index in a shares value of n sharers the program picks for a flow from
// remote:rport, computed as the program does.
func shareIndex(remote [16]byte, rport uint16, n uint32) uint32 {
	const k = 0x9e3779b1
	w := func(i int) uint32 { return binary.LittleEndian.Uint32(remote[i:]) }
	a := w(0) ^ w(4) ^ w(8) ^ w(12) ^ 0xffff0000 // the IPv4-mapped prefix folds away
	p := uint32(rport>>8 | rport<<8)             // loaded in network order
	return (a ^ p*k) * k >> 16 % n
}

// TestSharedPortHash steers a shared port, IPv6 and IPv4-mapped, to two sharers, slot 0 (the
// socket) and slot 5 (no socket: the redirect falls back to XDP_PASS), and checks each flow
// goes where the hash says: the IPv6 address folded to 32 bits, an IPv4 address as before.
func TestSharedPortHash(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	info, err := s.prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := info.MapIDs()
	var shares *ebpf.Map
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			t.Fatal(err)
		}
		if mi, err := m.Info(); err == nil && mi.Name == "shares" {
			shares = m
			defer m.Close()
			break
		}
		m.Close()
	}
	if shares == nil {
		t.Fatal("no shares map among the program's maps")
	}
	v := sharesValue{N: 2, Slots: [maxSharers]uint32{0, 5}}
	for _, ip := range [][16]byte{ip6A, Mapped4(ipA)} {
		k := makeSteerKey(unix.IPPROTO_UDP, ip, 7200)
		if err := s.steer.Put(k, portShared); err != nil {
			t.Fatal(err)
		}
		if err := shares.Put(k, v); err != nil {
			t.Fatal(err)
		}
	}
	got := map[uint32]int{}
	for i := 0; i < 64; i++ {
		rport := uint16(40000 + i*7)
		r6 := ip6B
		r6[14] = byte(i)
		r4 := [4]byte{10, 99, byte(i), 2}
		for _, c := range []struct {
			remote [16]byte
			f      []byte
		}{
			{r6, l6Frame(t, unix.IPPROTO_UDP, ip6A, 7200, r6, rport)},
			{Mapped4(r4), l4Frame(t, unix.IPPROTO_UDP, ipA, 7200, r4, rport)},
		} {
			slot := v.Slots[shareIndex(c.remote, rport, v.N)]
			want := uint32(xdpRedirect)
			if slot != 0 {
				want = xdpPass
			}
			if a := verdict(t, s, c.f); a != want {
				t.Errorf("flow from %s:%d: action %d, want %d (slot %d)", net.IP(c.remote[:]), rport, a, want, slot)
			}
			got[slot]++
		}
	}
	if got[0] == 0 || got[5] == 0 {
		t.Errorf("flows per slot %v: want both sharers used", got)
	}
}
