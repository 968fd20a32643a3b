package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"ustack/shm"
)

// A group is every process on one queue of one interface (see shm.GroupState). Its keeper
// (keeper.go) creates it with CreateGroup: the UMEM and the state in memfds, the socket that
// registers the UMEM and owns the fill and completion rings, the maps and the program. A
// process joins with JoinGroup, from the descriptors the keeper hands it: its own socket,
// bound with XDP_SHARED_UMEM, and its slot's transmit frames.

// GroupFiles are the descriptors a member needs, in the order the keeper sends them.
type GroupFiles struct {
	UMEM, State, Share, Steer, Flows, XSKs, Shares int
}

func (f GroupFiles) list() []int {
	return []int{f.UMEM, f.State, f.Share, f.Steer, f.Flows, f.XSKs, f.Shares}
}

func groupFilesOf(fds []int) (GroupFiles, error) {
	if len(fds) != 7 {
		return GroupFiles{}, fmt.Errorf("xdp: group: %d descriptors, want 7", len(fds))
	}
	return GroupFiles{fds[0], fds[1], fds[2], fds[3], fds[4], fds[5], fds[6]}, nil
}

// Close closes the descriptors.
func (f GroupFiles) Close() {
	for _, fd := range f.list() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// Group is a group as its keeper holds it.
type Group struct {
	Ifname string
	Queue  int
	Mode   string
	State  *shm.GroupState

	ringSize uint32
	files    GroupFiles
	umem     []byte
	stateMem []byte
	fill     *shm.Ring[uint64]
	comp     *shm.Ring[uint64]
	objs     objects
	sock     *Socket // the registering socket (slot: none; it receives nothing)
}

// GroupOptions configure CreateGroup.
type GroupOptions struct {
	Mode     string // as Options.Mode
	Geometry shm.GroupGeometry
	RingSize int // entries of every ring; at least Geometry.RxFrames
	Build    shm.BuildID
	UID      uint32
}

// CreateGroup creates the group of queue of ifname in the calling thread's network namespace:
// UMEM and state, the registering socket with every receive frame on the fill ring, and the
// steering program attached to the interface (ErrBusy if one is attached already).
func CreateGroup(ifname string, queue int, o GroupOptions) (_ *Group, err error) {
	if o.RingSize == 0 {
		o.RingSize = defaultRingSize
	}
	if !pow2(o.RingSize) || uint32(o.RingSize) < o.Geometry.RxFrames {
		return nil, fmt.Errorf("xdp: group: ring size %d (need a power of two of at least %d)", o.RingSize, o.Geometry.RxFrames)
	}
	g := &Group{Ifname: ifname, Queue: queue, ringSize: uint32(o.RingSize), files: GroupFiles{-1, -1, -1, -1, -1, -1, -1}}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	s, l, err := newSocket(ifname, queue, nil)
	if err != nil {
		return nil, err
	}
	g.sock = s
	geo := o.Geometry
	if mtu := l.Attrs().MTU; mtu+ethHdrLen > int(geo.FrameSize)-unix.XDP_PACKET_HEADROOM {
		return nil, fmt.Errorf("xdp: %s: mtu %d does not fit a %d-byte frame after %d bytes of headroom",
			ifname, mtu, geo.FrameSize, unix.XDP_PACKET_HEADROOM)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return nil, fmt.Errorf("xdp: %s: program id %d: %w", ifname, x.ProgId, ErrBusy)
	}
	if g.files.UMEM, g.umem, err = memfd("ustack-umem", int(geo.Frames())*int(geo.FrameSize)); err != nil {
		return nil, err
	}
	if g.files.State, g.stateMem, err = memfd("ustack-group", shm.GroupStateSize(geo)); err != nil {
		return nil, err
	}
	if g.State, err = shm.InitGroupState(g.stateMem, geo, o.Build, o.UID); err != nil {
		return nil, err
	}
	// the registering socket: the fill and completion rings are created with it; an RX ring it
	// must have to bind, though no frame is ever steered to it
	s.group, s.slot = g.State, geo.Slots
	if s.fd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		return nil, s.errorf("creating socket: %w", err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(g.umem)))), Len: uint64(len(g.umem)), Size: geo.FrameSize}
	if err := setsockopt(s.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, s.errorf("registering umem: %w", err)
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, opt, o.RingSize); err != nil {
			return nil, s.errorf("setting ring size (option %d): %w", opt, err)
		}
	}
	if err := s.bind([]uint16{unix.XDP_ZEROCOPY | unix.XDP_USE_NEED_WAKEUP, unix.XDP_COPY | unix.XDP_USE_NEED_WAKEUP}, -1); err != nil {
		return nil, err
	}
	if g.fill, g.comp, err = s.mapRings(uint32(o.RingSize), true); err != nil {
		return nil, err
	}
	all := make([]uint64, geo.RxFrames)
	for f := range geo.RxFrames {
		all[f] = g.State.Addr(f)
	}
	g.State.Fill(g.fill, geo.Slots, all, nil)
	if g.objs, err = loadObjects(); err != nil {
		return nil, s.errorf("%w", err)
	}
	s.prog = g.objs.prog
	mode, err := s.attach(o.Mode)
	if err != nil {
		s.prog = nil
		return nil, err
	}
	g.Mode = mode + s.mode
	g.files.Share = s.fd
	g.files.Steer, g.files.Flows, g.files.XSKs = g.objs.steer.FD(), g.objs.flows.FD(), g.objs.xsks.FD()
	g.files.Shares = g.objs.shares.FD()
	return g, nil
}

