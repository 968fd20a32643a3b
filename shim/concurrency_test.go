package shim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// Eight goroutines play application threads over the rig for 10 s of simulated time: blocking
// send/recv on connections of their own (with dup, close of dups, close and reconnect), poll
// over two connections, one connection shared by a sending and a receiving thread through dups
// of it, and two epoll loops (level- and edge-triggered, one-shot, EPOLL_CTL_ADD/MOD/DEL, a dup
// registered beside its socket, connections closed while in their set and opened again,
// non-blocking connects; a dup of the shared connection in each set). The peer echoes every
// byte, and every byte is checked. The test's goroutine is the poller: it moves the ManualClock
// and drives both stacks.
//
// Waiting is preload/wait.c's protocol, in Go (waitTable): a thread reads the fd's wake-up seq
// before the call that answers Wait, registers as a waiter, reads seq again and sleeps on a
// channel of its own; Wake bumps seq, then wakes the registered waiters that can go on. epoll
// threads sleep in the kernel, in epoll_wait on their real epoll fd, which the engine's wake
// entry makes readable (preload/epoll.c).
//
// Simulated time moves only when every thread sleeps (or is done): the application's work takes
// no simulated time and a run does not depend on the machine's speed (operations are counted;
// time is not measured). When all sleep, the poller can tell a lost wake-up from a wait: a
// sleeper whose socket is ready once the stack was driven, or an epoll sleeper whose set owes a
// report while its epoll fd is not readable, was forgotten. A sleep, and the poller's wait for
// the threads, also end after a generous real-time limit: a sleeper whose socket is ready then
// is a lost wake-up, a poller still waiting is a deadlock (the goroutines are dumped).

const (
	concSimTime   = 10 * stackcore.Second
	concGrace     = 10 * stackcore.Second // after the run, for the threads to finish what they started
	concStep      = 10 * stackcore.Millisecond
	concRealLimit = 20 * time.Second
	concMinOps    = 20 // each thread does about a thousand; this only catches one that was starved
	waitAny       = -2 // USTACK_WAIT_ANY: the slot waits on several fds (poll)
)

// waitTable is an FDTable with preload/wait.c's waiter protocol.
type waitTable struct {
	*MapTable
	seq    []atomic.Uint32 // by fd: bumped by Wake
	rx, tx []atomic.Int32  // by fd: registered waiters
	slots  []*sleeper      // one per thread, fixed before they start (ustack_waiters)
	wakes  atomic.Uint64   // Wake calls that woke a slot
}

func newWaitTable(mt *MapTable) *waitTable {
	return &waitTable{MapTable: mt, seq: make([]atomic.Uint32, FDMax), rx: make([]atomic.Int32, FDMax),
		tx: make([]atomic.Int32, FDMax)}
}

// Wake is preload's cTable.Wake and ustack_wake_fd: seq first, then the waiter counts.
func (t *waitTable) Wake(fd int, rx, tx bool) {
	t.MapTable.Wake(fd, rx, tx)
	t.seq[fd].Add(1)
	if rx && t.rx[fd].Load() > 0 || tx && t.tx[fd].Load() > 0 {
		for _, s := range t.slots {
			if f := s.fd.Load(); f == int32(fd) || f == waitAny {
				t.wakes.Add(1)
				s.wake()
			}
		}
	}
}

// sched is the run's state; its condition variable is broadcast whenever a thread falls
// asleep or is done, for the poller, which steps time only when every thread sleeps.
type sched struct {
	mu      sync.Mutex
	cond    *sync.Cond
	stop    atomic.Bool // the run is over: finish what was started
	aborted atomic.Bool // give up: wake everyone, every call fails
}

func (s *sched) changed() {
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}

// sleeper is a thread's wait slot (struct ustack_waiter) and its state for the poller's checks.
type sleeper struct {
	sched *sched
	ch    chan struct{} // the thread's eventfd
	fd    atomic.Int32  // what the slot waits on: an fd, waitAny, or -1
	// state is the number of the thread's current or last sleep, shifted left by one, with bit 0
	// set while it sleeps. Only the thread starts a sleep; whoever ends it (the thread, a
	// wake-up, the poller) clears the bit, and the thread is running from then on for the
	// poller, even before it is scheduled.
	state   atomic.Uint64
	ticking atomic.Bool // the sleep ends at the poller's next step
	mu      sync.Mutex
	sleep   uint64        // the sleep on and epfd describe
	on      []unix.PollFd // what it waits for, asleep on its channel
	epfd    int           // or, >= 0: it sleeps in epoll_wait on this epoll fd
}

func (s *sleeper) asleep() bool   { return s.state.Load()&1 != 0 }
func (s *sleeper) sleeps() uint64 { return s.state.Load() >> 1 }

// awake ends the thread's sleep, whichever it is; true if this call did it.
func (s *sleeper) awake() bool {
	for {
		v := s.state.Load()
		if v&1 == 0 {
			return false
		}
		if s.state.CompareAndSwap(v, v&^1) {
			return true
		}
	}
}

// stillIn reports whether the thread is still in sleep n.
func (s *sleeper) stillIn(n uint64) bool { return s.state.Load() == n<<1|1 }

