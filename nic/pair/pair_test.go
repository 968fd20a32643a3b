package pair

import (
	"bytes"
	"testing"

	"ustack/nic"
)

var _ nic.Link = (*End)(nil)

func send(t *testing.T, e *End, payload byte) {
	t.Helper()
	b := e.AllocTx()
	if b == nil {
		t.Fatal("no tx buffer")
	}
	b[0] = payload
	e.SubmitTx(b, 1)
}

func recvAll(e *End) []byte {
	var got []byte
	frames := make([][]byte, 8)
	for {
		n := e.Receive(frames)
		if n == 0 {
			break
		}
		for _, f := range frames[:n] {
			got = append(got, f[0])
		}
		e.ReleaseRx()
	}
	return got
}

func TestPerfectWire(t *testing.T) {
	a, b := New(Options{NumFrames: 4})
	for i := 0; i < 4; i++ {
		send(t, a, byte(i))
	}
	if a.AllocTx() != nil {
		t.Fatal("pool should be empty")
	}
	if got := recvAll(b); len(got) != 0 {
		t.Fatal("frames delivered before Flush")
	}
	a.Flush()
	if got := recvAll(b); !bytes.Equal(got, []byte{0, 1, 2, 3}) {
		t.Fatalf("got %v", got)
	}
	if a.AllocTx() == nil {
		t.Fatal("buffers not returned by ReleaseRx")
	}
	if a.Fd() != -1 {
		t.Fatal("fd")
	}
}

func TestHookAndFaultsDeterministic(t *testing.T) {
	run := func() ([]byte, uint64) {
		a, b := New(Options{Seed: 7, DropRate: 0.2, DupRate: 0.2, ReorderRate: 0.2})
		a.Hook = func(n uint64, f []byte) bool { return n == 3 }
		for i := 0; i < 100; i++ {
			send(t, a, byte(i))
			a.Flush()
		}
		return recvAll(b), a.Dropped
	}
	g1, d1 := run()
	g2, d2 := run()
	if !bytes.Equal(g1, g2) || d1 != d2 {
		t.Fatal("not deterministic")
	}
	if bytes.IndexByte(g1, 3) >= 0 {
		t.Fatal("hooked frame 3 delivered")
	}
	if len(g1) == 100 || d1 < 2 {
		t.Fatalf("faults not applied: %d frames, %d dropped", len(g1), d1)
	}
}

func TestAllocFree(t *testing.T) {
	a, b := New(Options{})
	frames := make([][]byte, 8)
	if n := testing.AllocsPerRun(100, func() {
		buf := a.AllocTx()
		a.SubmitTx(buf, 60)
		a.Flush()
		b.Receive(frames)
		b.ReleaseRx()
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func TestClose(t *testing.T) {
	a, b := New(Options{})
	b.Close()
	b.Close()
	send(t, a, 1)
	a.Flush()
	if got := recvAll(b); len(got) != 0 {
		t.Fatal("delivered to a closed end")
	}
	var e *End
	if e.Close() != nil {
		t.Fatal("nil close")
	}
}
