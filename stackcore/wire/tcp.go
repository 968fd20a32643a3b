package wire

import "encoding/binary"

// TCP is a TCP header followed by its payload (RFC 9293 section 3.1).
type TCP []byte

const (
	TCPSrcPort   = 0
	TCPDstPort   = 2
	TCPSeq       = 4
	TCPAck       = 8
	TCPDataOff   = 12
	TCPFlags     = 13
	TCPWindow    = 14
	TCPChecksum  = 16
	TCPUrgent    = 18
	TCPMinLen    = 20
	TCPMaxOptLen = 40

	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20

	TCPOptEOL       = 0
	TCPOptNOP       = 1
	TCPOptMSS       = 2
	TCPOptWScale    = 3
	TCPOptSACKPerm  = 4 // RFC 2018 2
	TCPOptSACK      = 5 // RFC 2018 3
	TCPOptTimestamp = 8 // RFC 7323 3.2

	// TCPMaxSACKBlocks is the most SACK blocks an option can carry (RFC 2018 3).
	TCPMaxSACKBlocks = 4
)

// Valid reports whether the header (including its data offset) fits in b.
func (b TCP) Valid() bool {
	if len(b) < TCPMinLen {
		return false
	}
	off := int(b[TCPDataOff]>>4) * 4
	return off >= TCPMinLen && off <= len(b)
}

// ChecksumOK verifies the checksum including the IPv4 pseudo-header.
func (b TCP) ChecksumOK(src, dst [4]byte) bool {
	return Checksum(b, PseudoHeaderChecksum(ProtoTCP, src, dst, uint16(len(b)))) == 0xffff
}

func (b TCP) SrcPort() uint16     { return binary.BigEndian.Uint16(b[TCPSrcPort:]) }
func (b TCP) DstPort() uint16     { return binary.BigEndian.Uint16(b[TCPDstPort:]) }
func (b TCP) Seq() uint32         { return binary.BigEndian.Uint32(b[TCPSeq:]) }
func (b TCP) Ack() uint32         { return binary.BigEndian.Uint32(b[TCPAck:]) }
func (b TCP) DataOffset() int     { return int(b[TCPDataOff]>>4) * 4 }
func (b TCP) Flags() uint8        { return b[TCPFlags] }
func (b TCP) Window() uint16      { return binary.BigEndian.Uint16(b[TCPWindow:]) }
func (b TCP) Checksum() uint16    { return binary.BigEndian.Uint16(b[TCPChecksum:]) }
func (b TCP) Options() []byte     { return b[TCPMinLen:b.DataOffset()] }
func (b TCP) Payload() []byte     { return b[b.DataOffset():] }
func (b TCP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(b[TCPSrcPort:], p) }
func (b TCP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(b[TCPDstPort:], p) }
func (b TCP) SetSeq(v uint32)     { binary.BigEndian.PutUint32(b[TCPSeq:], v) }
func (b TCP) SetAck(v uint32)     { binary.BigEndian.PutUint32(b[TCPAck:], v) }
func (b TCP) SetDataOffset(n int) { b[TCPDataOff] = uint8(n/4) << 4 }
func (b TCP) SetFlags(f uint8)    { b[TCPFlags] = f }
func (b TCP) SetWindow(w uint16)  { binary.BigEndian.PutUint16(b[TCPWindow:], w) }
func (b TCP) SetChecksum(c uint16) {
	binary.BigEndian.PutUint16(b[TCPChecksum:], c)
}
func (b TCP) SetUrgent(u uint16) { binary.BigEndian.PutUint16(b[TCPUrgent:], u) }

// SetChecksumIPv4 computes and stores the checksum over b (header and
// payload) with the IPv4 pseudo-header.
func (b TCP) SetChecksumIPv4(src, dst [4]byte) {
	b[TCPChecksum], b[TCPChecksum+1] = 0, 0
	b.SetChecksum(Finish(Checksum(b, PseudoHeaderChecksum(ProtoTCP, src, dst, uint16(len(b))))))
}

// SACKBlock is one block of a SACK option: [Start, End) in sequence space.
type SACKBlock struct{ Start, End uint32 }

// TCPOptions are the options ustack understands. Zero means absent.
type TCPOptions struct {
	MSS       uint16
	WScale    uint8
	HasWScale bool
	SACKPerm  bool
	HasTS     bool
	TSVal     uint32
	TSEcr     uint32
	NSACK     int
	SACK      [TCPMaxSACKBlocks]SACKBlock
}

