// Package xdp is a nic.Link over an AF_XDP socket, with an XDP program that
// steers chosen (protocol, address, port) flows, IPv4 or IPv6, to the socket and passes
// everything else to the kernel. Addresses are 16 bytes: an IPv4 address is
// IPv4-mapped (Mapped4), so a dual-stack listener wants two entries, one for
// its IPv4-mapped address and one for its IPv6 address.
//
// A process under ustack is a member of its interface's group (group.go,
// keeper.go: Attach): its own socket over a UMEM shared with the other
// processes on the queue, the program and maps held by the group's keeper.
// Open makes a socket of its own instead (the package's tests, tools): it
// creates the UMEM, the socket and its four rings, loads the steering program
// and attaches it with a BPF link, so it disappears with the process.
// Steer, SteerListed and Unsteer edit the steering map of ports; SteerFlow
// and UnsteerFlow edit the map of flows, which decides single connections on
// a steered port (one handed to the kernel while the port's other
// connections stay here). A Socket is not safe for concurrent use except for
// Steer, SteerListed, Unsteer, SteerFlow, UnsteerFlow, Mode, Stats and
// RefreshKernelStats.
//
// Open works in the calling thread's network namespace (lock the goroutine
// to a thread that entered it). Half the UMEM frames (at most a ring's
// worth) circulate through the fill and RX rings, the rest serve AllocTx.
//
// Kernel behaviour worth knowing:
//   - veth supports native XDP but not zero copy: Mode is "native/copy".
//     In copy mode the kernel sends only on sendto, so the TX ring always
//     asks for a wake-up and every Flush with queued frames is a syscall.
//   - Closing an AF_XDP socket releases its queue from a workqueue, so an
//     immediate re-Open can see EBUSY at bind; Open retries for a while.
//   - Only the first fragment of a datagram carries ports: the program
//     remembers where it steered one (the frags map, an LRU keyed by source,
//     destination, id and, for IPv4, protocol) and sends the later fragments
//     there, for the stack to reassemble. A later fragment that arrives
//     before its first goes to the kernel, and so is lost to both.
//   - The interface MTU plus the Ethernet header must fit in a frame after
//     the kernel's 256 bytes of XDP headroom; Open checks it.
package xdp

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"ustack/nic"
	"ustack/shm"
)

// ErrBusy means an XDP program is already attached to the interface.
var ErrBusy = errors.New("an xdp program is already attached")

// ErrClosed is returned by methods of a closed Socket.
var ErrClosed = errors.New("xdp socket closed")

// Options configure Open. The zero value means defaults.
type Options struct {
	Mode      string // "" or "auto": native then generic; "native"; "generic"
	CopyOnly  bool   // don't try XDP_ZEROCOPY
	NumFrames int    // UMEM frames (default 4096)
	FrameSize int    // bytes per frame, power of two 2048..4096 (default: the smallest that holds the MTU)
	RingSize  int    // entries per ring, power of two (default 2048)
	Stats     *Stats // counters; nil = internal
}

const (
	defaultNumFrames = 4096
	minFrameSize     = 2048
	maxFrameSize     = 4096
	defaultRingSize  = 2048
)

// Socket is an AF_XDP socket bound to one queue of one interface, with its
// UMEM, rings and the attached steering program. It implements nic.Link.
type Socket struct {
	ifname string
	ifidx  int
	queue  int
	fd     int
	mode   string

	umem *shm.UMEM
	fill *shm.Ring[uint64]
	comp *shm.Ring[uint64]
	rx   *shm.Ring[unix.XDPDesc]
	tx   *shm.Ring[unix.XDPDesc]

	needWakeup bool
	zeroCopy   bool
	rxHeld     []uint64 // frame addresses lent out by Receive
	txOut      uint32   // frames on the TX ring or in flight, not yet completed

	steer *ebpf.Map // (local address, port, proto) → portAll or portListed, and the slot
	flows *ebpf.Map // (remote, local, ports, proto) → FlowToUs, FlowToKernel or FlowDrop, and the slot
	xsks  *ebpf.Map // slot → socket
	// a shared port's (or multicast group's port's) sharers: read by a group's relaying member
	shares *ebpf.Map
	prog   *ebpf.Program
	link   link.Link

	// A member of a group (group.go) shares the UMEM, fill and completion rings with the other
	// processes on the queue: slot is its place in the group (0 for a socket of its own).
	slot     uint32
	group    *shm.GroupState
	groupMem []byte
	dead     func(holder uint32) bool         // whether a lock holder died (group.go)
	request  func(msg []byte) ([]byte, error) // a request to the group's keeper and its answer
	returned []uint64

	stats *Stats
}