// wake is a write to the slot's eventfd.
func (s *sleeper) wake() {
	s.awake()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

func (s *sleeper) fallAsleep(on []unix.PollFd, epfd int) uint64 {
	n := s.sleeps() + 1
	s.mu.Lock()
	s.sleep, s.on, s.epfd = n, append(s.on[:0], on...), epfd
	s.mu.Unlock()
	s.state.Store(n<<1 | 1)
	s.sched.changed()
	return n
}

// waitingFor is what the thread waits for in sleep n (its last).
func (s *sleeper) waitingFor() (n uint64, on []unix.PollFd, epfd int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sleep, append([]unix.PollFd(nil), s.on...), s.epfd
}

type conc struct {
	t       *testing.T
	r       *rig
	o       *fdOwner
	tab     *waitTable
	sched   *sched
	peer    *echoPeer
	lost    atomic.Int64 // lost wake-ups seen
	abortFd int          // an eventfd in every epoll thread's set: written when the run is aborted
	steps   int
}

type worker struct {
	c    *conc
	id   int
	name string
	slp  *sleeper
	rng  *rand.Rand
	ops  int // completed operations (an echo, a record)
	evs  int // epoll events handled
	done atomic.Bool
}

func (w *worker) fail(format string, args ...any) {
	if w.c.sched.aborted.Load() {
		return // the abort has its own report
	}
	w.c.t.Errorf("%s: "+format, append([]any{w.name}, args...)...)
	w.c.sched.aborted.Store(true)
}

// wait is ustack_wait (one fd: that fd's slot) and poll's sleep (several: waitAny): register,
// look at the seqs again, sleep until woken.
func (w *worker) wait(fds []unix.PollFd, seqs []uint32) {
	t, s := w.c.tab, w.slp
	if len(fds) == 1 {
		s.fd.Store(fds[0].Fd)
	} else {
		s.fd.Store(waitAny)
	}
	register := func(d int32) {
		for _, p := range fds {
			if p.Events&(unix.POLLIN|pollRdNorm) != 0 {
				t.rx[p.Fd].Add(d)
			}
			if p.Events&(unix.POLLOUT|pollWrNorm) != 0 {
				t.tx[p.Fd].Add(d)
			}
		}
	}
	register(1)
	moved := false
	for i, p := range fds {
		if t.seq[p.Fd].Load() != seqs[i] {
			moved = true // it changed since the engine looked: look again
		}
	}
	if !moved && !w.c.sched.aborted.Load() {
		n := s.fallAsleep(fds, -1)
		timer := time.NewTimer(concRealLimit)
		timedOut := false
		select {
		case <-s.ch:
		case <-timer.C:
			timedOut = true
		}
		timer.Stop()
		if s.awake() && timedOut {
			w.c.checkForgotten(w, n, fds, "real-time limit")
		}
	}
	register(-1)
	s.fd.Store(-1)
	select { // ustack_waiter_done: a wake-up that came meanwhile is consumed
	case <-s.ch:
	default:
	}
}

// blocking is USTACK_BLOCKING: call again while the engine answers Wait, sleeping in between.
func (w *worker) blocking(fd int, events int16, call func() int) int {
	for {
		if w.c.sched.aborted.Load() {
			return neg(unix.EINTR)
		}
		seq := w.c.tab.seq[fd].Load()
		res := call()
		if res != Wait {
			return res
		}
		w.wait([]unix.PollFd{{Fd: int32(fd), Events: events}}, []uint32{seq})
	}
}

// dial connects a new socket to the peer's port (blocking, or started only when nonblock).
func (w *worker) dial(port uint16, nonblock bool) (int, bool) {
	typ := 0
	if nonblock {
		typ = unix.SOCK_NONBLOCK
	}
	fd, err := w.c.o.socket(typ)
	if err != nil {
		w.fail("socket: %v", err)
		return -1, false
	}
	res := w.c.r.e.Connect(fd, sockaddr(peerAddr, port))
	switch {
	case nonblock && res == neg(unix.EINPROGRESS):
		return fd, true
	case !nonblock && res == Wait:
		if res = w.blocking(fd, unix.POLLOUT, func() int { return w.c.r.e.ConnectWait(fd) }); res == 0 {
			return fd, true
		}
	}
	w.fail("connect: %v", unix.Errno(-res))
	w.c.o.close(fd)
	return -1, false
}

func (w *worker) sendAll(fd int, b []byte) bool {
	for off := 0; off < len(b); {
		n := w.blocking(fd, unix.POLLOUT, func() int { return w.c.r.e.Send(fd, iov(b[off:]), 0, nil) })
		if n <= 0 {
			w.fail("send on fd %d: %d", fd, n)
			return false
		}
		off += n
	}
	return true
}

func (w *worker) recvFull(fd int, want []byte) bool {
	buf := make([]byte, len(want))
	for got := 0; got < len(want); {
		n := w.blocking(fd, unix.POLLIN, func() int { return w.c.r.e.Recv(fd, iov(buf[got:]), 0, nil, nil, nil) })
		if n <= 0 {
			w.fail("recv on fd %d after %d of %d bytes: %d", fd, got, len(want), n)
			return false
		}
		if string(buf[got:got+n]) != string(want[got:got+n]) {
			w.fail("fd %d: echoed bytes %d..%d differ from those sent", fd, got, got+n)
			return false
		}
		got += n
	}
	return true
}

// payload is message round of a thread: bytes that differ with thread, round and position.
func payload(id, round, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		x := uint32(id)<<24 ^ uint32(round)*2654435761 ^ uint32(i)*40503
		b[i] = byte(x>>13 ^ x)
	}
	return b
}

// echoer: blocking send/recv on a connection of its own; every 7th round a dup replaces the fd or
// is closed at once, every 97th the connection is closed and a new one opened.
func (w *worker) echoer(port uint16) {
	fd, ok := w.dial(port, false)
	if !ok {
		return
	}
	for round := 0; !w.c.sched.stop.Load(); round++ {
		msg := payload(w.id, round, 1+w.rng.IntN(3000))
		if !w.sendAll(fd, msg) || !w.recvFull(fd, msg) {
			return
		}
		w.ops++
		switch {
		case round%97 == 96:
			w.c.o.close(fd)
			if fd, ok = w.dial(port, false); !ok {
				return
			}
		case round%7 == 3:
			d, err := w.c.o.dup(fd)
			if err != nil {
				w.fail("dup: %v", err)
				return
			}
			if w.rng.IntN(2) == 0 {
				w.c.o.close(fd)
				fd = d
			} else {
				w.c.o.close(d)
			}
		}
	}
	w.c.o.close(fd)
}

