package shim

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"ustack/nic"
	"ustack/nic/xdp"
	"ustack/shm"
	"ustack/stackcore"
)

const rxBatch = 64

// stack is one user-space stack: the protocol core, the AF_XDP link it drives, and the lock that
// serialises them. Application threads drive it inside their calls; a poller goroutine runs
// timers and drains the link when no application thread does.
type stack struct {
	mu       sync.Mutex
	core     *stackcore.Stack
	link     Link
	ifc      iface
	cp       controlPlane
	clock    Clock
	rx       [][]byte
	woken    []uintptr
	released []uint16
	// local TCP ports steered to this stack; the core says when a port has no user left
	steered map[uint16]bool
	// of which shared with other processes (listeners with SO_REUSEPORT), and the connections
	// born there and ended since the last round (stackcore.Stack.Pins)
	shared     map[uint16]bool
	pin, unpin []stackcore.Flow
	// listening ports and their sockets
	listeners map[listenKey]*listenShare
	// connections the program closed that may still have data or a FIN to deliver, or the
	// peer's FIN to acknowledge; orphansKept of them were left at the last prune
	orphans     []*stackcore.TCPConn
	orphansKept int
	// connections steered one by one (steerFlowLocked); forgotten with their port, or when the
	// kernel has finished one steered there (sweepKernelFlowsLocked, next at sweepAt)
	flows       map[flowKey]uint32
	kernelFlows int // of which steered to the kernel
	sweepAt     stackcore.Time
	// UDP ports steered to this stack
	steeredUDP  map[uint16]bool
	releasedUDP []uint16
	// multicast groups' ports steered here, by the sockets that joined them (mcast.go)
	mcSteered map[mcKey]int
	// the multicast relay to and from the other processes on a group's port (relay.go)
	relayFd    int
	relayTried bool
	relayReady atomic.Bool // the poller saw relayed frames come
	relayBuf   []byte
	relayConns []int // members relaying to us
	relayUID   uint32
	mcRelay    map[mcKey]*relayTargets
	// what the kernel said of destinations and next hops (route.go)
	bindV6only bool // net.ipv6.bindv6only: IPV6_V6ONLY's default
	routes     map[stackcore.Addr]routeEntry
	neighs     map[stackcore.Addr]*neighbour

	armed atomic.Int32 // a faultOp the test-only fault hook armed (IoctlArmPanic)

	rxUnsent bool   // frames went into the core since the last txLocked
	entries  uint64 // calls of application threads into the stack (the poller's are not counted)

	ports portRange // the system's ephemeral ports (ip_local_port_range), read at start

	kickFd         int // eventfd that wakes the poller early
	moveFd         int // fork children's requests to move a socket to the kernel (forkserve.go)
	pendingMoves   []pendingMove
	wait           *pollerWait    // where the poller sleeps
	pollerDeadline atomic.Int64   // when the poller will next wake, in stack time
	promiseUntil   stackcore.Time // the poller keeps TxKick.DeferOK until then (promiseKicks)
	closed         atomic.Bool
	pollerDone     sync.WaitGroup

	// where TX kicks are left to the interposer (nil: txLocked kicks), and the link that makes them
	txk    *TxKick
	kicker txKicker

	seg       *shm.StatsSegment
	pub       *sockPublisher   // the socket table onloadctl reads (socktab.go); nil in tests
	out       stackcore.Output // where the core's frames go: the link, or capOut during a capture
	capID     uint64           // the capture written into now (0: none)
	capOut    captureOutput
	capLookAt stackcore.Time  // when its reader is next looked for (captureReaderLocked)
	member    *xdp.Membership // this process's place in the interface's group
	stats     *Stats
	eng       *Engine
}

