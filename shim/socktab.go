package shim

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/shm"
	"ustack/stackcore"
)

// The stack publishes its sockets in a table in shared memory (shm.SockTable) that onloadctl
// reads as ss reads the kernel's: without asking the process, so that it works while the
// program is busy, blocked or stopped. The poller publishes at most every sockPublishEvery while
// the stack works, and once more before it sleeps: nothing is done per packet, and a socket is
// rewritten only when its counters, state or queues changed.

const (
	sockTableSlots   = 1 << 16
	sockPublishEvery = 100 * stackcore.Millisecond
	// how often the sockets handed to the kernel are looked at (a system call or two each)
	kernelLookEvery = stackcore.Second
)

// sockPublisher keeps the process's socket table current.
type sockPublisher struct {
	tab      *shm.SockTable
	slots    []pubSlot // what each used slot was last written with
	free     []int32   // slots used once and free again
	hw       int       // slots ever used
	round    uint32
	unlisted int
	rec      shm.SockRecord
	info     [stackcore.TCPInfoLen]byte

	at         stackcore.Time // the last publication
	frames     uint64         // frames through the core then
	entries    uint64         // application calls then
	changed    bool           // sockets were made, closed or handed over since
	kernel     []kernelSock
	kernelLook stackcore.Time
}

type pubSlot struct {
	round uint32
	sig   [3]uint64
}

// kernelSock is a socket the stack handed to the kernel: listed while its fd still is that socket.
type kernelSock struct {
	fd    int
	inode uint64
	slot  int
	rec   shm.SockRecord
}

func newSockPublisher(dir string) (*sockPublisher, error) {
	tab, err := shm.CreateSockTable(dir, sockTableSlots)
	if err != nil {
		return nil, err
	}
	return &sockPublisher{tab: tab, changed: true}, nil
}

// pending says whether the table may be behind the stack: sockets were made, closed or handed
// over, frames moved or the application called in since the last publication, or the sockets
// handed to the kernel are due for a look.
func (p *sockPublisher) pending(st *stack, now stackcore.Time) bool {
	cs := st.core.Stats()
	return p.changed || cs.EthRxFrames+cs.EthTxFrames != p.frames || st.entries != p.entries ||
		len(p.kernel) > 0 && now-p.kernelLook >= kernelLookEvery
}

// publishLocked writes every socket that changed and frees the slots of those gone. Caller holds
// st.mu.
func (p *sockPublisher) publishLocked(st *stack, now stackcore.Time) {
	cs := st.core.Stats()
	p.frames, p.entries, p.changed, p.at = cs.EthRxFrames+cs.EthTxFrames, st.entries, false, now
	p.round++
	p.unlisted = 0
	p.rec.Written = time.Now().UnixNano()
	st.core.EachConn(func(c *stackcore.TCPConn) { p.conn(st, now, c) })
	st.core.EachListener(func(l *stackcore.Listener) { p.listener(st, l) })
	st.core.EachUDP(func(u *stackcore.UDPSocket) { p.udp(st, u) })
	if len(p.kernel) > 0 && now-p.kernelLook >= kernelLookEvery {
		p.kernelLook = now
		p.lookAtKernel()
	}
	for _, k := range p.kernel {
		p.slots[k.slot].round = p.round
	}
	for i := range p.hw {
		if s := &p.slots[i]; s.round != 0 && s.round != p.round {
			s.round = 0
			p.tab.Free(i)
			p.free = append(p.free, int32(i))
		}
	}
	p.tab.Published(p.hw, p.unlisted, time.Unix(0, p.rec.Written))
}

// place returns the slot of an object whose TableSlot is *ts, giving it one if it has none, and
// whether sig differs from what the slot was last written with (then the slot takes sig). -1: no
// room.
func (p *sockPublisher) place(ts *int32, sig [3]uint64) (int, bool) {
	if *ts == 0 {
		i := p.alloc()
		if i < 0 {
			p.unlisted++
			return -1, false
		}
		*ts = int32(i + 1)
		p.slots[i] = pubSlot{round: p.round, sig: sig}
		return i, true
	}
	// a live object is seen every round, so its slot was not freed
	i := int(*ts - 1)
	s := &p.slots[i]
	s.round = p.round
	if s.sig == sig {
		return i, false
	}
	s.sig = sig
	return i, true
}

