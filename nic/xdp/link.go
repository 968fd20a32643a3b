package xdp

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"ustack/shm"
)

// Receive fills frames with up to len(frames) received frames, slices into
// the UMEM that stay valid until ReleaseRx.
func (s *Socket) Receive(frames [][]byte) int {
	if s.rx == nil {
		return 0
	}
	room := cap(s.rxHeld) - len(s.rxHeld)
	want := len(frames)
	if want > room {
		want = room
	}
	pos, n := s.rx.Peek(uint32(want))
	if n == 0 {
		if s.zeroCopy && s.needWakeup && s.fill.NeedWakeup() {
			s.wakeRx()
		}
		return 0
	}
	var bytes uint64
	for i := uint32(0); i < n; i++ {
		d := s.rx.Entry(pos + i)
		frames[i] = s.umem.Slice(d.Addr, int(d.Len))
		s.rxHeld = append(s.rxHeld, d.Addr)
		bytes += uint64(d.Len)
		if s.group != nil {
			s.group.Tag(s.group.FrameOf(d.Addr), uint8(s.slot)) // ours before the ring lets it go
		}
	}
	s.rx.Release(n)
	atomic.AddUint64(&s.stats.RxPackets, uint64(n))
	atomic.AddUint64(&s.stats.RxBytes, bytes)
	return int(n)
}

// ReleaseRx gives the frames of previous Receive calls back to the kernel
// through the fill ring.
func (s *Socket) ReleaseRx() {
	if s.fill == nil || len(s.rxHeld) == 0 {
		return
	}
	if s.group != nil {
		s.group.Fill(s.fill, s.slot, s.rxHeld, s.dead)
		s.rxHeld = s.rxHeld[:0]
		return
	}
	// The fill ring has room for every receive frame: it is as large as
	// the number of frames that circulate on the receive side.
	pos, n := s.fill.Reserve(uint32(len(s.rxHeld)))
	for i := uint32(0); i < n; i++ {
		*s.fill.Entry(pos + i) = s.umem.FrameBase(s.rxHeld[i])
	}
	s.fill.Submit()
	rest := copy(s.rxHeld, s.rxHeld[n:])
	s.rxHeld = s.rxHeld[:rest]
	if s.zeroCopy && s.needWakeup && s.fill.NeedWakeup() {
		s.wakeRx()
	}
}

// wakeRx asks a zero-copy driver to take buffers from the fill ring. In copy mode the kernel
// takes them as frames come, and the flag that asks for a wake-up is never cleared: a recvfrom
// there is a system call for nothing.
func (s *Socket) wakeRx() {
	atomic.AddUint64(&s.stats.RxWakeups, 1)
	unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// AllocTx lends a whole UMEM frame for transmission, or nil when none is
// free even after reclaiming the completion ring.
func (s *Socket) AllocTx() []byte {
	if s.umem == nil {
		return nil
	}
	addr, ok := s.umem.Alloc()
	if !ok {
		s.reclaim()
		if addr, ok = s.umem.Alloc(); !ok {
			atomic.AddUint64(&s.stats.TxNoFrame, 1)
			return nil
		}
	}
	return s.umem.Frame(addr)
}

// SubmitTx queues the first n bytes of buf, a frame from AllocTx, on the TX
// ring. Flush publishes them.
func (s *Socket) SubmitTx(buf []byte, n int) {
	if s.tx == nil {
		return
	}
	addr, ok := s.umem.Addr(buf)
	if !ok || n < 0 || n > cap(buf) || s.umem.FrameBase(addr) != addr {
		panic("xdp: SubmitTx of a buffer that AllocTx did not lend")
	}
	pos, got := s.tx.Reserve(1)
	if got == 0 {
		s.Flush()
		if pos, got = s.tx.Reserve(1); got == 0 {
			atomic.AddUint64(&s.stats.TxRingFull, 1)
			s.umem.Free(addr)
			return
		}
	}
	*s.tx.Entry(pos) = unix.XDPDesc{Addr: addr, Len: uint32(n)}
	if s.group != nil {
		s.group.Tag(s.group.FrameOf(addr), shm.TagInflight)
	}
	s.txOut++
	atomic.AddUint64(&s.stats.TxPackets, 1)
	atomic.AddUint64(&s.stats.TxBytes, uint64(n))
}

// Flush publishes submitted frames on the TX ring and wakes the kernel when it asks for it
// (always in copy mode).
func (s *Socket) Flush() error {
	if s.tx == nil {
		return ErrClosed
	}
	if !s.Publish() {
		return nil
	}
	err := s.Kick()
	s.reclaim() // in copy mode the kick completed them
	if err == ErrTxBusy {
		return nil // they go with the next Flush
	}
	return err
}

// Publish makes submitted frames visible to the kernel and reclaims completed ones. It reports
// whether frames wait for a Kick; the caller may make it later, from any thread (Flush is both).
func (s *Socket) Publish() bool {
	if s.tx == nil || s.txOut == 0 {
		return false
	}
	if s.tx.Pending() > 0 {
		s.tx.Submit()
	}
	s.reclaim()
	return s.tx.Unconsumed() > 0 && (!s.needWakeup || s.tx.NeedWakeup())
}

// Kick wakes the kernel to transmit what Publish made visible. In copy mode it transmits them
// in the calling thread. It touches no ring: it may run beside a thread that submits.
func (s *Socket) Kick() error {
	atomic.AddUint64(&s.stats.TxKicks, 1)
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case unix.EAGAIN, unix.EBUSY:
		atomic.AddUint64(&s.stats.TxKicksBusy, 1)
		return ErrTxBusy
	case 0, unix.ENOBUFS, unix.EINTR:
	default:
		return s.errorf("tx kick: %w", e)
	}
	return nil
}

// ErrTxBusy is Kick's answer when the kernel left frames on the ring (its per-call budget, or
// another thread transmitting): the next kick sends them.
var ErrTxBusy = errors.New("xdp: tx kick left frames for the next")

// reclaim moves completed TX frames back to the free list.
func (s *Socket) reclaim() {
	if s.group != nil {
		// the completion ring is the group's: whoever takes it routes every frame home
		s.group.Complete(s.comp, s.slot, s.dead)
		s.returned = s.group.Returned(s.slot, s.returned[:0])
		for _, a := range s.returned {
			s.umem.Free(a)
		}
		n := uint32(len(s.returned))
		if n > 0 {
			s.txOut -= n
			atomic.AddUint64(&s.stats.TxCompleted, uint64(n))
		}
		return
	}
	pos, n := s.comp.Peek(s.comp.Size())
	if n == 0 {
		return
	}
	for i := uint32(0); i < n; i++ {
		s.umem.Free(*s.comp.Entry(pos + i))
	}
	s.comp.Release(n)
	s.txOut -= n
	atomic.AddUint64(&s.stats.TxCompleted, uint64(n))
}