// ParseTCPOptions walks the option list; unknown options are skipped by
// their length, a malformed list ends the walk (what was parsed is kept).
func ParseTCPOptions(opts []byte) (o TCPOptions) {
	for len(opts) > 0 {
		kind := opts[0]
		if kind == TCPOptEOL {
			return
		}
		if kind == TCPOptNOP {
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 {
			return
		}
		l := int(opts[1])
		if l < 2 || l > len(opts) {
			return
		}
		switch {
		case kind == TCPOptMSS && l == 4:
			o.MSS = binary.BigEndian.Uint16(opts[2:])
		case kind == TCPOptWScale && l == 3:
			o.WScale = opts[2]
			o.HasWScale = true
		case kind == TCPOptSACKPerm && l == 2:
			o.SACKPerm = true
		case kind == TCPOptTimestamp && l == 10:
			o.HasTS = true
			o.TSVal = binary.BigEndian.Uint32(opts[2:])
			o.TSEcr = binary.BigEndian.Uint32(opts[6:])
		case kind == TCPOptSACK && l >= 10 && (l-2)%8 == 0:
			o.NSACK = 0
			for b := opts[2:l]; len(b) >= 8 && o.NSACK < TCPMaxSACKBlocks; b = b[8:] {
				o.SACK[o.NSACK] = SACKBlock{binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])}
				o.NSACK++
			}
		}
		opts = opts[l:]
	}
	return
}

// PutSynOptions writes MSS and (if wscale >= 0) window scale options, padded
// to a multiple of 4; it returns the number of bytes written (4 or 8).
func PutSynOptions(b []byte, mss uint16, wscale int) int {
	b[0], b[1] = TCPOptMSS, 4
	binary.BigEndian.PutUint16(b[2:], mss)
	if wscale < 0 {
		return 4
	}
	b[4], b[5], b[6], b[7] = TCPOptNOP, TCPOptWScale, 3, uint8(wscale)
	return 8
}

// SynOptions are the options of a SYN or SYN-ACK.
type SynOptions struct {
	MSS          uint16
	WScale       int // < 0: none
	SACKPerm     bool
	TS           bool
	TSVal, TSEcr uint32
}

// PutSynOptionsFull writes o in Linux's order and layout (MSS; SACK-permitted
// and timestamps; NOP and window scale), padded to a multiple of 4; it
// returns the length, at most 20.
func PutSynOptionsFull(b []byte, o SynOptions) int {
	b[0], b[1] = TCPOptMSS, 4
	binary.BigEndian.PutUint16(b[2:], o.MSS)
	n := 4
	switch {
	case o.TS:
		if o.SACKPerm {
			b[n], b[n+1] = TCPOptSACKPerm, 2
		} else {
			b[n], b[n+1] = TCPOptNOP, TCPOptNOP
		}
		b[n+2], b[n+3] = TCPOptTimestamp, 10
		binary.BigEndian.PutUint32(b[n+4:], o.TSVal)
		binary.BigEndian.PutUint32(b[n+8:], o.TSEcr)
		n += 12
	case o.SACKPerm:
		b[n], b[n+1], b[n+2], b[n+3] = TCPOptNOP, TCPOptNOP, TCPOptSACKPerm, 2
		n += 4
	}
	if o.WScale >= 0 {
		b[n], b[n+1], b[n+2], b[n+3] = TCPOptNOP, TCPOptWScale, 3, uint8(o.WScale)
		n += 4
	}
	return n
}

// PutTimestamp writes NOP, NOP, timestamps (RFC 7323 appendix A layout); 12 bytes.
func PutTimestamp(b []byte, val, ecr uint32) int {
	b[0], b[1], b[2], b[3] = TCPOptNOP, TCPOptNOP, TCPOptTimestamp, 10
	binary.BigEndian.PutUint32(b[4:], val)
	binary.BigEndian.PutUint32(b[8:], ecr)
	return 12
}

// PutSACK writes NOP, NOP and a SACK option with blocks; 4+8*len(blocks) bytes.
func PutSACK(b []byte, blocks []SACKBlock) int {
	b[0], b[1], b[2], b[3] = TCPOptNOP, TCPOptNOP, TCPOptSACK, uint8(2+8*len(blocks))
	n := 4
	for _, k := range blocks {
		binary.BigEndian.PutUint32(b[n:], k.Start)
		binary.BigEndian.PutUint32(b[n+4:], k.End)
		n += 8
	}
	return n
}
