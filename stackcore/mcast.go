package stackcore

import "ustack/stackcore/wire"

// Multicast for UDP sockets (RFC 1112 host extensions, level 2, without IGMP: the host keeps
// the kernel's membership, which speaks IGMP, in step with the stack's).
//
// The rules are Linux's (ip(7), net/ipv4/udp.c __udp4_lib_mcast_deliver): a datagram to a
// group the stack joined goes to every socket bound to its port that
//   - is bound to INADDR_ANY or to the group itself,
//   - if connected, is connected to the datagram's source,
//   - joined the group, or did not turn IP_MULTICAST_ALL off (the default on: such a socket
//     gets the datagrams of every group joined on the host, here on the stack).
//
// Groups are kept as 16-byte addresses, IPv4 as v4-mapped IPv6 (::ffff:a.b.c.d), so that IPv6
// groups (ff00::/8, RFC 4291 2.7) take the same tables; only IPv4 is wired to Input and Poll.

// Group is a multicast group address: an IPv4 group as v4-mapped IPv6, or an IPv6 group.
type Group = Addr

// GroupV4 is the group of IPv4 address a (v4-mapped).
func GroupV4(a IPv4) Group { return AddrFrom4(a) }

// IsMulticastV4 reports whether a is in 224.0.0.0/4 (class D, RFC 1112 4).
func IsMulticastV4(a IPv4) bool { return a[0]&0xf0 == 0xe0 }

// MulticastMAC is the Ethernet address a datagram to g is sent to: 01:00:5e and the group's
// low 23 bits for IPv4 (RFC 1112 6.4), 33:33 and its low 32 bits for IPv6 (RFC 2464 7).
func MulticastMAC(g Group) MAC {
	if g.Is4() {
		return MAC{0x01, 0x00, 0x5e, g[13] & 0x7f, g[14], g[15]}
	}
	return MAC{0x33, 0x33, g[12], g[13], g[14], g[15]}
}

// mcastState is the stack's side: how many of its sockets joined each group.
type mcastState struct {
	joined map[Group]int
}

// udpMcast is a socket's side: its groups and options. The zero value is Linux's defaults.
type udpMcast struct {
	groups []Group // joined (IP_ADD_MEMBERSHIP)
	only   Group   // bound to this group's address: only its datagrams (zero: INADDR_ANY)
	ttl    uint8   // IP_MULTICAST_TTL minus one: the zero value is TTL 1
	noLoop bool    // IP_MULTICAST_LOOP off
	noAll  bool    // IP_MULTICAST_ALL off: only the groups it joined
}

// MulticastJoined reports whether a socket of the stack joined g.
func (s *Stack) MulticastJoined(g Group) bool { return s.mc.joined[g] > 0 }

// JoinGroup makes the socket a member of g (IP_ADD_MEMBERSHIP); false when it was already (the
// kernel answers EADDRINUSE) or g is no multicast address.
func (u *UDPSocket) JoinGroup(g Group) bool {
	if u.closed || !g.IsMulticast() || u.Member(g) {
		return false
	}
	u.mc.groups = append(u.mc.groups, g)
	s := u.s
	if s.mc.joined == nil {
		s.mc.joined = make(map[Group]int)
	}
	s.mc.joined[g]++
	return true
}

// LeaveGroup ends the socket's membership of g (IP_DROP_MEMBERSHIP); false when it was no
// member (the kernel answers EADDRNOTAVAIL).
func (u *UDPSocket) LeaveGroup(g Group) bool {
	for i, x := range u.mc.groups {
		if x == g {
			u.mc.groups = append(u.mc.groups[:i], u.mc.groups[i+1:]...)
			u.s.mcastUnref(g)
			return true
		}
	}
	return false
}

// Member reports whether the socket joined g.
func (u *UDPSocket) Member(g Group) bool {
	for _, x := range u.mc.groups {
		if x == g {
			return true
		}
	}
	return false
}

// Groups appends the groups the socket joined to dst.
func (u *UDPSocket) Groups(dst []Group) []Group { return append(dst, u.mc.groups...) }

// BindGroup restricts the socket to datagrams to g, as a bind to the group's address does; the
// zero Group undoes it. A socket bound to a group gets no unicast datagrams.
func (u *UDPSocket) BindGroup(g Group) { u.mc.only = g }