var _ nic.Link = (*Socket)(nil)

func (s *Socket) errorf(format string, args ...any) error {
	return fmt.Errorf("xdp: %s queue %d: "+format, append([]any{s.ifname, s.queue}, args...)...)
}

func pow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// Open creates an AF_XDP socket on queue of ifname in the calling thread's
// network namespace and attaches the steering program to the interface.
// It fails with an error wrapping ErrBusy if an XDP program is already
// attached.
func Open(ifname string, queue int, opts Options) (_ *Socket, err error) {
	if opts.NumFrames == 0 {
		opts.NumFrames = defaultNumFrames
	}
	if opts.RingSize == 0 {
		opts.RingSize = defaultRingSize
	}
	badFrame := opts.FrameSize != 0 && (!pow2(opts.FrameSize) || opts.FrameSize < minFrameSize || opts.FrameSize > maxFrameSize)
	if badFrame || !pow2(opts.RingSize) || opts.NumFrames < 2 {
		return nil, fmt.Errorf("xdp: bad options: %d frames of %d bytes, rings of %d", opts.NumFrames, opts.FrameSize, opts.RingSize)
	}
	switch opts.Mode {
	case "", "auto", "native", "generic":
	default:
		return nil, fmt.Errorf("xdp: bad mode %q (want auto, native or generic)", opts.Mode)
	}
	if queue < 0 {
		return nil, fmt.Errorf("xdp: bad queue %d", queue)
	}

	s, l, err := newSocket(ifname, queue, opts.Stats)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	if opts.FrameSize == 0 {
		// The kernel pins the whole UMEM: its size is resident memory from the start, and
		// 2048-byte frames halve it on a standard MTU (8 MB instead of 16).
		opts.FrameSize = maxFrameSize
		if l.Attrs().MTU+ethHdrLen <= minFrameSize-unix.XDP_PACKET_HEADROOM {
			opts.FrameSize = minFrameSize
		}
	}
	if mtu := l.Attrs().MTU; mtu+ethHdrLen > opts.FrameSize-unix.XDP_PACKET_HEADROOM {
		return nil, fmt.Errorf("xdp: %s: mtu %d does not fit a %d-byte frame after %d bytes of headroom",
			ifname, mtu, opts.FrameSize, unix.XDP_PACKET_HEADROOM)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return nil, fmt.Errorf("xdp: %s: program id %d: %w", ifname, x.ProgId, ErrBusy)
	}

	if err := s.openSocket(opts); err != nil {
		return nil, err
	}

	o, err := loadObjects()
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	s.steer, s.flows, s.xsks, s.prog = o.steer, o.flows, o.xsks, o.prog
	// the program alone uses these (a socket of its own shares no port): its reference
	// keeps them
	o.shares.Close()
	o.frags.Close()
	if err := s.xsks.Put(s.slot, uint32(s.fd)); err != nil {
		return nil, s.errorf("inserting socket into xsks map: %w", err)
	}
	xdpMode, err := s.attach(opts.Mode)
	if err != nil {
		return nil, err
	}
	s.mode = xdpMode + s.mode
	return s, nil
}

// newSocket starts a Socket on queue of ifname, with stats (new ones if nil); it returns the
// interface's link too.
func newSocket(ifname string, queue int, stats *Stats) (*Socket, netlink.Link, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, nil, fmt.Errorf("xdp: looking up %s: %w", ifname, err)
	}
	if stats == nil {
		stats = new(Stats)
	}
	return &Socket{ifname: ifname, ifidx: l.Attrs().Index, queue: queue, fd: -1, stats: stats}, l, nil
}

