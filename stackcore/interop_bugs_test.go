package stackcore

import (
	"crypto/sha256"
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// lossHook drops frames with probability p from its own seeded generator and
// counts the dropped frames that carried data.
func lossHook(seed uint64, p float64, dataDrops *int) pair.Hook {
	x := seed*0x9E3779B97F4A7C15 + 1
	return func(_ uint64, f []byte) bool {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		if float64(x>>11)/(1<<53) >= p {
			return false
		}
		if hasData(tcpOf(f)) {
			*dataDrops++
		}
		return true
	}
}

// RFC 2018 4 and RFC 9293 3.10.7.4 (bounded memory for out-of-order data):
// under 20 % loss in both directions the receiver keeps every out-of-order
// segment that fits its buffer (many holes at once, up to maxOOO ranges) and
// reports them as SACK blocks, so the sender retransmits little more than
// was lost.
func TestOOOManyHolesUnderLoss(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		n := newNet(t, pair.Options{}, Config{}, Config{})
		c, s, _ := n.connect(80)
		drops := 0
		ackDrops := 0
		n.a.end.Hook = lossHook(seed, 0.2, &drops)
		n.b.end.Hook = lossHook(seed+100, 0.2, &ackDrops)
		data := pattern(1<<20, seed)
		got := n.transfer(c, s, data, true, 24*3600*Second)
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatal("mismatch")
		}
		sb := n.b.s.Stats()
		t.Logf("seed %d: data frames dropped %d, retransmitted %d (timeouts %d); receiver ooo queued %d dropped %d",
			seed, drops, c.totalRetrans, c.totalRTO, sb.TCPOOOQueued, sb.TCPOOODropped)
		if sb.TCPOOODropped > sb.TCPOOOQueued/50 {
			t.Errorf("seed %d: receiver dropped %d of %d out-of-order segments", seed, sb.TCPOOODropped, sb.TCPOOOQueued)
		}
		if int(c.totalRetrans) > 2*drops {
			t.Errorf("seed %d: %d retransmissions for %d lost data segments", seed, c.totalRetrans, drops)
		}
	}
}

// RFC 2018 4, RFC 5681 4.2: twenty out-of-order segments, each leaving a
// hole before it, are all kept (more ranges than the old limit of 4) and
// each draws an immediate duplicate ACK whose first SACK block covers that
// segment and whose next blocks repeat the most recently reported ranges;
// each retransmission that fills a hole is ACKed at once, cumulatively.
func TestOOOManyRangesSACK(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	const L, K = 1000, 40
	base := uint32(s.rcvNxt)
	ack := uint32(c.rcvNxt)
	data := pattern(L*K, 5)
	tsv := uint32(1000)
	seg := func(k int) []byte {
		tsv++
		return raw{sport: 40000, dport: 80, seq: base + uint32(k*L), ack: ack, flags: wire.TCPFlagACK,
			wnd: 65535, payload: data[k*L : (k+1)*L], opts: tsOpt(tsv, 0)}.frame()
	}
	one := func(k int) (wire.TCP, wire.TCPOptions) {
		t.Helper()
		n.b.s.Input(n.now, seg(k))
		got := n.outFrames(n.b)
		if len(got) != 1 {
			t.Fatalf("segment %d: %d segments in reply, want one immediate ACK", k, len(got))
		}
		return got[0], wire.ParseTCPOptions(got[0].Options())
	}
	blk := func(k int) wire.SACKBlock {
		return wire.SACKBlock{Start: base + uint32(k*L), End: base + uint32((k+1)*L)}
	}
	for k := 1; k < K; k += 2 {
		a, o := one(k)
		if a.Ack() != base {
			t.Fatalf("segment %d: ack %d", k, a.Ack()-base)
		}
		want := []wire.SACKBlock{blk(k)}
		if k >= 3 {
			want = append(want, blk(k-2))
		}
		if k >= 5 {
			want = append(want, blk(k-4))
		}
		if o.NSACK != len(want) {
			t.Fatalf("segment %d: %d SACK blocks, want %d", k, o.NSACK, len(want))
		}
		for i := range want {
			if o.SACK[i] != want[i] {
				t.Fatalf("segment %d: block %d is [%d,%d), want [%d,%d)", k, i,
					o.SACK[i].Start-base, o.SACK[i].End-base, want[i].Start-base, want[i].End-base)
			}
		}
	}
	if st := n.b.s.Stats(); st.TCPOOODropped != 0 || st.TCPOOOQueued != K/2 {
		t.Fatalf("ooo queued %d dropped %d, want %d and 0", st.TCPOOOQueued, st.TCPOOODropped, K/2)
	}
	for k := 0; k < K; k += 2 {
		a, _ := one(k)
		if a.Ack() != base+uint32((k+2)*L) {
			t.Fatalf("hole %d filled: ack %d, want %d", k, a.Ack()-base, (k+2)*L)
		}
	}
	got := make([]byte, K*L)
	if m, _ := s.Read(got); m != K*L || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read %d bytes, content mismatch", m)
	}
}