// SetMulticastTTL sets the TTL of the datagrams it sends to groups (IP_MULTICAST_TTL, 0..255;
// -1 restores the default, 1).
func (u *UDPSocket) SetMulticastTTL(ttl int) {
	if ttl < 0 {
		ttl = 1
	}
	u.mc.ttl = uint8(min(ttl, 255) - 1)
}

// MulticastTTL returns the TTL of its datagrams to groups.
func (u *UDPSocket) MulticastTTL() int { return int(u.mc.ttl+1) & 0xff }

// SetMulticastLoop says whether the datagrams it sends to a group the stack joined are also
// delivered to the stack's members (IP_MULTICAST_LOOP, on by default).
func (u *UDPSocket) SetMulticastLoop(on bool) { u.mc.noLoop = !on }

// SetMulticastAll says whether, bound to the group's port, it gets the datagrams of groups it
// did not join but another socket of the stack did (IP_MULTICAST_ALL, on by default).
func (u *UDPSocket) SetMulticastAll(on bool) { u.mc.noAll = !on }

// mcastLeaveAll ends every membership of a closing socket.
func (u *UDPSocket) mcastLeaveAll() {
	for _, g := range u.mc.groups {
		u.s.mcastUnref(g)
	}
	u.mc.groups = u.mc.groups[:0]
}

func (s *Stack) mcastUnref(g Group) {
	if s.mc.joined[g]--; s.mc.joined[g] <= 0 {
		delete(s.mc.joined, g)
	}
}

// mcastFrame reports whether an Ethernet destination may carry a datagram to a group: its
// group bit is set (RFC 1112 6.4, RFC 2464 7) and the stack joined a group.
func (s *Stack) mcastFrame(dst MAC) bool { return dst[0]&1 != 0 && len(s.mc.joined) > 0 }

// mcastAccept reports whether an IPv4 packet not to the stack's address is a UDP datagram to a
// group the stack joined. Like Linux, it does not hold the Ethernet destination to the group's
// mapping: the frame filter let in only ours, broadcast and group addresses.
func (s *Stack) mcastAccept(ip wire.IPv4) bool {
	d := IPv4(ip.Dst())
	return IsMulticastV4(d) && ip.Protocol() == wire.ProtoUDP && s.mc.joined[GroupV4(d)] > 0
}

// wantsMulticast reports whether the socket gets a datagram to group g from src:sport (the rules
// at the top of the file; the port matched already).
func (u *UDPSocket) wantsMulticast(g *Group, src *Addr, sport uint16) bool {
	if u.mc.only != (Group{}) && u.mc.only != *g {
		return false
	}
	if u.connected && (u.raddr != *src || u.rport != sport) {
		return false
	}
	return !u.mc.noAll || u.Member(*g)
}

// mcastDeliver gives a copy of a datagram to group dst:dport to every socket that wants it. The
// stack joined the group (mcastAccept).
func (s *Stack) mcastDeliver(srcMAC MAC, src *Addr, sport uint16, g *Group, dport uint16, p []byte) {
	st := s.stats
	if s.mc.joined[*g] == 0 {
		inc(&st.UDPIgnoredMulti)
		return
	}
	n := 0
	for u := s.udpPorts[dport]; u != nil; u = u.next {
		if !u.fam.takes(&Addr{}, g) || !u.wantsMulticast(g, src, sport) {
			continue
		}
		n++
		u.deliver(p, src, sport, srcMAC)
	}
	if n == 0 {
		inc(&st.UDPIgnoredMulti) // Linux counts no NoPorts for a group datagram nobody takes
		return
	}
	inc(&st.UDPInMulticast)
}

// mcastLoop delivers the copy of a datagram the socket sent to a group (h its header, p its
// payload, just encoded) to the stack's own members, as the kernel loops a multicast datagram
// back to the host's (IP_MULTICAST_LOOP). Only this stack's sockets see it: the frame leaves
// through the NIC, and neither the kernel nor the other processes of the interface get a copy.
func (s *Stack) mcastLoop(u *UDPSocket, h *ipHdr, dport uint16, p []byte) {
	if u.mc.noLoop || s.mc.joined[h.dst] == 0 {
		return
	}
	s.mcastDeliver(s.cfg.MAC, &h.src, u.port, &h.dst, dport, p)
}
