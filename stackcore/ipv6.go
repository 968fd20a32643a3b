package stackcore

import "ustack/stackcore/wire"

// IPv6 input (RFC 8200). Neighbour Discovery, MLD and echo stay with the
// kernel (the host steers only transport flows and ICMPv6 errors here), so
// the stack learns next hops from the host, as it does for ARP.

// maxExtHeaders bounds the extension headers walked in one packet; Linux has
// no fixed bound, but a chain longer than this is an attack, not a packet.
const maxExtHeaders = 8

func (s *Stack) ip6Input(now Time, srcMAC MAC, b []byte) {
	st := s.stats
	ip := wire.IPv6(b)
	if !ip.Valid() {
		inc(&st.DropMalformed)
		return
	}
	inc(&st.IP6RxPackets)
	dst := Addr(ip.Dst())
	if !s.isLocal6(&dst) && !(dst.IsMulticast() && s.mc.joined[dst] > 0) { // a group: mcast.go
		inc(&st.DropNotForUs)
		return
	}
	src := Addr(ip.Src())
	// RFC 4291 2.7: a multicast address is never a source; RFC 4291 2.5.5.2:
	// IPv4-mapped addresses are not used on the wire.
	if src.IsMulticast() || src.Is4() {
		inc(&st.DropMalformed)
		return
	}
	s.ip6Upper(now, srcMAC, &src, &dst, ip.NextHeader(), ip.Payload(), true)
}

// ip6Upper walks the extension headers from next (RFC 8200 4.1) to the upper
// layer. first is false for the payload of a reassembled datagram: it may
// carry neither a Hop-by-Hop header nor another Fragment header.
func (s *Stack) ip6Upper(now Time, srcMAC MAC, src, dst *Addr, next uint8, p []byte, first bool) {
	st := s.stats
	for i := 0; i <= maxExtHeaders; i++ { // maxExtHeaders headers, then the upper layer
		switch next {
		case wire.ProtoTCP, wire.ProtoUDP:
			s.l4Input(now, srcMAC, src, dst, next, p)
			return
		case wire.ProtoICMPv6:
			s.icmp6Input(now, src, dst, p)
			return
		case wire.ProtoHopByHop, wire.ProtoDestOpts:
			// RFC 8200 4.3: Hop-by-Hop Options only right after the IPv6 header.
			if next == wire.ProtoHopByHop && (i != 0 || !first) {
				inc(&st.DropExtHeader)
				return
			}
			n := wire.ExtHeaderLen(p)
			if n == 0 {
				inc(&st.DropMalformed)
				return
			}
			if !optionsOK(p[2:n]) {
				inc(&st.DropExtHeader)
				return
			}
			next, p = p[0], p[n:]
		case wire.ProtoRouting:
			n := wire.ExtHeaderLen(p)
			if n == 0 || n < 4 {
				inc(&st.DropMalformed)
				return
			}
			// RFC 8200 4.4: Segments Left 0 means the header is ignored;
			// otherwise this host would have to forward the packet, which it
			// does not (type 0 is deprecated, RFC 5095).
			if p[3] != 0 {
				inc(&st.DropExtHeader)
				return
			}
			next, p = p[0], p[n:]
		case wire.ProtoFragment:
			if len(p) < wire.IPv6FragHdrLen || !first {
				inc(&st.DropMalformed)
				return
			}
			off, more := wire.FragOffset(p), wire.FragMore(p)
			if off == 0 && !more {
				// RFC 6946: an atomic fragment is processed as a whole packet.
				next, p = wire.FragNext(p), p[wire.IPv6FragHdrLen:]
				continue
			}
			f := fragIn{v6: true, src: *src, dst: *dst, id: wire.FragIdent(p), proto: wire.FragNext(p),
				off: off, more: more, data: p[wire.IPv6FragHdrLen:]}
			s.fragInput(now, srcMAC, &f) // ipfrag.go
			return
		case wire.ProtoNoNext:
			return // RFC 8200 4.7: nothing follows
		default:
			inc(&st.DropUnsupportedProto)
			return
		}
	}
	inc(&st.DropExtHeader)
}

// optionsOK walks the TLV options of a Hop-by-Hop or Destination Options
// header (RFC 8200 4.2): Pad1 and PadN are skipped, as is an unrecognized
// option whose type's two high bits are 00; any other unrecognized option
// means the packet is discarded. (RFC 8200 asks for an ICMPv6 Parameter
// Problem for types 10 and 11; the stack sends no ICMPv6 and only drops.)
func optionsOK(o []byte) bool {
	for len(o) > 0 {
		t := o[0]
		if t == 0 { // Pad1
			o = o[1:]
			continue
		}
		if len(o) < 2 || 2+int(o[1]) > len(o) {
			return false
		}
		// PadN (1) and Router Alert (5, RFC 2711, 00 action anyway) are known.
		if t != 1 && t != 5 && t>>6 != 0 {
			return false
		}
		o = o[2+int(o[1]):]
	}
	return true
}

// icmp6Input handles an ICMPv6 message addressed to us (RFC 4443). Errors
// quoting a packet we sent go to its socket; informational messages are the
// kernel's (the host does not steer them here) and are ignored.
func (s *Stack) icmp6Input(now Time, src, dst *Addr, b []byte) {
	st := s.stats
	inc(&st.ICMP6InMsgs)
	m := wire.ICMPv6(b)
	if !m.Valid() || !m.ChecksumOK((*[16]byte)(src), (*[16]byte)(dst)) {
		inc(&st.ICMP6InErrors)
		return
	}
	if !m.IsError() {
		return
	}
	// The quote: as much of the invoking packet as fits (RFC 4443 2.4 c):
	// our IPv6 header, then (we send no extension headers) the transport.
	q := m.Body()
	if len(q) < wire.IPv6HeaderLen+8 || q[0]>>4 != 6 {
		inc(&st.ICMP6InErrors)
		return
	}
	qh := wire.IPv6(q)
	qsrc, qdst := Addr(qh.Src()), Addr(qh.Dst())
	if !s.isLocal6(&qsrc) {
		return
	}
	kind, mtu := icmpHostUnreach, 0
	switch m.Type() {
	case wire.ICMPv6PacketTooBig:
		inc(&st.ICMP6InPktTooBigs)
		kind, mtu = icmpPacketTooBig, int(min(m.MTU(), 1<<20))
	case wire.ICMPv6DestUnreach:
		inc(&st.ICMP6InDestUnreachs)
		switch m.Code() {
		case wire.ICMPv6PortUnreach:
			kind = icmpRefused
		case wire.ICMPv6NoRoute:
			kind = icmpNetUnreach
		}
	case wire.ICMPv6TimeExceeded:
	default:
		return // parameter problem: Linux reports EPROTO; we send nothing it could be about
	}
	s.icmpToSocket(now, kind, mtu, qh.NextHeader(), &qdst, q[wire.IPv6HeaderLen:])
}
