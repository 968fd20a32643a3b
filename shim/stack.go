package shim

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

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
	link     *xdp.Socket
	ifc      iface
	epoch    time.Time
	rx       [][]byte
	woken    []uintptr
	released []uint16
	// local TCP ports steered to this stack; the core says when a port has no user left
	steered map[uint16]bool

	kickFd         int          // eventfd that wakes the poller early
	pollerDeadline atomic.Int64 // when the poller will next wake, in stack time
	closed         atomic.Bool

	seg   *shm.StatsSegment
	stats *Stats
	eng   *Engine
}

func newStack(eng *Engine, cfg Config) (*stack, error) {
	ifc, err := findIface(cfg.Iface)
	if err != nil {
		return nil, err
	}
	names := shm.StatNames(&stackcore.Stats{}, &xdp.Stats{}, &Stats{})
	st := &stack{
		ifc:      ifc,
		epoch:    time.Now(),
		rx:       make([][]byte, rxBatch),
		woken:    make([]uintptr, 0, 256),
		released: make([]uint16, 0, 64),
		steered:  map[uint16]bool{},
		kickFd:   -1,
		eng:      eng,
	}
	st.pollerDeadline.Store(int64(stackcore.Never))

	seg, err := shm.CreateStats(cfg.StatsDir, names, shm.StatsInfo{Iface: ifc.name})
	if err != nil {
		return nil, fmt.Errorf("creating stats segment: %w", err)
	}
	st.seg = seg
	coreStats, rest := shm.BindStats[stackcore.Stats](seg.Values())
	xskStats, rest := shm.BindStats[xdp.Stats](rest)
	st.stats, _ = shm.BindStats[Stats](rest)

	link, err := xdp.Open(ifc.name, 0, xdp.Options{Mode: cfg.XDPMode, Stats: xskStats})
	if err != nil {
		st.close()
		_ = seg.Remove() // no stack after all: nothing for onloadctl to show
		return nil, fmt.Errorf("opening AF_XDP on %s: %w", ifc.name, err)
	}
	st.link = link
	seg.SetMode(link.Mode())

	var seed [8]byte
	_, _ = rand.Read(seed[:])
	st.core = stackcore.New(stackcore.Config{
		MAC:             stackcore.MAC(ifc.mac),
		Addr:            stackcore.IPv4(ifc.addr),
		MTU:             ifc.mtu,
		VerifyChecksums: cfg.VerifyChecksum,
		Stats:           coreStats,
		Seed:            binary.LittleEndian.Uint64(seed[:]),
		RecvBuf:         cfg.RecvBuf,
		SendBuf:         cfg.SendBuf,
	})
	kfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		st.close()
		return nil, fmt.Errorf("creating poller eventfd: %w", err)
	}
	st.kickFd = kfd
	go st.poller()
	return st, nil
}

func (st *stack) now() stackcore.Time {
	return stackcore.Time(time.Since(st.epoch).Microseconds())
}

// serviceLocked moves received frames through the core and emits what is due. Caller holds st.mu.
func (st *stack) serviceLocked() stackcore.Time {
	st.rxLocked()
	return st.txLocked()
}

// rxLocked feeds the frames waiting on the link to the core.
func (st *stack) rxLocked() {
	now := st.now()
	for batch := 0; batch < 4; batch++ {
		n := st.link.Receive(st.rx)
		if n == 0 {
			return
		}
		for _, f := range st.rx[:n] {
			st.core.Input(now, f)
		}
		st.link.ReleaseRx()
		if n < len(st.rx) {
			return
		}
	}
}

// txLocked emits what is due, tells waiting threads about sockets whose readiness changed, drops
// the steering of connections the core has freed, and returns the core's next deadline.
func (st *stack) txLocked() stackcore.Time {
	next := st.core.Poll(st.now(), st.link)
	_ = st.link.Flush()
	st.woken = st.core.TakeWoken(st.woken[:0])
	for _, c := range st.woken {
		st.eng.wake(c)
	}
	st.released = st.core.Released(st.released[:0])
	for _, p := range st.released {
		st.unsteerLocked(p)
	}
	// wake the poller if it sleeps past the new deadline (1 ms slack keeps this rare)
	if next != stackcore.Never && int64(next)+1000 < st.pollerDeadline.Load() {
		st.pollerDeadline.Store(int64(next))
		var one = [8]byte{1}
		_, _ = unix.Write(st.kickFd, one[:])
		atomic.AddUint64(&st.stats.PollerKicks, 1)
	}
	return next
}

// steerLocked sends the frames of a local TCP port to this stack.
func (st *stack) steerLocked(port uint16) error {
	if st.steered[port] {
		return nil
	}
	if err := st.link.Steer(unix.IPPROTO_TCP, st.ifc.addr, port); err != nil {
		return err
	}
	st.steered[port] = true
	return nil
}

// unsteerLocked gives a port's frames back to the kernel once the core no longer uses it.
func (st *stack) unsteerLocked(port uint16) {
	if !st.steered[port] {
		return
	}
	delete(st.steered, port)
	_ = st.link.Unsteer(unix.IPPROTO_TCP, st.ifc.addr, port)
}

// poller runs timers and drains the link while no application thread is inside the stack.
func (st *stack) poller() {
	fds := []unix.PollFd{{Fd: int32(st.link.Fd()), Events: unix.POLLIN}, {Fd: int32(st.kickFd), Events: unix.POLLIN}}
	var buf [8]byte
	for !st.closed.Load() {
		st.mu.Lock()
		next := st.serviceLocked()
		st.pollerDeadline.Store(int64(next))
		st.mu.Unlock()
		timeout := -1
		if next != stackcore.Never {
			wait := int64(next) - int64(st.now())
			if wait < 0 {
				wait = 0
			}
			timeout = int((wait + 999) / 1000)
		}
		fds[0].Revents, fds[1].Revents = 0, 0
		if n, _ := unix.Poll(fds, timeout); n == 0 {
			atomic.AddUint64(&st.stats.PollerTimeouts, 1)
		}
		if fds[1].Revents != 0 {
			_, _ = unix.Read(st.kickFd, buf[:])
		}
		atomic.AddUint64(&st.stats.PollerWakeups, 1)
	}
}

func (st *stack) close() {
	st.closed.Store(true)
	if st.kickFd >= 0 {
		var one = [8]byte{1}
		_, _ = unix.Write(st.kickFd, one[:])
	}
	if st.link != nil {
		st.link.Close()
	}
	if st.seg != nil {
		st.seg.Close()
	}
}
