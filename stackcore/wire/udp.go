package wire

import "encoding/binary"

// UDP is a UDP header followed by its payload (RFC 768).
type UDP []byte

const (
	UDPSrcPort   = 0
	UDPDstPort   = 2
	UDPLength    = 4
	UDPChecksum  = 6
	UDPHeaderLen = 8
)

// Valid reports whether b holds a header whose length field is at least 8
// and fits in b. Payload is then bounded by the length field (RFC 768).
func (b UDP) Valid() bool {
	if len(b) < UDPHeaderLen {
		return false
	}
	l := int(binary.BigEndian.Uint16(b[UDPLength:]))
	return l >= UDPHeaderLen && l <= len(b)
}

func (b UDP) SrcPort() uint16  { return binary.BigEndian.Uint16(b[UDPSrcPort:]) }
func (b UDP) DstPort() uint16  { return binary.BigEndian.Uint16(b[UDPDstPort:]) }
func (b UDP) Length() int      { return int(binary.BigEndian.Uint16(b[UDPLength:])) }
func (b UDP) Checksum() uint16 { return binary.BigEndian.Uint16(b[UDPChecksum:]) }
func (b UDP) Payload() []byte  { return b[UDPHeaderLen:b.Length()] }

func (b UDP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(b[UDPSrcPort:], p) }
func (b UDP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(b[UDPDstPort:], p) }
func (b UDP) SetLength(n int)     { binary.BigEndian.PutUint16(b[UDPLength:], uint16(n)) }
func (b UDP) SetChecksum(c uint16) {
	binary.BigEndian.PutUint16(b[UDPChecksum:], c)
}

// ChecksumOK verifies the checksum over the datagram (its length field's
// worth of b) with the IPv4 pseudo-header. A zero checksum means the sender
// computed none (RFC 768) and is accepted.
func (b UDP) ChecksumOK(src, dst [4]byte) bool {
	if b.Checksum() == 0 {
		return true
	}
	d := b[:b.Length()]
	return Checksum(d, PseudoHeaderChecksum(ProtoUDP, src, dst, uint16(len(d)))) == 0xffff
}

// SetChecksumIPv4 computes and stores the checksum over b (header and
// payload, len(b) == Length()) with the IPv4 pseudo-header. A computed zero
// is sent as 0xffff (RFC 768).
func (b UDP) SetChecksumIPv4(src, dst [4]byte) {
	b[UDPChecksum], b[UDPChecksum+1] = 0, 0
	c := Finish(Checksum(b, PseudoHeaderChecksum(ProtoUDP, src, dst, uint16(len(b)))))
	if c == 0 {
		c = 0xffff
	}
	b.SetChecksum(c)
}