// Link is what the stack drives: a NIC link that can also steer local ports to itself.
type Link interface {
	nic.Link
	// Addresses are IPv6, or IPv4 mapped (::ffff:a.b.c.d).
	Steer(proto uint8, ip [16]byte, port uint16) error
	Unsteer(proto uint8, ip [16]byte, port uint16) error
	// SteerListed keeps a port's entry but steers only the flows SteerFlow lists as ours.
	SteerListed(proto uint8, ip [16]byte, port uint16) error
	// SteerShared steers a port to this stack and the other processes that share it
	// (SO_REUSEPORT): new flows are spread over them, each connection listed once born.
	SteerShared(proto uint8, ip [16]byte, port uint16) error
	UnsteerShared(proto uint8, ip [16]byte, port uint16) error
	// SteerFlow decides for one connection on a steered port, whatever the port's entry says.
	SteerFlow(proto uint8, local [16]byte, lport uint16, remote [16]byte, rport uint16, action uint32) error
	UnsteerFlow(proto uint8, local [16]byte, lport uint16, remote [16]byte, rport uint16) error
	Mode() string
}

// txKicker is a link whose TX kick may be made apart from queueing the frames (nic/xdp).
type txKicker interface {
	Publish() bool
	Kick() error
}

// What SteerFlow does with a flow's frames (keep in step with nic/xdp).
const (
	flowUs     = 1 // to the stack
	flowKernel = 2 // to the kernel: the connection was moved there
	flowDrop   = 3 // dropped: the connection is moving
)

// flowKey is a TCP connection of ours as the steering program sees it.
type flowKey struct {
	lport uint16
	laddr stackcore.Addr
	raddr stackcore.Addr
	rport uint16
}

// newStack starts a stack on the configured interface: stats segment, AF_XDP link, core, poller.
func newStack(eng *Engine, cfg Config) (*stack, error) {
	ifc, err := findIface(cfg.Iface)
	if err != nil {
		return nil, err
	}
	names := shm.StatNames(statsStructs()...) // bound below, in this order
	seg, err := shm.CreateStats(cfg.StatsDir, names, shm.StatsInfo{Iface: ifc.name})
	if err != nil {
		return nil, fmt.Errorf("creating stats segment: %w", err)
	}
	coreStats, rest := shm.BindStats[stackcore.Stats](seg.Values())
	xskStats, rest := shm.BindStats[xdp.Stats](rest)
	shimStats, _ := shm.BindStats[Stats](rest)

	link, member, err := attachGroup(cfg, ifc.name, xskStats)
	if err != nil {
		_ = seg.Remove() // no stack after all: nothing for onloadctl to show
		return nil, fmt.Errorf("AF_XDP on %s: %w", ifc.name, err)
	}
	seg.SetMode(link.Mode())
	st, err := startStack(eng, cfg, stackOptions{ifc: ifc, cp: &ifc, link: link, clock: wallClock{time.Now()},
		coreStats: coreStats, stats: shimStats, poller: true})
	if err != nil {
		link.Close()
		member.Close()
		_ = seg.Remove()
		return nil, err
	}
	st.seg, st.member = seg, member
	if pub, err := newSockPublisher(cfg.StatsDir); err != nil {
		eng.Log.Warn().Err(err).Msg("onloadctl sockets and capture will not see this process")
	} else {
		st.with(nil, faultNone, func() int { st.pub = pub; return 0 })
	}
	return st, nil
}

// stackOptions are what a stack runs over: the interface and its control plane, the link, the
// clock, where the counters live, and whether a poller goroutine drives it (tests drive it
// themselves, on a manual clock).
type stackOptions struct {
	ifc       iface
	cp        controlPlane
	link      Link
	clock     Clock
	coreStats *stackcore.Stats
	stats     *Stats
	poller    bool
	seed      uint64 // 0: random
}