// memfd makes an anonymous shared file of size bytes and maps it.
func memfd(name string, size int) (int, []byte, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return -1, nil, fmt.Errorf("xdp: memfd %s: %w", name, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("xdp: sizing %s to %d bytes: %w", name, size, err)
	}
	mem, err := mapShared(fd, size)
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, mem, nil
}

func mapShared(fd, size int) ([]byte, error) {
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("xdp: mapping %d shared bytes: %w", size, err)
	}
	// a fork child never drives the stack; without this each fork would copy the page tables
	_ = unix.Madvise(mem, unix.MADV_DONTFORK)
	return mem, nil
}

// bind binds the socket to its queue with the first of tries (XDP bind flags) the kernel
// takes, or, with shareFd >= 0, to the UMEM and queue of the socket shareFd (XDP_SHARED_UMEM:
// the flags are that socket's). A queue a socket just closed may still be held for a moment:
// EBUSY is retried for a while.
func (s *Socket) bind(tries []uint16, shareFd int) error {
	if shareFd >= 0 {
		tries = []uint16{unix.XDP_SHARED_UMEM}
	}
	deadline := time.Now().Add(bindBusyWait)
	for {
		var errs []error
		busy := false
		for _, flags := range tries {
			sa := &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(s.ifidx), QueueID: uint32(s.queue)}
			if shareFd >= 0 {
				sa.SharedUmemFD = uint32(shareFd)
			}
			err := unix.Bind(s.fd, sa)
			if err == nil {
				// a sharing socket has the need-wakeup rings its group's registrar asked for
				s.needWakeup = flags&unix.XDP_USE_NEED_WAKEUP != 0 || shareFd >= 0
				s.zeroCopy = flags&unix.XDP_ZEROCOPY != 0
				s.mode = "/copy"
				if s.zeroCopy {
					s.mode = "/zerocopy"
				}
				return nil
			}
			busy = busy || errors.Is(err, unix.EBUSY)
			errs = append(errs, fmt.Errorf("flags %#x: %w", flags, err))
		}
		if !busy || time.Now().After(deadline) {
			err := errors.Join(errs...)
			if busy {
				err = errors.Join(ErrBusy, err)
			}
			return s.errorf("binding socket: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mapRings maps the socket's rings (after bind): its RX and TX rings where it has them, and
// the fill and completion rings, which are the group's, when withShared.
func (s *Socket) mapRings(rs uint32, withShared bool) (fill, comp *shm.Ring[uint64], err error) {
	var off unix.XDPMmapOffsets
	offLen := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&offLen)), 0); e != 0 {
		return nil, nil, s.errorf("reading mmap offsets: %w", e)
	}
	lay := func(o unix.XDPRingOffset) shm.RingLayout {
		return shm.RingLayout{Producer: o.Producer, Consumer: o.Consumer, Desc: o.Desc, Flags: o.Flags}
	}
	if withShared {
		if fill, err = shm.MapRing[uint64](s.fd, unix.XDP_UMEM_PGOFF_FILL_RING, lay(off.Fr), rs); err != nil {
			return nil, nil, s.errorf("fill ring: %w", err)
		}
		if comp, err = shm.MapRing[uint64](s.fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, lay(off.Cr), rs); err != nil {
			fill.Close()
			return nil, nil, s.errorf("completion ring: %w", err)
		}
	}
	if s.rx, err = shm.MapRing[unix.XDPDesc](s.fd, unix.XDP_PGOFF_RX_RING, lay(off.Rx), rs); err != nil {
		return fill, comp, s.errorf("rx ring: %w", err)
	}
	s.rx.AttachConsumer()
	if s.tx, err = shm.MapRing[unix.XDPDesc](s.fd, unix.XDP_PGOFF_TX_RING, lay(off.Tx), rs); err != nil {
		s.tx = nil // the registering socket has none
	} else {
		s.tx.AttachProducer()
	}
	return fill, comp, nil
}

