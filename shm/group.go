package shm

import (
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A group is the processes that share one queue of one interface: sockets bound to the same
// queue share one UMEM and its fill and completion rings (XDP_SHARED_UMEM), and those two rings
// have a single producer and a single consumer each as the kernel sees them. GroupState is the
// shared memory that lets many processes act as that one producer and one consumer, and that
// lets a survivor take back what a process held when it died, however it died.
//
// The UMEM is cut into the receive frames, which circulate among every member through the fill
// ring (the kernel puts any of them into any member's RX ring), and one transmit range per
// member slot, which only that slot's process sends from. A tag per frame says who holds it:
// TagFill (the fill ring, the kernel, or an RX ring not yet read), TagInflight (handed to the
// kernel for transmission), or the slot number of the process that holds it. A member tags a
// frame before it lets the frame go, so after its death its frames are the ones tagged with its
// slot, plus what its rings still hold.
//
// Each shared ring is driven under a spin lock in shared memory whose word names the holder.
// A holder writes a journal before the store that publishes its work, so that whoever breaks
// the lock of a dead holder (lock, with finishFill or finishComplete) can finish the work
// exactly: no frame is lost and none is handed out twice.

// Tag values beside slot numbers (which are below MaxSlots).
const (
	TagFill     uint8 = 0xfe
	TagInflight uint8 = 0xff
	// MaxSlots bounds the members of a group (a slot number fits a tag).
	MaxSlots = 64
)

// GroupMagic is "USTKGRP1" read as a little-endian uint64.
const GroupMagic uint64 = 0x31505247_4b545355

// GroupGeometry is the shape of a group's UMEM and state.
type GroupGeometry struct {
	Slots     uint32 // member slots
	TxPerSlot uint32 // transmit frames of each slot (a power of two)
	RxFrames  uint32 // receive frames shared by all (at most the fill ring's size)
	FrameSize uint32
}

// Frames is the number of frames in the UMEM.
func (g GroupGeometry) Frames() uint32 { return g.RxFrames + g.Slots*g.TxPerSlot }

func (g GroupGeometry) check() error {
	if g.Slots == 0 || g.Slots > MaxSlots || g.TxPerSlot == 0 || g.TxPerSlot&(g.TxPerSlot-1) != 0 ||
		g.RxFrames == 0 || g.FrameSize < 2048 || g.FrameSize&(g.FrameSize-1) != 0 {
		return fmt.Errorf("group: bad geometry %+v", g)
	}
	return nil
}

// Byte layout of the state (version 1), all fields naturally aligned:
//
//	0     8   magic
//	8     32  build id: two builds of ustack never share a group
//	40    4   uid of the group's processes
//	44    4   pid of the keeper
//	48    16  geometry (slots, tx per slot, rx frames, frame size)
//	128   64  fill lock, 192 64 completion lock
//	256   64 per slot: the slot table
//	...   return rings: per slot 64 bytes of positions, then TxPerSlot uint64 entries
//	...   tags: one byte per frame
const (
	grpOffMagic    = 0
	grpOffBuild    = 8
	grpOffUID      = 40
	grpOffKeeper   = 44
	grpOffGeometry = 48
	grpOffFillLock = 128
	grpOffCompLock = 192
	grpOffSlots    = 256
	grpSlotSize    = 64
)

// BuildID identifies a build of ustack.
type BuildID [32]byte

// groupLock is a spin lock with the journal of its holder's work.
type groupLock struct {
	owner uint32 // 0: free; else the holder's slot + 1 (the keeper: Slots + 1)
	valid uint32 // the journal below describes work in progress
	pos   uint32 // ring position the work starts at
	n     uint32 // entries of the work
	next  uint32 // completion lock: the entry being routed
	prod  uint32 // completion lock: its return ring's producer position before it
}

// Slot states.
const (
	SlotFree uint32 = iota
	SlotJoining
	SlotLive
)

type groupSlot struct {
	state uint32
	pid   uint32
	gen   uint32 // bumped at each reclaim
	_     uint32
	start uint64 // process start time of pid (clock ticks since boot), against pid reuse
}

// returnRing carries a slot's transmit frames back to it from whoever routed their completion.
type returnRing struct {
	prod, cons uint32
	_          [56]byte
}

// GroupState is a view of a group's shared state.
type GroupState struct {
	mem   []byte
	geo   GroupGeometry
	shift uint // log2 of the frame size: FrameOf runs per frame
	fill  *groupLock
	comp  *groupLock
	slots []groupSlot
	rings []*returnRing
	ret   [][]uint64
	tags  []uint8
}

// GroupStateSize returns the bytes the state of geometry g takes.
func GroupStateSize(g GroupGeometry) int {
	return int(tagsOff(g) + uint64(g.Frames()))
}

func ringsOff(g GroupGeometry) uint64 { return grpOffSlots + uint64(g.Slots)*grpSlotSize }
func ringSize(g GroupGeometry) uint64 { return 64 + uint64(g.TxPerSlot)*8 }
func tagsOff(g GroupGeometry) uint64  { return ringsOff(g) + uint64(g.Slots)*ringSize(g) }

// InitGroupState lays out a fresh state in mem (zeroed, GroupStateSize bytes): every receive
// frame tagged TagFill (the creator puts them all in the fill ring), every transmit frame tagged
// with its slot.
func InitGroupState(mem []byte, g GroupGeometry, build BuildID, uid uint32) (*GroupState, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	if len(mem) < GroupStateSize(g) {
		return nil, fmt.Errorf("group: state of %d bytes, need %d", len(mem), GroupStateSize(g))
	}
	copy(mem[grpOffBuild:], build[:])
	put32(mem, grpOffUID, uid)
	put32(mem, grpOffGeometry, g.Slots)
	put32(mem, grpOffGeometry+4, g.TxPerSlot)
	put32(mem, grpOffGeometry+8, g.RxFrames)
	put32(mem, grpOffGeometry+12, g.FrameSize)
	s := view(mem, g)
	for f := range s.tags {
		if uint32(f) < g.RxFrames {
			s.tags[f] = TagFill
		} else {
			s.tags[f] = uint8((uint32(f) - g.RxFrames) / g.TxPerSlot)
		}
	}
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&mem[grpOffMagic])), GroupMagic)
	return s, nil
}