// startStack runs a stack.
func startStack(eng *Engine, cfg Config, o stackOptions) (*stack, error) {
	kfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating poller eventfd: %w", err)
	}
	seed := o.seed
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	ifc := o.ifc
	st := &stack{
		ifc:         ifc,
		cp:          o.cp,
		link:        o.link,
		clock:       o.clock,
		rx:          make([][]byte, rxBatch),
		woken:       make([]uintptr, 0, 256),
		released:    make([]uint16, 0, 64),
		steered:     map[uint16]bool{},
		listeners:   map[listenKey]*listenShare{},
		steeredUDP:  map[uint16]bool{},
		mcSteered:   map[mcKey]int{},
		releasedUDP: make([]uint16, 0, 16),
		ports:       systemPortRange(),
		routes:      map[stackcore.Addr]routeEntry{},
		neighs:      map[stackcore.Addr]*neighbour{},
		kickFd:      kfd,
		bindV6only:  readSysctlInt("/proc/sys/net/ipv6/bindv6only", 0) != 0,
		moveFd:      -1,
		relayFd:     -1,
		stats:       o.stats,
		eng:         eng,
		core: stackcore.New(stackcore.Config{
			MAC:             stackcore.MAC(ifc.mac),
			Addr:            ifc.addr.As4(),
			Addrs6:          ifc.addrs6,
			MTU:             ifc.mtu,
			VerifyChecksums: cfg.VerifyChecksum,
			Stats:           o.coreStats,
			Seed:            seed,
			RecvBuf:         cfg.RecvBuf,
			SendBuf:         cfg.SendBuf,
			RecvBufMax:      cfg.RecvBufMax,
			SendBufMax:      cfg.SendBufMax,
		}),
	}
	st.out = st.link
	st.pollerDeadline.Store(int64(stackcore.Never))
	if k, ok := o.link.(txKicker); ok && o.poller {
		if st.txk = eng.tab.TxKick(); st.txk != nil {
			st.kicker = k
		}
	}
	if o.poller {
		// a process's stack serves its fork children (forkserve.go); tests drive theirs
		if fd, name, err := ownerSocket(seed); err == nil {
			st.moveFd = fd
			eng.tab.SetOwner(name, unix.Getpid())
		} else {
			eng.Log.Warn().Err(err).Msg("fork children will not be able to use inherited sockets")
		}
		if st.wait, err = newPollerWait(kfd, st.moveFd, st.link.Fd()); err != nil {
			if st.moveFd >= 0 {
				unix.Close(st.moveFd)
			}
			unix.Close(kfd)
			return nil, err
		}
		st.pollerDone.Add(1)
		go st.poller()
	}
	return st, nil
}

func (st *stack) now() stackcore.Time { return st.clock.Now() }

// serviceLocked moves received frames through the core and emits what is due. Caller holds st.mu.
func (st *stack) serviceLocked() stackcore.Time {
	st.rxLocked()
	return st.txLocked()
}

// rxLocked feeds the frames waiting on the link to the core and returns how many it took. What
// they change (readiness of other sockets, ACKs due) goes out at the next txLocked, which with
// makes sure comes before the lock is released.
func (st *stack) rxLocked() (frames int) {
	now := st.now()
	if st.pub != nil && st.pub.tab.CaptureRequest() != st.capID {
		st.captureChangedLocked()
	}
	if st.relayReady.Load() {
		frames += st.relayInLocked(now) // relay.go
	}
	for batch := 0; batch < 4; batch++ {
		n := st.link.Receive(st.rx)
		if n == 0 {
			return frames
		}
		frames += n
		st.rxUnsent = true
		if st.capOut.w != nil {
			st.capOut.received(st.rx[:n])
		}
		for _, f := range st.rx[:n] {
			st.core.Input(now, f)
			if st.relayFd >= 0 {
				st.relayOutLocked(now, f) // relay.go
			}
		}
		st.link.ReleaseRx()
		if n < len(st.rx) {
			return frames
		}
	}
	return frames
}

