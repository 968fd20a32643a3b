package shim

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"ustack/shm"
)

// FDMax bounds the fds that can be accelerated; keep in step with USTACK_FDMAX in preload.
const FDMax = 65536

// Engine is ustack inside one process: the configuration, the accelerated sockets by fd, and the
// stack, started on the first socket that could use it. Its entry points look the fd up and
// dispatch to the socket's kind (sock).
type Engine struct {
	cfg   Config
	tab   FDTable
	Log   zerolog.Logger
	socks []atomic.Pointer[sockSlot] // by fd, read without a lock by every entry point

	startOnce sync.Once
	st        *stack // nil until started, and when acceleration is off
	off       atomic.Bool

	// guarded by st.mu
	epolls     map[int]*epollSet // by application epoll fd (dups included)
	cookies    map[uintptr]sock  // by the Cookie their listener, connection or UDP socket carries in the core
	lastCookie uintptr
}

// sockSlot is what an fd refers to; a new slot is published when a socket changes kind.
type sockSlot struct{ s sock }

// NewEngine makes an engine. Nothing is opened until the first accelerated socket.
func NewEngine(cfg Config, tab FDTable) *Engine {
	e := &Engine{cfg: cfg, tab: tab, socks: make([]atomic.Pointer[sockSlot], FDMax), epolls: map[int]*epollSet{},
		cookies: map[uintptr]sock{}}
	e.Log = newLogger(cfg)
	if cfg.Disable {
		e.off.Store(true)
	}
	return e
}

func newLogger(cfg Config) zerolog.Logger {
	var w io.Writer = os.Stderr
	if cfg.LogFile != "" {
		if f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o644); err == nil {
			w = f
		}
	}
	cw := zerolog.ConsoleWriter{Out: w, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName},
		FormatLevel: func(i any) string { return "ustack: " + strings.ToLower(fmt.Sprint(i)) + ":" }}
	lvl, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil || cfg.LogLevel == "" {
		lvl = zerolog.WarnLevel
	}
	return zerolog.New(cw).Level(lvl)
}

// stack starts the stack on first use. A failure prints one warning and turns acceleration off
// for the life of the process: every socket stays a kernel socket.
func (e *Engine) stack() *stack {
	if e.off.Load() {
		return nil
	}
	e.startOnce.Do(func() {
		st, err := newStack(e, e.cfg)
		if err != nil {
			e.off.Store(true)
			e.Log.Warn().Msgf("acceleration off, sockets stay on the kernel: %v", err)
			return
		}
		e.st = st
		e.tab.SetXSKFd(st.link.Fd())
		if path := os.Getenv("USTACK_CPUPROFILE"); path != "" {
			e.startProfile(path)
		}
		e.Log.Info().Str("iface", st.ifc.name).Str("mode", st.link.Mode()).Msg("stack started")
	})
	return e.st
}

// startProfile writes a Go CPU profile of the first USTACK_CPUPROFILE_SECS seconds (default 10)
// of the stack's life to path: where the time goes inside ustack (go tool pprof).
func (e *Engine) startProfile(path string) {
	secs, err := strconv.Atoi(os.Getenv("USTACK_CPUPROFILE_SECS"))
	if err != nil || secs <= 0 {
		secs = 10
	}
	f, err := os.Create(path)
	if err != nil {
		e.Log.Warn().Err(err).Msg("USTACK_CPUPROFILE")
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		e.Log.Warn().Err(err).Msg("USTACK_CPUPROFILE")
		f.Close()
		return
	}
	time.AfterFunc(time.Duration(secs)*time.Second, func() {
		pprof.StopCPUProfile()
		f.Close()
	})
}

// Close stops the stack (tests; a process simply exits).
func (e *Engine) Close() {
	if e.st != nil {
		e.st.close()
	}
}

// Recovered is called by the exports when a call panicked outside the core (stack.with recovers
// the panics inside it): the call fails with EIO and the panic is logged instead of taking the
// program down.
func (e *Engine) Recovered(p any) int {
	if st := e.st; st != nil {
		return st.with(nil, faultNone, func() int { return st.recoveredLocked(p, nil) })
	}
	e.Log.Error().Msgf("panic in ustack, call failed with EIO: %v", p)
	return neg(unix.EIO)
}