// OpenGroupState checks mem holds a group state of this layout and build and returns its view.
func OpenGroupState(mem []byte, build BuildID) (*GroupState, error) {
	if len(mem) < grpOffSlots || atomic.LoadUint64((*uint64)(unsafe.Pointer(&mem[grpOffMagic]))) != GroupMagic {
		return nil, errors.New("group: not a group state")
	}
	if BuildID(mem[grpOffBuild:grpOffBuild+32]) != build {
		return nil, errors.New("group: made by another build of ustack")
	}
	g := GroupGeometry{
		Slots: get32(mem, grpOffGeometry), TxPerSlot: get32(mem, grpOffGeometry+4),
		RxFrames: get32(mem, grpOffGeometry+8), FrameSize: get32(mem, grpOffGeometry+12),
	}
	if err := g.check(); err != nil {
		return nil, err
	}
	if len(mem) < GroupStateSize(g) {
		return nil, fmt.Errorf("group: state of %d bytes, need %d", len(mem), GroupStateSize(g))
	}
	return view(mem, g), nil
}

func view(mem []byte, g GroupGeometry) *GroupState {
	base := unsafe.Pointer(unsafe.SliceData(mem))
	s := &GroupState{
		mem:   mem,
		geo:   g,
		shift: uint(bits.TrailingZeros32(g.FrameSize)),
		fill:  (*groupLock)(unsafe.Add(base, grpOffFillLock)),
		comp:  (*groupLock)(unsafe.Add(base, grpOffCompLock)),
		slots: unsafe.Slice((*groupSlot)(unsafe.Add(base, grpOffSlots)), g.Slots),
		tags:  mem[tagsOff(g) : tagsOff(g)+uint64(g.Frames())],
	}
	for i := uint64(0); i < uint64(g.Slots); i++ {
		off := ringsOff(g) + i*ringSize(g)
		s.rings = append(s.rings, (*returnRing)(unsafe.Add(base, off)))
		s.ret = append(s.ret, unsafe.Slice((*uint64)(unsafe.Add(base, off+64)), g.TxPerSlot))
	}
	return s
}

func put32(b []byte, off int, v uint32) { *(*uint32)(unsafe.Pointer(&b[off])) = v }
func get32(b []byte, off int) uint32    { return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[off]))) }

