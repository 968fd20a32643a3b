package wire

import "encoding/binary"

// ICMPv4 is an ICMP message (RFC 792): type, code, checksum, four bytes
// whose meaning depends on the type, then the body.
type ICMPv4 []byte

const (
	ICMPType       = 0
	ICMPCode       = 1
	ICMPChecksum   = 2
	ICMPNextHopMTU = 6 // destination unreachable, code 4 (RFC 1191 4)
	ICMPHeaderLen  = 8

	ICMPEchoReply    = 0
	ICMPDestUnreach  = 3
	ICMPSourceQuench = 4
	ICMPEchoRequest  = 8
	ICMPTimeExceeded = 11
	ICMPParamProblem = 12

	// Destination unreachable codes (RFC 792, RFC 1122 3.2.2.1).
	ICMPNetUnreach   = 0
	ICMPHostUnreach  = 1
	ICMPProtoUnreach = 2
	ICMPPortUnreach  = 3
	ICMPFragNeeded   = 4
)

// Valid reports whether b holds the 8-byte header.
func (b ICMPv4) Valid() bool { return len(b) >= ICMPHeaderLen }

// ChecksumOK verifies the checksum over the whole message (RFC 792).
func (b ICMPv4) ChecksumOK() bool { return Checksum(b, 0) == 0xffff }

func (b ICMPv4) Type() uint8        { return b[ICMPType] }
func (b ICMPv4) Code() uint8        { return b[ICMPCode] }
func (b ICMPv4) NextHopMTU() uint16 { return binary.BigEndian.Uint16(b[ICMPNextHopMTU:]) }
func (b ICMPv4) Body() []byte       { return b[ICMPHeaderLen:] }

// IsError reports whether the type is an error message that quotes the
// offending datagram: destination unreachable, source quench, time exceeded
// or parameter problem.
func (b ICMPv4) IsError() bool {
	switch b.Type() {
	case ICMPDestUnreach, ICMPSourceQuench, ICMPTimeExceeded, ICMPParamProblem:
		return true
	}
	return false
}

// SetChecksum computes and stores the checksum over b.
func (b ICMPv4) SetChecksum() {
	b[ICMPChecksum], b[ICMPChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(b[ICMPChecksum:], Finish(Checksum(b, 0)))
}

// Quoted returns the IPv4 header and the first 8 bytes of its payload that
// an ICMP error carries (RFC 792; RFC 1122 3.2.2: at least 8 bytes). The
// quoted header's total length may exceed what is present, so it is checked
// leniently: version 4, IHL >= 5, header plus 8 bytes in b. ok is false
// otherwise. transport is the 8 bytes after the quoted header.
func Quoted(body []byte) (ip IPv4, transport []byte, ok bool) {
	if len(body) < IPv4MinLen || body[0]>>4 != 4 {
		return nil, nil, false
	}
	hl := int(body[0]&0xf) * 4
	if hl < IPv4MinLen || len(body) < hl+8 {
		return nil, nil, false
	}
	return IPv4(body[:hl]), body[hl : hl+8], true
}
