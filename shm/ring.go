package shm

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RingNeedWakeup is the bit in a ring's flags word that asks the producer to
// wake the consumer with a syscall (XDP_RING_NEED_WAKEUP).
const RingNeedWakeup = unix.XDP_RING_NEED_WAKEUP

// RingLayout gives the byte offsets of a ring's parts inside its mapping, as
// the kernel reports them for AF_XDP rings (XDP_MMAP_OFFSETS). A Flags offset
// of 0 with NoFlags set means the ring has no flags word.
type RingLayout struct {
	Producer, Consumer, Desc, Flags uint64
	NoFlags                         bool
}

// Ring is a single-producer, single-consumer ring of fixed-size entries of
// type T (uint64 frame addresses or unix.XDPDesc descriptors) whose producer
// and consumer positions live in shared memory next to the entries.
//
// One side of the ring is this process: either it produces (Reserve, Entry,
// Submit) or it consumes (Peek, Entry, Release); the other side is the kernel
// or another goroutine. Positions are free-running uint32 counters read and
// written with sync/atomic. The consumer loads the producer position once per
// batch and commits its own position once; the producer likewise.
type Ring[T any] struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	entries  []T
	mask     uint32
	size     uint32

	local  uint32 // our own position (producer or consumer), not yet committed
	cached uint32 // last seen position of the other side

	mapping []byte // the whole mapping if MapRing created it
}

// NewRing makes a Ring view over mem with the given layout and number of
// entries (a power of two). mem must outlive the ring.
func NewRing[T any](mem []byte, layout RingLayout, size uint32) (*Ring[T], error) {
	if size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring size %d is not a power of two", size)
	}
	var zero T
	esz := uint64(unsafe.Sizeof(zero))
	need := layout.Desc + uint64(size)*esz
	if uint64(len(mem)) < need || uint64(len(mem)) < layout.Producer+4 ||
		uint64(len(mem)) < layout.Consumer+4 || uint64(len(mem)) < layout.Flags+4 {
		return nil, fmt.Errorf("ring mapping of %d bytes too small for %d entries (need %d)", len(mem), size, need)
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	if uintptr(base)%8 != 0 || layout.Producer%4 != 0 || layout.Consumer%4 != 0 || layout.Flags%4 != 0 ||
		layout.Desc%uint64(unsafe.Alignof(zero)) != 0 {
		return nil, errors.New("ring layout is misaligned")
	}
	r := &Ring[T]{
		producer: (*uint32)(unsafe.Add(base, layout.Producer)),
		consumer: (*uint32)(unsafe.Add(base, layout.Consumer)),
		entries:  unsafe.Slice((*T)(unsafe.Add(base, layout.Desc)), size),
		mask:     size - 1,
		size:     size,
	}
	if !layout.NoFlags {
		r.flags = (*uint32)(unsafe.Add(base, layout.Flags))
	}
	return r, nil
}

// MapRing maps the ring at page offset pgoff of fd (an AF_XDP socket) and
// returns a Ring over it. Close unmaps it.
func MapRing[T any](fd int, pgoff int64, layout RingLayout, size uint32) (*Ring[T], error) {
	var zero T
	length := layout.Desc + uint64(size)*uint64(unsafe.Sizeof(zero))
	mem, err := unix.Mmap(fd, pgoff, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mapping ring: %w", err)
	}
	_ = unix.Madvise(mem, unix.MADV_DONTFORK) // a forked child never touches the rings
	r, err := NewRing[T](mem, layout, size)
	if err != nil {
		return nil, errors.Join(err, unix.Munmap(mem))
	}
	r.mapping = mem
	return r, nil
}

// AttachProducer positions the ring for this process as producer: the local
// producer position starts at the shared one.
func (r *Ring[T]) AttachProducer() {
	r.local = atomic.LoadUint32(r.producer)
	r.cached = atomic.LoadUint32(r.consumer)
}

// AttachConsumer positions the ring for this process as consumer.
func (r *Ring[T]) AttachConsumer() {
	r.local = atomic.LoadUint32(r.consumer)
	r.cached = atomic.LoadUint32(r.producer)
}

// Size returns the number of entries.
func (r *Ring[T]) Size() uint32 { return r.size }

// Entry returns the entry at free-running position pos.
func (r *Ring[T]) Entry(pos uint32) *T { return &r.entries[pos&r.mask] }

// Reserve (producer) claims up to n free entries starting at the returned
// position; it returns how many it claimed. It reloads the consumer position
// only when the cached one does not show enough room.
func (r *Ring[T]) Reserve(n uint32) (pos, got uint32) {
	free := r.size - (r.local - r.cached)
	if free < n {
		r.cached = atomic.LoadUint32(r.consumer)
		free = r.size - (r.local - r.cached)
	}
	if n > free {
		n = free
	}
	pos = r.local
	r.local += n
	return pos, n
}

// Pending (producer) returns how many reserved entries are not yet submitted.
func (r *Ring[T]) Pending() uint32 { return r.local - atomic.LoadUint32(r.producer) }

// Unconsumed (producer) returns how many submitted entries the consumer has
// not taken yet.
func (r *Ring[T]) Unconsumed() uint32 {
	return atomic.LoadUint32(r.producer) - atomic.LoadUint32(r.consumer)
}

// Submit (producer) publishes every entry reserved so far with one store of
// the producer position.
func (r *Ring[T]) Submit() { atomic.StoreUint32(r.producer, r.local) }

// Cancel (producer) gives back the last n reserved, unsubmitted entries.
func (r *Ring[T]) Cancel(n uint32) { r.local -= n }

// Peek (consumer) returns the position of the first unconsumed entry and how
// many (at most n) are ready. It loads the producer position only when the
// cached one shows fewer than n entries.
func (r *Ring[T]) Peek(n uint32) (pos, got uint32) {
	avail := r.cached - r.local
	if avail < n {
		r.cached = atomic.LoadUint32(r.producer)
		avail = r.cached - r.local
	}
	if n > avail {
		n = avail
	}
	return r.local, n
}

// Release (consumer) marks n peeked entries consumed and commits the consumer
// position with one store.
func (r *Ring[T]) Release(n uint32) {
	r.local += n
	atomic.StoreUint32(r.consumer, r.local)
}

// NeedWakeup reports whether the other side set the need-wakeup flag.
func (r *Ring[T]) NeedWakeup() bool {
	return r.flags != nil && atomic.LoadUint32(r.flags)&RingNeedWakeup != 0
}

// SetFlags stores the flags word (for tests and user-space consumers).
func (r *Ring[T]) SetFlags(f uint32) {
	if r.flags != nil {
		atomic.StoreUint32(r.flags, f)
	}
}

// Close unmaps the ring if MapRing created it. It is safe on nil and twice.
func (r *Ring[T]) Close() error {
	if r == nil || r.mapping == nil {
		return nil
	}
	m := r.mapping
	r.mapping, r.entries = nil, nil
	if err := unix.Munmap(m); err != nil {
		return fmt.Errorf("unmapping ring: %w", err)
	}
	return nil
}