// Close detaches the program and releases everything the keeper holds.
func (g *Group) Close() error {
	if g == nil {
		return nil
	}
	var errs []error
	if g.sock != nil {
		g.sock.prog = nil // closed with the objects
		g.sock.xsks = nil
		errs = append(errs, g.sock.Close())
	}
	g.objs.close()
	errs = append(errs, g.fill.Close(), g.comp.Close())
	for _, fd := range []int{g.files.UMEM, g.files.State} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	for _, m := range [][]byte{g.umem, g.stateMem} {
		if m != nil {
			errs = append(errs, unix.Munmap(m))
		}
	}
	g.umem, g.stateMem = nil, nil
	return errors.Join(errs...)
}

// Member is what the keeper keeps of a member for the day it dies: its socket and slot.
type Member struct {
	Slot uint32
	Fd   int // the member's socket, sent by it after it bound
}

// Reclaim takes back what a dead member held (shm.GroupState.Reclaim): its socket leaves xsks
// and its steering entries go, so nothing more reaches it; once the kernel is done with its
// last deliveries, its frames come back. It closes the member's socket.
func (g *Group) Reclaim(m Member) (rx, tx, entries int, err error) {
	var errs []error
	if err := g.objs.xsks.Delete(m.Slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("removing slot %d from xsks: %w", m.Slot, err))
	}
	entries = g.dropEntries(m.Slot)
	// a frame already on its way to the socket lands within the receive path that redirected it
	time.Sleep(5 * time.Millisecond)
	var rings shm.DeadRings
	if m.Fd >= 0 {
		dead := &Socket{ifname: g.Ifname, queue: g.Queue, fd: m.Fd}
		if _, _, err := dead.mapRings(g.ringSize, false); err != nil {
			errs = append(errs, err)
		}
		rings = shm.DeadRings{RX: dead.rx, TX: dead.tx}
		defer dead.Close()
	}
	rx, tx = g.State.Reclaim(m.Slot, g.State.Geometry().Slots, g.fill, g.comp, rings)
	return rx, tx, entries, errors.Join(errs...)
}

// share adds slot to the sharers of the port of steer key k, or takes it away. The port is
// steered in shared mode while it has sharers; a port another process steers on its own is
// refused. A multicast group's port (groupKey) is shared by membership instead: its only
// member gets its frames (portAll), and with several the first of them, which relays each
// frame to the others (portFanout, shim/relay.go).
func (g *Group) share(k steerKey, slot uint32, add bool) error {
	var cur uint32
	if err := g.objs.steer.Lookup(k, &cur); err == nil && !groupKey(k) && cur&0xff != portShared && cur>>slotShift != slot {
		if add && !holderDead(g.State, cur>>slotShift+1) {
			return ErrPortTaken
		}
	}
	var v sharesValue
	if err := g.objs.shares.Lookup(k, &v); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	i := slices.Index(v.Slots[:v.N], slot)
	switch {
	case add && i < 0:
		if v.N == maxSharers {
			return fmt.Errorf("the port has %d sharers already", maxSharers)
		}
		v.Slots[v.N] = slot
		v.N++
	case !add && i >= 0:
		v.N--
		v.Slots[i] = v.Slots[v.N]
		v.Slots[v.N] = 0
	default:
		return nil
	}
	if v.N == 0 {
		_ = g.objs.steer.Delete(k)
		return g.objs.shares.Delete(k)
	}
	if err := g.objs.shares.Put(k, v); err != nil {
		return err
	}
	switch {
	case !groupKey(k):
		return g.objs.steer.Put(k, portShared)
	case v.N == 1:
		return g.objs.steer.Put(k, portAll|v.Slots[0]<<slotShift)
	}
	return g.objs.steer.Put(k, portFanout|v.Slots[0]<<slotShift)
}