func (p *sockPublisher) alloc() int {
	if n := len(p.free); n > 0 {
		i := int(p.free[n-1])
		p.free = p.free[:n-1]
		return i
	}
	if p.hw == p.tab.Slots() {
		return -1
	}
	p.hw++
	if p.hw > len(p.slots) {
		p.slots = append(p.slots, make([]pubSlot, max(64, len(p.slots)))...)
	}
	return p.hw - 1
}

// socksChanged tells the publisher a socket was made, closed or handed over. A poller asleep
// for long (idle: only frames and timers wake it) is woken to publish, once per publication.
// Caller holds st.mu.
func (st *stack) socksChanged() {
	if st.pub == nil || st.pub.changed {
		return
	}
	st.pub.changed = true
	if st.pollerDeadline.Load() > int64(st.now()+sockPublishEvery) {
		st.kickPoller()
	}
}

// fdOf returns an fd of the socket whose core object carries cookie, -1 if none.
func fdOf(st *stack, cookie uintptr) int32 {
	if cookie == 0 {
		return -1
	}
	if s := st.eng.cookies[cookie]; s != nil {
		return int32(s.base().fd())
	}
	return -1
}

func (p *sockPublisher) conn(st *stack, now stackcore.Time, c *stackcore.TCPConn) {
	in, out := c.Segments()
	fd := fdOf(st, c.Cookie)
	sig := [3]uint64{uint64(in)<<32 | uint64(out), uint64(c.LinuxState())<<32 | uint64(uint32(fd)),
		uint64(c.InQueue())<<32 | uint64(c.OutQueue())}
	i, write := p.place(&c.TableSlot, sig)
	if !write {
		return
	}
	r := &p.rec
	p.header(st, r, unix.IPPROTO_TCP, c.LinuxState(), c.LocalPort(), fd)
	raddr, rport := c.Remote()
	r.LAddr, r.RAddr = c.Local(), raddr
	r.RPort = rport
	if fd < 0 && !c.Accepting() {
		r.Flags |= shm.SockFlagOrphan
	}
	r.RecvQ, r.SendQ = uint32(c.InQueue()), uint32(c.OutQueue())
	r.CC = c.Congestion()
	r.TCPInfo = c.AppendTCPInfo(p.info[:0], now)
	p.tab.Write(i, r)
}

func (p *sockPublisher) listener(st *stack, l *stackcore.Listener) {
	queued, pending, backlog := l.Queue()
	fd := fdOf(st, l.Cookie)
	sig := [3]uint64{uint64(queued)<<32 | uint64(pending), uint64(backlog)<<32 | uint64(uint32(fd)),
		boolU64(st.shared[l.Port()])}
	i, write := p.place(&l.TableSlot, sig)
	if !write {
		return
	}
	r := &p.rec
	p.header(st, r, unix.IPPROTO_TCP, 10, l.Port(), fd) // TCP_LISTEN
	r.LAddr = l.Bound()
	r.Flags |= shm.SockFlagListen
	if st.shared[l.Port()] {
		r.Flags |= shm.SockFlagShared
	}
	r.RecvQ, r.SendQ, r.Pending = uint32(queued), uint32(backlog), uint32(pending)
	p.tab.Write(i, r)
}

func (p *sockPublisher) udp(st *stack, u *stackcore.UDPSocket) {
	in, out := u.Datagrams()
	fd := fdOf(st, u.Cookie)
	raddr, rport, connected := u.Remote()
	sig := [3]uint64{in, out, uint64(u.InQueue())<<32 | uint64(u.OutQueue())}
	sig[2] ^= uint64(uint32(fd))<<16 | boolU64(connected)
	i, write := p.place(&u.TableSlot, sig)
	if !write {
		return
	}
	r := &p.rec
	state := uint8(7) // TCP_CLOSE: ss shows UNCONN
	if connected {
		state = 1
	}
	p.header(st, r, unix.IPPROTO_UDP, state, u.LocalPort(), fd)
	r.LAddr = u.Bound()
	if connected {
		r.Flags |= shm.SockFlagConnected
		r.RAddr, r.RPort = raddr, rport
		if u.Local().IsUnspecified() {
			r.LAddr = st.core.SourceFor(raddr)
		}
	}
	r.RecvQ, r.SendQ = uint32(u.InQueue()), uint32(u.OutQueue())
	r.In, r.Out = in, out
	p.tab.Write(i, r)
}