func (e *Engine) sock(fd int) sock {
	if fd < 0 || fd >= FDMax {
		return nil
	}
	if slot := e.socks[fd].Load(); slot != nil {
		return slot.s
	}
	return nil
}

// Socket makes the new AF_INET kernel socket fd accelerated if a stack runs (or can be started).
func (e *Engine) Socket(fd, typ int) { e.SocketOf(fd, unix.AF_INET, typ) }

// SocketOf is Socket for a socket of family domain, AF_INET or AF_INET6.
func (e *Engine) SocketOf(fd, domain, typ int) {
	if fd < 0 || fd >= FDMax || domain != unix.AF_INET && domain != unix.AF_INET6 {
		return
	}
	st := e.stack()
	if st == nil {
		return
	}
	nonblock := typ&unix.SOCK_NONBLOCK != 0
	st.with(nil, faultNone, func() int {
		var b *sockBase
		if typ&0xf == unix.SOCK_DGRAM {
			u := &udpSock{sockBase: e.newBaseLocked(fd, uint16(domain), nonblock)}
			u.self, b = u, u.sockBase
		} else {
			b = e.newTCPLocked(fd, uint16(domain), nonblock).sockBase
		}
		e.publishLocked(b, fd)
		return 0
	})
	e.Log.Debug().Int("fd", fd).Bool("udp", typ&0xf == unix.SOCK_DGRAM).Bool("ipv6", domain == unix.AF_INET6).Msg("socket accelerated")
	count(&st.stats.SocketsAccelerated)
}

// newBaseLocked makes a socket's common part and gives it its cookie. Caller holds st.mu.
func (e *Engine) newBaseLocked(fd int, family uint16, nonblock bool) *sockBase {
	e.lastCookie++
	return &sockBase{e: e, st: e.st, fds: []int{fd}, cookie: e.lastCookie, nonblock: nonblock, born: e.tab.ForkGen(),
		family: family, v6only: family == unix.AF_INET6 && e.st.bindV6only}
}

// newTCPLocked makes a TCP socket on the shadow fd. Caller holds st.mu.
func (e *Engine) newTCPLocked(fd int, family uint16, nonblock bool) *tcpSock {
	s := &tcpSock{sockBase: e.newBaseLocked(fd, family, nonblock)}
	s.self = s
	return s
}

// publishLocked makes fd one of b's fds in the interposer's table. Caller holds st.mu.
func (e *Engine) publishLocked(b *sockBase, fd int) {
	kind, extra := int32(KindTCP), int32(-1)
	switch b.self.(type) {
	case *tcpListener:
		extra = int32(fd) // the shadow: kernel connections to accept
	case *udpSock:
		kind, extra = KindUDP, int32(fd) // the shadow: the kernel's datagrams
	}
	e.cookies[b.cookie] = b.self
	e.st.socksChanged()
	e.socks[fd].Store(&sockSlot{b.self})
	e.tab.Publish(fd, FDEntry{Kind: kind, ExtraFd: extra})
}

// wakeLocked tells the waiters of the socket whose core object carries cookie that its
// readiness may have changed. Caller holds st.mu.
func (e *Engine) wakeLocked(cookie uintptr) {
	switch s := e.cookies[cookie].(type) {
	case nil:
	case *tcpListener:
		if s.share != nil {
			s.share.wakeLocked() // every socket on the port: they share one accept queue
		}
	default:
		s.base().wakeLocked()
	}
}

func (e *Engine) Bind(fd int, sa []byte) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	ip, port, ok, errno := s.base().parseAddr(sa, false)
	if errno != 0 {
		return neg(errno)
	}
	if !ok {
		return Pass
	}
	return s.bind(ip, port)
}

func (e *Engine) Listen(fd, backlog int) int {
	if s := e.sock(fd); s != nil {
		return s.listen(clampBacklog(backlog, systemSomaxconn()))
	}
	return Pass
}

func (e *Engine) Accept(fd int, sa []byte, saLen *uint32, flags int) int {
	if s := e.sock(fd); s != nil {
		return s.accept(sa, saLen, flags)
	}
	return Pass
}