// openSocket creates the socket, registers the UMEM, maps the rings, fills
// the fill ring and binds.
func (s *Socket) openSocket(opts Options) error {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return s.errorf("creating socket: %w", err)
	}
	s.fd = fd

	s.umem, err = shm.NewUMEM(opts.NumFrames, opts.FrameSize)
	if err != nil {
		return s.errorf("%w", err)
	}
	mem := s.umem.Bytes()
	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem)))),
		Len:  uint64(len(mem)),
		Size: uint32(opts.FrameSize),
	}
	if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return s.errorf("registering umem: %w", err)
	}
	rs := uint32(opts.RingSize)
	for _, o := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, o, int(rs)); err != nil {
			return s.errorf("setting ring size (option %d): %w", o, err)
		}
	}
	if s.fill, s.comp, err = s.mapRings(rs, true); err != nil {
		return err
	}
	if s.tx == nil {
		return s.errorf("tx ring: not mapped")
	}
	s.fill.AttachProducer()
	s.comp.AttachConsumer()

	// Half the frames (at most a fill ring's worth) receive, the rest transmit.
	nrx := opts.NumFrames / 2
	if nrx > opts.RingSize {
		nrx = opts.RingSize
	}
	pos, got := s.fill.Reserve(uint32(nrx))
	for i := uint32(0); i < got; i++ {
		*s.fill.Entry(pos + i) = s.umem.FrameAddr(int(i))
	}
	s.fill.Submit()
	s.rxHeld = make([]uint64, 0, nrx)
	for i := opts.NumFrames - 1; i >= nrx; i-- {
		s.umem.Free(s.umem.FrameAddr(i))
	}

	tries := []uint16{
		unix.XDP_ZEROCOPY | unix.XDP_USE_NEED_WAKEUP, unix.XDP_ZEROCOPY,
		unix.XDP_COPY | unix.XDP_USE_NEED_WAKEUP, unix.XDP_COPY,
	}
	if opts.CopyOnly {
		tries = tries[2:]
	}
	if err := s.bind(tries, -1); err != nil {
		return err
	}
	if !s.zeroCopy {
		s.raiseTxBudget(rs)
	}
	return nil
}

// xdpMaxTxSkbBudget is SOL_XDP option XDP_MAX_TX_SKB_BUDGET (Linux 6.17), not yet in x/sys/unix.
const xdpMaxTxSkbBudget = 9

// raiseTxBudget lets one kick transmit the whole TX ring. In copy mode the kernel sends at most
// 32 descriptors per sendto (TX_BATCH_SIZE in net/xdp/xsk.c) and answers EAGAIN while more wait,
// so a burst larger than that waited for the next kick: a bulk sender kicked mostly in vain
// (4,690 of 4,733 kicks answered EAGAIN in an iperf3 -R run). Older kernels do not know the
// option and keep 32.
func (s *Socket) raiseTxBudget(ring uint32) {
	budget := uint64(32)
	if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, xdpMaxTxSkbBudget, int(ring)); err == nil {
		budget = uint64(ring)
	}
	atomic.StoreUint64(&s.stats.TxBudget, budget)
}

// bindBusyWait bounds how long Open waits for a queue to be released.
const bindBusyWait = 2 * time.Second

// attach attaches the program in the requested mode and returns the mode used.
func (s *Socket) attach(mode string) (string, error) {
	type try struct {
		flags link.XDPAttachFlags
		name  string
	}
	var tries []try
	switch mode {
	case "native":
		tries = []try{{link.XDPDriverMode, "native"}}
	case "generic":
		tries = []try{{link.XDPGenericMode, "generic"}}
	default:
		tries = []try{{link.XDPDriverMode, "native"}, {link.XDPGenericMode, "generic"}}
	}
	var errs []error
	for _, t := range tries {
		l, err := link.AttachXDP(link.XDPOptions{Program: s.prog, Interface: s.ifidx, Flags: t.flags})
		if err == nil {
			s.link = l
			return t.name, nil
		}
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			return "", s.errorf("attaching program: %w", errors.Join(ErrBusy, err))
		}
		errs = append(errs, fmt.Errorf("%s mode: %w", t.name, err))
	}
	return "", s.errorf("attaching program: %w", errors.Join(errs...))
}

func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Mode returns how the program is attached and how the socket moves frames,
// e.g. "native/copy", "generic/copy" or "native/zerocopy".
func (s *Socket) Mode() string { return s.mode }

// Stats returns the socket's counters.
func (s *Socket) Stats() *Stats { return s.stats }

