package stackcore

import (
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// RFC 7323 3.2 and RFC 2018 2: SYNs offer timestamps and SACK-permitted (in
// Linux's option layout), the SYN-ACK echoes the SYN's TSval, every later
// segment carries timestamps; a side configured without them negotiates
// neither, and the MSS keeps its 12 bytes.
func TestTimestampsNegotiation(t *testing.T) {
	var frames []wire.TCP
	capture := func(_ uint64, f []byte) bool {
		frames = append(frames, append(wire.TCP(nil), tcpOf(f)...))
		return false
	}
	n := newNet(t, pair.Options{}, Config{}, Config{})
	n.a.end.Hook, n.b.end.Hook = capture, capture
	c, s, _ := n.connect(80)
	c.Write([]byte("x"))
	n.settle()
	syn := wire.ParseTCPOptions(frames[0].Options())
	synack := wire.ParseTCPOptions(frames[1].Options())
	if len(frames[0].Options()) != 20 || !syn.HasTS || !syn.SACKPerm || syn.TSEcr != 0 || syn.MSS != 1460 || !syn.HasWScale {
		t.Fatalf("SYN options %+v (%d bytes)", syn, len(frames[0].Options()))
	}
	if !synack.HasTS || !synack.SACKPerm || synack.TSEcr != syn.TSVal {
		t.Fatalf("SYN-ACK options %+v", synack)
	}
	for i, f := range frames[2:] {
		if o := wire.ParseTCPOptions(f.Options()); !o.HasTS || len(f.Options()) != 12 {
			t.Fatalf("segment %d without timestamps: %+v", i+2, o)
		}
	}
	_ = s
	n = newNet(t, pair.Options{}, Config{}, Config{NoTimestamps: true, NoSACK: true})
	c, s, _ = n.connect(80)
	if c.tsOK || s.tsOK || c.sackOK || s.sackOK || c.mss != 1460 {
		t.Fatalf("ts %v %v sack %v %v mss %d", c.tsOK, s.tsOK, c.sackOK, s.sackOK, c.mss)
	}
}

// RFC 7323 5.3 (PAWS, R1): an in-window segment whose TSval is older than
// TS.Recent is dropped and ACKed; the same segment with a current TSval is
// accepted, and TS.Recent follows it (R3, 4.3).
func TestPAWS(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	_, s, _ := n.connect(80)
	old := s.tsRecent - 1
	seg := raw{sport: 40000, dport: 80, seq: uint32(s.rcvNxt), ack: uint32(s.sndNxt), flags: wire.TCPFlagACK,
		wnd: 1000, payload: []byte("stale"), opts: tsOpt(old, s.tsNow(n.now))}
	n.b.s.Input(n.now, seg.frame())
	out := n.outFrames(n.b)
	if s.InQueue() != 0 || n.b.s.Stats().TCPPAWSDrops != 1 || len(out) != 1 || len(out[0].Payload()) != 0 {
		t.Fatalf("old timestamp: inq %d, paws %d, replies %d", s.InQueue(), n.b.s.Stats().TCPPAWSDrops, len(out))
	}
	if o := wire.ParseTCPOptions(out[0].Options()); o.TSEcr != old+1 {
		t.Fatalf("ACK echoes %d, want TS.Recent %d", o.TSEcr, old+1)
	}
	seg.opts = tsOpt(old+5, s.tsNow(n.now))
	n.b.s.Input(n.now, seg.frame())
	if s.InQueue() != 5 || s.tsRecent != old+5 {
		t.Fatalf("current timestamp: inq %d, TS.Recent %d", s.InQueue(), s.tsRecent)
	}
	// RFC 7323 5.5: after 24 days idle TS.Recent is no longer trusted.
	n.now += pawsIdle + Second
	seg.seq += 5
	seg.opts = tsOpt(old, s.tsNow(n.now))
	n.b.s.Input(n.now, seg.frame())
	if s.InQueue() != 10 {
		t.Fatalf("after 24 days idle: inq %d", s.InQueue())
	}
}

// RFC 7323 4.1 (RTTM): the echoed timestamp gives an RTT sample for an ACK
// of a retransmitted segment, which Karn's rule (RFC 6298 3) leaves untimed
// without timestamps.
func TestTimestampRTTAfterRetransmit(t *testing.T) {
	for _, noTS := range []bool{false, true} {
		cfg := Config{NoTimestamps: noTS}
		n := newNet(t, pair.Options{}, cfg, cfg)
		c, s, _ := n.connect(80)
		hook, dropped := dropNth(0, hasData)
		n.a.end.Hook = hook
		c.Write([]byte("lost once"))
		n.settle()
		if *dropped != 1 || c.srtt != 0 {
			t.Fatalf("setup: dropped %d srtt %d", *dropped, c.srtt)
		}
		n.now += rtoMin
		n.deliver(n.a) // RTO: retransmission
		n.now += 30 * Millisecond
		n.deliver(n.b) // data in, ACK out
		n.now += 30 * Millisecond
		n.deliver(n.a) // ACK in
		if s.InQueue() != 9 || c.sndUna != c.sndMax {
			t.Fatal("retransmission not delivered")
		}
		want := Time(0)
		if !noTS {
			want = 60 * Millisecond / 8 // first sample after a 0 RTT: SRTT = 7/8*0 + 1/8*R
		}
		if c.srtt != want {
			t.Fatalf("timestamps %v: srtt %dus, want %dus", !noTS, c.srtt, want)
		}
	}
}

// RFC 7323 2.3: a window scale shift above 14 is used as 14.
func TestWindowScaleClamp(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	l, _ := n.b.s.Listen(80, 4)
	n.b.s.Input(n.now, raw{sport: 5000, dport: 80, seq: 100, flags: wire.TCPFlagSYN, wnd: 8192, mss: 1460, ws: 15}.frame())
	out := n.outFrames(n.b)
	if len(out) != 1 {
		t.Fatal("no SYN-ACK")
	}
	n.b.s.Input(n.now, raw{sport: 5000, dport: 80, seq: 101, ack: out[0].Seq() + 1, flags: wire.TCPFlagACK, wnd: 1}.frame())
	c := l.Accept()
	if c == nil || c.sndSh != 14 || c.sndWnd != 1<<14 {
		t.Fatalf("shift %d wnd %d", c.sndSh, c.sndWnd)
	}
}