func (e *Engine) Connect(fd int, sa []byte) int {
	if s := e.sock(fd); s != nil {
		return s.connect(sa)
	}
	return Pass
}

// ConnectWait finishes a blocking connect: Wait while it runs, then its result.
func (e *Engine) ConnectWait(fd int) int {
	if s := e.sock(fd); s != nil {
		return s.connectWait()
	}
	return neg(unix.EBADF)
}

// Recv reads into iov. flags: MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC, MSG_WAITALL (looped in C).
// name/nameLen receive a datagram's source (TCP reports none); msgFlags gets MSG_TRUNC.
func (e *Engine) Recv(fd int, iov []unix.Iovec, flags int, name []byte, nameLen *uint32, msgFlags *int32) int {
	if s := e.sock(fd); s != nil {
		return s.recv(iov, flags, name, nameLen, msgFlags)
	}
	return Pass
}

// Send sends iov (to name, for a datagram socket); partial results are normal for a stream.
func (e *Engine) Send(fd int, iov []unix.Iovec, flags int, name []byte) int {
	if s := e.sock(fd); s != nil {
		return s.send(iov, flags, name)
	}
	return Pass
}

func (e *Engine) Shutdown(fd, how int) int {
	if s := e.sock(fd); s != nil {
		return s.shutdown(how)
	}
	return Pass
}

func (e *Engine) Getsockname(fd int, out []byte, outLen *uint32) int {
	if s := e.sock(fd); s != nil {
		return s.sockname(out, outLen)
	}
	return Pass
}

func (e *Engine) Getpeername(fd int, out []byte, outLen *uint32) int {
	if s := e.sock(fd); s != nil {
		return s.peername(out, outLen)
	}
	return Pass
}

// Getsockopt answers what only the stack knows (SO_ERROR, TCP_INFO); the shadow the rest.
func (e *Engine) Getsockopt(fd, level, name int, val []byte, valLen *uint32) int {
	if s := e.sock(fd); s != nil {
		return s.getsockopt(level, name, val, valLen)
	}
	return Pass
}

// Setsockopt records what the stack needs and lets the shadow take the option too (Pass), so
// that getsockopt answers and a hand-over keeps it.
func (e *Engine) Setsockopt(fd, level, name int, val []byte) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	b := s.base()
	v, isInt := getInt(val)
	handOver, why := false, "joined a multicast group the stack does not carry"
	r := b.st.with(s, faultSetsockopt, func() int {
		if r := b.opts.set(level, name, v, isInt, val); r != 0 {
			return r
		}
		switch {
		case ancillaryOption(level, name) && (!isInt || v != 0):
			if _, udp := b.self.(*udpSock); udp {
				handOver, why = true, "asks for ancillary data the stack does not produce (sockopt.go ancillaryOptions)"
				return Pass
			}
		case level == unix.IPPROTO_IPV6 && name == unix.IPV6_V6ONLY:
			// the kernel takes it only before bind, and so do we (the shadow refuses later)
			if isInt && b.family == unix.AF_INET6 && !b.bound {
				b.v6only = v != 0
			}
		case level == unix.IPPROTO_IP && name == unix.IP_ADD_SOURCE_MEMBERSHIP ||
			(level == unix.IPPROTO_IP || level == unix.IPPROTO_IPV6) &&
				(name == unix.MCAST_JOIN_GROUP || name == unix.MCAST_JOIN_SOURCE_GROUP):
			if _, udp := b.self.(*udpSock); udp {
				handOver = true // source filters and the protocol-independent API stay with the kernel
				return Pass
			}
		case level == unix.IPPROTO_IP || level == unix.IPPROTO_IPV6:
			if u, udp := b.self.(*udpSock); udp {
				r, ho := u.setsockoptMcastLocked(level, name, val) // mcast.go
				if r != Pass {
					handOver = ho
					return r
				}
			}
		case level == unix.SOL_SOCKET && (name == unix.SO_RCVTIMEO || name == unix.SO_SNDTIMEO):
			ms, ok := timeoutMs(val)
			if !ok {
				return neg(unix.EINVAL)
			}
			if name == unix.SO_RCVTIMEO {
				e.tab.SetTimeouts(fd, ms, -1)
			} else {
				e.tab.SetTimeouts(fd, -1, ms)
			}
		}
		return b.self.setsockoptLocked(level, name, v, isInt, val)
	})
	if handOver {
		e.handOver(s, shm.SockReasonOption, why)
	}
	return r
}

