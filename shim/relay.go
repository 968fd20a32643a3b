package shim

import (
	"encoding/binary"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// The multicast relay: a group's port joined by several processes of the interface's group.
// The XDP program redirects a frame to one AF_XDP socket only, so the keeper steers the group's
// port to the first member process (portFanout, nic/xdp share), and that process relays every
// frame of the group to the other members: after its own stack took the frame, it sends a copy
// over a unix SOCK_SEQPACKET connection to each member's relay socket, an abstract name after
// the member's slot (xdp.Socket.RelayName), which the member's poller watches; the member feeds
// the copies to its stack as if they had come from the NIC. A connection keeps the order and
// its bounds are bytes (SO_SNDBUF), not the 10 datagrams net.unix.max_dgram_qlen allows a
// datagram socket; the kernel frees what a dead process held (no frame of the UMEM is lent
// across processes); a full connection drops (shim.mcast_relay_drops, as a full socket buffer
// would); a member takes connections from processes of its own uid only (SO_PEERCRED), as the
// keeper takes members.
//
// The leader reads the member list from the keeper's shares map at most every relayRefresh, so
// a member that joins gets the relayed frames within that time (a join is no instant on the
// kernel either: IGMP reports go out, routers forward later).

// relayLink is a link in an interface's group that can name its members' relay sockets.
type relayLink interface {
	Slot() uint32
	GroupMembers(proto uint8, group [16]byte, port uint16, dst []uint32) []uint32
	RelayName(slot uint32) string
}

const (
	relayRefresh  = 100 * stackcore.Millisecond
	relayBatch    = 256     // relayed frames taken per connection per rxLocked
	relaySockBuf  = 4 << 20 // bytes a relay connection holds
	relayFrameMax = 1 << 14
)

// relayTargets are the other members of a group's port, as last read, with a connection each
// (fd -1: none yet or broken, tried again at the next refresh).
type relayTargets struct {
	expires stackcore.Time
	slots   []uint32
	fds     []int
}

// openRelayLocked makes the process's relay socket, once, at its first membership. Caller holds
// st.mu.
func (st *stack) openRelayLocked() {
	rl, ok := st.link.(relayLink)
	if st.relayFd >= 0 || !ok || st.relayTried {
		return
	}
	st.relayTried = true
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		st.eng.Log.Warn().Err(err).Msg("multicast relay socket")
		return
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: rl.RelayName(rl.Slot())}); err != nil {
		unix.Close(fd)
		st.eng.Log.Warn().Err(err).Msg("multicast relay socket: groups other processes join too will miss datagrams")
		return
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		st.eng.Log.Warn().Err(err).Msg("multicast relay socket")
		return
	}
	st.relayFd = fd
	st.relayBuf = make([]byte, relayFrameMax)
	st.relayUID = uint32(os.Getuid())
	st.mcRelay = map[mcKey]*relayTargets{}
	if st.wait != nil {
		st.wait.watchRelay(fd)
	}
}