// pollLoop: poll(2) over two connections, the way preload/poll.c sleeps (one slot registered on
// both, waitAny); every 53rd round one of them is closed and opened again.
func (w *worker) pollLoop(port uint16) {
	var fds [2]int
	for i := range fds {
		var ok bool
		if fds[i], ok = w.dial(port, false); !ok {
			return
		}
	}
	e := w.c.r.e
	buf := make([]byte, 4096)
	for round := 0; !w.c.sched.stop.Load(); round++ {
		var msgs [2][]byte
		var got [2]int
		for i := range fds {
			msgs[i] = payload(w.id*2+i, round, 1+w.rng.IntN(2000))
			if !w.sendAll(fds[i], msgs[i]) {
				return
			}
		}
		for got[0] < len(msgs[0]) || got[1] < len(msgs[1]) {
			if w.c.sched.aborted.Load() {
				return
			}
			p := make([]unix.PollFd, 0, 2)
			var seqs []uint32
			for i := range fds {
				if got[i] < len(msgs[i]) {
					p = append(p, unix.PollFd{Fd: int32(fds[i]), Events: unix.POLLIN})
					seqs = append(seqs, w.c.tab.seq[fds[i]].Load())
				}
			}
			if e.PollCheck(p) == 0 {
				w.wait(p, seqs)
				continue
			}
			for _, q := range p {
				if q.Revents == 0 {
					continue
				}
				i := 0
				if int(q.Fd) == fds[1] {
					i = 1
				}
				if q.Revents != unix.POLLIN {
					w.fail("poll: revents %#x on a healthy connection", q.Revents)
					return
				}
				n := e.Recv(fds[i], iov(buf[:min(len(buf), len(msgs[i])-got[i])]), unix.MSG_DONTWAIT, nil, nil, nil)
				if n <= 0 {
					w.fail("recv after POLLIN: %d", n)
					return
				}
				if string(buf[:n]) != string(msgs[i][got[i]:got[i]+n]) {
					w.fail("fd %d: echoed bytes differ", fds[i])
					return
				}
				got[i] += n
			}
		}
		w.ops++
		if round%53 == 52 {
			i := w.rng.IntN(2)
			w.c.o.close(fds[i])
			var ok bool
			if fds[i], ok = w.dial(port, false); !ok {
				return
			}
		}
	}
	w.c.o.close(fds[0])
	w.c.o.close(fds[1])
}

// The shared connection carries records: a 4-byte length, then that many bytes of streamByte; a
// zero length ends the stream.
func streamByte(rec, i int) byte {
	x := uint32(rec)*2246822519 ^ uint32(i)*3266489917
	return byte(x>>11 ^ x>>3)
}

// sharedSender writes records on its fd of the shared connection, a few at each step of the
// poller (it sleeps in between, like a program on a timer), now and then one larger than the
// send buffer (it then waits for room); every 13th record a dup replaces its fd while the
// receiving thread keeps using the connection.
func (w *worker) sharedSender(fd int) {
	for rec := 0; ; {
		burst := 1 + w.rng.IntN(3)
		for k := 0; k < burst; k++ {
			n := 0
			switch {
			case w.c.sched.stop.Load():
			case rec%499 == 250:
				n = 300000 + w.rng.IntN(100000)
			default:
				n = 1 + w.rng.IntN(4000)
			}
			b := make([]byte, 4+n)
			binary.LittleEndian.PutUint32(b, uint32(n))
			for i := 0; i < n; i++ {
				b[4+i] = streamByte(rec, i)
			}
			if !w.sendAll(fd, b) {
				return
			}
			if n == 0 {
				w.c.o.close(fd)
				return
			}
			w.ops++
			if rec%13 == 5 {
				d, err := w.c.o.dup(fd)
				if err != nil {
					w.fail("dup: %v", err)
					return
				}
				w.c.o.close(fd)
				fd = d
			}
			rec++
		}
		w.tick()
	}
}

// tick sleeps until the poller's next step.
func (w *worker) tick() {
	s := w.slp
	s.ticking.Store(true)
	s.fallAsleep(nil, -1)
	timer := time.NewTimer(concRealLimit)
	select {
	case <-s.ch:
	case <-timer.C:
		w.fail("a timer sleep was not ended by the poller's step")
	}
	timer.Stop()
	s.awake()
	s.ticking.Store(false)
}

// sharedReceiver reads the echoed records on its own fd of the shared connection and checks
// every byte; every 17th record it too replaces its fd by a dup.
func (w *worker) sharedReceiver(fd int) {
	buf := make([]byte, 8192)
	var hdr [4]byte
	rec, need, pos, hlen := 0, -1, 0, 0
	for {
		n := w.blocking(fd, unix.POLLIN, func() int { return w.c.r.e.Recv(fd, iov(buf), 0, nil, nil, nil) })
		if n <= 0 {
			w.fail("recv on the shared connection (record %d): %d", rec, n)
			return
		}
		for _, c := range buf[:n] {
			if need < 0 {
				hdr[hlen] = c
				if hlen++; hlen < 4 {
					continue
				}
				need, pos, hlen = int(binary.LittleEndian.Uint32(hdr[:])), 0, 0
				if need == 0 {
					w.c.o.close(fd)
					return // the end (nothing may follow it)
				}
				continue
			}
			if c != streamByte(rec, pos) {
				w.fail("shared connection: record %d byte %d is %#x, want %#x", rec, pos, c, streamByte(rec, pos))
				return
			}
			if pos++; pos == need {
				rec, need = rec+1, -1
				w.ops++
				if rec%17 == 0 {
					d, err := w.c.o.dup(fd)
					if err != nil {
						w.fail("dup: %v", err)
						return
					}
					w.c.o.close(fd)
					fd = d
				}
			}
		}
	}
}

// econn is a connection of an epoll thread.
type econn struct {
	id       int
	gen      int // bumped when the slot gets a new connection: events of the old one are ignored
	fd       int
	dupFd    int // a dup of fd registered too (edge-triggered), or -1
	conn     bool
	msg      []byte
	sent     int
	got      int
	round    int
	mode     uint32 // 0, EPOLLET or EPOLLONESHOT
	interest uint32 // registered events, mode aside
	armed    bool
}