// Steer sends frames for (proto, ip, port) to this socket, except flows
// SteerFlow hands to the kernel. proto is unix.IPPROTO_TCP or
// unix.IPPROTO_UDP; ip and port are the local (destination) address (an
// IPv4 one IPv4-mapped, Mapped4) and port. It replaces a SteerListed of the same port.
func (s *Socket) Steer(proto uint8, ip [16]byte, port uint16) error {
	return s.steerPort(proto, ip, port, portAll, "steering")
}

// SteerListed sends to this socket only the flows to (proto, ip, port) that
// SteerFlow lists as ours; every other flow to the port goes to the kernel.
// It is for a port shared with the kernel: once a listener is handed to the
// kernel, new connections are the kernel's while the connections accepted
// earlier stay here. It replaces a Steer of the same port, so list the flows
// that must stay here before calling it.
func (s *Socket) SteerListed(proto uint8, ip [16]byte, port uint16) error {
	return s.steerPort(proto, ip, port, portListed, "steering listed flows of")
}

func (s *Socket) steerPort(proto uint8, ip [16]byte, port uint16, mode uint32, what string) error {
	if s == nil || s.steer == nil {
		return ErrClosed
	}
	k := makeSteerKey(proto, ip, port)
	v := mode | s.slot<<slotShift
	if s.group != nil {
		// another process of the group may steer the port (a listener sharing it through
		// SO_REUSEPORT, a connection of its still closing there): it keeps it, unless it died
		err := s.steer.Update(k, v, ebpf.UpdateNoExist)
		if err == nil {
			return nil
		}
		var cur uint32
		if !errors.Is(err, ebpf.ErrKeyExist) || s.steer.Lookup(k, &cur) != nil {
			return s.errorf("%s %s:%d proto %d: %w", what, net.IP(ip[:]), port, proto, err)
		}
		if cur&0xff == portShared {
			return fmt.Errorf("%s %s:%d proto %d: %w", what, net.IP(ip[:]), port, proto, ErrPortTaken) // the sharers' (SteerShared)
		}
		if owner := cur >> slotShift; owner != s.slot && !holderDead(s.group, owner+1) {
			return fmt.Errorf("%s %s:%d proto %d: %w", what, net.IP(ip[:]), port, proto, ErrPortTaken)
		}
	}
	if err := s.steer.Put(k, v); err != nil {
		return s.errorf("%s %s:%d proto %d: %w", what, net.IP(ip[:]), port, proto, err)
	}
	return nil
}

// SteerShared steers (proto, ip, port) to this socket and to every other process of the group
// that shares it (listeners with SO_REUSEPORT): the program spreads new flows over them by
// hash, and a flow listed by SteerFlow stays with its socket. Alone, it is Steer.
func (s *Socket) SteerShared(proto uint8, ip [16]byte, port uint16) error {
	if s.request == nil {
		return s.Steer(proto, ip, port)
	}
	return s.shareRequest(msgShare, proto, ip, port)
}

// UnsteerShared takes this socket out of the port's sharers.
func (s *Socket) UnsteerShared(proto uint8, ip [16]byte, port uint16) error {
	if s.request == nil {
		return s.Unsteer(proto, ip, port)
	}
	return s.shareRequest(msgUnshare, proto, ip, port)
}

func (s *Socket) shareRequest(verb string, proto uint8, ip [16]byte, port uint16) error {
	k := makeSteerKey(proto, ip, port)
	answer, err := s.request(append([]byte(verb), k[:]...))
	if err != nil {
		return s.errorf("asking the keeper to share port %d: %w", port, err)
	}
	if string(answer) != msgOK {
		if strings.HasSuffix(string(answer), ErrPortTaken.Error()) {
			return fmt.Errorf("sharing port %d: %w", port, ErrPortTaken)
		}
		return s.errorf("sharing port %d: %s", port, answer[min(len(answer), 4):])
	}
	return nil
}

// ErrPortTaken is Steer's answer for a port another process of the group steers.
var ErrPortTaken = errors.New("the port is steered to another process of the interface's group")

// Unsteer stops steering (proto, ip, port) to this socket. Removing an entry
// that is not there is not an error.
func (s *Socket) Unsteer(proto uint8, ip [16]byte, port uint16) error {
	if s == nil || s.steer == nil {
		return ErrClosed
	}
	k := makeSteerKey(proto, ip, port)
	if !s.ours(s.steer, k) {
		return nil // another process of the group took the port since
	}
	if err := s.steer.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return s.errorf("unsteering %s:%d proto %d: %w", net.IP(ip[:]), port, proto, err)
	}
	return nil
}

