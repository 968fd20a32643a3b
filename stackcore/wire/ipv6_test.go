package wire

import (
	"encoding/binary"
	"testing"
)

// refPseudo6 is the IPv6 pseudo-header of RFC 8200 8.1 laid out in bytes and
// summed by refChecksum: source, destination, 32-bit length, 3 zero bytes,
// next header.
func refPseudo6(proto uint8, src, dst *[16]byte, n int) uint32 {
	b := make([]byte, 40)
	copy(b, src[:])
	copy(b[16:], dst[:])
	binary.BigEndian.PutUint32(b[32:], uint32(n))
	b[39] = proto
	return refChecksum(b, 0)
}

// FuzzIPv6Parsers runs the IPv6 views over arbitrary bytes: Valid makes the
// accessors safe and Payload the payload length long (RFC 8200 3); the
// extension-header walk (4.1) and the Fragment fields (4.5) stay within the
// buffer; ICMPv6 (RFC 4443 2.3), TCP and UDP checksums written with the
// pseudo-header verify, and match the reference; a computed UDP zero is sent
// as 0xffff and a zero one never verifies (RFC 8200 8.1).
func FuzzIPv6Parsers(f *testing.F) {
	h := make([]byte, 40)
	h[0] = 0x60
	h[8], h[23], h[24], h[39] = 0xfd, 0xa, 0xfd, 0xb
	with := func(next uint8, p ...byte) []byte {
		b := append(append([]byte(nil), h...), p...)
		b[IPv6NextHeader] = next
		binary.BigEndian.PutUint16(b[IPv6PayloadLen:], uint16(len(p)))
		return b
	}
	f.Add(with(ProtoUDP, 0x13, 0x88, 0x17, 0x70, 0, 9, 0, 0, 'x'))
	f.Add(with(ProtoTCP, 0, 80, 0x9c, 0x40, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 0xff, 0xff, 0, 0, 0, 0))
	f.Add(with(ProtoHopByHop, ProtoDestOpts, 0, 1, 4, 0, 0, 0, 0, ProtoRouting, 0, 1, 0, 0, 0, 0, 0,
		ProtoFragment, 0, 4, 0, 0, 0, 0, 0, ProtoUDP, 0, 0, 9, 0, 0, 0, 7, 0x13, 0x88, 0x17, 0x70, 0, 9, 0, 0, 'x'))
	f.Add(with(ProtoICMPv6, ICMPv6PacketTooBig, 0, 0, 0, 0, 0, 5, 0, 0x60, 0, 0, 0, 0, 8, ProtoUDP, 64,
		0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa,
		0x13, 0x88, 0x17, 0x70, 0, 8, 0, 0))
	f.Add(with(ProtoFragment, ProtoTCP, 0, 0x05, 0x01, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, b []byte) {
		ip := IPv6(b)
		if !ip.Valid() {
			return
		}
		if len(ip.Payload()) != ip.PayloadLen() || ip.PayloadLen() == 0 {
			t.Fatalf("payload %d, length %d", len(ip.Payload()), ip.PayloadLen())
		}
		_, _, _ = ip.TrafficClass(), ip.FlowLabel(), ip.HopLimit()
		src, dst := ip.Src(), ip.Dst()
		_, _ = IsLinkLocal6(&src), IsMulticast6(&dst)
		next, p := ip.NextHeader(), ip.Payload()
		for range 16 {
			if next == ProtoFragment {
				if len(p) < IPv6FragHdrLen {
					break
				}
				if off := FragOffset(p); off%8 != 0 || off > 0xfff8 {
					t.Fatalf("fragment offset %d", off)
				}
				_, _ = FragMore(p), FragIdent(p)
				next, p = FragNext(p), p[IPv6FragHdrLen:]
				continue
			}
			if next != ProtoHopByHop && next != ProtoRouting && next != ProtoDestOpts {
				break
			}
			n := ExtHeaderLen(p)
			if n == 0 {
				break
			}
			if n < 8 || n%8 != 0 || n > len(p) || n != (int(p[1])+1)*8 {
				t.Fatalf("extension header length %d of %d bytes", n, len(p))
			}
			next, p = p[0], p[n:]
		}
		if m := ICMPv6(p); m.Valid() {
			_, _, _, _ = m.Type(), m.Code(), m.MTU(), m.Body()
			_ = m.IsError()
			c := append(ICMPv6(nil), m...)
			c.SetChecksum(&src, &dst)
			if !c.ChecksumOK(&src, &dst) {
				t.Fatal("ICMPv6 checksum written does not verify")
			}
			if m.ChecksumOK(&src, &dst) != (refChecksum(m, refPseudo6(ProtoICMPv6, &src, &dst, len(m))) == 0xffff) {
				t.Fatal("ICMPv6 checksum disagrees with the reference")
			}
		}
		if u := UDP(p); u.Valid() {
			_ = u.Payload()
			ok := u.ChecksumOK6(&src, &dst)
			if u.Checksum() == 0 && ok {
				t.Fatal("zero UDP checksum accepted over IPv6")
			}
			c := append(UDP(nil), p[:u.Length()]...)
			c.SetChecksumIPv6(&src, &dst)
			if c.Checksum() == 0 || !c.ChecksumOK6(&src, &dst) {
				t.Fatalf("UDP checksum %x written does not verify", c.Checksum())
			}
		}
		if tcp := TCP(p); tcp.Valid() {
			_ = ParseTCPOptions(tcp.Options())
			c := append(TCP(nil), tcp...)
			c.SetChecksumIPv6(&src, &dst)
			if !c.ChecksumOK6(&src, &dst) {
				t.Fatal("TCP checksum written does not verify")
			}
			if tcp.ChecksumOK6(&src, &dst) != (refChecksum(tcp, refPseudo6(ProtoTCP, &src, &dst, len(tcp))) == 0xffff) {
				t.Fatal("TCP checksum disagrees with the reference")
			}
		}
	})
}

// RFC 8200 8.1: the pseudo-header sum equals the reference for lengths
// beyond 16 bits too (a jumbogram's upper-layer length is 32 bits).
func TestPseudoHeaderChecksum6(t *testing.T) {
	src := [16]byte{0xfe, 0x80, 15: 1}
	dst := [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	for _, n := range []int{0, 1, 40, 0xffff, 0x10000, 0x12345678} {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP, ProtoICMPv6} {
			got, want := PseudoHeaderChecksum6(proto, &src, &dst, n), refPseudo6(proto, &src, &dst, n)
			if got%0xffff != want%0xffff {
				t.Fatalf("len %d proto %d: %x, reference %x", n, proto, got, want)
			}
		}
	}
}