// RFC 7323 4.3 rule (1) and case C: a retransmission of data we already
// hold (its first ACK was lost) draws an immediate ACK that echoes the
// retransmission's TSval, not the timestamp of the segment that last
// advanced RCV.NXT seconds earlier: echoing that one would hand the sender
// an RTT sample as long as its retransmission timeout (with Karn's rule the
// sender times the retransmitted data by TSecr alone), and under loss the
// sender's RTT and RTO estimates grow without bound. A duplicate older
// than a window does not move TS.Recent, and PAWS still drops an older TSval.
func TestTSEchoForRetransmittedDuplicate(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	const L = 1000
	base := uint32(s.rcvNxt)
	ack := uint32(c.rcvNxt)
	data := pattern(4*L, 3)
	seg := func(k int, tsv uint32) []byte {
		return raw{sport: 40000, dport: 80, seq: base + uint32(k*L), ack: ack, flags: wire.TCPFlagACK,
			wnd: 65535, payload: data[k*L : (k+1)*L], opts: tsOpt(tsv, 0)}.frame()
	}
	s.SetQuickAck(true)
	tsv := s.tsRecent + 100
	for k := range 4 {
		n.b.s.Input(n.now, seg(k, tsv+uint32(k)))
		n.outFrames(n.b) // the ACKs are lost
	}
	if s.tsRecent != tsv+3 {
		t.Fatalf("TS.Recent %d, want %d", s.tsRecent, tsv+3)
	}
	// The sender's RTO fires 3s later: it resends segment 0.
	n.now += 3 * Second
	n.b.s.Input(n.now, seg(0, tsv+3000))
	got := n.outFrames(n.b)
	if len(got) != 1 || got[0].Ack() != base+4*L {
		t.Fatalf("%d replies to the duplicate", len(got))
	}
	if o := wire.ParseTCPOptions(got[0].Options()); o.TSEcr != tsv+3000 {
		t.Fatalf("ACK of the retransmitted duplicate echoes %d (%dms old), want its TSval %d",
			o.TSEcr, tsv+3000-o.TSEcr, tsv+3000)
	}
	// A duplicate from more than a window back leaves TS.Recent alone.
	far := raw{sport: 40000, dport: 80, seq: base - uint32(s.rcvBuf.Cap()) - 10*L, ack: ack, flags: wire.TCPFlagACK,
		wnd: 65535, payload: data[:L], opts: tsOpt(tsv+5000, 0)}.frame()
	n.b.s.Input(n.now, far)
	n.outFrames(n.b)
	if s.tsRecent != tsv+3000 {
		t.Fatalf("TS.Recent %d moved by an ancient duplicate", s.tsRecent)
	}
	// PAWS (RFC 7323 5.3 R1) still drops a segment older than TS.Recent.
	drops := n.b.s.Stats().TCPPAWSDrops
	n.b.s.Input(n.now, raw{sport: 40000, dport: 80, seq: base + 4*L, ack: ack, flags: wire.TCPFlagACK,
		wnd: 65535, payload: data[:L], opts: tsOpt(tsv+2000, 0)}.frame())
	n.outFrames(n.b)
	if n.b.s.Stats().TCPPAWSDrops != drops+1 || s.InQueue() != 4*L {
		t.Fatalf("PAWS: drops %d, inq %d", n.b.s.Stats().TCPPAWSDrops-drops, s.InQueue())
	}
}

// RFC 9293 3.10.4: the FIN follows all queued data. The sender closes (Close,
// not just CloseWrite) right after its last write, with a full send buffer,
// over a wire that reorders a quarter of the frames and drops and
// duplicates some, so retransmission timeouts, SACK recovery and tail loss
// probes all rewind or resend around the FIN: every segment carrying FIN
// must end exactly at the end of the data, and the receiver must see all of
// it before EOF.
func TestFINAfterAllQueuedData(t *testing.T) {
	for seed := uint64(1); seed <= 24; seed++ {
		opts := pair.Options{Seed: seed, ReorderRate: 0.25, DropRate: 0.02 * float64(seed%4), DupRate: 0.01}
		n := newNet(t, opts, Config{Seed: seed, SendBuf: 64 << 10}, Config{Seed: seed + 9, RecvBuf: 32 << 10 * int(1+seed%3)})
		c, s, _ := n.connect(80)
		data := pattern(1<<20, seed)
		end := uint32(c.sndNxt) + uint32(len(data))
		fins := 0
		n.a.end.Hook = func(_ uint64, f []byte) bool {
			tc := tcpOf(f)
			if tc.Flags()&wire.TCPFlagFIN != 0 {
				fins++
				if e := tc.Seq() + uint32(len(tc.Payload())); e != end {
					t.Errorf("seed %d: FIN at %d, the data ends at %d", seed, e-uint32(c.iss), end-uint32(c.iss))
				}
			}
			return false
		}
		got := make([]byte, 0, len(data))
		buf := make([]byte, 64<<10)
		off, closed, eof := 0, false, false
		ok := n.runUntil(3600*Second, func() bool {
			for off < len(data) {
				k, err := c.Write(data[off:])
				if err != nil {
					break
				}
				off += k
			}
			if off == len(data) && !closed {
				c.Close()
				closed = true
			}
			for {
				k, err := s.Read(buf)
				if err != nil {
					eof = err.Error() == "EOF"
					break
				}
				got = append(got, buf[:k]...)
			}
			return eof
		})
		if !ok || fins == 0 || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("seed %d: eof %v, %d FINs, %d of %d bytes", seed, ok, fins, len(got), len(data))
		}
	}
}

