package shm

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

var testGeo = GroupGeometry{Slots: 4, TxPerSlot: 8, RxFrames: 16, FrameSize: 2048}

// memRing is a ring in ordinary memory with the kernel's layout: producer, consumer, flags,
// then the entries.
func memRing[T any](t *testing.T, size uint32, esz int) *Ring[T] {
	t.Helper()
	r, err := NewRing[T](make([]byte, 64+int(size)*esz), RingLayout{Producer: 0, Consumer: 4, Flags: 8, Desc: 64}, size)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type testGroup struct {
	s          *GroupState
	fill, comp *Ring[uint64]
}

func newTestGroup(t *testing.T) *testGroup {
	t.Helper()
	s, err := InitGroupState(make([]byte, GroupStateSize(testGeo)), testGeo, BuildID{1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	g := &testGroup{s: s, fill: memRing[uint64](t, 16, 8), comp: memRing[uint64](t, 32, 8)}
	var all []uint64
	for f := range testGeo.RxFrames {
		all = append(all, s.Addr(f))
	}
	s.Fill(g.fill, testGeo.Slots, all, nil)
	return g
}

// kernelRx is the kernel taking n frames off the fill ring for a socket's RX ring.
func (g *testGroup) kernelRx(t *testing.T, rx *Ring[unix.XDPDesc], n uint32) {
	t.Helper()
	g.fill.AttachConsumer()
	pos, got := g.fill.Peek(n)
	if got != n {
		t.Fatalf("fill ring holds %d frames, want %d", got, n)
	}
	rx.AttachProducer()
	rpos, _ := rx.Reserve(n)
	for i := range n {
		*rx.Entry(rpos + i) = unix.XDPDesc{Addr: *g.fill.Entry(pos + i) + 256, Len: 60}
	}
	rx.Submit()
	g.fill.Release(n)
}

// kernelTx is the kernel completing what a socket queued on its TX ring.
func (g *testGroup) kernelTx(tx *Ring[unix.XDPDesc]) {
	tx.AttachConsumer()
	pos, n := tx.Peek(tx.Size())
	g.comp.AttachProducer()
	cpos, _ := g.comp.Reserve(n)
	for i := range n {
		*g.comp.Entry(cpos + i) = tx.Entry(pos + i).Addr
	}
	g.comp.Submit()
	tx.Release(n)
}

func (g *testGroup) census(t *testing.T) Census {
	t.Helper()
	c := g.s.Count()
	total := c.RxFill
	for i := range c.RxHeld {
		total += c.RxHeld[i] + c.TxFree[i] + c.TxFlight[i]
	}
	if total != testGeo.Frames() {
		t.Fatalf("census %+v accounts for %d frames of %d", c, total, testGeo.Frames())
	}
	return c
}

// A fresh group: every receive frame is on the fill ring, every transmit frame free in its slot.
func TestGroupInit(t *testing.T) {
	g := newTestGroup(t)
	c := g.census(t)
	if c.RxFill != testGeo.RxFrames || g.fill.Unconsumed() != testGeo.RxFrames {
		t.Fatalf("rx on fill %d (ring %d), want %d", c.RxFill, g.fill.Unconsumed(), testGeo.RxFrames)
	}
	for k := range testGeo.Slots {
		if c.TxFree[k] != testGeo.TxPerSlot || len(g.s.FreeTx(k, nil)) != int(testGeo.TxPerSlot) {
			t.Fatalf("slot %d: %d free tx frames, want %d", k, c.TxFree[k], testGeo.TxPerSlot)
		}
	}
	if _, err := OpenGroupState(g.s.mem, BuildID{2}); err == nil {
		t.Fatal("another build opened the state")
	}
	if _, err := OpenGroupState(g.s.mem, BuildID{1}); err != nil {
		t.Fatal(err)
	}
}

// Transmit frames completed by the kernel go back to the slot they belong to, whoever takes
// them off the completion ring.
func TestGroupCompletionsRouted(t *testing.T) {
	g := newTestGroup(t)
	tx0, tx1 := memRing[unix.XDPDesc](t, 8, 16), memRing[unix.XDPDesc](t, 8, 16)
	send := func(slot uint32, tx *Ring[unix.XDPDesc], frames []uint64) {
		tx.AttachProducer()
		pos, _ := tx.Reserve(uint32(len(frames)))
		for i, a := range frames {
			g.s.Tag(g.s.FrameOf(a), TagInflight)
			*tx.Entry(pos + uint32(i)) = unix.XDPDesc{Addr: a, Len: 100}
		}
		tx.Submit()
	}
	f0, f1 := g.s.FreeTx(0, nil)[:3], g.s.FreeTx(1, nil)[:5]
	send(0, tx0, f0)
	send(1, tx1, f1)
	g.kernelTx(tx0)
	g.kernelTx(tx1)
	if c := g.census(t); c.TxFlight[0] != 3 || c.TxFlight[1] != 5 {
		t.Fatalf("in flight %v, want 3 and 5", c.TxFlight)
	}
	// slot 1 takes every completion off the ring, slot 0's too
	if n := g.s.Complete(g.comp, 1, nil); n != 8 {
		t.Fatalf("routed %d, want 8", n)
	}
	if got := g.s.Returned(1, nil); !slices.Equal(got, f1) {
		t.Fatalf("slot 1 got back %v, want %v", got, f1)
	}
	if got := g.s.Returned(0, nil); !slices.Equal(got, f0) {
		t.Fatalf("slot 0 got back %v, want %v", got, f0)
	}
	if c := g.census(t); c.TxFree[0] != testGeo.TxPerSlot || c.TxFree[1] != testGeo.TxPerSlot {
		t.Fatalf("free %v, want all", c.TxFree)
	}
}

// A member killed at any point gives back every frame it held, none twice: its receive frames
// (read and unread), and its transmit frames the kernel never took.
func TestGroupReclaim(t *testing.T) {
	g := newTestGroup(t)
	rx := memRing[unix.XDPDesc](t, 16, 16)
	tx := memRing[unix.XDPDesc](t, 8, 16)
	const dead = 2
	g.kernelRx(t, rx, 10)
	// it read 4 and tagged them; it died between tagging the 4th and releasing the ring: the
	// 4th is both tagged and still on the ring
	rx.AttachConsumer()
	pos, _ := rx.Peek(4)
	for i := range uint32(4) {
		g.s.Tag(g.s.FrameOf(rx.Entry(pos+i).Addr), dead)
	}
	rx.Release(3)
	// it queued 2 transmit frames the kernel never took, and 1 that it did
	free := g.s.FreeTx(dead, nil)
	tx.AttachProducer()
	tpos, _ := tx.Reserve(3)
	for i := range uint32(3) {
		g.s.Tag(g.s.FrameOf(free[i]), TagInflight)
		*tx.Entry(tpos + i) = unix.XDPDesc{Addr: free[i], Len: 64}
	}
	tx.Submit()
	tx.AttachConsumer()
	tx.Peek(1)
	tx.Release(1) // the kernel took one ...
	g.comp.AttachProducer()
	cp, _ := g.comp.Reserve(1)
	*g.comp.Entry(cp) = free[0]
	g.comp.Submit() // ... and completed it
	rxBack, txBack := g.s.Reclaim(dead, testGeo.Slots, g.fill, g.comp, DeadRings{RX: rx, TX: tx})
	if rxBack != 10 || txBack != 2 {
		t.Fatalf("reclaimed %d rx, %d tx; want 10 and 2", rxBack, txBack)
	}
	// the completed one comes back through the slot's return ring, to its next process
	g.s.Complete(g.comp, 0, nil)
	if got := g.s.Returned(dead, nil); len(got) != 1 || got[0] != free[0] {
		t.Fatalf("returned %v, want %v", got, free[:1])
	}
	c := g.census(t)
	if c.RxFill != testGeo.RxFrames || g.fill.Unconsumed() != testGeo.RxFrames || c.TxFree[dead] != testGeo.TxPerSlot {
		t.Fatalf("after reclaim: %+v, fill ring %d", c, g.fill.Unconsumed())
	}
	// every fill entry a different frame
	g.fill.AttachConsumer()
	p, n := g.fill.Peek(16)
	seen := map[uint64]bool{}
	for i := range n {
		if a := *g.fill.Entry(p + i); seen[a] {
			t.Fatalf("frame %#x twice on the fill ring", a)
		} else {
			seen[a] = true
		}
	}
}

// A member that died holding the fill lock after its journal: the reclaimer publishes its
// entries; before the journal: its frames are still tagged with its slot and come back so.
func TestGroupReclaimFillLockHolder(t *testing.T) {
	for _, journalled := range []bool{false, true} {
		g := newTestGroup(t)
		rx := memRing[unix.XDPDesc](t, 16, 16)
		const dead = 1
		g.kernelRx(t, rx, 6)
		rx.AttachConsumer()
		pos, n := rx.Peek(6)
		var addrs []uint64
		for i := range n {
			a := rx.Entry(pos + i).Addr
			g.s.Tag(g.s.FrameOf(a), dead)
			addrs = append(addrs, a&^2047)
		}
		rx.Release(n)
		// dead in Fill, holding the lock, its entries written
		g.s.fill.owner = dead + 1
		g.fill.AttachProducer()
		fpos, _ := g.fill.Reserve(6)
		for i, a := range addrs {
			*g.fill.Entry(fpos + uint32(i)) = a
		}
		if journalled {
			g.s.fill.pos, g.s.fill.n, g.s.fill.valid = fpos, 6, 1
			g.s.Tag(g.s.FrameOf(addrs[0]), TagFill) // and tagged one
		}
		rxBack, _ := g.s.Reclaim(dead, testGeo.Slots, g.fill, g.comp, DeadRings{RX: rx})
		want := 6
		if journalled {
			want = 0 // published by finishing its fill
		}
		if rxBack != want {
			t.Fatalf("journalled %v: reclaimed %d, want %d", journalled, rxBack, want)
		}
		if c := g.census(t); c.RxFill != testGeo.RxFrames || g.fill.Unconsumed() != testGeo.RxFrames || g.s.fill.owner != 0 {
			t.Fatalf("journalled %v: %+v, fill ring %d, lock %d", journalled, c, g.fill.Unconsumed(), g.s.fill.owner)
		}
	}
}

// A member that died routing completions: the reclaimer finishes the routing; the entry it was
// at goes to its return ring once, whether or not the dead member's store had landed.
func TestGroupReclaimCompletionLockHolder(t *testing.T) {
	for _, landed := range []bool{false, true} {
		g := newTestGroup(t)
		const dead = 3
		f0, f1 := g.s.FreeTx(0, nil)[:2], g.s.FreeTx(1, nil)[:2]
		entries := []uint64{f0[0], f1[0], f0[1], f1[1]}
		g.comp.AttachProducer()
		cp, _ := g.comp.Reserve(4)
		for i, a := range entries {
			g.s.Tag(g.s.FrameOf(a), TagInflight)
			*g.comp.Entry(cp + uint32(i)) = a
		}
		g.comp.Submit()
		// dead routed entries 0 and 1 and was at entry 2 (slot 0's ring)
		g.s.comp.owner = dead + 1
		g.s.comp.pos, g.s.comp.n, g.s.comp.valid = cp, 4, 1
		g.s.route(g.comp, cp, 0, 2)
		g.s.comp.next, g.s.comp.prod = 2, g.s.rings[0].prod
		if landed {
			g.s.ret[0][g.s.rings[0].prod&7] = f0[1]
			g.s.rings[0].prod++
		}
		g.s.Reclaim(dead, testGeo.Slots, g.fill, g.comp, DeadRings{})
		if got := g.s.Returned(0, nil); !slices.Equal(got, f0) {
			t.Fatalf("landed %v: slot 0 got %v, want %v", landed, got, f0)
		}
		if got := g.s.Returned(1, nil); !slices.Equal(got, f1) {
			t.Fatalf("landed %v: slot 1 got %v, want %v", landed, got, f1)
		}
		if g.comp.Unconsumed() != 0 || g.s.comp.owner != 0 {
			t.Fatalf("landed %v: completion ring %d left, lock %d", landed, g.comp.Unconsumed(), g.s.comp.owner)
		}
	}
}