// relayOutLocked relays a frame the stack just took to the other members of its group's port,
// if it is a multicast UDP datagram of a group this process is a member of. Caller holds st.mu.
func (st *stack) relayOutLocked(now stackcore.Time, f []byte) {
	if len(f) < 14+20+8 || f[0]&1 == 0 { // an Ethernet group address, or nothing to relay
		return
	}
	var k mcKey
	switch {
	case f[12] == 0x08 && f[13] == 0: // IPv4, UDP, first fragment, a group destination
		ihl := int(f[14]&0x0f) * 4
		if f[14+9] != unix.IPPROTO_UDP || f[14+16]&0xf0 != 0xe0 || binary.BigEndian.Uint16(f[14+6:])&0x1fff != 0 ||
			ihl < 20 || len(f) < 14+ihl+4 {
			return
		}
		k = mcKey{stackcore.AddrFrom4(stackcore.IPv4(f[14+16 : 14+20])), binary.BigEndian.Uint16(f[14+ihl+2:])}
	case f[12] == 0x86 && f[13] == 0xdd: // IPv6, UDP right after the header (as a sender sends it)
		if len(f) < 14+40+4 || f[14+6] != unix.IPPROTO_UDP || f[14+24] != 0xff {
			return
		}
		k = mcKey{stackcore.Addr(f[14+24 : 14+40]), binary.BigEndian.Uint16(f[14+40+2:])}
	default:
		return
	}
	if st.mcSteered[k] == 0 {
		return
	}
	t := st.mcRelay[k]
	if t == nil || now >= t.expires {
		t = st.relayRefreshLocked(now, k, t)
	}
	for i, fd := range t.fds {
		if fd < 0 {
			count(&st.stats.McastRelayDrops)
			continue
		}
		if err := unix.Sendto(fd, f, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil); err != nil {
			count(&st.stats.McastRelayDrops) // full, or the member is gone
			if err != unix.EAGAIN {
				unix.Close(fd)
				t.fds[i] = -1
			}
			continue
		}
		count(&st.stats.McastRelayed)
	}
}

// relayRefreshLocked reads the members of k's port again and connects to the new ones. Caller
// holds st.mu.
func (st *stack) relayRefreshLocked(now stackcore.Time, k mcKey, t *relayTargets) *relayTargets {
	rl := st.link.(relayLink)
	if t == nil {
		t = &relayTargets{}
		st.mcRelay[k] = t
	}
	t.expires = now + relayRefresh
	self := rl.Slot()
	var buf [16]uint32
	members := rl.GroupMembers(unix.IPPROTO_UDP, k.group, k.port, buf[:0])
	// keep the connections of those still members, close the others'
	j := 0
	for i, sl := range t.slots {
		fd := t.fds[i]
		if !slices.Contains(members, sl) || fd < 0 {
			if fd >= 0 {
				unix.Close(fd)
			}
			continue
		}
		t.slots[j], t.fds[j] = sl, fd
		j++
	}
	t.slots, t.fds = t.slots[:j], t.fds[:j]
	for _, sl := range members {
		if sl == self || slices.Contains(t.slots, sl) {
			continue
		}
		t.slots = append(t.slots, sl)
		t.fds = append(t.fds, st.relayConnect(rl.RelayName(sl)))
	}
	return t
}

// relayConnect connects to a member's relay socket; -1 when it does not answer.
func (st *stack) relayConnect(name string) int {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, relaySockBuf)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		unix.Close(fd)
		return -1
	}
	return fd
}

// relayInLocked takes the connections of members that relay here and feeds the frames they
// relayed to the stack; it returns how many. Caller holds st.mu.
func (st *stack) relayInLocked(now stackcore.Time) int {
	st.relayReady.Store(false)
	for {
		fd, _, err := unix.Accept4(st.relayFd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			break
		}
		if c, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED); err != nil || c.Uid != st.relayUID {
			unix.Close(fd)
			count(&st.stats.McastRelayRefused)
			continue
		}
		st.relayConns = append(st.relayConns, fd)
		if st.wait != nil {
			st.wait.watchRelay(fd)
		}
	}
	frames, more := 0, false
	j := 0
	for _, fd := range st.relayConns {
		n := 0
		for ; n < relayBatch; n++ {
			r, err := unix.Read(fd, st.relayBuf)
			if err == unix.EAGAIN {
				break
			}
			if err != nil || r == 0 { // the leader went, or stopped relaying to us
				n = -1
				break
			}
			st.core.Input(now, st.relayBuf[:r])
			count(&st.stats.McastRelayIn)
			frames++
		}
		if n < 0 {
			unix.Close(fd) // leaves the poller's set with it
			continue
		}
		more = more || n == relayBatch
		st.relayConns[j] = fd
		j++
	}
	st.relayConns = st.relayConns[:j]
	if more {
		st.relayReady.Store(true) // more waits: the next round takes it
	}
	if frames > 0 {
		st.rxUnsent = true
	}
	return frames
}
