// The fuzz binaries (scripts/fuzz.sh builds them with -tags ustack_fuzz) leave this file out, as
// gopacket_test.go.

//go:build !ustack_fuzz

package stackcore

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"ustack/nic/pair"
)

// Every IPv6 frame we emit (SYN, SYN-ACK, data, ACK, FIN, RST, UDP) decodes
// with gopacket as Ethernet/IPv6/TCP or UDP with valid checksums (RFC 8200
// 3, 8.1); the payload length is the frame's, the hop limit 64, and each
// direction of a connection carries one non-zero flow label (RFC 6437 3:
// the same for all packets of a flow). gopacket also reads our test
// builders' extension headers and fragments as what they claim to be.
func TestIPv6FramesParseWithGopacket(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	fa, fb := record(n.a.end), record(n.b.end)
	c, s, _ := n.connectTo(80, ulaB)
	n.transfer(c, s, pattern(5000, 1), true, 10*Second)
	n.transfer(s, c, pattern(3001, 2), true, 10*Second)
	n.a.s.Connect(n.now, 40001, ulaB, 81, macB) // refused: RST
	u, v := mustBind(t, n.a.s, 5000), mustBind(t, n.b.s, 6000)
	u.SendTo([]byte("ping"), llB, 6000, macB)
	n.settle()
	_, _, src, sport := recvOne(t, v, 10)
	v.SendTo([]byte("pong"), src, sport, macA)
	n.settle()
	type flow struct {
		src, dst     [16]byte
		sport, dport layers.TCPPort
	}
	labels := map[flow]uint32{}
	var syn, synack, rst, data, udp int
	for i, f := range append(*fa, *fb...) {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("frame %d: %v", i, el.Error())
		}
		ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if ip == nil || ip.Version != 6 || ip.HopLimit != 64 || int(ip.Length) != len(f)-14-40 {
			t.Fatalf("frame %d: ip %+v", i, ip)
		}
		if l, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP); l != nil {
			l.SetNetworkLayerForChecksum(ip)
			udp++
		} else if tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP); tcp != nil {
			tcp.SetNetworkLayerForChecksum(ip)
			k := flow{[16]byte(ip.SrcIP.To16()), [16]byte(ip.DstIP.To16()), tcp.SrcPort, tcp.DstPort}
			if ip.FlowLabel == 0 && !tcp.RST {
				t.Fatalf("frame %d: flow label 0", i)
			}
			if l, ok := labels[k]; ok && l != ip.FlowLabel && !tcp.RST {
				t.Fatalf("frame %d: flow label %x, earlier %x", i, ip.FlowLabel, l)
			} else if !tcp.RST {
				labels[k] = ip.FlowLabel
			}
			switch {
			case tcp.SYN && tcp.ACK:
				synack++
			case tcp.SYN:
				syn++
			case tcp.RST:
				rst++
			case len(tcp.Payload) > 0:
				data++
			}
		} else {
			t.Fatalf("frame %d: neither TCP nor UDP", i)
		}
		if err, bad := p.VerifyChecksums(); err != nil || len(bad) != 0 {
			t.Fatalf("frame %d: checksum %v %v", i, err, bad)
		}
	}
	if syn != 2 || synack != 1 || rst != 1 || data < 4 || udp != 2 || len(labels) != 3 { // both directions, and the refused SYN
		t.Fatalf("syn %d synack %d rst %d data %d udp %d flows %d", syn, synack, rst, data, udp, len(labels))
	}

	// The test builders: a Hop-by-Hop, Routing, Destination Options chain and fragments.
	f := withExt(udp6Frame(ulaA, ulaB, 1, 2, []byte("hello")), optsHdr(0, 0x1e, 2, 0, 0), routingHdr(0), optsHdr(60))
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if p.ErrorLayer() != nil || p.Layer(layers.LayerTypeIPv6HopByHop) == nil || p.Layer(layers.LayerTypeIPv6Routing) == nil ||
		p.Layer(layers.LayerTypeIPv6Destination) == nil || p.Layer(layers.LayerTypeUDP) == nil {
		t.Fatalf("extension chain: %v", p)
	}
	p.Layer(layers.LayerTypeUDP).(*layers.UDP).SetNetworkLayerForChecksum(p.Layer(layers.LayerTypeIPv6).(*layers.IPv6))
	if err, bad := p.VerifyChecksums(); err != nil || len(bad) != 0 {
		t.Fatalf("extension chain checksum %v %v", err, bad)
	}
	for _, fr := range frag6(udp6Frame(ulaA, ulaB, 1, 2, pattern(3000, 1)), 9, 1232, 2464) {
		p := gopacket.NewPacket(fr, layers.LayerTypeEthernet, gopacket.Default)
		if l, _ := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); l == nil || l.Identification != 9 {
			t.Fatalf("fragment: %v", p)
		}
	}
}