const (
	tagObserver = 1 << 40
	tagDup      = 1 << 41
	tagAbort    = 1 << 42
)

func (c *econn) data() uint64 { return uint64(c.id) | uint64(c.gen)<<8 }

type epoller struct {
	*worker
	ep       int
	conns    []*econn
	port     uint16
	observer int // a dup of the shared connection, in the set edge-triggered; read by others
	obsEv    uint32
}

func (p *epoller) ctl(op, fd int, events uint32, data uint64) bool {
	if res := p.c.r.ctlData(p.ep, op, fd, events, data); res != 0 {
		p.fail("epoll_ctl(op %d, fd %d, %#x): %v", op, fd, events, unix.Errno(-res))
		return false
	}
	return true
}

func (p *epoller) open(c *econn) bool {
	fd, ok := p.dial(p.port, true)
	if !ok {
		return false
	}
	c.gen++
	c.fd, c.dupFd, c.conn, c.msg, c.interest, c.armed = fd, -1, false, nil, unix.EPOLLOUT, true
	return p.ctl(unix.EPOLL_CTL_ADD, fd, c.interest|c.mode, c.data())
}

// rearm registers what c waits for now: writability while connecting or with bytes left to
// send, readability while a message is out; a one-shot registration after each event.
func (p *epoller) rearm(c *econn) bool {
	want := uint32(unix.EPOLLIN)
	if !c.conn || c.sent < len(c.msg) {
		want |= unix.EPOLLOUT
	}
	if !c.conn {
		want = unix.EPOLLOUT
	}
	if want == c.interest && c.armed {
		return true
	}
	c.interest, c.armed = want, true
	return p.ctl(unix.EPOLL_CTL_MOD, c.fd, want|c.mode, c.data())
}

func (p *epoller) start(c *econn) bool {
	c.msg, c.sent, c.got = nil, 0, 0
	if p.c.sched.stop.Load() {
		return true
	}
	c.msg = payload(100+p.id*8+c.id, c.round, 1+p.rng.IntN(3000))
	return p.push(c)
}

// push sends what it can of c's message without blocking.
func (p *epoller) push(c *econn) bool {
	for c.sent < len(c.msg) {
		n := p.c.r.e.Send(c.fd, iov(c.msg[c.sent:]), 0, nil)
		if n == neg(unix.EAGAIN) {
			return true
		}
		if n <= 0 {
			p.fail("send on fd %d: %d", c.fd, n)
			return false
		}
		c.sent += n
	}
	return true
}

// pull reads what c has without blocking and checks it; a message echoed whole is an op, after
// which c may change: its mode, its registration, a dup in the set, or the connection itself.
func (p *epoller) pull(c *econn) bool {
	buf := make([]byte, 4096)
	for {
		n := p.c.r.e.Recv(c.fd, iov(buf), 0, nil, nil, nil)
		if n == neg(unix.EAGAIN) {
			return true
		}
		if n <= 0 {
			p.fail("recv on fd %d: %d", c.fd, n)
			return false
		}
		if c.got+n > c.sent || string(buf[:n]) != string(c.msg[c.got:c.got+n]) {
			p.fail("fd %d: echoed bytes %d..%d differ from those sent (%d sent)", c.fd, c.got, c.got+n, c.sent)
			return false
		}
		if c.got += n; c.got < len(c.msg) {
			continue
		}
		p.ops++
		c.round++
		if !p.change(c) {
			return false
		}
		if !c.conn { // a new connection: nothing to read yet
			return true
		}
		if !p.start(c) {
			return false
		}
	}
}

func (p *epoller) change(c *econn) bool {
	o := p.c.o
	switch p.rng.IntN(64) {
	case 0: // another mode
		c.mode = []uint32{0, unix.EPOLLET, unix.EPOLLONESHOT}[p.rng.IntN(3)]
		c.armed = false
	case 1: // out of the set and in again
		if !p.ctl(unix.EPOLL_CTL_DEL, c.fd, 0, 0) || !p.ctl(unix.EPOLL_CTL_ADD, c.fd, c.interest|c.mode, c.data()) {
			return false
		}
		c.armed = true
	case 2: // closed while in the set (it leaves the set), and a new connection
		if c.dupFd >= 0 {
			if !p.ctl(unix.EPOLL_CTL_DEL, c.dupFd, 0, 0) {
				return false
			}
			o.close(c.dupFd)
		}
		o.close(c.fd)
		return p.open(c)
	case 3: // a dup registered too, or that dup out and closed
		if c.dupFd < 0 {
			d, err := o.dup(c.fd)
			if err != nil {
				p.fail("dup: %v", err)
				return false
			}
			c.dupFd = d
			return p.ctl(unix.EPOLL_CTL_ADD, d, unix.EPOLLIN|unix.EPOLLET, c.data()|tagDup)
		}
		if !p.ctl(unix.EPOLL_CTL_DEL, c.dupFd, 0, 0) {
			return false
		}
		o.close(c.dupFd)
		c.dupFd = -1
	case 4: // the shared connection's registration changes
		p.obsEv ^= unix.EPOLLRDHUP
		return p.ctl(unix.EPOLL_CTL_MOD, p.observer, p.obsEv, tagObserver)
	}
	return true
}

func (p *epoller) handle(c *econn, ev uint32) bool {
	if c.mode == unix.EPOLLONESHOT {
		c.armed = false
	}
	if !c.conn {
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			p.fail("fd %d: connect failed: %#x", c.fd, ev)
			return false
		}
		if ev&unix.EPOLLOUT == 0 {
			return p.rearm(c)
		}
		val := make([]byte, 4)
		vlen := uint32(4)
		if res := p.c.r.e.Getsockopt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR, val, &vlen); res != 0 || val[0] != 0 {
			p.fail("fd %d: SO_ERROR %d %v after EPOLLOUT", c.fd, res, val)
			return false
		}
		c.conn = true
		if !p.start(c) {
			return false
		}
		return p.rearm(c)
	}
	if ev&(unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
		p.fail("fd %d: %s on a healthy connection", c.fd, evNames(ev))
		return false
	}
	if ev&unix.EPOLLOUT != 0 && !p.push(c) {
		return false
	}
	if ev&unix.EPOLLIN != 0 && c.msg != nil && !p.pull(c) {
		return false
	}
	return p.rearm(c)
}

