package wire

import "encoding/binary"

// IPv4 is an IPv4 header followed by its payload (RFC 791).
type IPv4 []byte

const (
	IPv4VerIHL      = 0
	IPv4TOS         = 1
	IPv4TotalLen    = 2
	IPv4ID          = 4
	IPv4FlagsFrag   = 6
	IPv4TTL         = 8
	IPv4Protocol    = 9
	IPv4Checksum    = 10
	IPv4Src         = 12
	IPv4Dst         = 16
	IPv4MinLen      = 20
	IPv4FlagDF      = 0x4000
	IPv4FlagMF      = 0x2000
	IPv4FragOffMask = 0x1fff

	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
)

// IPv4Status is the outcome of IPv4.Check.
type IPv4Status int

const (
	IPv4OK IPv4Status = iota
	IPv4Malformed
	IPv4BadChecksum
)

// Check validates version, header length, total length and (if verify) the
// header checksum. On IPv4OK all accessors are safe, and Payload is bounded
// by the total length (Ethernet padding is cut off).
func (b IPv4) Check(verify bool) IPv4Status {
	if len(b) < IPv4MinLen || b[0]>>4 != 4 {
		return IPv4Malformed
	}
	hl := int(b[0]&0xf) * 4
	tl := int(binary.BigEndian.Uint16(b[IPv4TotalLen:]))
	if hl < IPv4MinLen || tl < hl || tl > len(b) {
		return IPv4Malformed
	}
	if verify && Checksum(b[:hl], 0) != 0xffff {
		return IPv4BadChecksum
	}
	return IPv4OK
}

func (b IPv4) HeaderLen() int    { return int(b[0]&0xf) * 4 }
func (b IPv4) TotalLen() int     { return int(binary.BigEndian.Uint16(b[IPv4TotalLen:])) }
func (b IPv4) ID() uint16        { return binary.BigEndian.Uint16(b[IPv4ID:]) }
func (b IPv4) FlagsFrag() uint16 { return binary.BigEndian.Uint16(b[IPv4FlagsFrag:]) }
func (b IPv4) TTL() uint8        { return b[IPv4TTL] }
func (b IPv4) Protocol() uint8   { return b[IPv4Protocol] }
func (b IPv4) Src() (a [4]byte)  { copy(a[:], b[IPv4Src:IPv4Src+4]); return }
func (b IPv4) Dst() (a [4]byte)  { copy(a[:], b[IPv4Dst:IPv4Dst+4]); return }

// IsFragment reports whether MF is set or the fragment offset is non-zero.
func (b IPv4) IsFragment() bool { return b.FlagsFrag()&(IPv4FlagMF|IPv4FragOffMask) != 0 }

// Payload returns the bytes after the header up to the total length.
func (b IPv4) Payload() []byte { return b[b.HeaderLen():b.TotalLen()] }

// Encode writes a 20-byte header without options and its checksum.
func (b IPv4) Encode(totalLen int, id uint16, ttl, proto uint8, src, dst [4]byte) {
	b.EncodeTOS(totalLen, id, ttl, 0, proto, src, dst)
}

// EncodeTOS is Encode with a type of service byte (IP_TOS: DSCP and ECN).
func (b IPv4) EncodeTOS(totalLen int, id uint16, ttl, tos, proto uint8, src, dst [4]byte) {
	b[IPv4VerIHL] = 0x45
	b[IPv4TOS] = tos
	binary.BigEndian.PutUint16(b[IPv4TotalLen:], uint16(totalLen))
	binary.BigEndian.PutUint16(b[IPv4ID:], id)
	binary.BigEndian.PutUint16(b[IPv4FlagsFrag:], IPv4FlagDF)
	b[IPv4TTL] = ttl
	b[IPv4Protocol] = proto
	b[IPv4Checksum], b[IPv4Checksum+1] = 0, 0
	copy(b[IPv4Src:IPv4Src+4], src[:])
	copy(b[IPv4Dst:IPv4Dst+4], dst[:])
	binary.BigEndian.PutUint16(b[IPv4Checksum:], Finish(Checksum(b[:IPv4MinLen], 0)))
}
