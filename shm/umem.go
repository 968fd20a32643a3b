package shm

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UMEM is an anonymous shared mapping cut into equal frames (the AF_XDP
// user memory), plus a free list of frame addresses for transmit buffers.
// Frame addresses are byte offsets from the start of the mapping. Not safe
// for concurrent use.
type UMEM struct {
	mem       []byte
	frameSize uint64
	numFrames uint32
	free      []uint64 // stack of free frame addresses
}

// NewUMEM maps numFrames frames of frameSize bytes (a power of two).
// The free list starts empty; the owner decides which frames it holds.
func NewUMEM(numFrames, frameSize int) (*UMEM, error) {
	if numFrames <= 0 || frameSize < 2048 || frameSize&(frameSize-1) != 0 {
		return nil, fmt.Errorf("umem: bad geometry %d frames of %d bytes", numFrames, frameSize)
	}
	mem, err := unix.Mmap(-1, 0, numFrames*frameSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("umem: mapping %d bytes: %w", numFrames*frameSize, err)
	}
	// A forked child never uses the frames (it cannot drive the stack), and the kernel pins
	// them: without this every fork would copy all of them (6-8 ms a fork for 16 MiB).
	if err := unix.Madvise(mem, unix.MADV_DONTFORK); err != nil {
		return nil, errors.Join(fmt.Errorf("umem: madvise: %w", err), unix.Munmap(mem))
	}
	return &UMEM{
		mem:       mem,
		frameSize: uint64(frameSize),
		numFrames: uint32(numFrames),
		free:      make([]uint64, 0, numFrames),
	}, nil
}

// MapUMEM maps the UMEM of numFrames frames of frameSize bytes that the file fd holds (a
// group's, shared with other processes), with an empty free list.
func MapUMEM(fd, numFrames, frameSize int) (*UMEM, error) {
	mem, err := unix.Mmap(fd, 0, numFrames*frameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("umem: mapping %d shared bytes: %w", numFrames*frameSize, err)
	}
	_ = unix.Madvise(mem, unix.MADV_DONTFORK) // as NewUMEM
	return &UMEM{mem: mem, frameSize: uint64(frameSize), numFrames: uint32(numFrames), free: make([]uint64, 0, numFrames)}, nil
}

// Bytes returns the whole mapping.
func (u *UMEM) Bytes() []byte { return u.mem }

// FrameSize returns the size of one frame in bytes.
func (u *UMEM) FrameSize() int { return int(u.frameSize) }

// NumFrames returns the number of frames.
func (u *UMEM) NumFrames() int { return int(u.numFrames) }

// FrameAddr returns the address of frame i.
func (u *UMEM) FrameAddr(i int) uint64 { return uint64(i) * u.frameSize }

// FrameBase rounds addr (which may point inside a frame) down to its frame.
func (u *UMEM) FrameBase(addr uint64) uint64 { return addr &^ (u.frameSize - 1) }

// Slice returns n bytes at addr with capacity n (n == 0 means up to the end
// of the frame that holds addr).
func (u *UMEM) Slice(addr uint64, n int) []byte {
	if n == 0 {
		end := u.FrameBase(addr) + u.frameSize
		return u.mem[addr:end:end]
	}
	return u.mem[addr : addr+uint64(n) : addr+uint64(n)]
}

// Frame returns the whole frame at frame address addr.
func (u *UMEM) Frame(addr uint64) []byte {
	return u.mem[addr : addr+u.frameSize : addr+u.frameSize]
}

// Addr returns the UMEM address of the first byte of buf, which must point
// into the mapping; ok is false otherwise.
func (u *UMEM) Addr(buf []byte) (addr uint64, ok bool) {
	if cap(buf) == 0 || len(u.mem) == 0 {
		return 0, false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(u.mem)))
	if p < base || p >= base+uintptr(len(u.mem)) {
		return 0, false
	}
	return uint64(p - base), true
}

// Free pushes frame address addr (rounded to its frame) onto the free list.
func (u *UMEM) Free(addr uint64) {
	if len(u.free) < cap(u.free) {
		u.free = append(u.free, u.FrameBase(addr))
	}
}

// Alloc pops a free frame address; ok is false when the list is empty.
func (u *UMEM) Alloc() (addr uint64, ok bool) {
	n := len(u.free)
	if n == 0 {
		return 0, false
	}
	addr = u.free[n-1]
	u.free = u.free[:n-1]
	return addr, true
}

// FreeCount returns the number of frames on the free list.
func (u *UMEM) FreeCount() int { return len(u.free) }

// Close unmaps the memory. It is safe on nil and twice.
func (u *UMEM) Close() error {
	if u == nil || u.mem == nil {
		return nil
	}
	m := u.mem
	u.mem, u.free = nil, nil
	if err := unix.Munmap(m); err != nil {
		return fmt.Errorf("umem: unmapping: %w", err)
	}
	return nil
}