// dropEntries deletes every steer and flows entry of slot and returns how many it deleted.
func (g *Group) dropEntries(slot uint32) int {
	n := 0
	for _, m := range []*ebpf.Map{g.objs.steer, g.objs.flows} {
		var keys [][]byte
		var k []byte
		var v uint32
		if m == g.objs.steer {
			k = make([]byte, len(steerKey{}))
		} else {
			k = make([]byte, len(flowKey{}))
		}
		it := m.Iterate()
		for it.Next(&k, &v) {
			if v>>slotShift == slot && (m != g.objs.steer || v&0xff != portShared && v&0xff != portFanout) {
				keys = append(keys, append([]byte(nil), k...))
			}
		}
		for _, k := range keys {
			if m.Delete(k) == nil {
				n++
			}
		}
	}
	// and its shares of ports
	var k steerKey
	var v sharesValue
	var shared []steerKey
	it := g.objs.shares.Iterate()
	for it.Next(&k, &v) {
		if slices.Contains(v.Slots[:v.N], slot) {
			shared = append(shared, k)
		}
	}
	for _, k := range shared {
		if g.share(k, slot, false) == nil {
			n++
		}
	}
	return n
}

// Entries counts the steer and flows entries of each slot, and the ports each slot shares (a
// shared port's steer entry is no one's); ports lists, per slot, the ports it steers alone or
// shares ("tcp/80", "udp/53"; IPv6: "tcp6/80"), and the multicast groups' ports it is a member of
// ("udp/239.1.2.3:5000 (member)").
func (g *Group) Entries() (steer, flows, shared map[uint32]int, ports map[uint32][]string) {
	ports = map[uint32][]string{}
	name := func(k steerKey) string {
		proto := "udp"
		if k[18] == unix.IPPROTO_TCP {
			proto = "tcp"
		}
		if [16]byte(k[:16]) != Mapped4([4]byte(k[12:16])) {
			proto += "6" // as netstat names them
		}
		if groupKey(k) {
			return fmt.Sprintf("%s/%s:%d", proto, netip.AddrFrom16([16]byte(k[:16])).Unmap(), uint16(k[16])<<8|uint16(k[17]))
		}
		return fmt.Sprintf("%s/%d", proto, uint16(k[16])<<8|uint16(k[17]))
	}
	steer = map[uint32]int{}
	var sk steerKey
	var v uint32
	it := g.objs.steer.Iterate()
	for it.Next(&sk, &v) {
		if v&0xff != portShared && v&0xff != portFanout && !groupKey(sk) { // members: below
			steer[v>>slotShift]++
			ports[v>>slotShift] = append(ports[v>>slotShift], name(sk))
		}
	}
	flows = map[uint32]int{}
	var fk flowKey
	it = g.objs.flows.Iterate()
	for it.Next(&fk, &v) {
		flows[v>>slotShift]++
	}
	shared = map[uint32]int{}
	var sv sharesValue
	it = g.objs.shares.Iterate()
	for it.Next(&sk, &sv) {
		for _, sl := range sv.Slots[:sv.N] {
			shared[sl]++
			if groupKey(sk) {
				ports[sl] = append(ports[sl], name(sk)+" (member)") // a multicast group's port
			} else {
				ports[sl] = append(ports[sl], name(sk)+" (shared)")
			}
		}
	}
	for sl, p := range ports {
		slices.Sort(p)
		ports[sl] = slices.Compact(p) // a port steered for two IPv6 addresses is one tcp6/N
	}
	return steer, flows, shared, ports
}

