package shm

import (
	"sync"
	"testing"
)

type testDesc struct {
	Addr uint64
	Len  uint32
	Opt  uint32
}

// localRing builds a ring in ordinary memory with a layout like the kernel's:
// producer, consumer and flags words on separate cache lines, then entries.
func localRing[T any](t testing.TB, size uint32, entry int) (prod, cons *Ring[T]) {
	t.Helper()
	mem := make([]byte, 192+int(size)*entry)
	lay := RingLayout{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}
	p, err := NewRing[T](mem, lay, size)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewRing[T](mem, lay, size)
	if err != nil {
		t.Fatal(err)
	}
	p.AttachProducer()
	c.AttachConsumer()
	return p, c
}

func TestRingRejectsBadGeometry(t *testing.T) {
	mem := make([]byte, 4096)
	if _, err := NewRing[uint64](mem, RingLayout{Desc: 64}, 12); err == nil {
		t.Error("size 12 accepted")
	}
	if _, err := NewRing[uint64](mem, RingLayout{Desc: 64}, 1024); err == nil {
		t.Error("too-small mapping accepted")
	}
}

func TestRingSequential(t *testing.T) {
	p, c := localRing[uint64](t, 8, 8)
	if _, n := c.Peek(8); n != 0 {
		t.Fatalf("empty ring peeked %d", n)
	}
	pos, n := p.Reserve(10)
	if n != 8 {
		t.Fatalf("reserved %d of 10 on an 8-entry ring", n)
	}
	for i := range n {
		*p.Entry(pos + i) = uint64(100 + i)
	}
	if _, n := c.Peek(8); n != 0 {
		t.Fatal("consumer saw entries before Submit")
	}
	p.Submit()
	if _, n := p.Reserve(1); n != 0 {
		t.Fatal("full ring reserved an entry")
	}
	pos, n = c.Peek(3)
	if n != 3 || *c.Entry(pos) != 100 || *c.Entry(pos + 2) != 102 {
		t.Fatalf("peek: %d entries, first %d", n, *c.Entry(pos))
	}
	c.Release(3)
	if _, n := p.Reserve(5); n != 3 {
		t.Fatalf("reserved %d after 3 released, want 3", n)
	}
	p.Cancel(3)
	if p.Pending() != 0 {
		t.Fatalf("pending %d after cancel", p.Pending())
	}
	if p.Unconsumed() != 5 {
		t.Fatalf("unconsumed %d, want 5", p.Unconsumed())
	}
	if p.NeedWakeup() {
		t.Fatal("need wakeup set on a fresh ring")
	}
	c.SetFlags(RingNeedWakeup)
	if !p.NeedWakeup() {
		t.Fatal("need wakeup not seen")
	}
}

// TestRingConcurrent moves a million descriptors through a small ring from
// one goroutine to another in random batch sizes; run with -race.
func TestRingConcurrent(t *testing.T) {
	const total = 1 << 20
	if testing.Short() {
		t.Skip("short")
	}
	p, c := localRing[testDesc](t, 64, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var seq uint64
		for seq < total {
			pos, n := p.Reserve(uint32(1 + seq%13))
			for i := range n {
				*p.Entry(pos + i) = testDesc{Addr: seq, Len: uint32(seq) * 3}
				seq++
			}
			p.Submit()
		}
	}()
	var want uint64
	for want < total {
		pos, n := c.Peek(uint32(1 + want%7))
		for i := range n {
			d := *c.Entry(pos + i)
			if d.Addr != want || d.Len != uint32(want)*3 {
				t.Fatalf("entry %d: got %+v", want, d)
			}
			want++
		}
		if n > 0 {
			c.Release(n)
		}
	}
	wg.Wait()
}

func TestRingAllocs(t *testing.T) {
	p, c := localRing[uint64](t, 64, 8)
	a := testing.AllocsPerRun(1000, func() {
		pos, n := p.Reserve(4)
		for i := range n {
			*p.Entry(pos + i) = uint64(i)
		}
		p.Submit()
		_, n = c.Peek(4)
		c.Release(n)
	})
	if a != 0 {
		t.Fatalf("%v allocations per batch", a)
	}
}

func TestUMEM(t *testing.T) {
	u, err := NewUMEM(16, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := NewUMEM(16, 3000); err == nil {
		t.Error("frame size 3000 accepted")
	}
	if _, ok := u.Alloc(); ok {
		t.Fatal("alloc from empty free list")
	}
	for i := range 16 {
		u.Free(u.FrameAddr(i) + 100) // rounds down
	}
	seen := map[uint64]bool{}
	for range 16 {
		a, ok := u.Alloc()
		if !ok || a%2048 != 0 || seen[a] {
			t.Fatalf("alloc %d ok %v (seen %v)", a, ok, seen[a])
		}
		seen[a] = true
		f := u.Frame(a)
		if len(f) != 2048 || cap(f) != 2048 {
			t.Fatalf("frame len %d cap %d", len(f), cap(f))
		}
		if b, ok := u.Addr(f); !ok || b != a {
			t.Fatalf("Addr of frame %d = %d %v", a, b, ok)
		}
		if b, ok := u.Addr(f[10:]); !ok || b != a+10 || u.FrameBase(b) != a {
			t.Fatalf("Addr inside frame %d = %d", a, b)
		}
	}
	if _, ok := u.Addr(make([]byte, 10)); ok {
		t.Fatal("Addr accepted foreign memory")
	}
	if s := u.Slice(2048+256, 60); len(s) != 60 || cap(s) != 60 {
		t.Fatalf("slice len %d cap %d", len(s), cap(s))
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	var nilU *UMEM
	if err := nilU.Close(); err != nil {
		t.Fatal(err)
	}
}