// SteerFlow decides one flow, seen from this host, on a port steered by
// Steer or SteerListed, whatever the port's mode: FlowToUs sends its frames
// (and ICMP errors about what this host sent on it) to this socket,
// FlowToKernel to the kernel, FlowDrop nowhere (while the connection moves
// from one to the other, its peer retransmits). It is how one connection is
// handed to the kernel while the others on its port stay here, or kept here
// when its port goes to the kernel. A flow on a port that is not steered goes
// to the kernel. The entry replaces an earlier one for the same flow.
func (s *Socket) SteerFlow(proto uint8, local [16]byte, lport uint16, remote [16]byte, rport uint16, action uint32) error {
	if s == nil || s.flows == nil {
		return ErrClosed
	}
	if action < FlowToUs || action > FlowDrop {
		return s.errorf("steering flow: action %d", action)
	}
	k := makeFlowKey(proto, local, lport, remote, rport)
	if err := s.flows.Put(k, action|s.slot<<slotShift); err != nil {
		return s.errorf("steering flow %s:%d-%s:%d proto %d (action %d): %w",
			net.IP(local[:]), lport, net.IP(remote[:]), rport, proto, action, err)
	}
	return nil
}

// UnsteerFlow removes the flow's entry, so its port's mode decides it again.
// Removing an entry that is not there is not an error.
func (s *Socket) UnsteerFlow(proto uint8, local [16]byte, lport uint16, remote [16]byte, rport uint16) error {
	if s == nil || s.flows == nil {
		return ErrClosed
	}
	k := makeFlowKey(proto, local, lport, remote, rport)
	if !s.ours(s.flows, k) {
		return nil
	}
	if err := s.flows.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return s.errorf("unsteering flow %s:%d-%s:%d proto %d: %w",
			net.IP(local[:]), lport, net.IP(remote[:]), rport, proto, err)
	}
	return nil
}

// ours reports whether the entry at k of m is this socket's (or absent): in a group another
// process may have taken a port this one has let go of while its connection there still closed.
func (s *Socket) ours(m *ebpf.Map, k any) bool {
	if s.group == nil {
		return true
	}
	var v uint32
	if err := m.Lookup(k, &v); err != nil {
		return true
	}
	return v>>slotShift == s.slot
}

// Fd returns the socket's file descriptor; it polls readable when frames
// wait on the RX ring.
func (s *Socket) Fd() int {
	if s == nil {
		return -1
	}
	return s.fd
}

// Close detaches the program and releases the socket, maps, rings and
// UMEM. It is safe on nil and twice.
func (s *Socket) Close() error {
	if s == nil {
		return nil
	}
	var errs []error
	if s.xsks != nil {
		// Drop the map's reference to the socket now rather than when
		// the map is freed, so the queue is released sooner.
		if err := s.xsks.Delete(s.slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("removing socket from xsks map: %w", err))
		}
	}
	if s.link != nil {
		if err := s.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detaching program: %w", err))
		}
		s.link = nil
	}
	if s.prog != nil {
		if err := s.prog.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing program: %w", err))
		}
		s.prog = nil
	}
	for _, m := range []**ebpf.Map{&s.steer, &s.flows, &s.xsks, &s.shares} {
		if *m != nil {
			if err := (*m).Close(); err != nil {
				errs = append(errs, fmt.Errorf("closing map: %w", err))
			}
			*m = nil
		}
	}
	if err := s.fill.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.comp.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.rx.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.tx.Close(); err != nil {
		errs = append(errs, err)
	}
	s.fill, s.comp, s.rx, s.tx = nil, nil, nil, nil
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("closing socket: %w", err))
		}
		s.fd = -1
	}
	if err := s.umem.Close(); err != nil {
		errs = append(errs, err)
	}
	s.umem = nil
	if s.groupMem != nil {
		if err := unix.Munmap(s.groupMem); err != nil {
			errs = append(errs, err)
		}
		s.groupMem, s.group = nil, nil
	}
	if len(errs) > 0 {
		return s.errorf("closing: %w", errors.Join(errs...))
	}
	return nil
}
