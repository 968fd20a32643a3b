package stackcore

import (
	"testing"

	"ustack/nic/pair"
)

// The established path must not allocate (DESIGN.md: the hot path allocates
// nothing): Write, Poll emitting data, Input of data segments, Read, Poll
// emitting the ACK, Input of the ACK.
func TestEstablishedPathAllocs(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	data := pattern(16<<10, 9)
	buf := make([]byte, 64<<10)
	cycle := func() {
		if k, err := c.Write(data); err != nil || k != len(data) {
			t.Fatalf("write %d %v", k, err)
		}
		n.step() // a emits data
		n.step() // b takes data, emits ACKs; a takes ACKs
		if k, err := s.Read(buf); err != nil || k != len(data) {
			t.Fatalf("read %d %v", k, err)
		}
		n.step()
	}
	for range 50 { // warm up: cwnd growth, slices at their working size
		cycle()
	}
	if a := testing.AllocsPerRun(200, cycle); a != 0 {
		t.Fatalf("established path allocates %v times per cycle", a)
	}
	// The reverse direction and the stack-level calls on their own.
	frames := n.a.rx[:0]
	_ = frames
	if a := testing.AllocsPerRun(200, func() {
		s.Write(data[:100])
		n.step()
		n.step()
		c.Read(buf)
		n.step()
	}); a != 0 {
		t.Fatalf("reverse path allocates %v times", a)
	}
}

// BenchmarkSegment measures the cost of moving one full-size data segment
// through sender and receiver stacks (Write, Poll, Input, Read, ACK), with
// the in-memory wire included.
func BenchmarkSegment(b *testing.B) {
	n := newNet(b, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	data := pattern(64<<10, 9)
	buf := make([]byte, 64<<10)
	segs0 := n.a.s.Stats().TCPSegsOut
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		off := 0
		got := 0
		for got < len(data) {
			if off < len(data) {
				k, _ := c.Write(data[off:])
				off += k
			}
			n.step()
			k, _ := s.Read(buf)
			got += k
		}
	}
	b.StopTimer()
	segs := n.a.s.Stats().TCPSegsOut - segs0
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(segs), "ns/segment")
}

// BenchmarkInputData measures Input of one in-order data segment alone.
func BenchmarkInputData(b *testing.B) {
	n := newNet(b, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.Write(make([]byte, 1460))
	n.a.s.Poll(n.now, n.a.end)
	n.a.end.Flush()
	k := n.b.end.Receive(n.b.rx)
	if k != 1 {
		b.Fatal("no frame")
	}
	frame := append([]byte(nil), n.b.rx[0]...)
	n.b.end.ReleaseRx()
	tcp := tcpOf(frame)
	buf := make([]byte, 2048)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		// Rewind the receiver so the same segment is in order again.
		s.rcvNxt = seq(tcp.Seq())
		s.rcvAdv = s.rcvNxt.add(s.rcvBuf.Free())
		n.b.s.Input(n.now, frame)
		s.Read(buf)
		s.ackNow = false
	}
}
