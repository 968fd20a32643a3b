package wire

import "encoding/binary"

// IPv6 is an IPv6 header followed by its payload (RFC 8200 3).
type IPv6 []byte

const (
	EtherTypeIPv6 = 0x86dd

	IPv6VerTCFlow  = 0
	IPv6PayloadLen = 4
	IPv6NextHeader = 6
	IPv6HopLimit   = 7
	IPv6Src        = 8
	IPv6Dst        = 24
	IPv6HeaderLen  = 40
	IPv6MinMTU     = 1280 // RFC 8200 5: every link carries 1280-byte packets

	// Next Header values of extension headers (RFC 8200 4) and ICMPv6.
	ProtoHopByHop   = 0
	ProtoRouting    = 43
	ProtoFragment   = 44
	ProtoESP        = 50
	ProtoAH         = 51
	ProtoICMPv6     = 58
	ProtoNoNext     = 59
	ProtoDestOpts   = 60
	IPv6FragHdrLen  = 8
	IPv6FragOffMask = 0xfff8
	IPv6FragMF      = 1
)

// Valid reports whether b holds version 6 and a payload within b; then the
// accessors are safe and Payload is cut to the payload length (RFC 8200 3;
// Ethernet padding is cut off). A Jumbo Payload (length 0, RFC 2675) is not
// valid: Ethernet cannot carry one.
func (b IPv6) Valid() bool {
	if len(b) < IPv6HeaderLen || b[0]>>4 != 6 {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[IPv6PayloadLen:]))
	return n > 0 && IPv6HeaderLen+n <= len(b)
}

func (b IPv6) TrafficClass() uint8 { return uint8(binary.BigEndian.Uint16(b[0:]) >> 4) }
func (b IPv6) FlowLabel() uint32   { return binary.BigEndian.Uint32(b[0:]) & 0xfffff }
func (b IPv6) PayloadLen() int     { return int(binary.BigEndian.Uint16(b[IPv6PayloadLen:])) }
func (b IPv6) NextHeader() uint8   { return b[IPv6NextHeader] }
func (b IPv6) HopLimit() uint8     { return b[IPv6HopLimit] }
func (b IPv6) Src() (a [16]byte)   { copy(a[:], b[IPv6Src:IPv6Src+16]); return }
func (b IPv6) Dst() (a [16]byte)   { copy(a[:], b[IPv6Dst:IPv6Dst+16]); return }
func (b IPv6) Payload() []byte     { return b[IPv6HeaderLen : IPv6HeaderLen+b.PayloadLen()] }

// Encode writes the header: traffic class, a 20-bit flow label (RFC 6437),
// payload length, next header, hop limit and both addresses.
func (b IPv6) Encode(payloadLen int, tclass uint8, flow uint32, next, hops uint8, src, dst *[16]byte) {
	binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(tclass)<<20|flow&0xfffff)
	binary.BigEndian.PutUint16(b[IPv6PayloadLen:], uint16(payloadLen))
	b[IPv6NextHeader] = next
	b[IPv6HopLimit] = hops
	copy(b[IPv6Src:IPv6Src+16], src[:])
	copy(b[IPv6Dst:IPv6Dst+16], dst[:])
}

// PseudoHeaderChecksum6 is the partial sum of the IPv6 pseudo-header (RFC
// 8200 8.1): source, destination, upper-layer packet length, next header.
func PseudoHeaderChecksum6(proto uint8, src, dst *[16]byte, length int) uint32 {
	var s uint32
	for i := 0; i < 16; i += 2 {
		s += uint32(binary.BigEndian.Uint16(src[i:])) + uint32(binary.BigEndian.Uint16(dst[i:]))
	}
	s += uint32(length>>16) + uint32(length&0xffff) + uint32(proto)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return s
}

// ExtHeader is one IPv6 extension header other than Fragment: Hop-by-Hop
// Options, Routing or Destination Options (RFC 8200 4.3-4.6), which share the
// form next header, length in 8-octet units not counting the first 8, data.
type ExtHeader []byte

// ExtHeaderLen returns the length of the extension header at the start of b,
// or 0 when b is too short to hold it.
func ExtHeaderLen(b []byte) int {
	if len(b) < 8 {
		return 0
	}
	n := (int(b[1]) + 1) * 8
	if n > len(b) {
		return 0
	}
	return n
}

