package stackcore

import (
	"bytes"
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// dropSegs drops the data segments with the given indexes (from 0) the first
// time they are sent.
func dropSegs(idx ...int) pair.Hook {
	seen := 0
	return func(_ uint64, f []byte) bool {
		if !hasData(tcpOf(f)) {
			return false
		}
		seen++
		for _, i := range idx {
			if seen-1 == i {
				return true
			}
		}
		return false
	}
}

// RFC 2018 4: the receiver reports its out-of-order data as SACK blocks, the
// block holding the most recently received segment first; with timestamps
// at most 3 blocks fit the 40 bytes of options.
func TestSACKBlocks(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetNoDelay(true)
	mss := uint32(c.mss)
	base := uint32(c.sndNxt)
	var last wire.TCP
	n.b.end.Hook = func(_ uint64, f []byte) bool { last = append(last[:0], tcpOf(f)...); return false }
	n.a.end.Hook = dropSegs(1, 3, 5, 7)
	c.Write(make([]byte, 9*int(mss)))
	n.a.next = n.a.s.Poll(n.now, n.a.end)
	n.a.end.Flush()
	n.deliver(n.b)
	o := wire.ParseTCPOptions(last.Options())
	if last.Ack() != base+mss || o.NSACK != 3 || !o.HasTS {
		t.Fatalf("ack %d, %d blocks %+v", last.Ack()-base, o.NSACK, o)
	}
	// Segments 2, 4, 6, 8 arrived, 8 last: its block comes first.
	if o.SACK[0] != (wire.SACKBlock{Start: base + 8*mss, End: base + 9*mss}) {
		t.Fatalf("first block [%d,%d)", o.SACK[0].Start-base, o.SACK[0].End-base)
	}
	for _, b := range o.SACK[1:o.NSACK] {
		if (b.Start-base)%(2*mss) != 0 || b.End-b.Start != mss {
			t.Fatalf("block [%d,%d)", b.Start-base, b.End-base)
		}
	}
	_ = s
}

// RFC 6675 (SACK loss recovery) against RFC 6582 (NewReno): three segments
// lost from one window. With SACK the sender retransmits all three as soon as
// the duplicate ACKs arrive (NextSeg within the pipe); NewReno repairs one
// hole per partial ACK. Both finish without a timeout.
func TestSACKRecoveryMultipleLosses(t *testing.T) {
	for _, noSACK := range []bool{false, true} {
		cfg := Config{NoSACK: noSACK}
		n := newNet(t, pair.Options{}, cfg, cfg)
		c, s, _ := n.connect(80)
		n.a.end.Hook = dropSegs(1, 4, 7)
		data := pattern(10*c.mss, 9)
		c.Write(data)
		n.a.next = n.a.s.Poll(n.now, n.a.end) // 10 segments (initial window), 3 lost
		n.a.end.Flush()
		n.deliver(n.b) // duplicate ACKs
		n.deliver(n.a) // recovery
		if i := c.TCPInfo(n.now); !noSACK && (i.Sacked != 6 || i.Lost != 3 || i.CAState != CARecovery) {
			// Segments 2, 5, 8 lost: 3, 4, 6, 7, 9, 10 SACKed. All three were
			// sent before SACKed segments, and with DupThresh segments SACKed
			// and no reordering seen the reordering window is zero (RFC 8985
			// 6.2 step 4), so RACK marks 8 lost too, where RFC 6675 IsLost
			// (2*SMSS SACKed above) would not.
			t.Fatalf("tcp_info sacked %d lost %d ca_state %d", i.Sacked, i.Lost, i.CAState)
		}
		first := n.a.s.Stats().TCPRetransSegs
		want := uint64(3)
		if noSACK {
			want = 1
		}
		if first != want {
			t.Fatalf("sack %v: %d retransmissions on the duplicate ACKs, want %d", !noSACK, first, want)
		}
		n.settle()
		got := make([]byte, len(data)+1)
		if k, _ := s.Read(got); k != len(data) || !bytes.Equal(got[:k], data) {
			t.Fatalf("sack %v: read %d", !noSACK, k)
		}
		st := n.a.s.Stats()
		if st.TCPTimeouts != 0 || st.TCPRetransSegs != 3 || st.TCPFastRetrans != 1 || c.recovery {
			t.Fatalf("sack %v: timeouts %d retrans %d fast %d", !noSACK, st.TCPTimeouts, st.TCPRetransSegs, st.TCPFastRetrans)
		}
	}
}

// RFC 3042 (limited transmit): each of the first two duplicate ACKs sends
// one new segment although cwnd is full; the third starts fast retransmit.
func TestLimitedTransmit(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{NoSACK: true})
	c, s, _ := n.connect(80)
	c.Write([]byte("x")) // learn the peer's scaled window first (a window change is no duplicate ACK)
	n.settle()
	s.Read(make([]byte, 1))
	n.a.end.Hook = dropSegs(0)
	c.Write(make([]byte, 20*c.mss))
	n.a.next = n.a.s.Poll(n.now, n.a.end) // 10 segments, the first lost
	n.a.end.Flush()
	n.deliver(n.b) // 9 duplicate ACKs
	k := n.a.end.Receive(n.a.rx)
	if k < 3 {
		t.Fatalf("%d ACKs", k)
	}
	var sent []uint64
	for _, f := range n.a.rx[:3] {
		before := n.a.end.Sent
		n.a.s.Input(n.now, f)
		n.a.s.Poll(n.now, n.a.end)
		n.a.end.Flush()
		sent = append(sent, n.a.end.Sent-before)
	}
	n.a.end.ReleaseRx()
	if sent[0] != 1 || sent[1] != 1 || sent[2] != 1 || n.a.s.Stats().TCPFastRetrans != 1 {
		t.Fatalf("segments sent per duplicate ACK: %v, fast retransmits %d", sent, n.a.s.Stats().TCPFastRetrans)
	}
	if c.sndMax.sub(c.sndUna) != 12*c.mss {
		t.Fatalf("limited transmit: %d bytes in flight", c.sndMax.sub(c.sndUna))
	}
}