// txLocked emits what is due, tells waiting threads about sockets whose readiness changed, drops
// the steering of connections the core has freed, and returns the core's next deadline.
func (st *stack) txLocked() stackcore.Time {
	st.rxUnsent = false
	if st.pub != nil && st.pub.tab.CaptureRequest() != st.capID {
		st.captureChangedLocked()
	}
	if st.capOut.w != nil {
		st.capOut.ts = time.Now().UnixNano()
	}
	next := st.core.Poll(st.now(), st.out)
	st.flushLocked()
	st.woken = st.core.TakeWoken(st.woken[:0])
	for _, c := range st.woken {
		st.eng.wakeLocked(c)
	}
	// a connection of a shared port stays with the stack it was born in, whoever joins or leaves
	// the port's sharers (and its end is reported after its listener has gone too)
	st.pin, st.unpin = st.core.Pins(st.pin[:0], st.unpin[:0])
	for _, f := range st.pin {
		if err := st.steerFlowLocked(flowKey{f.LocalPort, f.Local, f.Remote, f.RemotePort}, flowUs); err != nil {
			st.eng.Log.Warn().Err(err).Msg("keeping a connection of a shared port")
		}
	}
	for _, f := range st.unpin {
		st.unsteerFlowLocked(flowKey{f.LocalPort, f.Local, f.Remote, f.RemotePort})
	}
	st.released = st.core.Released(st.released[:0])
	for _, p := range st.released {
		st.unsteerLocked(p)
	}
	st.releasedUDP = st.core.ReleasedUDP(st.releasedUDP[:0])
	for _, p := range st.releasedUDP {
		st.unsteerUDPLocked(p)
	}
	// wake the poller if it sleeps past the new deadline (see pollerTick)
	if next != stackcore.Never && int64(next)+int64(stackcore.Millisecond) < st.pollerDeadline.Load() {
		st.pollerDeadline.Store(int64(next))
		st.kickPoller()
	}
	return next
}

// flushLocked sends what the core emitted. With an interposer to make the kick (TxKick) the
// frames are only queued: it kicks after the application's call, or once at the end of the
// thread's batch of events. Caller holds st.mu.
func (st *stack) flushLocked() {
	if st.txk == nil {
		_ = st.link.Flush()
		return
	}
	if st.kicker.Publish() {
		atomic.StoreInt32(&st.txk.Pending, 1)
	}
}

// kickPending makes a kick left to the interposer, for the stack's own goroutines: what they
// queue must not wait for an application thread.
func (st *stack) kickPending() {
	if st.txk != nil && atomic.LoadInt32(&st.txk.Pending) != 0 && atomic.SwapInt32(&st.txk.Pending, 0) != 0 {
		if st.kicker.Kick() == xdp.ErrTxBusy {
			atomic.StoreInt32(&st.txk.Pending, 1) // frames were left: the next kick sends them
		}
	}
}

// promiseKicks sets TxKick.DeferOK for the poller's next sleep: while application threads leave
// kicks to the end of their batches (batched moved since the last round, or within
// pollerPromiseHold) the poller promises to look within pollerDeferTick, and wake is brought
// forward to keep the promise. It returns the new wake-up and the count to compare with next time.
//
// The promise outlives a quiet round: processes that share a CPU (nginx's workers) run by turns
// of a few milliseconds, and a poller that withdrew it in every round its process did not run
// found it withdrawn at each turn's first batch, whose kick could not wait (one system call per
// two packets, against one per 38 for a process alone).
func (st *stack) promiseKicks(now, wake stackcore.Time, batched uint64) (stackcore.Time, uint64) {
	b := atomic.LoadUint64(&st.txk.Batched)
	if b != batched {
		st.promiseUntil = now + pollerPromiseHold
	} else if now >= st.promiseUntil {
		// withdraw the promise, then look again: a thread that counted itself before it saw
		// the promise withdrawn is seen here (the interposer counts, then reads DeferOK)
		atomic.StoreInt32(&st.txk.DeferOK, 0)
		if b = atomic.LoadUint64(&st.txk.Batched); b == batched {
			return wake, b
		}
		st.promiseUntil = now + pollerPromiseHold
	}
	atomic.StoreInt32(&st.txk.DeferOK, 1)
	return min(wake, now+pollerDeferTick), b
}

// kickPoller wakes the poller now.
func (st *stack) kickPoller() {
	var one = [8]byte{1}
	_, _ = unix.Write(st.kickFd, one[:])
	atomic.AddUint64(&st.stats.PollerKicks, 1)
}

// delivered reports whether a closed connection has nothing left to send: our FIN was
// acknowledged, or the connection is gone.
func delivered(c *stackcore.TCPConn) bool {
	switch c.State() {
	case stackcore.StateClosed, stackcore.StateFinWait2, stackcore.StateTimeWait:
		return true
	}
	return false
}

// finished reports whether a closed connection has nothing left to do that a kernel socket
// could do for it: a connection in FIN-WAIT-2 still has the peer's FIN to acknowledge.
func finished(c *stackcore.TCPConn) bool {
	return c.State() == stackcore.StateClosed || c.State() == stackcore.StateTimeWait
}

