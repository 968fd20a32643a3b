package shim

import (
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// with runs f with the stack locked, and is the only way into the core: the unlock is deferred,
// what f took in from the link is acted on before it returns, and a panic inside f is recovered, counted in shim.panics and logged (with its stack the first
// time), and the call answers EIO. The socket s, whose state the panic may have corrupted, is
// reset; the stack and every other socket carry on. op names the call for the test-only fault
// hook (IoctlArmPanic).
func (st *stack) with(s sock, op faultOp, f func() int) (r int) {
	st.mu.Lock()
	return st.locked(s, op, f)
}

// errBusy is what tryWith answers when another thread holds the stack.
const errBusy = -1 << 30

// tryWith is with for the poller: when an application thread is inside the stack, the stack is
// being driven and the poller has nothing to add; blocking on the lock would park its goroutine
// and make the application's unlock wake a thread for it.
func (st *stack) tryWith(op faultOp, f func() int) int {
	if !st.mu.TryLock() {
		return errBusy
	}
	return st.locked(nil, op, f)
}

// locked is with once the lock is held.
func (st *stack) locked(s sock, op faultOp, f func() int) (r int) {
	defer func() {
		if p := recover(); p != nil {
			r = st.recoveredLocked(p, s)
		}
		st.mu.Unlock()
	}()
	if op != faultPoller {
		st.entries++
	}
	if op != faultNone && st.armed.Load() == int32(op) && st.armed.CompareAndSwap(int32(op), 0) {
		panic(fmt.Sprintf("self-test panic armed for %s", op))
	}
	r = f()
	if st.rxUnsent {
		// a call took frames in and returned before emitting: the sockets they concern must
		// hear of it (FDTable.Wake), the ACKs they call for must go, before anyone sleeps
		st.txLocked()
	}
	return r
}

// recoveredLocked is with's answer to a panic. Caller holds st.mu.
func (st *stack) recoveredLocked(p any, s sock) int {
	n := atomic.AddUint64(&st.stats.Panics, 1)
	if n == 1 {
		st.eng.Log.Error().Msgf("panic in ustack, call failed with EIO: %v\n%s", p, debug.Stack())
	} else {
		st.eng.Log.Error().Msgf("panic in ustack (%d so far), call failed with EIO: %v", n, p)
	}
	if s != nil {
		func() {
			defer func() { _ = recover() }() // a socket too broken to reset stays as it is
			s.resetLocked()
			s.base().wakeLocked()
		}()
	}
	return neg(unix.EIO)
}

// faultOp names the calls in which the test-only fault hook can make the core panic.
type faultOp int32

const (
	faultNone faultOp = iota
	faultAccept
	faultClose
	faultSend
	faultRecv
	faultSetsockopt
	faultPoller
	faultMax
)

func (op faultOp) String() string {
	return [...]string{"none", "accept", "close", "send", "recv", "setsockopt", "poller"}[min(op, faultMax-1)]
}

// IoctlSelfTestPanic makes the call panic inside Go on purpose (a nil dereference, so the fault
// takes the SIGSEGV path): tests use it to prove a panic fails the call with EIO and leaves the
// program running, even when the program installed its own SIGSEGV handler.
const IoctlSelfTestPanic = 0x7573ffff

// IoctlArmPanic (arg: int *op, a faultOp) arms a one-shot panic inside the core, with the stack
// lock held, in the next call of that kind on any socket of the process (or the poller's next
// round). Tests use it to prove a panic leaves the other sockets working and the stack usable.
const IoctlArmPanic = 0x7573fffe

// Clock gives the shim its time: stack time, in microseconds from an arbitrary epoch. Processes
// use the wall clock; tests inject a manual one and run on simulated time.
type Clock interface {
	Now() stackcore.Time
}

type wallClock struct{ epoch time.Time }

func (c wallClock) Now() stackcore.Time { return stackcore.Time(time.Since(c.epoch).Microseconds()) }

// ManualClock is a Clock that moves only when told to (tests).
type ManualClock struct{ t atomic.Int64 }

func (c *ManualClock) Now() stackcore.Time      { return stackcore.Time(c.t.Load()) }
func (c *ManualClock) Advance(d stackcore.Time) { c.t.Add(int64(d)) }
func (c *ManualClock) Set(t stackcore.Time)     { c.t.Store(int64(t)) }