// Fragment header fields (RFC 8200 4.5), at the start of b (8 bytes).
func FragNext(b []byte) uint8       { return b[0] }
func FragOffset(b []byte) int       { return int(binary.BigEndian.Uint16(b[2:]) & IPv6FragOffMask) }
func FragMore(b []byte) bool        { return binary.BigEndian.Uint16(b[2:])&IPv6FragMF != 0 }
func FragIdent(b []byte) uint32     { return binary.BigEndian.Uint32(b[4:]) }
func IsLinkLocal6(a *[16]byte) bool { return a[0] == 0xfe && a[1]&0xc0 == 0x80 }
func IsMulticast6(a *[16]byte) bool { return a[0] == 0xff }

// ChecksumOK6 verifies the checksum including the IPv6 pseudo-header.
func (b TCP) ChecksumOK6(src, dst *[16]byte) bool {
	return Checksum(b, PseudoHeaderChecksum6(ProtoTCP, src, dst, len(b))) == 0xffff
}

// SetChecksumIPv6 computes and stores the checksum over b with the IPv6 pseudo-header.
func (b TCP) SetChecksumIPv6(src, dst *[16]byte) {
	b[TCPChecksum], b[TCPChecksum+1] = 0, 0
	b.SetChecksum(Finish(Checksum(b, PseudoHeaderChecksum6(ProtoTCP, src, dst, len(b)))))
}

// ChecksumOK6 verifies the checksum over the datagram with the IPv6
// pseudo-header. Unlike IPv4, a zero checksum is invalid (RFC 8200 8.1).
func (b UDP) ChecksumOK6(src, dst *[16]byte) bool {
	if b.Checksum() == 0 {
		return false
	}
	d := b[:b.Length()]
	return Checksum(d, PseudoHeaderChecksum6(ProtoUDP, src, dst, len(d))) == 0xffff
}

// SetChecksumIPv6 computes and stores the checksum over b with the IPv6
// pseudo-header; a computed zero is sent as 0xffff (RFC 8200 8.1).
func (b UDP) SetChecksumIPv6(src, dst *[16]byte) {
	b[UDPChecksum], b[UDPChecksum+1] = 0, 0
	c := Finish(Checksum(b, PseudoHeaderChecksum6(ProtoUDP, src, dst, len(b))))
	if c == 0 {
		c = 0xffff
	}
	b.SetChecksum(c)
}

// ICMPv6 is an ICMPv6 message (RFC 4443): type, code, checksum, four bytes
// whose meaning depends on the type (the MTU of Packet Too Big, the pointer
// of Parameter Problem), then the body. The header layout is ICMPv4's.
type ICMPv6 []byte

// ICMPv6 types and codes (RFC 4443 2.1, 3).
const (
	ICMPv6DestUnreach  = 1
	ICMPv6PacketTooBig = 2
	ICMPv6TimeExceeded = 3
	ICMPv6ParamProblem = 4
	ICMPv6EchoRequest  = 128

	ICMPv6NoRoute         = 0
	ICMPv6AdminProhibited = 1
	ICMPv6BeyondScope     = 2
	ICMPv6AddrUnreach     = 3
	ICMPv6PortUnreach     = 4
	ICMPv6RejectRoute     = 6
)

func (b ICMPv6) Valid() bool     { return len(b) >= ICMPHeaderLen }
func (b ICMPv6) Type() uint8     { return b[ICMPType] }
func (b ICMPv6) Code() uint8     { return b[ICMPCode] }
func (b ICMPv6) MTU() uint32     { return binary.BigEndian.Uint32(b[4:]) }
func (b ICMPv6) Body() []byte    { return b[ICMPHeaderLen:] }
func (b ICMPv6) IsError() bool   { return b.Type() < 128 } // RFC 4443 2.1
func (b ICMPv6) SetMTU(v uint32) { binary.BigEndian.PutUint32(b[4:], v) }

// ChecksumOK verifies the checksum with the IPv6 pseudo-header (RFC 4443 2.3).
func (b ICMPv6) ChecksumOK(src, dst *[16]byte) bool {
	return Checksum(b, PseudoHeaderChecksum6(ProtoICMPv6, src, dst, len(b))) == 0xffff
}

// SetChecksum computes and stores the checksum with the IPv6 pseudo-header.
func (b ICMPv6) SetChecksum(src, dst *[16]byte) {
	b[ICMPChecksum], b[ICMPChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(b[ICMPChecksum:], Finish(Checksum(b, PseudoHeaderChecksum6(ProtoICMPv6, src, dst, len(b)))))
}