// header resets r to a socket of the stack on local port lport.
func (p *sockPublisher) header(st *stack, r *shm.SockRecord, proto, state uint8, lport uint16, fd int32) {
	written := r.Written
	*r = shm.SockRecord{Proto: proto, State: state, LPort: lport, Fd: fd, Written: written}
}

func boolU64(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// noteKernelLocked lists fd, a socket the stack has just handed to the kernel, while fd is
// that socket. Caller holds st.mu.
func (p *sockPublisher) noteKernelLocked(fd int, proto uint8, reason uint8, now stackcore.Time) {
	var sst unix.Stat_t
	if unix.Fstat(fd, &sst) != nil {
		return
	}
	i := p.alloc()
	if i < 0 {
		return
	}
	k := kernelSock{fd: fd, inode: sst.Ino, slot: i}
	k.rec = shm.SockRecord{Proto: proto, Flags: shm.SockFlagKernel, Reason: reason, Fd: int32(fd), In: sst.Ino}
	// the program goes on with the call that handed it over (a connect, a listen): look again
	// soon after
	p.kernelLook = min(p.kernelLook, now-kernelLookEvery+sockPublishEvery)
	p.slots[i] = pubSlot{round: p.round}
	if !p.kernelState(&k) {
		p.slots[i].round = 0
		p.free = append(p.free, int32(i))
		return
	}
	p.kernel = append(p.kernel, k)
}

// kernelState reads the kernel socket's state into its slot; false once fd is another file.
func (p *sockPublisher) kernelState(k *kernelSock) bool {
	var sst unix.Stat_t
	if unix.Fstat(k.fd, &sst) != nil || sst.Ino != k.inode {
		return false
	}
	r := &k.rec
	r.Written = time.Now().UnixNano()
	r.State, r.TCPInfo = 7, nil
	r.Flags &^= shm.SockFlagListen
	r.LAddr, r.LPort, r.RAddr, r.RPort = [16]byte{}, 0, [16]byte{}, 0
	if sa, err := unix.Getsockname(k.fd); err == nil {
		if ip, port, ok := addrOfSockaddr(sa); ok {
			r.LAddr, r.LPort = ip, port
		}
	}
	if sa, err := unix.Getpeername(k.fd); err == nil {
		if ip, port, ok := addrOfSockaddr(sa); ok {
			r.RAddr, r.RPort = ip, port
		}
	}
	if r.Proto == unix.IPPROTO_TCP {
		if ti, err := unix.GetsockoptTCPInfo(k.fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			// the kernel's own, in its layout
			r.State, r.TCPInfo = ti.State, unsafe.Slice((*byte)(unsafe.Pointer(ti)), stackcore.TCPInfoLen)
		}
		if r.State == 10 {
			r.Flags |= shm.SockFlagListen
		}
	} else if r.RPort != 0 {
		r.State = 1
	}
	p.tab.Write(k.slot, r)
	return true
}

// kernelDue returns when the sockets handed to the kernel are next looked at (Never: none).
func (p *sockPublisher) kernelDue() stackcore.Time {
	if len(p.kernel) == 0 {
		return stackcore.Never
	}
	return p.kernelLook + kernelLookEvery
}

// lookAtKernel refreshes the sockets handed to the kernel and drops those whose fd was closed.
func (p *sockPublisher) lookAtKernel() {
	kept := p.kernel[:0]
	for _, k := range p.kernel {
		if p.kernelState(&k) {
			kept = append(kept, k)
			continue
		}
		p.slots[k.slot].round = 0
		p.tab.Free(k.slot)
		p.free = append(p.free, int32(k.slot))
	}
	clear(p.kernel[len(kept):])
	p.kernel = kept
}
