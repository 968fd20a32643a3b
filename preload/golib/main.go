// Command golib is the Go part of ustack, build/libustack-go.so: the Go runtime, package shim
// and the stack. The C front (libustack.so, preload/*.c) loads it with dlopen on the first
// socket that could be accelerated and calls its exports; it links against nothing of the front
// and reaches the front's fd table through the struct ustack_shared handed to ustack_init.
// Nothing here holds policy; it converts C types once and forwards.
package main

/*
#cgo CFLAGS: -O2 -Wall -Wno-unused-function -D_GNU_SOURCE -I${SRCDIR}/..
#cgo LDFLAGS: -ldl
#include "golib.h"
*/
import "C"

import (
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"ustack/shim"
)

func main() {}

// exportsMap is set by the Makefile to a hash of libustack-go.map: go build caches the link step
// by its flags, not by the version script's contents, so a changed map must change the flags.
var exportsMap string

// eng is the process's engine: one process, one Go part, one engine.
var eng *shim.Engine

// fds is the front's fd table.
var fds []C.struct_ustack_fd

//export ustack_init
func ustack_init(sh *C.struct_ustack_shared) (r C.long) {
	C.ustack_sh = sh
	fds = unsafe.Slice(sh.fds, C.USTACK_FDMAX)
	cfg, err := shim.ConfigFromEnv(os.Getenv)
	if err != nil {
		os.Stderr.WriteString("ustack: warning: " + err.Error() + "; sockets stay on the kernel\n")
		*sh.go_off = 1
		return 0
	}
	if cfg.Disable {
		*sh.go_off = 1
		return 0
	}
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		// A program pinned to one CPU would give Go one P, which the application's thread
		// holds between its calls: the poller could then run only after the runtime's monitor
		// took the P back, and handing it over costs thread wake-ups on every round.
		runtime.GOMAXPROCS(2)
	}
	eng = shim.NewEngine(cfg, cTable{})
	*sh.spin_us = C.int(cfg.SpinUs)
	return 0
}

// cTable is the interposer's fd table in the front's memory (preload/ustack.h).
type cTable struct{}

func entry(fd int) *C.struct_ustack_fd { return &fds[fd] }

func (cTable) Publish(fd int, e shim.FDEntry) {
	p := entry(fd)
	p.extra_fd = C.int32_t(e.ExtraFd)
	p.rcvtimeo_ms, p.sndtimeo_ms = C.int32_t(e.RcvTimeoMs), C.int32_t(e.SndTimeoMs)
	p.xsk_in, p.nested, p.ready = 0, 0, 0 // a new epoll set's wake epoll starts without the AF_XDP fd
	atomic.StoreInt32((*int32)(unsafe.Pointer(&p.kind)), e.Kind)
}

func (cTable) Withdraw(fd int) {
	atomic.StoreInt32((*int32)(unsafe.Pointer(&entry(fd).kind)), shim.KindNone)
}

func (cTable) SetTimeouts(fd int, rcvMs, sndMs int32) {
	p := entry(fd)
	if rcvMs >= 0 {
		p.rcvtimeo_ms = C.int32_t(rcvMs)
	}
	if sndMs >= 0 {
		p.sndtimeo_ms = C.int32_t(sndMs)
	}
}

func (cTable) SetXSKFd(fd int) { *C.ustack_sh.xsk_fd = C.int(fd) }

func (cTable) SetEpollReady(fd int, ready bool) {
	v := int32(0)
	if ready {
		v = 1
	}
	atomic.StoreInt32((*int32)(unsafe.Pointer(&entry(fd).ready)), v)
}

func (cTable) XSKWaiters() int32 {
	return atomic.LoadInt32((*int32)(unsafe.Pointer(C.ustack_sh.xsk_waiters)))
}

func (cTable) SetOwner(name string, pid int) {
	dst := unsafe.Slice((*byte)(unsafe.Pointer(C.ustack_sh.owner_name)), 108)
	clear(dst)
	copy(dst[:len(dst)-1], name)
	*C.ustack_sh.owner_pid = C.int(pid)
	C.ustack_call_children_setup()
}

func (cTable) ChildrenAlive() bool { return C.ustack_call_children_alive() != 0 }

func (cTable) TakeShadowSeen(fd int) bool {
	p := (*int32)(unsafe.Pointer(&entry(fd).shadow_seen))
	return atomic.LoadInt32(p) != 0 && atomic.SwapInt32(p, 0) != 0
}

func (cTable) TxKick() *shim.TxKick { return (*shim.TxKick)(unsafe.Pointer(C.ustack_sh.txkick)) }

// the layouts must agree
var _ = [1]struct{}{}[unsafe.Sizeof(shim.TxKick{})-C.sizeof_struct_ustack_txkick]
var _ = [1]struct{}{}[unsafe.Offsetof(shim.TxKick{}.Busy)-unsafe.Offsetof(C.struct_ustack_txkick{}.busy)]

func (cTable) ForkGen() uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(C.ustack_sh.fork_gen)))
}

// Wake bumps fd's wake-up sequence, then wakes its registered waiters that can go on (see
// preload/wait.c for why that order loses no wake-up). The common case, nobody waiting, costs
// two atomic operations and no call into C.
func (cTable) Wake(fd int, rx, tx bool) {
	p := entry(fd)
	atomic.AddUint32((*uint32)(unsafe.Pointer(&p.seq)), 1)
	if rx && atomic.LoadInt32((*int32)(unsafe.Pointer(&p.rx_waiters))) > 0 ||
		tx && atomic.LoadInt32((*int32)(unsafe.Pointer(&p.tx_waiters))) > 0 {
		C.ustack_call_wake(C.int(fd))
	}
}