// RFC 5681 4.2 and RFC 2018 4: out-of-order segments that arrive in one
// batch (one Poll) into different holes each get their own immediate ACK,
// and each ACK's first SACK block is that segment's range, as if it had
// been sent on arrival, so every range the batch touched is reported even
// when there are more of them than blocks in one ACK.
func TestOOOBatchEachSegmentReported(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	const L = 1000
	base := uint32(s.rcvNxt)
	data := pattern(12*L, 7)
	for k := 1; k < 12; k += 2 { // six holes, six ranges, in one batch
		n.b.s.Input(n.now, raw{sport: 40000, dport: 80, seq: base + uint32(k*L), ack: uint32(c.rcvNxt),
			flags: wire.TCPFlagACK, wnd: 65535, payload: data[k*L : (k+1)*L], opts: tsOpt(s.tsRecent+1, 0)}.frame())
	}
	got := n.outFrames(n.b)
	if len(got) != 6 {
		t.Fatalf("%d ACKs for 6 out-of-order segments", len(got))
	}
	for i, a := range got {
		k := 2*i + 1
		o := wire.ParseTCPOptions(a.Options())
		if a.Ack() != base || o.NSACK != 3 || o.SACK[0] != (wire.SACKBlock{Start: base + uint32(k*L), End: base + uint32((k+1)*L)}) {
			t.Fatalf("ACK %d: ack %d, first block [%d,%d), want [%d,%d)", i, a.Ack()-base, o.SACK[0].Start-base,
				o.SACK[0].End-base, k*L, (k+1)*L)
		}
	}
}

// RFC 7323 4.1 and RFC 2883: our segment arrives but its ACK is lost; the
// retransmission timeout resends it; the receiver (Linux, as RFC 7323 4.3
// has it) ACKs the duplicate with a D-SACK and the TSecr of the earlier
// copy. That ACK advances SND.UNA over retransmitted data, where Karn's
// rule leaves only the timestamp to time it, but its TSecr measures our
// own timeout, not the path: it must not reach SRTT.
func TestNoRTTSampleFromDSACKedDuplicate(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetNoDelay(true)
	c.Write(make([]byte, 1000))
	first := n.outFrames(n.a) // delivered ... but its ACK is lost
	if len(first) != 1 {
		t.Fatalf("%d segments", len(first))
	}
	tsv := wire.ParseTCPOptions(first[0].Options()).TSVal
	srtt, rto := c.srtt, c.rto
	n.now = c.rtoAt
	if again := n.outFrames(n.a); len(again) != 1 || c.totalRTO != 1 {
		t.Fatalf("no retransmission: %d segments, %d timeouts", len(again), c.totalRTO)
	}
	una := uint32(c.sndUna)
	buf := make([]byte, 128)
	opts := make([]byte, 24)
	k := wire.PutTimestamp(opts, s.tsNow(n.now), tsv)
	k += wire.PutSACK(opts[k:], []wire.SACKBlock{{Start: una, End: una + 1000}})
	f := n.b.s.encodeTCPRaw(buf, &ipHdr{mac: macA, src: mapB, dst: mapA}, 80, 40000, s.sndNxt, seq(una+1000), wire.TCPFlagACK, 65535, nil, 0, 0,
		opts[:k])
	n.a.s.Input(n.now, buf[:f])
	if c.sndUna != seq(una+1000) {
		t.Fatal("ACK not taken")
	}
	if c.srtt != srtt || c.rto > rto {
		t.Fatalf("SRTT %dus -> %dus, RTO %dms -> %dms from a D-SACK ACK echoing the first copy", srtt, c.srtt,
			rto/Millisecond, c.rto/Millisecond)
	}
}
