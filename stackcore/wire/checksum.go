package wire

import (
	"encoding/binary"
	"math/bits"
)

// Blocks handed to sum16 at once: below sum16Min the vector set-up costs
// more than it saves; sum16Max keeps its 32-bit lanes from overflowing.
const (
	sum16Min = 128
	sum16Max = 64 << 10
)

// Checksum returns the 16-bit one's complement sum of b added to initial,
// folded but not complemented. Feed the result back in as initial to sum
// several pieces; each piece except the last must have even length.
// The sum is byte-order independent (RFC 1071 section 2(B)): it adds 8
// native (little-endian) bytes per step with carries and swaps once at the end.
func Checksum(b []byte, initial uint32) uint32 {
	init16 := (initial >> 16) + (initial & 0xffff)
	init16 = (init16 >> 16) + (init16 & 0xffff)
	sum := uint64(bits.ReverseBytes16(uint16(init16)))
	var carry uint64
	for haveSum16 && len(b) >= sum16Min {
		n := min(len(b), sum16Max) &^ 63
		sum, carry = bits.Add64(sum, sum16(b[:n]), carry)
		b = b[n:]
	}
	for len(b) >= 32 {
		sum, carry = bits.Add64(sum, binary.LittleEndian.Uint64(b[0:8]), carry)
		sum, carry = bits.Add64(sum, binary.LittleEndian.Uint64(b[8:16]), carry)
		sum, carry = bits.Add64(sum, binary.LittleEndian.Uint64(b[16:24]), carry)
		sum, carry = bits.Add64(sum, binary.LittleEndian.Uint64(b[24:32]), carry)
		b = b[32:]
	}
	for len(b) >= 8 {
		sum, carry = bits.Add64(sum, binary.LittleEndian.Uint64(b), carry)
		b = b[8:]
	}
	sum, carry = bits.Add64(sum, 0, carry)
	sum += carry
	if len(b) >= 4 {
		sum, carry = bits.Add64(sum, uint64(binary.LittleEndian.Uint32(b)), 0)
		sum += carry
		b = b[4:]
	}
	if len(b) >= 2 {
		sum, carry = bits.Add64(sum, uint64(binary.LittleEndian.Uint16(b)), 0)
		sum += carry
		b = b[2:]
	}
	if len(b) == 1 {
		sum, carry = bits.Add64(sum, uint64(b[0]), 0)
		sum += carry
	}
	// Fold 64 -> 16 bits, then back to network order.
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return uint32(bits.ReverseBytes16(uint16(sum)))
}

// PseudoHeaderChecksum is the partial sum of the IPv4 pseudo-header
// (RFC 9293 section 3.1): source, destination, zero, protocol, length.
func PseudoHeaderChecksum(proto uint8, src, dst [4]byte, length uint16) uint32 {
	s := uint32(binary.BigEndian.Uint16(src[0:2])) + uint32(binary.BigEndian.Uint16(src[2:4])) +
		uint32(binary.BigEndian.Uint16(dst[0:2])) + uint32(binary.BigEndian.Uint16(dst[2:4])) +
		uint32(proto) + uint32(length)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return s
}

// Finish complements a folded sum into the value stored in a header.
func Finish(sum uint32) uint16 { return ^uint16(sum) }