func (p *epoller) idle() bool {
	for _, c := range p.conns {
		if c.conn && c.msg != nil {
			return false
		}
	}
	return true
}

// sleep is epoll_wait's sleep in the kernel once EpollCheck found nothing (preload/epoll.c).
// It returns false when the run is aborted.
func (p *epoller) sleep() bool {
	s := p.slp
	sleep := s.fallAsleep(nil, p.ep)
	evs := make([]unix.EpollEvent, 4)
	var n int
	var err error
	for {
		n, err = unix.EpollWait(p.ep, evs, int(concRealLimit/time.Millisecond))
		if err != unix.EINTR {
			break
		}
	}
	if s.awake() && n == 0 && err == nil {
		p.c.checkSetForgotten(p.worker, sleep, p.ep, "real-time limit")
	}
	if err != nil {
		p.fail("epoll_wait: %v", err)
		return false
	}
	for i := range evs[:n] {
		switch d := epollData(&evs[i]); d {
		case epollMagic: // the engine's wake entry: ask the engine again
		case tagAbort:
			return false
		default:
			p.fail("epoll_wait: unexpected kernel event %#x data %#x", evs[i].Events, d)
			return false
		}
	}
	return true
}

func (p *epoller) run(observer int) {
	o := p.c.o
	var err error
	if p.ep, err = o.epoll(); err != nil {
		p.fail("epoll_create1: %v", err)
		return
	}
	defer o.close(p.ep)
	// a kernel fd in the set too: the poller's way to end a sleep when the run is aborted
	if !p.c.abortFdIn(p.ep) {
		p.fail("abort eventfd")
		return
	}
	p.observer = observer
	defer o.close(p.observer)
	p.obsEv = unix.EPOLLIN | unix.EPOLLET
	if !p.ctl(unix.EPOLL_CTL_ADD, p.observer, p.obsEv, tagObserver) {
		return
	}
	for i := range p.conns {
		p.conns[i] = &econn{id: i, mode: []uint32{0, unix.EPOLLET, unix.EPOLLONESHOT}[i%3]}
		if !p.open(p.conns[i]) {
			return
		}
	}
	defer func() {
		for _, c := range p.conns {
			if c.dupFd >= 0 {
				o.close(c.dupFd)
			}
			o.close(c.fd)
		}
	}()
	out := make([]unix.EpollEvent, 4)
	for !(p.c.sched.stop.Load() && p.idle()) {
		if p.c.sched.aborted.Load() {
			return
		}
		n := p.c.r.e.EpollCheck(p.ep, out)
		if n < 0 {
			p.fail("EpollCheck: %d", n)
			return
		}
		if n == 0 {
			if !p.sleep() {
				return
			}
			continue
		}
		for i := range out[:n] {
			p.evs++
			d := epollData(&out[i])
			if d == tagObserver {
				continue // the shared connection is the other threads' to read
			}
			c := p.conns[d&0xff]
			if (d&^tagDup)>>8 != uint64(c.gen) {
				continue // a connection closed since
			}
			if !p.handle(c, out[i].Events) {
				return
			}
		}
	}
}

// checkForgotten is the lost wake-up check of a thread in sleep n on its channel, waiting for
// fds: if a socket is ready once the stack was driven (PollCheck drives it, and wakes whom it
// must) and the thread is still in that sleep, its wake-up was lost. From the thread itself
// (when its sleep hit the real-time limit) the sleep is over already.
func (c *conc) checkForgotten(w *worker, n uint64, fds []unix.PollFd, when string) bool {
	self := when == "real-time limit"
	p := append([]unix.PollFd(nil), fds...)
	if c.r.e.PollCheck(p) == 0 || !self && !w.slp.stillIn(n) {
		return false
	}
	if c.lost.Add(1) >= 5 {
		c.sched.aborted.Store(true) // enough said
	}
	var desc string
	for _, q := range p {
		desc += fmt.Sprintf(" fd %d events %#x revents %#x seq %d rx %d tx %d;", q.Fd, q.Events, q.Revents,
			c.tab.seq[q.Fd].Load(), c.tab.rx[q.Fd].Load(), c.tab.tx[q.Fd].Load())
	}
	c.t.Errorf("lost wake-up (%s, at %v simulated): %s sleeps while ready:%s", when, c.r.clock.Now(), w.name, desc)
	w.slp.wake()
	return true
}

// setOwes reports whether epoll set ep has a member that EpollCheck would report, once the stack
// was driven: then its epoll fd must be readable (the set signalled).
func (c *conc) setOwes(ep int) (owes bool, desc string) {
	st := c.r.st
	st.with(nil, faultNone, func() int {
		st.serviceLocked()
		set := c.r.e.epolls[ep]
		if set == nil {
			return 0
		}
		for _, m := range set.members {
			ev := m.b.self.pollEvents()
			if !m.hasNewsLocked(ev) {
				continue
			}
			owes = true
			desc += fmt.Sprintf(" fd %d events %#x ready %#x (signalled %v);", m.fd, m.events, m.readyMask(ev), set.signalled)
		}
		return 0
	})
	return
}

// checkSetForgotten is the lost wake-up check of an epoll thread in sleep n in epoll_wait(ep).
func (c *conc) checkSetForgotten(w *worker, n uint64, ep int, when string) bool {
	self := when == "real-time limit"
	owes, desc := c.setOwes(ep)
	if !owes || pollIn(ep) || !self && !w.slp.stillIn(n) {
		return false
	}
	c.lost.Add(1)
	c.t.Errorf("lost wake-up (%s, at %v simulated): %s sleeps in epoll_wait(%d), not readable, while the set owes:%s",
		when, c.r.clock.Now(), w.name, ep, desc)
	return true
}

