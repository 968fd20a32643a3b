package shim

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// FDMax bounds the fds that can be accelerated; keep in step with USTACK_FDMAX in preload.
const FDMax = 65536

// Engine is ustack inside one process: the configuration, the accelerated sockets by fd, and the
// stack, started on the first socket that could use it.
type Engine struct {
	cfg   Config
	tab   FDTable
	Log   zerolog.Logger
	socks []atomic.Pointer[socket]

	startOnce sync.Once
	st        *stack // nil until started, and when acceleration is off
	off       atomic.Bool

	epolls map[int]*epollSet // by application epoll fd (dups included); guarded by st.mu

	// sockets by the Cookie their listener or connection carries in the core; guarded by st.mu
	cookies    map[uintptr]*socket
	lastCookie uintptr
}

// NewEngine makes an engine. Nothing is opened until the first accelerated socket.
func NewEngine(cfg Config, tab FDTable) *Engine {
	e := &Engine{cfg: cfg, tab: tab, socks: make([]atomic.Pointer[socket], FDMax), epolls: map[int]*epollSet{},
		cookies: map[uintptr]*socket{}}
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

// Drain runs when the process exits. The kernel would go on delivering what closed sockets still
// have to send (and the FIN) after the program is gone; our stack dies with the process, so the
// exit closes every socket still open, as exit closes every fd, and waits until their data is
// acknowledged. It gives up after USTACK_EXIT_LINGER_MS without progress (nothing acknowledged,
// no connection done), or USTACK_EXIT_LINGER_MAX_MS in all: under heavy loss delivering the
// tail can take many backed-off retransmissions, each of which counts as progress once acked.
func (e *Engine) Drain() {
	st := e.st
	if st == nil || e.cfg.ExitLingerMs <= 0 {
		return
	}
	for fd := range e.socks {
		if e.socks[fd].Load() != nil {
			e.CloseFD(fd)
		}
	}
	start := time.Now()
	last, lastLeft, lastQueued := start, -1, -1
	for {
		st.mu.Lock()
		st.serviceLocked()
		left, queued := st.pruneOrphansLocked()
		st.mu.Unlock()
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

// Close stops the stack (tests; a process simply exits).
func (e *Engine) Close() {
	if e.st != nil {
		e.st.close()
	}
}

// Recovered is called by the exports when a call panicked: the call fails with EIO and the
// panic is logged instead of taking the program down.
func (e *Engine) Recovered(p any) int {
	if e.st != nil {
		atomic.AddUint64(&e.st.stats.Panics, 1)
	}
	e.Log.Error().Msgf("panic in ustack, call failed with EIO: %v\n%s", p, debug.Stack())
	return neg(unix.EIO)
}

func (e *Engine) sock(fd int) *socket {
	if fd < 0 || fd >= FDMax {
		return nil
	}
	return e.socks[fd].Load()
}

// wake tells the threads waiting on a socket that its readiness may have changed. Caller holds
// st.mu.
func (e *Engine) wake(cookie uintptr) {
	s := e.cookies[cookie]
	if s == nil {
		return
	}
	if s.lshare != nil && len(s.lshare.socks) > 1 {
		for _, ls := range s.lshare.socks {
			ls.wakeOne()
		}
		return
	}
	s.wakeOne()
}

// wakeOne signals s's eventfds for what it is ready for. Caller holds st.mu.
func (s *socket) wakeOne() {
	s.wakeGen++
	if s.readableLocked() {
		s.signal(&s.rxSignalled, s.rxEfd)
	}
	if s.writableLocked() {
		s.signal(&s.txSignalled, s.txEfd)
	}
}
