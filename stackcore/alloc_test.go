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

// The same over IPv6 (RFC 8200), and the IPv6 input path of a datagram behind
// extension headers and of one reassembled from fragments: nothing allocates.
func TestEstablishedPathAllocsIPv6(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connectTo(80, ulaB)
	data := pattern(16<<10, 9)
	buf := make([]byte, 64<<10)
	cycle := func() {
		if k, err := c.Write(data); err != nil || k != len(data) {
			t.Fatalf("write %d %v", k, err)
		}
		n.step()
		n.step()
		if k, err := s.Read(buf); err != nil || k != len(data) {
			t.Fatalf("read %d %v", k, err)
		}
		n.step()
	}
	for range 50 {
		cycle()
	}
	if a := testing.AllocsPerRun(200, cycle); a != 0 {
		t.Fatalf("IPv6 established path allocates %v times per cycle", a)
	}
	u := mustBind(t, n.b.s, 5353)
	whole := udp6Frame(ulaA, ulaB, 5000, 5353, pattern(3000, 1))
	ext := withExt(udp6Frame(ulaA, ulaB, 5000, 5353, []byte("x")), optsHdr(0, 1, 0), routingHdr(0), optsHdr(60))
	frags := frag6(whole, 1, 1232, 2464)
	// Packet too big quoting a datagram of B's (no socket is connected: it goes nowhere).
	ptb := icmp6Error(udp6Frame(ulaB, ulaA, 5353, 5000, pattern(200, 2)), addr6("fd00::1"), macA, macB, 2, 0, 1400)
	if a := testing.AllocsPerRun(200, func() {
		n.b.s.Input(n.now, ext)
		for _, f := range frags {
			n.b.s.Input(n.now, f)
		}
		n.b.s.Input(n.now, ptb)
		for u.Readable() {
			u.RecvFrom(buf, false)
		}
	}); a != 0 {
		t.Fatalf("IPv6 input allocates %v times", a)
	}
	if st := n.b.s.Stats(); st.IP6ReasmOKs < 200 || st.UDPInDatagrams < 400 || st.ICMP6InMsgs < 200 {
		t.Fatalf("not exercised: reasm oks %d, datagrams %d, icmp6 %d", st.IP6ReasmOKs, st.UDPInDatagrams, st.ICMP6InMsgs)
	}
}