// abortFdIn puts the abort eventfd into ep (a kernel fd in the set, as programs mix them).
func (c *conc) abortFdIn(ep int) bool {
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEpollData(&ev, tagAbort)
	return unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c.abortFd, &ev) == nil
}

// pollIn is poll(2) for POLLIN with timeout 0 on a kernel fd.
func pollIn(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(p, 0)
		if err != unix.EINTR {
			return n > 0 && p[0].Revents&unix.POLLIN != 0
		}
	}
}

// echoPeer is the peer's side: it accepts every connection and echoes every byte, holding at
// most echoMaxPending of a connection's bytes (then the window closes on the sender).
type echoPeer struct {
	ls    []*stackcore.Listener
	conns []*echoConn
	buf   []byte
}

type echoConn struct {
	c       *stackcore.TCPConn
	pending []byte
}

const echoMaxPending = 256 << 10

// pump runs with the peer's stack locked, between its input and its output.
func (p *echoPeer) pump(*stackcore.Stack) {
	for _, l := range p.ls {
		for c := l.Accept(); c != nil; c = l.Accept() {
			p.conns = append(p.conns, &echoConn{c: c})
		}
	}
	k := 0
	for _, ec := range p.conns {
		keep := true
		for len(ec.pending) < echoMaxPending {
			n, err := ec.c.Read(p.buf[:min(len(p.buf), echoMaxPending-len(ec.pending))])
			ec.pending = append(ec.pending, p.buf[:n]...)
			if err != nil {
				if !errors.Is(err, stackcore.ErrWouldBlock) {
					keep = false // EOF (our side closed) or a reset
					ec.c.Close()
				}
				break
			}
		}
		if keep && len(ec.pending) > 0 {
			n, _ := ec.c.Write(ec.pending)
			ec.pending = append(ec.pending[:0], ec.pending[n:]...)
		}
		if keep {
			p.conns[k] = ec
			k++
		}
	}
	clear(p.conns[k:])
	p.conns = p.conns[:k]
}

// step is the poller's round and the peer's: simulated time moves on by concStep, the peer
// echoes, and what it sent waits on the engine's link. Two steps in three the poller takes it
// in, and the stack's Wake calls wake whom they must; the third, the frames stay on the link and
// every thread asleep on its channel wakes, as a thread whose poll set holds the AF_XDP fd does
// (preload/wait.c, poll.c): their own calls take the frames in, racing one another. (Threads
// asleep in epoll_wait wake only through their set's eventfd here.) Lost wake-ups show in the
// other two.
func (c *conc) step(ws []*worker) {
	r := c.r
	r.clock.Advance(concStep)
	now := r.clock.Now()
	r.st.with(nil, faultNone, func() int { r.st.serviceLocked(); return 0 })
	r.peer.service(now)
	r.peer.do(c.peer.pump)
	r.peer.service(now)
	c.steps++
	if c.steps%3 != 0 {
		r.st.with(nil, faultNone, func() int { r.st.serviceLocked(); return 0 })
	} else {
		for _, w := range ws {
			if _, _, ep := w.slp.waitingFor(); w.slp.asleep() && ep < 0 {
				w.slp.wake()
			}
		}
	}
	for _, w := range ws {
		if w.slp.ticking.Load() {
			w.slp.wake()
		}
	}
}

// idle reports whether every thread sleeps or is done.
func idle(ws []*worker) bool {
	for _, w := range ws {
		if !w.done.Load() && !w.slp.asleep() {
			return false
		}
	}
	return true
}

func (c *conc) waitIdle(ws []*worker) {
	c.sched.mu.Lock()
	for !idle(ws) {
		c.sched.cond.Wait()
	}
	c.sched.mu.Unlock()
}

// epollWaking reports whether a thread asleep in epoll_wait has its epoll fd readable: the
// kernel is waking it (it counts itself in when it returns). The poller waits for that rather
// than count it in itself: the readiness may go before the thread runs (another thread drains
// the socket), and epoll_wait then sleeps on.
func (c *conc) epollWaking(ws []*worker) bool {
	for _, w := range ws {
		if _, _, ep := w.slp.waitingFor(); ep >= 0 && w.slp.asleep() && pollIn(ep) {
			return true
		}
	}
	return false
}

// lookAtSleepers runs when every thread sleeps and no epoll fd of a sleeper is readable: a
// sleeper whose wait is over is a lost wake-up.
func (c *conc) lookAtSleepers(ws []*worker) {
	for _, w := range ws {
		s := w.slp
		if !s.asleep() {
			continue
		}
		n, on, ep := s.waitingFor()
		if !s.stillIn(n) {
			continue
		}
		if ep < 0 {
			c.checkForgotten(w, n, on, "all asleep")
			continue
		}
		if c.checkSetForgotten(w, n, ep, "all asleep") {
			c.sched.aborted.Store(true) // it sleeps in the kernel: only the abort ends its sleep
		}
	}
}

// abort ends every sleep; the threads see sched.aborted and return.
func (c *conc) abort(ws []*worker) {
	c.sched.aborted.Store(true)
	var one = [8]byte{1}
	unix.Write(c.abortFd, one[:])
	for _, w := range ws {
		w.slp.wake()
	}
}

