package xdp

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

const xdpRedirect = 4

// verdict runs frame through the socket's attached program with
// BPF_PROG_TEST_RUN and returns the XDP action: xdpRedirect when the
// program redirected to the socket (its queue 0 entry is in xsks), xdpPass
// when it left the frame to the kernel.
func verdict(t testing.TB, s *Socket, frame []byte) uint32 {
	t.Helper()
	ret, err := s.prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("running the program: %v", err)
	}
	return ret
}

var (
	macX = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macY = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ipC  = [4]byte{10, 99, 0, 3}
)

// l4Frame is a TCP or UDP frame from remote:rport to local:lport.
func l4Frame(t testing.TB, proto uint8, local [4]byte, lport uint16, remote [4]byte, rport uint16) []byte {
	t.Helper()
	if proto == unix.IPPROTO_UDP {
		return buildUDP(t, macY, macX, remote, local, rport, lport, []byte("flow"))
	}
	eth := &layers.Ethernet{SrcMAC: macY, DstMAC: macX, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(remote[:]), DstIP: net.IP(local[:])}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(rport), DstPort: layers.TCPPort(lport), Seq: 1, ACK: true, Ack: 1, Window: 1024}
	tcp.SetNetworkLayerForChecksum(ip)
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload("flow")); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// icmpErrFrame is a port unreachable from remote to local quoting a
// datagram this host sent on the flow: local:lport to remote:rport.
func icmpErrFrame(t testing.TB, proto uint8, local [4]byte, lport uint16, remote [4]byte, rport uint16) []byte {
	t.Helper()
	q := make([]byte, 28)
	q[0] = 0x45
	binary.BigEndian.PutUint16(q[2:], 100)
	q[8], q[9] = 64, proto
	copy(q[12:], local[:])
	copy(q[16:], remote[:])
	binary.BigEndian.PutUint16(q[20:], lport)
	binary.BigEndian.PutUint16(q[22:], rport)
	eth := &layers.Ethernet{SrcMAC: macY, DstMAC: macX, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IP(remote[:]), DstIP: net.IP(local[:])}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, icmp, gopacket.Payload(q)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFlowSteeringRules runs frames through the program, one rule at a
// time: a steered port's mode decides flows that are not listed (portAll:
// redirect, portListed: pass), a listed flow overrides it (FlowToKernel:
// pass, FlowToUs: redirect), ICMP errors are decided by the flow they quote
// reversed, and UnsteerFlow gives a flow back to its port's mode.
func TestFlowSteeringRules(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	const (
		udp   = unix.IPPROTO_UDP
		tcp   = unix.IPPROTO_TCP
		all   = 7000 // Steer
		listd = 7001 // SteerListed
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
	udpTo := func(lport uint16, remote [4]byte, rport uint16) []byte {
		return l4Frame(t, udp, ipA, lport, remote, rport)
	}
	icmpOn := func(lport uint16, remote [4]byte, rport uint16) []byte {
		return icmpErrFrame(t, udp, ipA, lport, remote, rport)
	}

	must(s.Steer(udp, Mapped4(ipA), all))
	must(s.Steer(tcp, Mapped4(ipA), all))
	must(s.SteerListed(udp, Mapped4(ipA), listd))
	check("no flows",
		frame{"mode 1 without flow", udpTo(all, ipB, 5000), xdpRedirect},
		frame{"mode 1 without flow, TCP", l4Frame(t, tcp, ipA, all, ipB, 5000), xdpRedirect},
		frame{"mode 2 without flow", udpTo(listd, ipB, 5000), xdpPass},
		frame{"unsteered port", udpTo(7002, ipB, 5000), xdpPass},
		frame{"ICMP error, mode 1 without flow", icmpOn(all, ipB, 5000), xdpRedirect},
		frame{"ICMP error, mode 2 without flow", icmpOn(listd, ipB, 5000), xdpPass},
	)

	must(s.SteerFlow(udp, Mapped4(ipA), all, Mapped4(ipB), 5001, FlowToKernel))
	must(s.SteerFlow(udp, Mapped4(ipA), listd, Mapped4(ipB), 5002, FlowToUs))
	must(s.SteerFlow(udp, Mapped4(ipA), 7002, Mapped4(ipB), 5003, FlowToUs))
	must(s.SteerFlow(udp, Mapped4(ipA), all, Mapped4(ipB), 5006, FlowDrop))
	must(s.SteerFlow(udp, Mapped4(ipA), listd, Mapped4(ipB), 5007, FlowDrop))
	check("flows listed",
		frame{"mode 1 + flow value 3 (moving)", udpTo(all, ipB, 5006), xdpDrop},
		frame{"mode 2 + flow value 3 (moving)", udpTo(listd, ipB, 5007), xdpDrop},
		frame{"mode 1 + flow value 2", udpTo(all, ipB, 5001), xdpPass},
		frame{"mode 1, other remote port", udpTo(all, ipB, 5000), xdpRedirect},
		frame{"mode 1, other remote address", udpTo(all, ipC, 5001), xdpRedirect},
		frame{"mode 1, same ports over TCP", l4Frame(t, tcp, ipA, all, ipB, 5001), xdpRedirect},
		frame{"mode 2 + flow value 1", udpTo(listd, ipB, 5002), xdpRedirect},
		frame{"mode 2, other remote port", udpTo(listd, ipB, 5000), xdpPass},
		frame{"mode 2, other remote address", udpTo(listd, ipC, 5002), xdpPass},
		frame{"flow value 1 on an unsteered port", udpTo(7002, ipB, 5003), xdpPass},
		frame{"ICMP error quoting a flow with value 2", icmpOn(all, ipB, 5001), xdpPass},
		frame{"ICMP error quoting a flow with value 1", icmpOn(listd, ipB, 5002), xdpRedirect},
	)

	must(s.UnsteerFlow(udp, Mapped4(ipA), all, Mapped4(ipB), 5001))
	must(s.UnsteerFlow(udp, Mapped4(ipA), listd, Mapped4(ipB), 5002))
	must(s.UnsteerFlow(udp, Mapped4(ipA), listd, Mapped4(ipB), 5002)) // missing: not an error
	check("after UnsteerFlow",
		frame{"mode 1 rule restored", udpTo(all, ipB, 5001), xdpRedirect},
		frame{"mode 1 rule restored, ICMP error", icmpOn(all, ipB, 5001), xdpRedirect},
		frame{"mode 2 rule restored", udpTo(listd, ipB, 5002), xdpPass},
	)

	// The port's mode is replaced either way; Unsteer of the port
	// overrides its flows.
	must(s.SteerFlow(udp, Mapped4(ipA), listd, Mapped4(ipB), 5004, FlowToKernel))
	must(s.Steer(udp, Mapped4(ipA), listd))
	must(s.SteerListed(udp, Mapped4(ipA), all))
	check("modes swapped",
		frame{"SteerListed replaced Steer", udpTo(all, ipB, 5000), xdpPass},
		frame{"Steer replaced SteerListed", udpTo(listd, ipB, 5000), xdpRedirect},
		frame{"flow value 2 under Steer", udpTo(listd, ipB, 5004), xdpPass},
	)
	must(s.SteerFlow(udp, Mapped4(ipA), all, Mapped4(ipB), 5005, FlowToUs))
	must(s.Unsteer(udp, Mapped4(ipA), all))
	check("port unsteered",
		frame{"flow value 1 on an unsteered port", udpTo(all, ipB, 5005), xdpPass},
	)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SteerFlow(udp, Mapped4(ipA), all, Mapped4(ipB), 1, FlowToUs); !errors.Is(err, ErrClosed) {
		t.Errorf("SteerFlow after Close: %v, want ErrClosed", err)
	}
	if err := s.UnsteerFlow(udp, Mapped4(ipA), all, Mapped4(ipB), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("UnsteerFlow after Close: %v, want ErrClosed", err)
	}
	if err := s.SteerListed(udp, Mapped4(ipA), all); !errors.Is(err, ErrClosed) {
		t.Errorf("SteerListed after Close: %v, want ErrClosed", err)
	}
}

// dialBFrom connects from B's local port lport to addr with a kernel TCP
// socket and reports the result.
func dialBFrom(t testing.TB, n *testNet, lport int, addr string, d time.Duration) error {
	_, err := in(t, n.hB, func() (struct{}, error) {
		dl := net.Dialer{Timeout: d, LocalAddr: &net.TCPAddr{IP: net.IP(ipB[:]), Port: lport}}
		c, err := dl.Dial("tcp4", addr)
		if err == nil {
			c.Close()
		}
		return struct{}{}, err
	})
	return err
}

func tcpSYNFrom(sport, dport uint16) func([]byte) bool {
	syn := tcpSYNTo(dport)
	return func(f []byte) bool {
		return syn(f) && binary.BigEndian.Uint16(f[14+int(f[14]&0x0f)*4:]) == sport
	}
}

// TestFlowSteeringWire checks the rules with real connections over the veth
// pair to a port that A's kernel listens on: a flow handed to the kernel
// connects while the rest of a Steer'ed port comes to the socket, and under
// SteerListed the kernel accepts every flow except the one listed as ours.
func TestFlowSteeringWire(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	ln, err := in(t, n.hA, func() (net.Listener, error) { return net.Listen("tcp4", "10.99.0.1:9300") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const addr = "10.99.0.1:9300"

	if err := s.Steer(unix.IPPROTO_TCP, Mapped4(ipA), 9300); err != nil {
		t.Fatal(err)
	}
	if err := s.SteerFlow(unix.IPPROTO_TCP, Mapped4(ipA), 9300, Mapped4(ipB), 40001, FlowToKernel); err != nil {
		t.Fatal(err)
	}
	if err := dialBFrom(t, n, 40001, addr, 3*time.Second); err != nil {
		t.Fatalf("flow handed to the kernel on a steered port: %v", err)
	}
	res := make(chan error, 1)
	go func() { res <- dialBFrom(t, n, 40002, addr, time.Second) }()
	if receiveMatch(t, s, 3*time.Second, tcpSYNFrom(40002, 9300)) == nil {
		t.Fatal("SYN of an unlisted flow on a steered port not received on the XSK")
	}
	if err := <-res; err == nil {
		t.Fatal("unlisted flow on a steered port reached the kernel")
	}

	if err := s.SteerFlow(unix.IPPROTO_TCP, Mapped4(ipA), 9300, Mapped4(ipB), 40003, FlowToUs); err != nil {
		t.Fatal(err)
	}
	if err := s.SteerListed(unix.IPPROTO_TCP, Mapped4(ipA), 9300); err != nil {
		t.Fatal(err)
	}
	if err := dialBFrom(t, n, 40004, addr, 3*time.Second); err != nil {
		t.Fatalf("unlisted flow on a listed port: %v", err)
	}
	go func() { res <- dialBFrom(t, n, 40003, addr, time.Second) }()
	if receiveMatch(t, s, 3*time.Second, tcpSYNFrom(40003, 9300)) == nil {
		t.Fatal("SYN of a flow listed as ours not received on the XSK")
	}
	if err := <-res; err == nil {
		t.Fatal("flow listed as ours reached the kernel")
	}
}