// orphanLocked keeps a closed connection until it has finished (see Engine.Drain). The list
// is pruned when it has doubled since the last prune, so that a close costs O(1) however many
// connections wait in FIN-WAIT-2 for their peer.
func (st *stack) orphanLocked(c *stackcore.TCPConn) {
	if len(st.orphans) >= max(64, 2*st.orphansKept) {
		st.pruneOrphansLocked()
	}
	st.orphans = append(st.orphans, c)
}

// pruneOrphansLocked forgets the orphans that have finished; it returns how many of those
// left have not yet delivered and the bytes they still have queued.
func (st *stack) pruneOrphansLocked() (undelivered, queued int) {
	kept := 0
	for _, c := range st.orphans {
		if finished(c) {
			continue
		}
		st.orphans[kept] = c
		kept++
		if !delivered(c) {
			undelivered++
			queued += c.OutQueue()
		}
	}
	clear(st.orphans[kept:])
	st.orphans = st.orphans[:kept]
	st.orphansKept = kept
	return undelivered, queued
}

// steerLocked sends the frames of a local TCP port to this stack.
func (st *stack) steerLocked(port uint16) error {
	return st.steerPortLocked(unix.IPPROTO_TCP, st.steered, port)
}

// unsteerLocked gives a TCP port's frames back to the kernel once the core no longer uses it.
func (st *stack) unsteerLocked(port uint16) { st.unsteerPortLocked(unix.IPPROTO_TCP, st.steered, port) }

// steerSharedLocked steers a TCP port to this stack and the other processes that listen on it
// with SO_REUSEPORT.
func (st *stack) steerSharedLocked(port uint16) error {
	if st.steered[port] {
		return nil
	}
	if err := st.eachAddr(func(a stackcore.Addr) error { return st.link.SteerShared(unix.IPPROTO_TCP, a, port) }); err != nil {
		return err
	}
	st.steered[port] = true
	if st.shared == nil {
		st.shared = map[uint16]bool{}
	}
	st.shared[port] = true
	return nil
}

func (st *stack) steerUDPLocked(port uint16) error {
	return st.steerPortLocked(unix.IPPROTO_UDP, st.steeredUDP, port)
}

func (st *stack) unsteerUDPLocked(port uint16) {
	st.unsteerPortLocked(unix.IPPROTO_UDP, st.steeredUDP, port)
}

func (st *stack) steerPortLocked(proto uint8, steered map[uint16]bool, port uint16) error {
	if steered[port] {
		return nil
	}
	if err := st.eachAddr(func(a stackcore.Addr) error { return st.link.Steer(proto, a, port) }); err != nil {
		return err
	}
	steered[port] = true
	return nil
}

// eachAddr calls steer for each of the interface's addresses, IPv4 and IPv6, until one fails: a
// port is steered for all of them, whatever the family of the sockets on it (a packet none of
// them takes is answered by the stack as the kernel would: a reset, or nothing for UDP).
func (st *stack) eachAddr(steer func(stackcore.Addr) error) error {
	if err := steer(st.ifc.addr); err != nil {
		return err
	}
	for _, a := range st.ifc.addrs6 {
		if err := steer(a); err != nil {
			return err
		}
	}
	return nil
}

func (st *stack) unsteerPortLocked(proto uint8, steered map[uint16]bool, port uint16) {
	if !steered[port] {
		return
	}
	delete(steered, port)
	if proto == unix.IPPROTO_TCP && st.shared[port] {
		delete(st.shared, port)
		_ = st.eachAddr(func(a stackcore.Addr) error { _ = st.link.UnsteerShared(proto, a, port); return nil })
	} else {
		_ = st.eachAddr(func(a stackcore.Addr) error { _ = st.link.Unsteer(proto, a, port); return nil })
	}
	if proto == unix.IPPROTO_TCP {
		for k := range st.flows {
			if k.lport == port {
				st.unsteerFlowLocked(k)
			}
		}
	}
}

