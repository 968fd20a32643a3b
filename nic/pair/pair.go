// Package pair is an in-memory Ethernet wire for tests: two Ends joined back
// to back, each implementing the nic.Link method set (Fd is -1). Frames can be
// dropped, duplicated, reordered and corrupted with seeded randomness, and a
// hook can drop (or capture) chosen frames. Everything is deterministic for a
// given seed and call sequence. Frame buffers come from a fixed pool per End,
// so steady-state traffic does not allocate.
package pair

import (
	"errors"
	"sync"
)

// Options configure a pair. The zero value is a perfect wire.
type Options struct {
	Seed        uint64  // seed for the fault injector
	DropRate    float64 // probability a frame is dropped
	DupRate     float64 // probability a frame is delivered twice
	ReorderRate float64 // probability a frame is held back and delivered after the next one
	CorruptRate float64 // probability one byte of a frame is flipped
	FrameSize   int     // size of each frame buffer (default 2048)
	NumFrames   int     // frames in each End's pool (default 4096)
}

// Hook sees every frame an End flushes onto the wire, before faults are
// applied; n counts the frames this End has sent (from 0). Returning true
// drops the frame. The frame is valid only during the call.
type Hook func(n uint64, frame []byte) bool

// ErrClosed is returned by Flush on a closed End.
var ErrClosed = errors.New("pair: link closed")

type frame struct {
	buf []byte
	n   int
}

// End is one side of the wire.
type End struct {
	mu     *sync.Mutex // shared by both ends
	peer   *End
	opts   *Options
	rng    *uint64
	free   [][]byte // this End's tx pool
	txq    []frame  // submitted, not yet flushed
	rxq    []frame  // delivered by the peer, not yet received
	lent   []frame  // handed out by the last Receive
	held   *frame   // frame held back for reordering (in flight to peer)
	heldOK bool
	sent   uint64
	closed bool

	// Hook, if set, is called for each frame this End sends. Set it before traffic
	// flows or under the caller's own synchronisation.
	Hook Hook

	// Counters (read them when the wire is idle).
	Sent, Dropped uint64
}

// New returns the two ends of a wire.
func New(opts Options) (a, b *End) {
	if opts.FrameSize <= 0 {
		opts.FrameSize = 2048
	}
	if opts.NumFrames <= 0 {
		opts.NumFrames = 4096
	}
	mu := new(sync.Mutex)
	rng := opts.Seed*0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D
	o := &opts
	mk := func() *End {
		e := &End{mu: mu, opts: o, rng: &rng}
		mem := make([]byte, opts.FrameSize*opts.NumFrames)
		e.free = make([][]byte, 0, opts.NumFrames)
		for i := 0; i < opts.NumFrames; i++ {
			e.free = append(e.free, mem[i*opts.FrameSize:(i+1)*opts.FrameSize:(i+1)*opts.FrameSize])
		}
		e.txq = make([]frame, 0, opts.NumFrames)
		e.rxq = make([]frame, 0, 2*opts.NumFrames)
		e.lent = make([]frame, 0, 2*opts.NumFrames)
		return e
	}
	a, b = mk(), mk()
	a.peer, b.peer = b, a
	return a, b
}

func (e *End) rand() uint64 {
	x := *e.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*e.rng = x
	return x
}

func (e *End) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	return float64(e.rand()>>11)/(1<<53) < p
}

// AllocTx lends a frame buffer (len == cap == FrameSize), nil if none is free.
func (e *End) AllocTx() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.free) == 0 {
		return nil
	}
	b := e.free[len(e.free)-1]
	e.free = e.free[:len(e.free)-1]
	return b
}

// SubmitTx queues the first n bytes of buf (from AllocTx) for the next Flush.
func (e *End) SubmitTx(buf []byte, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.txq = append(e.txq, frame{buf[:cap(buf)], n})
}

// Flush puts the submitted frames on the wire (into the peer's receive queue),
// applying the hook and the configured faults.
func (e *End) Flush() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		for _, f := range e.txq {
			e.free = append(e.free, f.buf)
		}
		e.txq = e.txq[:0]
		return ErrClosed
	}
	p := e.peer
	o := e.opts
	for _, f := range e.txq {
		n := e.sent
		e.sent++
		e.Sent++
		if e.Hook != nil && e.Hook(n, f.buf[:f.n]) {
			e.Dropped++
			e.free = append(e.free, f.buf)
			continue
		}
		if p.closed || e.chance(o.DropRate) {
			e.Dropped++
			e.free = append(e.free, f.buf)
			continue
		}
		if e.chance(o.CorruptRate) && f.n > 0 {
			f.buf[e.rand()%uint64(f.n)] ^= uint8(1 << (e.rand() % 8))
		}
		if e.chance(o.DupRate) && len(e.free) > 0 {
			d := e.free[len(e.free)-1]
			e.free = e.free[:len(e.free)-1]
			copy(d, f.buf[:f.n])
			e.deliver(frame{d, f.n})
		}
		if !e.heldOK && e.chance(o.ReorderRate) {
			e.held = &frame{f.buf, f.n}
			e.heldOK = true
			continue
		}
		e.deliver(f)
		if e.heldOK {
			e.deliver(*e.held)
			e.held, e.heldOK = nil, false
		}
	}
	e.txq = e.txq[:0]
	return nil
}

// deliver appends f (a buffer of e's pool) to the peer's receive queue.
func (e *End) deliver(f frame) { e.peer.rxq = append(e.peer.rxq, f) }

// Receive fills frames with up to len(frames) received frames; they stay
// valid until ReleaseRx. A frame held back for reordering is released when
// nothing else is in flight, so reordering never strands a frame.
func (e *End) Receive(frames [][]byte) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.peer
	if len(e.rxq) == 0 && p.heldOK {
		e.rxq = append(e.rxq, *p.held)
		p.held, p.heldOK = nil, false
	}
	n := 0
	for n < len(frames) && n < len(e.rxq) {
		f := e.rxq[n]
		frames[n] = f.buf[:f.n]
		e.lent = append(e.lent, f)
		n++
	}
	e.rxq = append(e.rxq[:0], e.rxq[n:]...)
	return n
}

// ReleaseRx returns the frames of the last Receive to the sender's pool.
func (e *End) ReleaseRx() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range e.lent {
		e.peer.free = append(e.peer.free, f.buf)
	}
	e.lent = e.lent[:0]
}

// Pending reports the number of frames waiting in this End's receive queue.
func (e *End) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.rxq)
	if e.peer.heldOK {
		n++
	}
	return n
}

// Fd returns -1: an in-memory wire has no pollable descriptor.
func (e *End) Fd() int { return -1 }

// Close stops this End; frames sent to it afterwards are dropped. Safe twice.
func (e *End) Close() error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}
