package shim

import (
	"encoding/binary"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// Multicast on accelerated UDP sockets (ip(7), ipv6(7)). The kernel stays the control plane:
// every IP_ADD_MEMBERSHIP and IP_DROP_MEMBERSHIP (IPV6_ADD_MEMBERSHIP, IPV6_DROP_MEMBERSHIP) is
// made on the shadow first, so the kernel answers the errors, keeps the interface's membership
// and speaks IGMP or MLD (reports on join, answers to queries, leave on the last drop or on
// close). When the membership is on the accelerated
// interface the stack's socket joins too, and the group's port is steered here:
// (UDP, group, port) is a key of the steer map like a local address. A membership on another
// interface hands the socket to the kernel, as do IP_ADD_SOURCE_MEMBERSHIP and
// MCAST_JOIN_GROUP.
//
// Several processes of the interface's group on one group and port: the XDP program redirects
// a frame to one AF_XDP socket only, so the keeper lists the processes (SteerShared: a group's
// key is shared by membership, not spread by flow): with one member the group's frames go to
// it, with more to the first, which relays them to the others (relay.go).
//
// Sending to a group goes through the stack when the group is routed through the interface
// (IP_MULTICAST_IF, IPV6_MULTICAST_IF naming it or unset): to the group's Ethernet address, with
// the socket's IP_MULTICAST_TTL (IPV6_MULTICAST_HOPS). IP_MULTICAST_LOOP loops a copy to this stack's members only: other
// processes and kernel sockets of the host do not see what the stack sends.

// mcKey is a group's port steered here, counted by the sockets that joined it.
type mcKey struct {
	group stackcore.Addr // IPv4 mapped, or IPv6
	port  uint16
}

// udpMcast is what a udpSock keeps of multicast. Guarded by st.mu.
type udpMcast struct {
	groups  []stackcore.Addr // joined on the interface, applied to the stack's socket once bound
	only    stackcore.Addr   // bound to this group's address (zero: none)
	ttl     int              // IP_MULTICAST_TTL or IPV6_MULTICAST_HOPS (0: not set, the default 1)
	noLoop  bool             // IP_MULTICAST_LOOP (IPV6_MULTICAST_LOOP) off
	noAll   bool             // IP_MULTICAST_ALL (IPV6_MULTICAST_ALL) off
	ifSet   bool             // IP_MULTICAST_IF (IPV6_MULTICAST_IF) names an interface
	ifOurs  bool             // ... and it is the accelerated one
	steered []mcKey          // what this socket counts in st.mcSteered
}

// mreq reads the membership request of level: struct ip_mreqn (12 bytes) or struct ip_mreq (8
// bytes) for IPv4, as the kernel does; struct ipv6_mreq (20 bytes) for IPv6.
func mreq(level int, val []byte) (group stackcore.Addr, addr [4]byte, ifindex int, ok bool) {
	if level == unix.IPPROTO_IPV6 {
		if len(val) < unix.SizeofIPv6Mreq {
			return group, addr, 0, false
		}
		copy(group[:], val[0:16])
		return group, addr, int(int32(binary.NativeEndian.Uint32(val[16:20]))), true
	}
	if len(val) < 8 {
		return group, addr, 0, false
	}
	group = stackcore.AddrFrom4(stackcore.IPv4(val[0:4]))
	copy(addr[:], val[4:8])
	if len(val) >= 12 {
		ifindex = int(int32(binary.NativeEndian.Uint32(val[8:12])))
	}
	return group, addr, ifindex, true
}

// mcastOursLocked says whether a membership or a send with the interface given as (addr,
// ifindex) is on the accelerated interface: ifindex when given, else the IPv4 address, else the
// kernel's route to the group (ip_mc_find_dev; an IPv6 membership without an interface takes the
// route's too). Caller holds st.mu.
func (st *stack) mcastOursLocked(group stackcore.Addr, addr [4]byte, ifindex int) bool {
	switch {
	case ifindex != 0:
		return ifindex == st.ifc.index
	case addr != [4]byte{}:
		return addr == [4]byte(st.ifc.addr.As4())
	}
	_, via := st.routeLocked(group)
	return via
}

// setsockoptMcastLocked takes the multicast options of an accelerated UDP socket, IPPROTO_IP or
// IPPROTO_IPV6 by level; it answers Pass for the others. Caller holds st.mu.
func (s *udpSock) setsockoptMcastLocked(level, name int, val []byte) (r int, handOver bool) {
	join, drop := unix.IP_ADD_MEMBERSHIP, unix.IP_DROP_MEMBERSHIP
	if level == unix.IPPROTO_IPV6 {
		join, drop = unix.IPV6_ADD_MEMBERSHIP, unix.IPV6_DROP_MEMBERSHIP
	}
	switch {
	case name == join || name == drop:
	case mcastOption(level, name) != 0:
		// the shadow checks the value; the stack takes what the kernel kept
		if err := unix.SetsockoptString(s.fd(), level, name, string(val)); err != nil {
			return errnoOf(err), false
		}
		s.mcastOptionLocked(level, name, val)
		return 0, false
	default:
		return Pass, false
	}
	if err := unix.SetsockoptString(s.fd(), level, name, string(val)); err != nil {
		return errnoOf(err), false // EINVAL, EADDRINUSE, EADDRNOTAVAIL, ENODEV... as the kernel says
	}
	group, addr, ifindex, _ := mreq(level, val)
	st := s.st
	if name == drop {
		s.leaveLocked(group)
		return 0, false
	}
	if !st.mcastOursLocked(group, addr, ifindex) {
		return 0, true // another interface's: the shadow, a member now, becomes the socket
	}
	s.mc.groups = append(s.mc.groups, group)
	if s.udp != nil {
		if r := s.joinStackLocked(group); r != 0 {
			return 0, true // the port is not ours to steer: the kernel carries the socket
		}
	}
	count(&st.stats.McastJoins)
	return 0, false
}

// Multicast options by what they set, whatever the level.
const (
	mcOptTTL = iota + 1
	mcOptLoop
	mcOptAll
	mcOptIf
)

// mcastOption names a multicast option of level, 0 for another option.
func mcastOption(level, name int) int {
	switch {
	case level == unix.IPPROTO_IP && name == unix.IP_MULTICAST_TTL,
		level == unix.IPPROTO_IPV6 && name == unix.IPV6_MULTICAST_HOPS:
		return mcOptTTL
	case level == unix.IPPROTO_IP && name == unix.IP_MULTICAST_LOOP,
		level == unix.IPPROTO_IPV6 && name == unix.IPV6_MULTICAST_LOOP:
		return mcOptLoop
	case level == unix.IPPROTO_IP && name == unix.IP_MULTICAST_ALL,
		level == unix.IPPROTO_IPV6 && name == unix.IPV6_MULTICAST_ALL:
		return mcOptAll
	case level == unix.IPPROTO_IP && name == unix.IP_MULTICAST_IF,
		level == unix.IPPROTO_IPV6 && name == unix.IPV6_MULTICAST_IF:
		return mcOptIf
	}
	return 0
}

// mcastOptionLocked applies an option the shadow took to the stack's socket. Caller holds st.mu.
func (s *udpSock) mcastOptionLocked(level, name int, val []byte) {
	fd := s.fd()
	switch mcastOption(level, name) {
	case mcOptTTL:
		if v, err := unix.GetsockoptInt(fd, level, name); err == nil {
			s.mc.ttl = v
		}
	case mcOptLoop:
		if v, err := unix.GetsockoptInt(fd, level, name); err == nil {
			s.mc.noLoop = v == 0
		}
	case mcOptAll:
		if v, err := unix.GetsockoptInt(fd, level, name); err == nil {
			s.mc.noAll = v == 0
		}
	case mcOptIf:
		var addr [4]byte
		ifindex := 0
		switch {
		case level == unix.IPPROTO_IPV6:
			ifindex, _ = getInt(val) // an interface index
		case len(val) >= 8:
			// as the kernel reads it: ip_mreqn, ip_mreq (its second address) or an in_addr
			_, addr, ifindex, _ = mreq(level, val)
		case len(val) >= 4:
			copy(addr[:], val)
		}
		s.mc.ifSet = ifindex != 0 || addr != [4]byte{}
		s.mc.ifOurs = ifindex == s.st.ifc.index || ifindex == 0 && addr == [4]byte(s.st.ifc.addr.As4())
	}
	s.applyMcastLocked()
}

// applyMcastLocked gives the stack's socket the options. Caller holds st.mu.
func (s *udpSock) applyMcastLocked() {
	u := s.udp
	if u == nil {
		return
	}
	if s.mc.ttl > 0 {
		u.SetMulticastTTL(s.mc.ttl)
	}
	u.SetMulticastLoop(!s.mc.noLoop)
	u.SetMulticastAll(!s.mc.noAll)
	if s.mc.only != (stackcore.Addr{}) {
		u.BindGroup(s.mc.only)
	}
}

// joinStackLocked makes the stack's socket a member and steers the group's port here. Caller
// holds st.mu.
func (s *udpSock) joinStackLocked(group stackcore.Addr) int {
	st := s.st
	k := mcKey{group, s.boundPort}
	st.openRelayLocked() // relay.go: other processes may join the group's port too
	if st.mcSteered[k] == 0 {
		if err := st.link.SteerShared(unix.IPPROTO_UDP, group, k.port); err != nil {
			s.e.Log.Warn().Err(err).Uint16("port", k.port).Msg("steering a multicast group")
			s.mc.groups = s.mc.groups[:len(s.mc.groups)-1]
			return neg(unix.ENOBUFS)
		}
	}
	st.mcSteered[k]++
	s.mc.steered = append(s.mc.steered, k)
	s.udp.JoinGroup(group)
	return 0
}

// leaveLocked ends the socket's membership of group here (the shadow left already). Caller
// holds st.mu.
func (s *udpSock) leaveLocked(group stackcore.Addr) {
	for i, g := range s.mc.groups {
		if g == group {
			s.mc.groups = append(s.mc.groups[:i], s.mc.groups[i+1:]...)
			break
		}
	}
	if s.udp != nil {
		s.udp.LeaveGroup(group)
	}
	for i, k := range s.mc.steered {
		if k.group == group {
			s.mc.steered = append(s.mc.steered[:i], s.mc.steered[i+1:]...)
			s.st.mcUnsteerLocked(k)
			break
		}
	}
}

// bindMcastLocked applies what was set before the stack's socket existed: memberships made
// before bind, options. Caller holds st.mu.
func (s *udpSock) bindMcastLocked() {
	s.applyMcastLocked()
	groups := s.mc.groups
	s.mc.groups = nil
	for _, g := range groups {
		s.mc.groups = append(s.mc.groups, g)
		if s.joinStackLocked(g) != 0 {
			s.e.Log.Warn().Msg("a multicast group joined before bind is not steered here: its datagrams go to the shadow")
		}
	}
}

// unsteerMcastLocked gives back the group ports the socket counted (it closes or moves). Caller
// holds st.mu.
func (s *udpSock) unsteerMcastLocked() {
	for _, k := range s.mc.steered {
		s.st.mcUnsteerLocked(k)
	}
	s.mc.steered = s.mc.steered[:0]
}

// mcUnsteerLocked drops one socket's count of a group's port, unsteering it with the last.
func (st *stack) mcUnsteerLocked(k mcKey) {
	if st.mcSteered[k]--; st.mcSteered[k] > 0 {
		return
	}
	delete(st.mcSteered, k)
	_ = st.link.UnsteerShared(unix.IPPROTO_UDP, k.group, k.port)
	count(&st.stats.McastLeaves)
}

// mcastDestLocked says whether a datagram to group goes through the stack, and to which
// Ethernet address. Caller holds st.mu.
func (s *udpSock) mcastDestLocked(group stackcore.Addr) ([6]byte, bool) {
	if s.mc.ifSet {
		if !s.mc.ifOurs {
			return [6]byte{}, false
		}
	} else if !s.st.mcastOursLocked(group, [4]byte{}, 0) {
		return [6]byte{}, false
	}
	return [6]byte(stackcore.MulticastMAC(group)), true
}