// run is the poller: it steps time whenever every thread sleeps, for concSimTime, then lets the
// threads finish what they started, for at most concGrace.
func (c *conc) run(ws []*worker) {
	end := c.r.clock.Now() + concSimTime
	wd := time.AfterFunc(concRealLimit, func() {
		fmt.Fprintf(os.Stderr, "concurrency test: the threads have not all slept for %v of real time "+
			"(at %v simulated): deadlock or livelock\n", concRealLimit, c.r.clock.Now())
		fmt.Fprintf(os.Stderr, "stop %v, aborted %v\n", c.sched.stop.Load(), c.sched.aborted.Load())
		for _, w := range ws {
			_, on, ep := w.slp.waitingFor()
			fmt.Fprintf(os.Stderr, "%s: done %v asleep %v sleeps %d slot fd %d on %+v epoll fd %d ops %d\n", w.name,
				w.done.Load(), w.slp.asleep(), w.slp.sleeps(), w.slp.fd.Load(), on, ep, w.ops)
		}
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		panic("concurrency test: deadlock")
	})
	defer wd.Stop()
	for {
		wd.Reset(concRealLimit)
		c.waitIdle(ws)
		done := true
		for _, w := range ws {
			if !w.done.Load() {
				done = false
			}
		}
		if done {
			return
		}
		if c.epollWaking(ws) {
			runtime.Gosched()
			continue
		}
		if !c.sched.aborted.Load() {
			c.lookAtSleepers(ws)
		}
		if c.sched.aborted.Load() {
			c.abort(ws)
		}
		if !idle(ws) {
			continue
		}
		now := c.r.clock.Now()
		if now >= end {
			c.sched.stop.Store(true)
		}
		if now >= end+concGrace && !c.sched.aborted.Load() {
			for _, w := range ws {
				if !w.done.Load() {
					_, on, ep := w.slp.waitingFor()
					c.t.Errorf("%s did not finish within %v of simulated time after the run: asleep %v on %+v epoll fd %d",
						w.name, concGrace, w.slp.asleep(), on, ep)
				}
			}
			c.abort(ws)
			continue
		}
		c.step(ws)
	}
}

