package stackcore

import "ustack/stackcore/wire"

// Addr is an IPv6 address, or an IPv4 address in its IPv4-mapped form
// ::ffff:a.b.c.d (RFC 4291 2.5.5.2). One type keys the connections and
// sockets of both families, as a dual-stack AF_INET6 socket sees them.
type Addr [16]byte

// AddrFrom4 returns a's IPv4-mapped form.
func AddrFrom4(a IPv4) Addr {
	return Addr{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]}
}

// Is4 reports whether a is an IPv4-mapped address.
func (a Addr) Is4() bool {
	return a[0]|a[1]|a[2]|a[3]|a[4]|a[5]|a[6]|a[7]|a[8]|a[9] == 0 && a[10] == 0xff && a[11] == 0xff
}

// As4 returns the IPv4 address of an IPv4-mapped a.
func (a Addr) As4() IPv4 { return IPv4{a[12], a[13], a[14], a[15]} }

// IsUnspecified reports whether a is :: or the mapped 0.0.0.0.
func (a Addr) IsUnspecified() bool { return a == Addr{} || a == Addr{10: 0xff, 11: 0xff} }

// IsLinkLocal reports whether a is an IPv6 link-local unicast address (fe80::/10).
func (a Addr) IsLinkLocal() bool { return wire.IsLinkLocal6((*[16]byte)(&a)) }

// IsMulticast reports whether a is an IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) multicast address.
func (a Addr) IsMulticast() bool {
	if a.Is4() {
		return a[12] >= 224 && a[12] < 240
	}
	return a[0] == 0xff
}

// fold is a 64-bit digest of a for the keyed hashes (ISNs, ports, cookies): an
// IPv4-mapped address folds to the IPv4 address itself.
func (a *Addr) fold() uint64 {
	v := uint64(a[12])<<24 | uint64(a[13])<<16 | uint64(a[14])<<8 | uint64(a[15])
	for i := 0; i < 12; i += 4 {
		w := uint64(a[i])<<24 | uint64(a[i+1])<<16 | uint64(a[i+2])<<8 | uint64(a[i+3])
		if i == 8 {
			w ^= 0xffff // the mapped prefix folds to nothing
		}
		v ^= w << (8 + 8*uint(i/4))
	}
	return v
}

// Family says which addresses a listener or a UDP socket takes: both (a
// dual-stack AF_INET6 socket, IPV6_V6ONLY off), IPv4 only (AF_INET), or IPv6
// only (IPV6_V6ONLY on).
type Family uint8

const (
	FamilyBoth Family = iota
	Family4
	Family6
)

// takes reports whether a socket of family f bound to local (unspecified:
// any) takes packets to dst.
func (f Family) takes(local, dst *Addr) bool {
	if dst.Is4() {
		if f == Family6 {
			return false
		}
	} else if f == Family4 {
		return false
	}
	return local.IsUnspecified() || *local == *dst
}

// overlaps reports whether two sockets on one port would take the same packets.
func overlaps(f1 Family, l1 *Addr, f2 Family, l2 *Addr) bool {
	if f1 == Family4 && f2 == Family6 || f1 == Family6 && f2 == Family4 {
		return false
	}
	return l1.IsUnspecified() || l2.IsUnspecified() || *l1 == *l2
}

// ipHdr says how a frame's IP header is written: the next hop's MAC, both
// ends, and the socket's per-packet fields.
type ipHdr struct {
	mac      MAC
	src, dst Addr
	tclass   uint8  // IPv4 TOS or IPv6 traffic class
	hops     uint8  // TTL or hop limit; 0 means 64
	flow     uint32 // IPv6 flow label (RFC 6437)
}

// ipLen is the IP header length of packets to dst.
func ipLen(dst *Addr) int {
	if dst.Is4() {
		return wire.IPv4MinLen
	}
	return wire.IPv6HeaderLen
}

// pseudo is the partial checksum of the pseudo-header of an upper-layer packet of n bytes.
func (h *ipHdr) pseudo(proto uint8, n int) uint32 {
	if h.dst.Is4() {
		return wire.PseudoHeaderChecksum(proto, h.src.As4(), h.dst.As4(), uint16(n))
	}
	return wire.PseudoHeaderChecksum6(proto, (*[16]byte)(&h.src), (*[16]byte)(&h.dst), n)
}

// putIP writes the Ethernet and IP headers before an upper-layer packet of n
// bytes already in buf at EthHeaderLen+ipLen; it returns the frame length.
func (s *Stack) putIP(buf []byte, h *ipHdr, proto uint8, n int) int {
	eth := wire.Ethernet(buf)
	eth.SetDst(h.mac)
	eth.SetSrc(s.cfg.MAC)
	hops := h.hops
	if hops == 0 {
		hops = 64
	}
	inc(&s.stats.EthTxFrames)
	if h.dst.Is4() {
		eth.SetType(wire.EtherTypeIPv4)
		s.ipID++
		wire.IPv4(buf[wire.EthHeaderLen:]).EncodeTOS(wire.IPv4MinLen+n, s.ipID, hops, h.tclass, proto, h.src.As4(), h.dst.As4())
		inc(&s.stats.IPTxPackets)
		return wire.EthHeaderLen + wire.IPv4MinLen + n
	}
	eth.SetType(wire.EtherTypeIPv6)
	wire.IPv6(buf[wire.EthHeaderLen:]).Encode(n, h.tclass, h.flow, proto, hops, (*[16]byte)(&h.src), (*[16]byte)(&h.dst))
	inc(&s.stats.IP6TxPackets)
	return wire.EthHeaderLen + wire.IPv6HeaderLen + n
}

// isLocal6 reports whether a is one of the interface's IPv6 addresses.
func (s *Stack) isLocal6(a *Addr) bool {
	for i := range s.addrs6 {
		if s.addrs6[i] == *a {
			return true
		}
	}
	return false
}

// SourceFor returns the local address packets to dst leave from (RFC 6724
// rule 2, scope, is the one that matters on one interface): the IPv4 address
// for IPv4, a link-local address for a link-local destination (a multicast
// group of link-local scope or less, RFC 4291 2.7, included), else the first
// address of wider scope. The zero Addr when the interface has none.
func (s *Stack) SourceFor(dst Addr) Addr {
	if dst.Is4() {
		return s.addr4
	}
	ll := dst.IsLinkLocal() || dst[0] == 0xff && dst[1]&0x0f <= 2
	var any Addr
	for _, a := range s.addrs6 {
		if a.IsLinkLocal() == ll {
			return a
		}
		if any == (Addr{}) {
			any = a
		}
	}
	return any
}

// IsLocal reports whether a is one of the interface's addresses.
func (s *Stack) IsLocal(a Addr) bool {
	if a.Is4() {
		return a == s.addr4
	}
	return s.isLocal6(&a)
}
