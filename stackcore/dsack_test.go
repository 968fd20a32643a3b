package stackcore

import (
	"crypto/sha256"
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// RFC 2883 4: a segment that duplicates data already received draws an
// ACK whose first SACK block reports it (below the cumulative ACK).
func TestDSACKForDuplicate(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	base := uint32(s.rcvNxt)
	data := pattern(2000, 1)
	seg := func(off int) []byte {
		return raw{sport: 40000, dport: 80, seq: base + uint32(off), ack: uint32(c.rcvNxt), flags: wire.TCPFlagACK,
			wnd: 65535, payload: data[off : off+1000], opts: tsOpt(s.tsRecent+1, 0)}.frame()
	}
	n.b.s.Input(n.now, seg(0))
	n.b.s.Input(n.now, seg(1000))
	n.outFrames(n.b)
	n.b.s.Input(n.now, seg(0)) // a spurious retransmission
	got := n.outFrames(n.b)
	if len(got) != 1 {
		t.Fatalf("%d replies", len(got))
	}
	o := wire.ParseTCPOptions(got[0].Options())
	if got[0].Ack() != base+2000 || o.NSACK != 1 || o.SACK[0] != (wire.SACKBlock{Start: base, End: base + 1000}) {
		t.Fatalf("ack %d, blocks %+v", got[0].Ack()-base, o.SACK[:o.NSACK])
	}
	// Reported once: the next ACK has no D-SACK.
	s.SetQuickAck(true)
	n.b.s.Input(n.now, raw{sport: 40000, dport: 80, seq: base + 2000, ack: uint32(c.rcvNxt), flags: wire.TCPFlagACK,
		wnd: 65535, payload: data[:10], opts: tsOpt(s.tsRecent+1, 0)}.frame())
	if got := n.outFrames(n.b); len(got) != 1 || wire.ParseTCPOptions(got[0].Options()).NSACK != 0 {
		t.Fatal("D-SACK repeated")
	}
}

// reorderWire delivers frames to each host one at a time, one Poll after
// each (as a NIC queue read frame by frame), and holds a frame back with
// probability p until gap later frames have overtaken it, like the interop
// relay's reordering (tests/faults: ReorderGap 3).
type reorderWire struct {
	n    *testNet
	p    float64
	gap  int
	x    uint64
	held map[*host][]heldFrame
}

type heldFrame struct {
	f    []byte
	left int
}

func (w *reorderWire) chance() bool {
	w.x ^= w.x << 13
	w.x ^= w.x >> 7
	w.x ^= w.x << 17
	return float64(w.x>>11)/(1<<53) < w.p
}

func (w *reorderWire) step() bool {
	n := w.n
	moved := false
	for _, h := range []*host{n.a, n.b} {
		in := func(f []byte) {
			h.s.Input(n.now, f)
			h.next = h.s.Poll(n.now, h.end)
			h.end.Flush()
		}
		for {
			if h.end.Receive(h.rx[:1]) == 0 {
				for _, x := range w.held[h] { // nothing else comes
					in(x.f)
				}
				w.held[h] = w.held[h][:0]
				break
			}
			moved = true
			f := append([]byte(nil), h.rx[0]...)
			h.end.ReleaseRx()
			if w.chance() {
				w.held[h] = append(w.held[h], heldFrame{f, w.gap})
				continue
			}
			in(f)
			j := 0
			for _, x := range w.held[h] {
				if x.left--; x.left == 0 {
					in(x.f)
					continue
				}
				w.held[h][j] = x
				j++
			}
			w.held[h] = w.held[h][:j]
		}
		h.next = h.s.Poll(n.now, h.end)
		h.end.Flush()
	}
	return moved
}

// transfer moves data from c to s over the reordering wire.
func (w *reorderWire) transfer(c, s *TCPConn, data []byte) []byte {
	n := w.n
	buf := make([]byte, 64<<10)
	got := make([]byte, 0, len(data))
	off := 0
	for i := 0; len(got) < len(data); i++ {
		if i > 1_000_000 {
			n.t.Fatal("transfer stuck")
		}
		if off < len(data) {
			k, _ := c.Write(data[off:])
			off += k
		}
		k, _ := s.Read(buf)
		got = append(got, buf[:k]...)
		if w.step() || k > 0 {
			continue
		}
		d := min(n.a.next, n.b.next)
		if d == Never {
			n.t.Fatal("no deadline")
		}
		n.now = max(n.now, d)
	}
	return got
}

// RFC 2883 and RFC 3708: a quarter of the segments arrive three places
// late, so each looks lost to DupThresh = 3 and is retransmitted. The
// receiver reports the retransmissions as duplicates (D-SACK); the sender
// then undoes the spurious recovery (cwnd and ssthresh as before it) and
// RACK opens its reordering window (RFC 8985 6.2 steps 3 and 4), so the
// reordering stops costing retransmissions and window.
func TestReorderNoSpuriousRecovery(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		n := newNet(t, pair.Options{}, Config{}, Config{})
		c, s, _ := n.connect(80)
		w := &reorderWire{n: n, p: 0.25, gap: 3, x: seed*0x9E3779B97F4A7C15 + 1, held: map[*host][]heldFrame{}}
		data := pattern(4<<20, seed)
		if got := w.transfer(c, s, data); sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatal("mismatch")
		}
		st := n.a.s.Stats()
		t.Logf("seed %d: %d retransmissions, %d spurious recoveries undone, reordering window steps %d, cwnd %d", seed,
			c.totalRetrans, st.TCPSpuriousRecoveries, c.reoSteps, c.cwnd)
		if c.totalRetrans > 10 || !c.rackReo || c.cwnd < 40*uint32(c.mss) {
			t.Errorf("seed %d: %d retransmissions, reordering seen %v, cwnd %d segments", seed, c.totalRetrans,
				c.rackReo, c.cwnd/uint32(c.mss))
		}
	}
}