// 8 threads doing send/recv/close/dup/epoll_ctl/epoll_wait on shared and separate
// sockets for 10 s of simulated time, with -race: no report, no deadlock, no lost wake-up, every
// byte echoed as sent.
func TestConcurrencyNoLostWakeups(t *testing.T) {
	r := newRig(t)
	tab := newWaitTable(r.tab)
	r.e.tab = tab // before any socket: the engine wakes through the waiter protocol
	o := r.owner()
	sc := &sched{}
	sc.cond = sync.NewCond(&sc.mu)
	c := &conc{t: t, r: r, o: o, tab: tab, sched: sc}
	const portEcho, portShared, portEpoll = 7000, 7001, 7002
	lEcho, lShared, lEpoll := r.peerListen(portEcho), r.peerListen(portShared), r.peerListen(portEpoll)
	c.peer = &echoPeer{ls: []*stackcore.Listener{lEcho, lShared, lEpoll}, buf: make([]byte, 64<<10)}
	shared, pc := o.dial(lShared, portShared)
	c.peer.conns = append(c.peer.conns, &echoConn{c: pc})
	sharedRecv, err := o.dup(shared)
	if err != nil {
		t.Fatal(err)
	}
	// the epoll threads' own dups of the shared connection, made before anyone closes an fd of it
	var observers [2]int
	for i := range observers {
		if observers[i], err = o.dup(shared); err != nil {
			t.Fatal(err)
		}
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	c.abortFd = o.hold(efd)

	names := []string{"echo0", "echo1", "echo2", "poll3", "sharedSend4", "sharedRecv5", "epoll6", "epoll7"}
	ws := make([]*worker, len(names))
	for i, name := range names {
		s := &sleeper{sched: sc, ch: make(chan struct{}, 1), epfd: -1}
		s.fd.Store(-1)
		ws[i] = &worker{c: c, id: i, name: name, slp: s, rng: rand.New(rand.NewPCG(uint64(i), 8))}
		tab.slots = append(tab.slots, s)
	}
	start := time.Now()
	simStart := r.clock.Now()
	for _, w := range ws {
		go func() {
			defer func() {
				w.done.Store(true)
				sc.changed()
			}()
			switch {
			case w.id < 3:
				w.echoer(portEcho)
			case w.id == 3:
				w.pollLoop(portEcho)
			case w.id == 4:
				w.sharedSender(shared)
			case w.id == 5:
				w.sharedReceiver(sharedRecv)
			default:
				p := &epoller{worker: w, port: portEpoll, conns: make([]*econn, 3)}
				p.run(observers[w.id-6])
			}
		}()
	}
	c.run(ws)

	t.Logf("%v simulated in %d steps, %v real; %d wake-ups delivered; lost %d",
		r.clock.Now()-simStart, c.steps, time.Since(start).Round(time.Millisecond), tab.wakes.Load(), c.lost.Load())
	for _, w := range ws {
		t.Logf("%-12s %6d ops %6d epoll events %6d sleeps", w.name, w.ops, w.evs, w.slp.sleeps())
		if w.ops < concMinOps && !sc.aborted.Load() {
			t.Errorf("%s did only %d operations", w.name, w.ops)
		}
	}
	if ws[4].ops != ws[5].ops && !sc.aborted.Load() {
		t.Errorf("shared connection: %d records sent, %d received", ws[4].ops, ws[5].ops)
	}
	if n := r.st.stats.Panics; n != 0 {
		t.Errorf("%d panics in the stack", n)
	}
	r.st.with(nil, faultNone, func() int {
		if n := len(r.e.epolls); n != 0 {
			t.Errorf("%d epoll sets left after every epoll fd was closed", n)
		}
		for _, s := range r.e.cookies {
			if m := s.base().members; len(m) != 0 {
				t.Errorf("a socket keeps %d epoll registrations", len(m))
			}
		}
		return 0
	})
}

// connect(2) on a socket with no local address picks a free ephemeral port (connect(2),
// ip(7)): the port of a connection that the program closed but that is still closing (FIN-WAIT,
// LAST-ACK) is in use, and Linux skips it. The engine binds the shadow to port 0 and lets the
// kernel choose; the kernel no longer knows the closed connection's port (its shadow was
// closed) and may hand it out again, and then the stack refuses the tuple: EADDRINUSE.
// IP_LOCAL_PORT_RANGE [p-1, p] makes the kernel try p first (bind(2)'s ephemeral scan starts at
// the odd offset of the range: inet_csk_find_open_port).
func TestConnectAutobindSkipsPortOfClosingConnection(t *testing.T) {
	r := newRig(t)
	o := r.owner()
	l := r.peerListen(7100)
	var lo int
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err != nil {
		t.Skip(err)
	} else if _, err := fmt.Sscan(string(b), &lo); err != nil {
		t.Skip(err)
	}
	var fd, p int
	for i := 0; ; i++ {
		fd, _ = o.dial(l, 7100)
		port, _ := shadowPort(fd)
		if p = int(port); p-1 >= lo || i == 5 {
			break
		}
	}
	if p-1 < lo {
		t.Skip("no ephemeral port with room below it")
	}
	// the kernel, given the range [p-1, p] with both free, picks p
	k, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	o.hold(k)
	portRange := (p-1)&0xffff | p<<16
	if err := unix.SetsockoptInt(k, unix.IPPROTO_IP, unix.IP_LOCAL_PORT_RANGE, portRange); err != nil {
		t.Skipf("IP_LOCAL_PORT_RANGE: %v", err)
	}
	o.close(fd) // our FIN; the peer does not close: the connection stays in FIN-WAIT, on port p
	for i := 0; i < 5; i++ {
		r.step()
	}
	if !r.st.core.PortInUse(uint16(p)) {
		t.Fatal("the closed connection no longer holds its port")
	}
	if err := unix.Bind(k, &unix.SockaddrInet4{Addr: engAddr}); err != nil {
		t.Fatal(err)
	}
	if kp, _ := shadowPort(k); int(kp) != p {
		t.Skipf("the kernel picked %d from [%d, %d], not %d first", kp, p-1, p, p)
	}
	o.close(k)

	b, _ := o.socket(0)
	val := make([]byte, 4)
	binary.NativeEndian.PutUint32(val, uint32(portRange))
	if res := r.e.Setsockopt(b, unix.IPPROTO_IP, unix.IP_LOCAL_PORT_RANGE, val); res != Pass {
		t.Fatalf("setsockopt IP_LOCAL_PORT_RANGE: %d, want Pass", res)
	}
	if err := unix.SetsockoptInt(b, unix.IPPROTO_IP, unix.IP_LOCAL_PORT_RANGE, portRange); err != nil {
		t.Fatal(err) // Pass: the interposer makes the call on the shadow
	}
	res := r.e.Connect(b, sockaddr(peerAddr, 7100))
	if res == Wait {
		res = r.block(func() int { return r.e.ConnectWait(b) })
	}
	if res != 0 {
		t.Fatalf("connect from [%d, %d] while port %d is still closing: %v, want success from port %d (Linux skips "+
			"a port whose connection is still closing)", p-1, p, p, unix.Errno(-res), p-1)
	}
	var sa [16]byte
	salen := uint32(len(sa))
	r.e.Getsockname(b, sa[:], &salen)
	if _, lp, _, _ := parseInet4(sa[:]); int(lp) == p {
		t.Fatalf("connected from port %d, the closing connection's", lp)
	}
}

// Wake is called whenever a socket's readiness may have changed (FDTable): when another
// thread's call takes in the frames that make it readable, its waiters must be woken then, not
// at the poller's next round (a thread asleep on it has the AF_XDP fd in its poll set, but the
// frames are gone from the link by then). Here a recv on A that finds nothing takes in B's
// data; B's waiters must have had their wake-up when that recv returns.
func TestWakeWhenAnotherCallTakesTheFramesIn(t *testing.T) {
	for _, call := range []string{"recv", "recv MSG_DONTWAIT", "send", "accept", "accept a pending one", "udp recv", "poll"} {
		t.Run(call, func(t *testing.T) {
			r := newRig(t)
			o := r.owner()
			l := r.peerListen(7200)
			a, _ := o.dial(l, 7200)
			b, pb := o.dial(l, 7200)
			lfd, _ := o.socket(0)
			if r.e.Bind(lfd, sockaddr([4]byte{}, 0)) != 0 || r.e.Listen(lfd, 16) != 0 {
				t.Fatal("bind/listen")
			}
			u := r.udpSocket()
			if res := r.e.Bind(u, sockaddr([4]byte{}, 0)); res != 0 {
				t.Fatalf("udp bind: %d", res)
			}
			if call == "accept a pending one" {
				port, _ := shadowPort(lfd)
				r.peer.do(func(s *stackcore.Stack) { s.Connect(r.peerNow(), 0, mapped(engAddr), port, engMAC) })
			}
			for i := 0; i < 3; i++ {
				r.step()
			}
			// the peer's data for B reaches the engine's link, and nobody takes it in yet
			r.peerWrite(pb, "for b")
			r.peer.service(r.clock.Now())
			before := r.tab.Wakes(b)
			var res int
			buf := make([]byte, 8)
			switch call {
			case "recv":
				res = r.e.Recv(a, iov(buf), 0, nil, nil, nil)
			case "recv MSG_DONTWAIT":
				res = r.e.Recv(a, iov(buf), unix.MSG_DONTWAIT, nil, nil, nil)
			case "send":
				res = r.e.Send(a, iov([]byte("x")), 0, nil)
			case "accept", "accept a pending one":
				if res = r.e.Accept(lfd, nil, nil, unix.SOCK_NONBLOCK); res >= 0 {
					o.hold(res)
				}
			case "udp recv":
				res = r.e.Recv(u, iov(buf), unix.MSG_DONTWAIT, nil, nil, nil)
			case "poll":
				res = r.e.PollCheck([]unix.PollFd{{Fd: int32(a), Events: unix.POLLIN}})
			}
			if n := r.inq(b); n != 5 {
				t.Fatalf("%s on another socket (%d) did not take B's data in: %d bytes queued", call, res, n)
			}
			if r.tab.Wakes(b) == before {
				t.Errorf("%s on another socket (%d) took B's data in, and B's waiters were not woken", call, res)
			}
		})
	}
}