func (e *Engine) Fcntl(fd, cmd int, arg uintptr) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	b := s.base()
	switch cmd {
	case unix.F_GETFL:
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			return errnoOf(err)
		}
		fl &^= unix.O_NONBLOCK
		b.st.with(s, faultNone, func() int {
			if b.nonblock {
				fl |= unix.O_NONBLOCK
			}
			return 0
		})
		return fl
	case unix.F_SETFL:
		fl := int(arg)
		b.st.with(s, faultNone, func() int {
			b.nonblock = fl&unix.O_NONBLOCK != 0
			if _, ok := b.self.(*tcpListener); ok {
				fl |= unix.O_NONBLOCK // a listener's shadow is polled, never blocked on
			}
			return 0
		})
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl); err != nil {
			return errnoOf(err)
		}
		return 0
	}
	return Pass
}

func (e *Engine) Ioctl(fd int, req uint, arg unsafe.Pointer) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	b := s.base()
	switch req {
	case IoctlSelfTestPanic:
		var nilSock *sockBase
		return nilSock.fds[0]
	case IoctlArmPanic:
		if arg == nil {
			return neg(unix.EFAULT)
		}
		op := faultOp(*(*int32)(arg))
		if op <= faultNone || op >= faultMax {
			return neg(unix.EINVAL)
		}
		b.st.armed.Store(int32(op))
		if op == faultPoller {
			b.st.kickPoller()
		}
		return 0
	case ioctlFIONBIO:
		if arg == nil {
			return neg(unix.EFAULT)
		}
		on := *(*int32)(arg) != 0
		listener := false
		b.st.with(s, faultNone, func() int {
			b.nonblock = on
			_, listener = b.self.(*tcpListener)
			return 0
		})
		if !listener {
			_ = unix.SetNonblock(fd, on)
		}
		return 0
	case ioctlFIONREAD, ioctlSIOCOUTQ:
		if arg == nil {
			return neg(unix.EFAULT)
		}
		return b.st.with(s, faultNone, func() int {
			n := b.self.queuedLocked(req == ioctlSIOCOUTQ)
			if n < 0 {
				return n
			}
			*(*int32)(arg) = int32(n)
			return 0
		})
	}
	return Pass
}

// CloseFD lets go of fd, about to be closed; the socket goes when its last fd does.
func (e *Engine) CloseFD(fd int) {
	s := e.sock(fd)
	if s == nil {
		return
	}
	b := s.base()
	if b.born != e.tab.ForkGen() && e.tab.ChildrenAlive() {
		// a fork child may hold the socket still: its last fd here moves it to the kernel, which
		// carries it on for the child if it does, else closes it as it closes its own
		var last bool
		b.st.with(s, faultNone, func() int { last = len(b.fds) == 1; return 0 })
		if last && e.moveToKernel(s, shm.SockReasonFork) == 0 {
			return
		}
	}
	e.tab.Withdraw(fd)
	e.socks[fd].Store(nil)
	release := func() int {
		b.fds = removeInt(b.fds, fd)
		if len(b.fds) == 0 {
			// the last fd: as on Linux, a dup keeps the socket and its epoll registrations
			e.forgetLocked(b.self)
			b.st.txLocked()
		}
		return 0
	}
	if b.st.with(s, faultClose, release) != 0 {
		b.st.with(s, faultNone, release) // a panic stopped it part way: what is left is done again
	}
}

// Dup makes newfd, a kernel duplicate of oldfd's shadow, another fd of the same socket (or of
// the same epoll set).
func (e *Engine) Dup(oldfd, newfd int) {
	if newfd < 0 || newfd >= FDMax {
		return
	}
	if s := e.sock(oldfd); s != nil {
		b := s.base()
		b.st.with(s, faultNone, func() int {
			b.fds = append(b.fds, newfd)
			e.publishLocked(b, newfd)
			return 0
		})
		return
	}
	if st := e.st; st != nil {
		st.with(nil, faultNone, func() int {
			if set := e.epolls[oldfd]; set != nil {
				set.epfds = append(set.epfds, newfd)
				e.epolls[newfd] = set
				e.tab.Publish(newfd, FDEntry{Kind: KindEpoll, ExtraFd: int32(set.wakeEp)})
				e.tab.SetEpollReady(newfd, set.signalled)
			}
			return 0
		})
	}
}