// unsteerAllLocked gives every port and flow back to the kernel (the stack ends with the process
// or its image). Caller holds st.mu.
func (st *stack) unsteerAllLocked() {
	for p := range st.steered {
		st.unsteerLocked(p)
	}
	for p := range st.steeredUDP {
		st.unsteerUDPLocked(p)
	}
	for k := range st.flows {
		st.unsteerFlowLocked(k)
	}
}

// steerFlowLocked sends one connection's frames where action says, whatever its port's entry
// says (a connection moved to the kernel on a port we keep, a connection we keep on a listener
// moved to the kernel).
func (st *stack) steerFlowLocked(k flowKey, action uint32) error {
	if err := st.link.SteerFlow(unix.IPPROTO_TCP, k.laddr, k.lport, k.raddr, k.rport, action); err != nil {
		return err
	}
	if st.flows == nil {
		st.flows = map[flowKey]uint32{}
	}
	if old, ok := st.flows[k]; ok && old == flowKernel {
		st.kernelFlows--
	}
	if action == flowKernel {
		st.kernelFlows++
	}
	st.flows[k] = action
	return nil
}

func (st *stack) unsteerFlowLocked(k flowKey) {
	a, ok := st.flows[k]
	if !ok {
		return
	}
	if a == flowKernel {
		st.kernelFlows--
	}
	delete(st.flows, k)
	_ = st.link.UnsteerFlow(unix.IPPROTO_TCP, k.laddr, k.lport, k.raddr, k.rport)
}

// Poller pacing. The poller sleeps until the next timer, but at most tick, so an application
// thread that arms a timer (every send arms the retransmission timer) only has to kick it when
// the new deadline is closer than the poller's wake-up (txLocked).
//
// The link is the application's while it uses the stack: a thread asleep on the AF_XDP fd wakes
// when frames come and drives the stack, and a thread that called in during the last tick will
// call again (Onload's stacks poll the same way, without interrupts while the application runs).
// Only when neither holds does the poller wait for frames itself; a poller woken for every frame
// a busy application was about to take cost a context switch on the application's CPU each time.
// A blind poller still looks in every tick, for a thread that went off to other work: tick is
// pollerTick after a round with work (frames, or application calls that moved frames) and
// doubles, up to pollerMaxTick, after each round without. At pollerMaxTick the process is idle:
// the poller then watches the link as well and wakes only for frames and timers, as an idle
// server on the kernel wakes only for its own timers.
const (
	pollerTick    = 10 * stackcore.Millisecond
	pollerMaxTick = 160 * stackcore.Millisecond
	// how long a TX kick may wait for the end of an application thread's batch (TxKick)
	pollerDeferTick = stackcore.Millisecond
	// how long the poller keeps that promise after the last batch that used it
	pollerPromiseHold = 20 * stackcore.Millisecond
)

