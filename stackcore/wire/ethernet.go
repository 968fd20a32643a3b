// Package wire holds views over protocol headers in the gVisor header / smoltcp
// wire style: a header is a named byte slice with offset constants and
// big-endian getters and setters. Accessors do not check bounds: call the
// type's Valid function (for untrusted input) or size the slice with the
// *MinLen constants (for output) first.
package wire

import "encoding/binary"

// Ethernet is an Ethernet II header followed by its payload.
type Ethernet []byte

const (
	EthDst       = 0
	EthSrc       = 6
	EthType      = 12
	EthHeaderLen = 14

	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
)

// Valid reports whether b is long enough to hold an Ethernet header.
func (b Ethernet) Valid() bool { return len(b) >= EthHeaderLen }

func (b Ethernet) Dst() (m [6]byte) { copy(m[:], b[EthDst:EthDst+6]); return }
func (b Ethernet) Src() (m [6]byte) { copy(m[:], b[EthSrc:EthSrc+6]); return }
func (b Ethernet) Type() uint16     { return binary.BigEndian.Uint16(b[EthType:]) }
func (b Ethernet) Payload() []byte  { return b[EthHeaderLen:] }
func (b Ethernet) SetDst(m [6]byte) { copy(b[EthDst:EthDst+6], m[:]) }
func (b Ethernet) SetSrc(m [6]byte) { copy(b[EthSrc:EthSrc+6], m[:]) }
func (b Ethernet) SetType(t uint16) { binary.BigEndian.PutUint16(b[EthType:], t) }