// Drain runs when the process exits. The kernel goes on delivering what its sockets still have
// to send after their program is gone; our stack dies with the process. So every connection
// still open moves to the kernel with its state (the exit then closes its fd, and the kernel
// sends the FIN), and so does every closed one not yet finished, in a kernel socket of its own
// that is closed at once: the kernel finishes it as it finishes its own orphans, and exit
// returns at once. That includes a connection in FIN-WAIT-2, which has delivered everything but
// must still acknowledge the peer's FIN: with no socket for it the kernel would answer that FIN
// with a reset. TIME-WAIT has no kernel form to move into; it is left behind. Where a move is
// impossible (no CAP_NET_ADMIN for TCP_REPAIR), exit waits instead until the data is
// acknowledged: up to USTACK_EXIT_LINGER_MS without progress, USTACK_EXIT_LINGER_MAX_MS in all.
func (e *Engine) Drain() { e.leave(false) }

// MoveAll runs before this process image is replaced (exec): the stack ends with it, so every
// socket moves to the kernel, listeners and UDP sockets too (those the new image inherits go on
// working there; the kernel closes the others).
func (e *Engine) MoveAll() { e.leave(true) }

// leave moves the sockets to the kernel as the stack ends (Drain, MoveAll): all of them, or the
// TCP connections only.
func (e *Engine) leave(all bool) {
	st := e.st
	if st == nil {
		return
	}
	stuck := false
	reason := uint8(shm.SockReasonExit)
	if all {
		reason = shm.SockReasonExec
	}
	for fd := range e.socks {
		s := e.sock(fd)
		if _, ok := s.(*tcpSock); ok || all && s != nil {
			if r := e.moveToKernel(s, reason); r != 0 && r != errNotYet {
				stuck = true
				e.CloseFD(fd)
			}
		}
	}
	st.with(nil, faultNone, func() int {
		st.serviceLocked()
		for _, c := range st.orphans {
			if !c.Repairable() {
				continue // TIME-WAIT: the kernel has no such state to take
			}
			domain := unix.AF_INET6 // an orphan has no socket of its own left: its addresses decide
			if c.Local().Is4() {
				domain = unix.AF_INET
			}
			fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				stuck = true
				continue
			}
			// its options went with its socket: SO_REUSEADDR, so that a program started next
			// can listen on its port as it could beside the kernel's own closing connections
			if st.moveConnLocked(c, fd, &sockOpts{reuseAddr: true}) != 0 {
				stuck = true
			}
			unix.Close(fd)
		}
		st.pruneOrphansLocked()
		if !stuck {
			st.unsteerAllLocked() // nothing is left here: every frame goes to the kernel
		}
		st.dropTableLocked() // no one will keep it current
		return 0
	})
	if stuck {
		e.linger()
	}
}

// linger waits at exit for closed connections to deliver (Drain, when they cannot move).
func (e *Engine) linger() {
	st := e.st
	if e.cfg.ExitLingerMs <= 0 {
		return
	}
	start := time.Now()
	last, lastLeft, lastQueued := start, -1, -1
	for {
		var left, queued int
		st.with(nil, faultNone, func() int {
			st.serviceLocked()
			left, queued = st.pruneOrphansLocked()
			return 0
		})
		if left == 0 {
			return
		}
		now := time.Now()
		if left != lastLeft || queued != lastQueued {
			last, lastLeft, lastQueued = now, left, queued
		}
		if now.Sub(last) > time.Duration(e.cfg.ExitLingerMs)*time.Millisecond ||
			now.Sub(start) > time.Duration(max(e.cfg.ExitLingerMax, e.cfg.ExitLingerMs))*time.Millisecond {
			e.Log.Warn().Int("connections", left).Int("bytes", queued).
				Msg("exit: closed connections still had data to deliver")
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}