// poller runs timers and drains the link while no application thread is inside the stack.
func (st *stack) poller() {
	defer func() {
		// with recovers what panics in the core; anything else must not take the program
		// down either: count it and start again
		if p := recover(); p != nil {
			st.eng.Recovered(p)
			if !st.closed.Load() {
				st.pollerDone.Add(1)
				go st.poller()
			}
		}
		st.pollerDone.Done()
	}()
	var buf [8]byte
	moves := st.moveFd >= 0 // look once at start: a child may have asked before we watched
	tick := pollerTick
	timedOut := false
	prevNext := stackcore.Never
	var seen uint64       // st.entries at the last round
	var seenFrames uint64 // frames in and out of the core at the last round
	var batched uint64    // st.txk.Batched at the last round
	for !st.closed.Load() {
		var now, wake stackcore.Time
		var watchLink bool
		r := st.tryWith(faultPoller, func() int {
			start := st.now()
			got := st.rxLocked()
			next := st.txLocked()
			if len(st.orphans) > 0 {
				// a finished orphan must not keep its connection's buffers alive until 64
				// more close (the soak's idle heap held ~30 of them: 17 MB)
				st.pruneOrphansLocked()
			}
			now = st.now()
			next = min(next, st.sweepKernelFlowsLocked(now))
			// an application thread that called in but moved no frame (redis' cron every
			// 100 ms) is not driving the link: counting it as active kept an idle server's
			// poller at the shortest tick
			cs := st.core.Stats()
			frames := cs.EthRxFrames + cs.EthTxFrames
			active := st.entries != seen && frames != seenFrames
			seen, seenFrames = st.entries, frames
			if timedOut && got == 0 && prevNext > start && !active {
				tick = min(2*tick, pollerMaxTick)
			} else {
				tick = pollerTick
			}
			// Quiet for a whole backoff (150 ms): the poller watches the link too, and sleeps
			// until frames or a timer instead of looking blindly every tick. A frame then
			// wakes it besides a sleeping thread, once; the round after resets the tick.
			watchLink = !active && (st.eng.tab.XSKWaiters() == 0 || tick == pollerMaxTick)
			prevNext = next
			wake = next
			// idle and watching the link: only the timers wake it (redis' keepalive timers are
			// minutes away); an application that arms a nearer one kicks it (txLocked)
			idle := watchLink && tick == pollerMaxTick
			if !idle && (next != stackcore.Never || !watchLink) {
				wake = min(next, now+tick)
			}
			// the socket table: published every sockPublishEvery while the stack works, and
			// before the poller sleeps for long
			if st.pub != nil && st.pub.pending(st, now) {
				if idle || now-st.pub.at >= sockPublishEvery {
					st.pub.publishLocked(st, now)
				} else {
					wake = min(wake, st.pub.at+sockPublishEvery)
				}
			}
			if st.pub != nil {
				// sockets handed to the kernel change there: they are looked at every second
				wake = min(wake, st.pub.kernelDue())
				st.captureReaderLocked(now)
			}
			st.pollerDeadline.Store(int64(wake))
			return 0
		})
		if r != 0 { // the application is inside, or a panic stopped the round: look again soon
			now, wake, watchLink, tick = st.now(), st.now()+pollerTick, false, pollerTick
		}

		if moves || len(st.pendingMoves) > 0 {
			if st.serveMoves() {
				wake = min(wake, now+pollerTick) // a connection in its handshake: ask it again soon
			}
		}
		if st.txk != nil {
			st.kickPending()
			wake, batched = st.promiseKicks(now, wake, batched)
			st.mirrorKickStats()
		}
		timeout := time.Duration(-1)
		if wake != stackcore.Never {
			timeout = time.Duration(max(wake-now, 0)) * time.Microsecond
		}
		st.wait.watchLink(watchLink)
		var kicked, move bool
		kicked, move, timedOut = st.wait.wait(timeout)
		moves = move
		if st.wait.takeRelay() {
			st.relayReady.Store(true)
		}
		if timedOut {
			atomic.AddUint64(&st.stats.PollerTimeouts, 1)
		}
		if kicked {
			_, _ = unix.Read(st.kickFd, buf[:])
		}
		atomic.AddUint64(&st.stats.PollerWakeups, 1)
	}
}

// close stops the poller and releases the link (tests; a process simply exits).
func (st *stack) close() {
	st.closed.Store(true)
	st.kickPoller()
	st.pollerDone.Wait()
	if st.wait != nil {
		st.wait.close()
	}
	unix.Close(st.kickFd)
	if st.moveFd >= 0 {
		unix.Close(st.moveFd)
	}
	if st.relayFd >= 0 {
		unix.Close(st.relayFd)
	}
	for _, fd := range st.relayConns {
		unix.Close(fd)
	}
	for _, t := range st.mcRelay {
		for _, fd := range t.fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
	if st.link != nil {
		st.link.Close()
	}
	st.member.Close()
	if st.seg != nil {
		st.seg.Close()
	}
	st.with(nil, faultNone, func() int { st.dropTableLocked(); return 0 })
}

// portRange is a range of local ports, both ends included.
type portRange struct{ lo, hi uint16 }

// systemPortRange reads the network namespace's ephemeral port range, Linux's default if it
// cannot.
func systemPortRange() portRange {
	r := portRange{32768, 60999}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return r
	}
	var lo, hi int
	if n, _ := fmt.Sscan(string(b), &lo, &hi); n == 2 && lo > 0 && hi >= lo && hi < 65536 {
		r = portRange{uint16(lo), uint16(hi)}
	}
	return r
}