// Geometry returns the group's geometry.
func (s *GroupState) Geometry() GroupGeometry { return s.geo }

// UID returns the uid the group belongs to.
func (s *GroupState) UID() uint32 { return get32(s.mem, grpOffUID) }

// SetKeeper records the keeper's pid; Keeper reads it.
func (s *GroupState) SetKeeper(pid int) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&s.mem[grpOffKeeper])), uint32(pid))
}

// Keeper returns the pid of the group's keeper.
func (s *GroupState) Keeper() int { return int(get32(s.mem, grpOffKeeper)) }

// Frame numbers and addresses.

// FrameOf returns the frame number of UMEM address addr (which may point inside the frame).
func (s *GroupState) FrameOf(addr uint64) uint32 { return uint32(addr >> s.shift) }

// Addr returns the UMEM address of frame f.
func (s *GroupState) Addr(f uint32) uint64 { return uint64(f) * uint64(s.geo.FrameSize) }

// TxRange returns the first transmit frame of slot and how many it has.
func (s *GroupState) TxRange(slot uint32) (first, n uint32) {
	return s.geo.RxFrames + slot*s.geo.TxPerSlot, s.geo.TxPerSlot
}

// ownerOf returns the slot whose transmit range holds frame f, or false for a receive frame.
func (s *GroupState) ownerOf(f uint32) (uint32, bool) {
	if f < s.geo.RxFrames || f >= s.geo.Frames() {
		return 0, false
	}
	return (f - s.geo.RxFrames) / s.geo.TxPerSlot, true
}

// Tag sets the tag of frame f (a plain store: tags are read only for a dead member's frames).
func (s *GroupState) Tag(f uint32, tag uint8) {
	if f < uint32(len(s.tags)) {
		s.tags[f] = tag
	}
}

// Slots.

// SlotInfo is a slot as the table shows it.
type SlotInfo struct {
	State, Pid uint32
	Start      uint64
}

// Slot returns slot i of the table.
func (s *GroupState) Slot(i uint32) SlotInfo {
	sl := &s.slots[i]
	return SlotInfo{State: atomic.LoadUint32(&sl.state), Pid: atomic.LoadUint32(&sl.pid),
		Start: atomic.LoadUint64(&sl.start)}
}

// SetSlot records a slot's state and process (the keeper does, as members join and die).
func (s *GroupState) SetSlot(i, state uint32, pid int, start uint64) {
	sl := &s.slots[i]
	atomic.StoreUint32(&sl.pid, uint32(pid))
	atomic.StoreUint64(&sl.start, start)
	if state == SlotFree {
		atomic.AddUint32(&sl.gen, 1)
	}
	atomic.StoreUint32(&sl.state, state)
}

// FreeSlot returns a free slot, or false when every slot is taken.
func (s *GroupState) FreeSlot() (uint32, bool) {
	for i := range s.slots {
		if atomic.LoadUint32(&s.slots[i].state) == SlotFree {
			return uint32(i), true
		}
	}
	return 0, false
}

// Locks.