// JoinGroup makes the socket of member slot of the group whose descriptors f holds (the keeper
// sent them), on queue of ifname in the calling thread's network namespace. The socket takes
// its slot's free transmit frames. bound is called with the socket once it is bound and before
// anything is steered to it (the member sends it to the keeper, which reads its rings should it
// die). dead tells whether the process holding a group lock is gone. f stays the caller's.
func JoinGroup(ifname string, queue int, slot uint32, ringSize int, f GroupFiles, build shm.BuildID,
	dead func(holder uint32) bool, bound func(fd int) error, stats *Stats) (_ *Socket, err error) {
	s, _, err := newSocket(ifname, queue, stats)
	if err != nil {
		return nil, err
	}
	s.slot, s.dead = slot, dead
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(f.State, &st); err != nil {
		return nil, s.errorf("group state: %w", err)
	}
	if s.groupMem, err = mapShared(f.State, int(st.Size)); err != nil {
		return nil, err
	}
	if s.group, err = shm.OpenGroupState(s.groupMem, build); err != nil {
		return nil, s.errorf("%w", err)
	}
	geo := s.group.Geometry()
	if slot >= geo.Slots {
		return nil, s.errorf("slot %d of %d", slot, geo.Slots)
	}
	if s.umem, err = shm.MapUMEM(f.UMEM, int(geo.Frames()), int(geo.FrameSize)); err != nil {
		return nil, s.errorf("%w", err)
	}
	if s.fd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		return nil, s.errorf("creating socket: %w", err)
	}
	for _, opt := range []int{unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, opt, ringSize); err != nil {
			return nil, s.errorf("setting ring size (option %d): %w", opt, err)
		}
	}
	if err := s.bind(nil, f.Share); err != nil {
		return nil, err
	}
	if s.fill, s.comp, err = s.mapRings(uint32(ringSize), true); err != nil {
		return nil, err
	}
	s.raiseTxBudget(uint32(ringSize))
	s.rxHeld = make([]uint64, 0, ringSize)
	for _, a := range s.group.FreeTx(slot, nil) {
		s.umem.Free(a)
	}
	if s.steer, err = ebpf.NewMapFromFD(dupFd(f.Steer)); err != nil {
		return nil, s.errorf("steer map: %w", err)
	}
	if s.flows, err = ebpf.NewMapFromFD(dupFd(f.Flows)); err != nil {
		return nil, s.errorf("flows map: %w", err)
	}
	if s.xsks, err = ebpf.NewMapFromFD(dupFd(f.XSKs)); err != nil {
		return nil, s.errorf("xsks map: %w", err)
	}
	if s.shares, err = ebpf.NewMapFromFD(dupFd(f.Shares)); err != nil {
		return nil, s.errorf("shares map: %w", err)
	}
	if err := bound(s.fd); err != nil {
		return nil, s.errorf("%w", err)
	}
	if err := s.xsks.Put(slot, uint32(s.fd)); err != nil {
		return nil, s.errorf("inserting socket into xsks map: %w", err)
	}
	s.mode = "shared" + s.mode
	return s, nil
}

func dupFd(fd int) int {
	n, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return -1
	}
	return n
}

// Slot returns the socket's slot in its group.
func (s *Socket) Slot() uint32 { return s.slot }

// DefaultGroupGeometry is the shape of the group a keeper creates on ifname: slots members of
// 2048 transmit frames each and 2048 receive frames, as a process had on its own before groups,
// frames as small as the MTU allows.
func DefaultGroupGeometry(ifname string, slots uint32) shm.GroupGeometry {
	g := shm.GroupGeometry{Slots: min(max(slots, 1), shm.MaxSlots), TxPerSlot: 2048, RxFrames: 2048, FrameSize: maxFrameSize}
	if l, err := netlink.LinkByName(ifname); err == nil && l.Attrs().MTU+ethHdrLen <= minFrameSize-unix.XDP_PACKET_HEADROOM {
		g.FrameSize = minFrameSize
	}
	return g
}

// GroupMembers appends to dst the slots of the processes that share the multicast group's port
// (proto, group, port) (SteerShared), the first of them the one its frames are steered to; none
// when the socket is in no group or the port is not shared.
func (s *Socket) GroupMembers(proto uint8, group [16]byte, port uint16, dst []uint32) []uint32 {
	if s == nil || s.shares == nil {
		return dst
	}
	var v sharesValue
	if s.shares.Lookup(makeSteerKey(proto, group, port), &v) != nil {
		return dst
	}
	return append(dst, v.Slots[:min(v.N, maxSharers)]...)
}

// RelayName is the abstract unix socket name where the process in slot of the group receives
// the multicast frames another member relays to it (shim/relay.go).
func (s *Socket) RelayName(slot uint32) string {
	return fmt.Sprintf("@ustack-mcast/%d/%d/%d", s.ifidx, s.queue, slot)
}
