package stackcore

import (
	"testing"
	"ustack/stackcore/wire"

	"ustack/nic/pair"
)

var (
	macA  = MAC{0x02, 0, 0, 0, 0, 0x0a}
	macB  = MAC{0x02, 0, 0, 0, 0, 0x0b}
	addrA = IPv4{10, 0, 0, 1}
	addrB = IPv4{10, 0, 0, 2}
	mapA  = AddrFrom4(addrA)
	mapB  = AddrFrom4(addrB)
)

// host is one stack on one end of an in-memory wire.
type host struct {
	s    *Stack
	end  *pair.End
	rx   [][]byte
	next Time
}

// net is two stacks joined by nic/pair with a fake clock.
type testNet struct {
	t    testing.TB
	now  Time
	a, b *host
}

func newNet(t testing.TB, opts pair.Options, cfgA, cfgB Config) *testNet {
	ea, eb := pair.New(opts)
	cfgA.MAC, cfgA.Addr = macA, addrA
	cfgB.MAC, cfgB.Addr = macB, addrB
	cfgA.VerifyChecksums, cfgB.VerifyChecksums = true, true
	if cfgA.Seed == 0 {
		cfgA.Seed = 1
	}
	if cfgB.Seed == 0 {
		cfgB.Seed = 2
	}
	return &testNet{
		t:   t,
		now: 1000 * Second,
		a:   &host{s: New(cfgA), end: ea, rx: make([][]byte, 64), next: Never},
		b:   &host{s: New(cfgB), end: eb, rx: make([][]byte, 64), next: Never},
	}
}

// step delivers pending frames to both hosts and polls both; it reports
// whether any frame moved.
func (n *testNet) step() bool {
	moved := false
	for _, h := range []*host{n.a, n.b} {
		for {
			k := h.end.Receive(h.rx)
			if k == 0 {
				break
			}
			moved = true
			for _, f := range h.rx[:k] {
				h.s.Input(n.now, f)
			}
			h.end.ReleaseRx()
		}
		h.next = h.s.Poll(n.now, h.end)
		if err := h.end.Flush(); err != nil {
			n.t.Fatalf("flush: %v", err)
		}
	}
	return moved || n.a.end.Pending() > 0 || n.b.end.Pending() > 0
}

// settle runs steps until no frame moves (without advancing the clock).
func (n *testNet) settle() {
	for i := 0; n.step(); i++ {
		if i > 1_000_000 {
			n.t.Fatal("network did not settle")
		}
	}
}

// advance moves the clock to the earliest deadline (at most to limit) and settles.
func (n *testNet) advance(limit Time) bool {
	d := min(n.a.next, n.b.next)
	if d == Never || d > limit {
		n.now = limit
		n.settle()
		return false
	}
	if d > n.now {
		n.now = d
	}
	n.settle()
	return true
}

// runUntil settles and advances time until cond holds or dur has passed.
func (n *testNet) runUntil(dur Time, cond func() bool) bool {
	end := n.now + dur
	n.settle()
	for i := 0; ; i++ {
		if cond() {
			return true
		}
		if n.step() {
			continue
		}
		// Idle at this time: cond may act (write, read) once more before
		// time moves. cond may step the wire itself: if that moved frames
		// (the ACK that empties the send buffer), it gets another turn.
		sent := n.a.end.Sent + n.b.end.Sent
		if cond() {
			return true
		}
		if n.step() || n.a.end.Sent+n.b.end.Sent != sent {
			continue
		}
		if n.now >= end {
			return false
		}
		n.advance(end)
		if i > 10_000_000 {
			n.t.Fatal("runUntil: no progress")
		}
	}
}

// connect opens a listener on b and connects a to it, returning both ends.
func (n *testNet) connect(port uint16) (client, server *TCPConn, l *Listener) {
	n.t.Helper()
	l, err := n.b.s.Listen(port, 8)
	if err != nil {
		n.t.Fatal(err)
	}
	c, err := n.a.s.Connect(n.now, 40000, mapB, port, macB)
	if err != nil {
		n.t.Fatal(err)
	}
	if !n.runUntil(10*Second, func() bool { return l.Readable() && c.State() == StateEstablished }) {
		n.t.Fatalf("handshake did not complete: client %v", c.State())
	}
	srv := l.Accept()
	if srv == nil || srv.State() != StateEstablished {
		n.t.Fatal("accept failed")
	}
	return c, srv, l
}