// lock takes l for holder (slot + 1). A holder that died with the lock is detected by dead
// (called now and then while spinning), and its lock taken over with finish, which completes
// the dead holder's journal.
func (s *GroupState) lock(l *groupLock, holder uint32, dead func(holder uint32) bool, finish func()) {
	for spins := 0; ; spins++ {
		if atomic.CompareAndSwapUint32(&l.owner, 0, holder) {
			return
		}
		if spins&1023 == 1023 {
			if h := atomic.LoadUint32(&l.owner); h != 0 && dead != nil && dead(h) &&
				atomic.CompareAndSwapUint32(&l.owner, h, holder) {
				finish()
				return
			}
			runtime.Gosched()
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
	}
}

func unlock(l *groupLock) { atomic.StoreUint32(&l.owner, 0) }

// Fill ring.

// Fill puts frames (UMEM addresses) on the fill ring, whose producer position this
// process takes over under the fill lock, and tags them TagFill. The fill ring has room for
// every receive frame. me is the caller's slot (the keeper: Slots).
func (s *GroupState) Fill(fill *Ring[uint64], me uint32, addrs []uint64, dead func(holder uint32) bool) {
	if len(addrs) == 0 {
		return
	}
	s.lock(s.fill, me+1, dead, func() { s.finishFill(fill) })
	fill.AttachProducer()
	pos, n := fill.Reserve(uint32(len(addrs)))
	for i := uint32(0); i < n; i++ {
		*fill.Entry(pos + i) = addrs[i] &^ uint64(s.geo.FrameSize-1)
	}
	// the journal, then the tags, then the producer: a holder that dies before the journal
	// leaves its frames tagged with its slot; after it, finishFill publishes them
	s.fill.pos, s.fill.n = pos, n
	atomic.StoreUint32(&s.fill.valid, 1)
	for _, a := range addrs[:n] {
		s.Tag(s.FrameOf(a), TagFill)
	}
	fill.Submit()
	atomic.StoreUint32(&s.fill.valid, 0)
	unlock(s.fill)
}

// finishFill completes a dead holder's fill: its entries are written; tag and publish them.
func (s *GroupState) finishFill(fill *Ring[uint64]) {
	if atomic.LoadUint32(&s.fill.valid) == 0 {
		return
	}
	pos, n := s.fill.pos, s.fill.n
	for i := uint32(0); i < n; i++ {
		s.Tag(s.FrameOf(*fill.Entry(pos + i)), TagFill)
	}
	if p := atomic.LoadUint32(fill.producer); p == pos {
		atomic.StoreUint32(fill.producer, pos+n)
	}
	atomic.StoreUint32(&s.fill.valid, 0)
}

// Completion ring.

// Complete takes the completion ring under its lock and routes every completed transmit frame
// to the return ring of the slot it belongs to (this process's own too: one path for all). The
// caller then drains its own return ring (Returned).
func (s *GroupState) Complete(comp *Ring[uint64], me uint32, dead func(holder uint32) bool) (routed uint32) {
	if atomic.LoadUint32(comp.producer) == atomic.LoadUint32(comp.consumer) {
		return 0
	}
	s.lock(s.comp, me+1, dead, func() { s.finishComplete(comp) })
	comp.AttachConsumer()
	pos, n := comp.Peek(comp.Size())
	if n > 0 {
		s.comp.pos, s.comp.n, s.comp.next = pos, n, 0
		atomic.StoreUint32(&s.comp.valid, 1)
		s.route(comp, pos, 0, n)
		comp.Release(n)
		atomic.StoreUint32(&s.comp.valid, 0)
	}
	unlock(s.comp)
	return n
}

// route moves completion entries pos+from .. pos+n to their slots' return rings, journalling
// each before its return ring's producer moves.
func (s *GroupState) route(comp *Ring[uint64], pos, from, n uint32) {
	for j := from; j < n; j++ {
		addr := *comp.Entry(pos + j)
		o, ok := s.ownerOf(s.FrameOf(addr))
		if !ok {
			continue // not a transmit frame: nothing the kernel should complete
		}
		r, ret := s.rings[o], s.ret[o]
		p := atomic.LoadUint32(&r.prod)
		s.comp.prod = p
		atomic.StoreUint32(&s.comp.next, j)
		ret[p&(s.geo.TxPerSlot-1)] = addr &^ uint64(s.geo.FrameSize-1)
		atomic.StoreUint32(&r.prod, p+1)
	}
}

// finishComplete completes a dead holder's routing: the entry it was at went through if its
// return ring's producer moved past the journalled position.
func (s *GroupState) finishComplete(comp *Ring[uint64]) {
	if atomic.LoadUint32(&s.comp.valid) == 0 {
		return
	}
	pos, n, j := s.comp.pos, s.comp.n, atomic.LoadUint32(&s.comp.next)
	if j < n {
		addr := *comp.Entry(pos + j)
		if o, ok := s.ownerOf(s.FrameOf(addr)); !ok || atomic.LoadUint32(&s.rings[o].prod) != s.comp.prod {
			j++ // routed (or nothing to route)
		}
	}
	s.route(comp, pos, j, n)
	atomic.StoreUint32(comp.consumer, pos+n)
	atomic.StoreUint32(&s.comp.valid, 0)
}

// Returned drains slot me's return ring into dst (frame addresses, now free), tagging each
// with me. Only slot me's process calls it.
func (s *GroupState) Returned(me uint32, dst []uint64) []uint64 {
	r, ret := s.rings[me], s.ret[me]
	c, p := r.cons, atomic.LoadUint32(&r.prod)
	for ; c != p; c++ {
		addr := ret[c&(s.geo.TxPerSlot-1)]
		s.Tag(s.FrameOf(addr), uint8(me))
		dst = append(dst, addr)
	}
	atomic.StoreUint32(&r.cons, c)
	return dst
}

// FreeTx returns the transmit frames of slot me that are free as the tags tell (at join, for
// the free list): tagged with the slot, and not on its return ring.
func (s *GroupState) FreeTx(me uint32, dst []uint64) []uint64 {
	first, n := s.TxRange(me)
	for f := first; f < first+n; f++ {
		if s.tags[f] == uint8(me) {
			dst = append(dst, s.Addr(f))
		}
	}
	return dst
}

// Dead member's frames.

// DeadRings are what the reclaimer reads of a dead member's own socket: its RX ring (frames
// the kernel delivered to it) and TX ring (frames it queued that the kernel never took).
type DeadRings struct {
	RX, TX *Ring[unix.XDPDesc]
}

// Reclaim takes back what slot dead held, once its process is gone and its socket can no
// longer receive: it finishes its locked work if it died holding a lock, returns its receive
// frames (read or not) to the fill ring, and frees the transmit frames it queued that never
// went; frames still in flight come back through its return ring. It returns how many receive
// and transmit frames came back. me is the reclaimer's slot (the keeper: Slots).
func (s *GroupState) Reclaim(dead, me uint32, fill, comp *Ring[uint64], rings DeadRings) (rx, tx int) {
	isDead := func(h uint32) bool { return h == dead+1 }
	if atomic.LoadUint32(&s.fill.owner) == dead+1 && atomic.CompareAndSwapUint32(&s.fill.owner, dead+1, me+1) {
		s.finishFill(fill)
		unlock(s.fill)
	}
	if atomic.LoadUint32(&s.comp.owner) == dead+1 && atomic.CompareAndSwapUint32(&s.comp.owner, dead+1, me+1) {
		s.finishComplete(comp)
		unlock(s.comp)
	}
	seen := make([]bool, s.geo.RxFrames)
	var back []uint64
	take := func(f uint32) {
		if f < s.geo.RxFrames && !seen[f] {
			seen[f] = true
			back = append(back, s.Addr(f))
		}
	}
	if r := rings.RX; r != nil {
		r.AttachConsumer()
		pos, n := r.Peek(r.Size())
		for i := uint32(0); i < n; i++ {
			take(s.FrameOf(r.Entry(pos + i).Addr))
		}
		r.Release(n)
	}
	for f := uint32(0); f < s.geo.RxFrames; f++ {
		if s.tags[f] == uint8(dead) {
			take(f)
		}
	}
	s.Fill(fill, me, back, isDead)
	if r := rings.TX; r != nil {
		cons, prod := atomic.LoadUint32(r.consumer), atomic.LoadUint32(r.producer)
		for p := cons; p != prod; p++ {
			f := s.FrameOf(r.Entry(p).Addr)
			if o, ok := s.ownerOf(f); ok && o == dead && s.tags[f] == TagInflight {
				s.tags[f] = uint8(dead)
				tx++
			}
		}
	}
	return len(back), tx
}

// Census counts, for a view of the group (onloadctl, tests), the frames by tag: receive frames
// with the fill ring and kernel, held by each slot; transmit frames of each slot free, and in
// flight.
type Census struct {
	RxFill   uint32
	RxHeld   []uint32 // per slot
	TxFree   []uint32 // per slot: tagged with the slot
	TxFlight []uint32 // per slot
}

// Count takes a census of the tags.
func (s *GroupState) Count() Census {
	c := Census{RxHeld: make([]uint32, s.geo.Slots), TxFree: make([]uint32, s.geo.Slots), TxFlight: make([]uint32, s.geo.Slots)}
	for f, t := range s.tags {
		if uint32(f) < s.geo.RxFrames {
			switch {
			case t == TagFill:
				c.RxFill++
			case uint32(t) < s.geo.Slots:
				c.RxHeld[t]++
			}
			continue
		}
		o, _ := s.ownerOf(uint32(f))
		if t == TagInflight {
			c.TxFlight[o]++
		} else if uint32(t) == o {
			c.TxFree[o]++
		}
	}
	return c
}
