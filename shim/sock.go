package shim

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// sock is one accelerated socket, one type per kind (after Onload's per-fd-type ops tables):
// tcpSock (a TCP socket before listen: fresh, connecting or connected), tcpListener and udpSock.
// Engine entry points look the fd up and dispatch; each method takes the stack lock itself
// through stack.with, and answers n >= 0, -errno, Pass or Wait. A call a kind does not support
// gets what the kernel answers for it.
type sock interface {
	base() *sockBase

	bind(ip stackcore.Addr, port uint16) int
	listen(backlog int) int
	accept(sa []byte, saLen *uint32, flags int) int
	connect(sa []byte) int
	connectWait() int
	recv(iov []unix.Iovec, flags int, name []byte, nameLen *uint32, msgFlags *int32) int
	send(iov []unix.Iovec, flags int, name []byte) int
	shutdown(how int) int
	sockname(out []byte, outLen *uint32) int
	peername(out []byte, outLen *uint32) int
	// getsockopt answers what only the stack knows; Pass lets the shadow answer.
	getsockopt(level, name int, val []byte, valLen *uint32) int
	// setsockoptLocked takes what the kind needs once base options are recorded. Caller holds st.mu.
	setsockoptLocked(level, name int, v int, isInt bool, val []byte) int
	// queued answers FIONREAD (out false) and SIOCOUTQ (out true). Caller holds st.mu.
	queuedLocked(out bool) int

	// events is the poll mask as far as the stack knows it, without system calls: it decides
	// whom a change wakes. Caller holds st.mu.
	events() int16
	// pollEvents is the poll(2) mask, the shadow's part included. Caller holds st.mu.
	pollEvents() int16
	// releaseLocked lets go of the socket's stack state when its last fd is closed (or a panic
	// reset it). Caller holds st.mu.
	releaseLocked()
	// resetLocked answers a panic that may have left the socket's state corrupted: a connection
	// is reset (RST to the peer, ECONNRESET to the program). Caller holds st.mu.
	resetLocked()
	// moveLocked hands the socket's state to its kernel shadow (handover.go moveToKernel): 0
	// once the shadow carries it, errNotYet, or -errno. Caller holds st.mu.
	moveLocked() int
}

// sockBase is what every kind has. Fields from fds on are guarded by st.mu; the rest are set
// before the socket is published and never change.
type sockBase struct {
	e  *Engine
	st *stack

	fds      []int // every fd that refers to this socket (dup, dup2, F_DUPFD); fds[0] for calls on the shadow
	cookie   uintptr
	born     uint32 // the process's fork count when it was made: older ones a child may hold
	self     sock   // the kind this base belongs to now (a tcpSock becomes a tcpListener)
	nonblock bool   // O_NONBLOCK of the open file description
	opts     sockOpts
	wakeGen  uint64         // bumped at each change the stack reports (edge-triggered epoll)
	members  []*epollMember // its entries in epoll sets

	family    uint16 // AF_INET or AF_INET6
	v6only    bool   // IPV6_V6ONLY: an AF_INET6 socket that takes no IPv4
	bound     bool
	boundIP   stackcore.Addr // unspecified (::, 0.0.0.0): any address
	boundPort uint16

	errReported bool // a hard error was reported once (recv, send or SO_ERROR); then EOF/EPIPE

	// listener, UDP: the last look at the kernel shadow found it empty, and when (atomic: the
	// shadow is read outside st.mu)
	shadowEmpty  atomic.Bool
	shadowLooked atomic.Int64
}

// shadowLookEvery bounds how long input that came through the kernel (loopback, another
// interface) to a listener or UDP socket may go unseen when no wait of the interposer watches
// its shadow (spinning, or a wait that found accelerated sockets ready).
const shadowLookEvery = stackcore.Millisecond

// shadowWorthLookLocked says whether a look at the kernel shadow is worth a system call: unless
// the last look found it empty, no wait of the interposer has seen it readable since, and that
// was less than shadowLookEvery ago. A server under load looked at its listener's shadow at
// every epoll_wait. Caller holds st.mu (b.fds).
func (b *sockBase) shadowWorthLookLocked() bool {
	for _, fd := range b.fds {
		if b.e.tab.TakeShadowSeen(fd) {
			b.shadowEmpty.Store(false)
		}
	}
	return !b.shadowEmpty.Load() || b.st.now()-stackcore.Time(b.shadowLooked.Load()) >= shadowLookEvery
}

// shadowFound records what a look at the kernel shadow found: until a look finds it empty, the
// next ones look again (an accept or a read may leave more behind it).
func (b *sockBase) shadowFound(something bool) {
	if !something {
		b.shadowLooked.Store(int64(b.st.now()))
	}
	b.shadowEmpty.Store(!something)
}

func (b *sockBase) base() *sockBase { return b }

// fd is an fd of the socket, for calls on its kernel shadow. Caller holds st.mu, or knows the
// socket has only the fd it was called with.
func (b *sockBase) fd() int {
	if len(b.fds) == 0 {
		return -1
	}
	return b.fds[0]
}

// wouldBlock is what a call that cannot go on answers: EAGAIN for a non-blocking call, else Wait.
// Caller holds st.mu.
func (b *sockBase) wouldBlock(flags int) int {
	if b.nonblock || flags&unix.MSG_DONTWAIT != 0 {
		return neg(unix.EAGAIN)
	}
	return Wait
}

// The defaults: what the kernel answers a kind for which the call makes no sense.
func (b *sockBase) accept([]byte, *uint32, int) int                     { return neg(unix.EINVAL) }
func (b *sockBase) connectWait() int                                    { return neg(unix.EBADF) }
func (b *sockBase) getsockopt(int, int, []byte, *uint32) int            { return Pass }
func (b *sockBase) setsockoptLocked(int, int, int, bool, []byte) int    { return Pass }
func (b *sockBase) peername([]byte, *uint32) int                        { return neg(unix.ENOTCONN) }
func (b *sockBase) recv([]unix.Iovec, int, []byte, *uint32, *int32) int { return neg(unix.ENOTCONN) }
func (b *sockBase) send([]unix.Iovec, int, []byte) int                  { return neg(unix.ENOTCONN) }

// wakeLocked tells whoever waits on the socket that its readiness may have changed: threads
// asleep on one of its fds, and the epoll sets it is in. Caller holds st.mu.
func (b *sockBase) wakeLocked() {
	b.wakeGen++
	ev := b.self.events()
	rx := ev&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0
	tx := ev&(unix.POLLOUT|unix.POLLHUP|unix.POLLERR) != 0
	for _, fd := range b.fds {
		b.e.tab.Wake(fd, rx, tx)
	}
	for _, m := range b.members {
		m.changedLocked(ev)
	}
}

func iovLen(iov []unix.Iovec) int {
	n := 0
	for i := range iov {
		n += int(iov[i].Len)
	}
	return n
}

func iovBytes(v unix.Iovec) []byte { return unsafe.Slice(v.Base, v.Len) }

func removeInt(xs []int, x int) []int {
	for i, v := range xs {
		if v == x {
			return append(xs[:i], xs[i+1:]...)
		}
	}
	return xs
}

// count adds one to a counter that onloadctl reads while we write.
func count(c *uint64) { atomic.AddUint64(c, 1) }