// pattern returns n deterministic pseudo-random bytes.
func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// transfer writes data on w, closes it for writing if fin, and reads on r
// until all data arrived (and EOF if fin), advancing time as needed.
func (n *testNet) transfer(w, r *TCPConn, data []byte, fin bool, dur Time) []byte {
	n.t.Helper()
	got := make([]byte, 0, len(data))
	buf := make([]byte, 64<<10)
	off := 0
	eof := false
	finSent := false
	ok := n.runUntil(dur, func() bool {
		for off < len(data) {
			k, err := w.Write(data[off:])
			if err == ErrWouldBlock {
				break
			}
			if err != nil {
				n.t.Fatalf("write: %v", err)
			}
			off += k
		}
		if fin && off == len(data) && !finSent {
			w.CloseWrite()
			finSent = true
		}
		for {
			k, err := r.Read(buf)
			if err == ErrWouldBlock {
				break
			}
			if err != nil {
				if err.Error() == "EOF" {
					eof = true
					break
				}
				n.t.Fatalf("read: %v", err)
			}
			got = append(got, buf[:k]...)
		}
		n.step()
		return len(got) == len(data) && (!fin || eof)
	})
	if !ok {
		n.t.Fatalf("transfer incomplete: %d of %d bytes, eof %v; w %v r %v", len(got), len(data), eof, w.State(), r.State())
	}
	return got
}

// tcpOf returns the TCP header of an Ethernet/IPv4/TCP frame built by us.
func tcpOf(f []byte) wire.TCP {
	ip := wire.IPv4(f[wire.EthHeaderLen:])
	return wire.TCP(ip.Payload())
}

// dropNth returns a hook dropping the k-th (from 0) frame that matches pred.
func dropNth(k int, pred func(tcp wire.TCP) bool) (pair.Hook, *int) {
	seen, dropped := 0, new(int)
	return func(_ uint64, f []byte) bool {
		if !pred(tcpOf(f)) {
			return false
		}
		seen++
		if seen-1 == k {
			*dropped++
			return true
		}
		return false
	}, dropped
}

func hasData(tcp wire.TCP) bool { return len(tcp.Payload()) > 0 }

// raw builds a frame from macA/addrA to macB/addrB (template segment).
type raw struct {
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	wnd          uint16
	payload      []byte
	mss          uint16 // SYN options if non-zero
	ws           int    // window scale option if >= 0 (with mss)
	opts         []byte // raw options (instead of mss/ws)
}

func (r raw) frame() []byte {
	s := &Stack{cfg: Config{MAC: macA, Addr: addrA}, stats: new(Stats)}
	rg := newRing(len(r.payload) + 1)
	rg.Write(r.payload)
	buf := make([]byte, 2048)
	h := ipHdr{mac: macB, src: mapA, dst: mapB}
	opts := r.opts
	if opts == nil && r.mss != 0 {
		var o [8]byte
		opts = o[:wire.PutSynOptions(o[:], r.mss, r.ws)]
	}
	n := s.encodeTCPRaw(buf, &h, r.sport, r.dport, seq(r.seq), seq(r.ack), r.flags, r.wnd, &rg, 0, len(r.payload), opts)
	return buf[:n]
}

// outFrames polls h and returns the TCP headers it emits (consumed from the wire).
func (n *testNet) outFrames(h *host) []wire.TCP {
	h.next = h.s.Poll(n.now, h.end)
	h.end.Flush()
	peer := n.a
	if h == n.a {
		peer = n.b
	}
	var got []wire.TCP
	for {
		k := peer.end.Receive(peer.rx)
		if k == 0 {
			break
		}
		for _, f := range peer.rx[:k] {
			got = append(got, append(wire.TCP(nil), tcpOf(f)...))
		}
		peer.end.ReleaseRx()
	}
	return got
}

// deliver hands the frames waiting for h to its stack, then polls it.
func (n *testNet) deliver(h *host) {
	for {
		k := h.end.Receive(h.rx)
		if k == 0 {
			break
		}
		for _, f := range h.rx[:k] {
			h.s.Input(n.now, f)
		}
		h.end.ReleaseRx()
	}
	h.next = h.s.Poll(n.now, h.end)
	h.end.Flush()
}

// tsOpt returns a NOP, NOP, timestamps option.
func tsOpt(val, ecr uint32) []byte {
	b := make([]byte, 12)
	wire.PutTimestamp(b, val, ecr)
	return b
}
