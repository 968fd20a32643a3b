// The fuzz binaries (scripts/fuzz.sh builds them with -tags ustack_fuzz) leave this file out:
// gopacket triples the coverage counters the fuzzer scans after every input.

//go:build !ustack_fuzz

package stackcore

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"ustack/nic/pair"
)

// Every frame we emit (SYN with options, SYN-ACK, data, ACK, FIN, RST) must
// decode with gopacket as Ethernet/IPv4/TCP with valid checksums
// (RFC 791 3.1, RFC 9293 3.1).
func TestFramesParseWithGopacket(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	var frames [][]byte
	capture := func(_ uint64, f []byte) bool {
		frames = append(frames, append([]byte(nil), f...))
		return false
	}
	n.a.end.Hook, n.b.end.Hook = capture, capture
	c, s, _ := n.connect(80)
	n.transfer(c, s, pattern(5000, 1), true, 10*Second)
	n.transfer(s, c, pattern(3001, 2), true, 10*Second)
	n.a.s.Connect(n.now, 40001, mapB, 81, macB) // refused: RST
	n.settle()
	var syn, synack, fin, rst, data int
	for i, f := range frames {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("frame %d: %v", i, el.Error())
		}
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil {
			t.Fatalf("frame %d: not IPv4/TCP", i)
		}
		tcp.SetNetworkLayerForChecksum(ip)
		if err, bad := p.VerifyChecksums(); err != nil || len(bad) != 0 {
			t.Fatalf("frame %d: checksum %v %v", i, err, bad)
		}
		if ip.TTL != 64 || ip.Flags&layers.IPv4DontFragment == 0 || int(ip.Length) != len(f)-14 {
			t.Fatalf("frame %d: ip %+v", i, ip)
		}
		if tcp.SYN {
			var mss, ws bool
			for _, o := range tcp.Options {
				switch o.OptionType {
				case layers.TCPOptionKindMSS:
					mss = o.OptionData[0] == 1460>>8 && o.OptionData[1] == 1460&0xff
				case layers.TCPOptionKindWindowScale:
					ws = o.OptionData[0] == 7 // covers RecvBufMax, 4 MiB
				}
			}
			if !mss || !ws {
				t.Fatalf("frame %d: SYN options %v", i, tcp.Options)
			}
			if tcp.ACK {
				synack++
			} else {
				syn++
			}
		}
		if tcp.FIN {
			fin++
		}
		if tcp.RST {
			rst++
		}
		if len(tcp.Payload) > 0 {
			data++
		}
	}
	// The cross-check itself must notice a bad checksum.
	bad := append([]byte(nil), frames[0]...)
	bad[len(bad)-1] ^= 0x40
	p := gopacket.NewPacket(bad, layers.LayerTypeEthernet, gopacket.Default)
	p.Layer(layers.LayerTypeTCP).(*layers.TCP).SetNetworkLayerForChecksum(p.Layer(layers.LayerTypeIPv4).(*layers.IPv4))
	if _, mism := p.VerifyChecksums(); len(mism) == 0 {
		t.Fatal("gopacket did not flag a corrupted frame")
	}
	if syn != 2 || synack != 1 || fin != 2 || rst != 1 || data < 6 {
		t.Fatalf("syn %d synack %d fin %d rst %d data %d", syn, synack, fin, rst, data)
	}
}
