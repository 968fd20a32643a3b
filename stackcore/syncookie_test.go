package stackcore

import (
	"bytes"
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// fillSynQueue puts k half-open connections (SYNs that are never completed)
// on b's listener, consuming b's SYN-ACKs.
func fillSynQueue(n *testNet, k int) {
	for i := range k {
		n.b.s.Input(n.now, raw{sport: uint16(1000 + i), dport: 80, seq: 5000, flags: wire.TCPFlagSYN, wnd: 8192, mss: 1460, ws: -1}.frame())
	}
	n.outFrames(n.b)
}

// RFC 4987 3.6 (SYN cookies): with the SYN queue full, a SYN is answered
// statelessly with a cookie ISN, and the ACK that returns it creates the
// connection, which is accepted and carries data both ways.
func TestSynCookieHandshake(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	l, err := n.b.s.Listen(80, 2)
	if err != nil {
		t.Fatal(err)
	}
	fillSynQueue(n, 2)
	before := len(n.b.s.conns)
	c, err := n.a.s.Connect(n.now, 0, mapB, 80, macB)
	if err != nil {
		t.Fatal(err)
	}
	n.step() // SYN out of a, b answers
	st := n.b.s.Stats()
	if st.TCPSynCookiesSent != 1 || len(n.b.s.conns) != before {
		t.Fatalf("cookies sent %d, conns %d -> %d (no state may be kept)", st.TCPSynCookiesSent, before, len(n.b.s.conns))
	}
	if !n.runUntil(Second/2, func() bool { return l.Readable() && c.State() == StateEstablished }) {
		t.Fatalf("cookie handshake did not complete: %v", c.State())
	}
	if st.TCPSynCookiesRecv != 1 || st.TCPSynCookiesFailed != 0 {
		t.Fatalf("recv %d failed %d", st.TCPSynCookiesRecv, st.TCPSynCookiesFailed)
	}
	srv := l.Accept()
	if srv == nil || srv.State() != StateEstablished {
		t.Fatal("not accepted")
	}
	// The SYN had timestamps: window scale and SACK came back in TSecr's low bits.
	if !srv.tsOK || !srv.sackOK || !srv.wsOK || srv.sndSh != c.rcvSh || srv.rcvSh != c.sndSh || srv.mss != 1460-12 {
		t.Fatalf("cookie connection options: ts %v sack %v ws %v (%d/%d vs %d/%d) mss %d",
			srv.tsOK, srv.sackOK, srv.wsOK, srv.sndSh, srv.rcvSh, c.rcvSh, c.sndSh, srv.mss)
	}
	data := pattern(300<<10, 9)
	if got := n.transfer(c, srv, data, false, 30*Second); !bytes.Equal(got, data) {
		t.Fatalf("a->b: %d of %d", len(got), len(data))
	}
	if got := n.transfer(srv, c, data[:100<<10], false, 30*Second); !bytes.Equal(got, data[:100<<10]) {
		t.Fatalf("b->a: %d", len(got))
	}
}

// The cookie encodes the MSS (Linux msstab), the ACK may carry data, and a
// forged or stale cookie is rejected with a reset and counted.
func TestSynCookieValidation(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	l, _ := n.b.s.Listen(80, 1)
	fillSynQueue(n, 1)
	synAck := func(sport uint16, mss uint16) uint32 {
		n.b.s.Input(n.now, raw{sport: sport, dport: 80, seq: 7000, flags: wire.TCPFlagSYN, wnd: 8192, mss: mss, ws: 7}.frame())
		for _, tcp := range n.outFrames(n.b) {
			if tcp.DstPort() == sport && tcp.Flags() == wire.TCPFlagSYN|wire.TCPFlagACK && tcp.Ack() == 7001 {
				o := wire.ParseTCPOptions(tcp.Options())
				if o.HasWScale || o.SACKPerm || o.HasTS {
					t.Fatalf("cookie SYN-ACK options %+v", o)
				}
				return tcp.Seq()
			}
		}
		t.Fatal("no cookie SYN-ACK")
		return 0
	}
	st := n.b.s.Stats()
	// Forged: wrong acknowledgment number.
	ck := synAck(3000, 1400)
	n.b.s.Input(n.now, raw{sport: 3000, dport: 80, seq: 7001, ack: ck + 1 + 0x5a5a, flags: wire.TCPFlagACK, wnd: 100}.frame())
	if out := n.outFrames(n.b); st.TCPSynCookiesFailed != 1 || len(out) != 1 || out[0].Flags()&wire.TCPFlagRST == 0 {
		t.Fatalf("forged cookie: failed %d, out %d", st.TCPSynCookiesFailed, len(out))
	}
	// Stale: older than two ticks.
	ck = synAck(3001, 1400)
	n.now += 3 * cookieTick
	synAck(3005, 1400) // a recent overflow: ACKs are checked as cookies
	n.b.s.Input(n.now, raw{sport: 3001, dport: 80, seq: 7001, ack: ck + 1, flags: wire.TCPFlagACK, wnd: 100}.frame())
	if st.TCPSynCookiesRecv != 0 || st.TCPSynCookiesFailed != 2 || l.Readable() {
		t.Fatal("stale cookie accepted")
	}
	// Valid, with data: MSS 1400 is encoded as 1300.
	ck = synAck(3002, 1400)
	n.now += cookieTick / 2
	n.b.s.Input(n.now, raw{sport: 3002, dport: 80, seq: 7001, ack: ck + 1, flags: wire.TCPFlagACK | wire.TCPFlagPSH, wnd: 100, payload: []byte("hi")}.frame())
	c := l.Accept()
	if st.TCPSynCookiesRecv != 1 || c == nil || c.mss != 1300 || c.State() != StateEstablished {
		t.Fatalf("recv %d conn %v", st.TCPSynCookiesRecv, c)
	}
	buf := make([]byte, 8)
	if k, _ := c.Read(buf); string(buf[:k]) != "hi" {
		t.Fatalf("data with the cookie ACK: %q", buf[:k])
	}
	// Timestamps without SACK or window scale: the SYN-ACK echoes TSval, its
	// TSval's low bits say "no window scale, no SACK", and the connection has
	// timestamps only (Linux cookie_init_timestamp / cookie_timestamp_decode).
	synOpts := append([]byte{wire.TCPOptMSS, 4, 0x05, 0xb4}, tsOpt(777, 0)...)
	n.b.s.Input(n.now, raw{sport: 3004, dport: 80, seq: 7000, flags: wire.TCPFlagSYN, wnd: 8192, opts: synOpts}.frame())
	var sa wire.TCP
	for _, tcp := range n.outFrames(n.b) {
		if tcp.DstPort() == 3004 {
			sa = tcp
		}
	}
	o := wire.ParseTCPOptions(sa.Options())
	if sa == nil || !o.HasTS || o.TSEcr != 777 || o.TSVal&0x3f != 0xf || o.HasWScale || o.SACKPerm {
		t.Fatalf("cookie SYN-ACK with timestamps: %+v", o)
	}
	n.b.s.Input(n.now, raw{sport: 3004, dport: 80, seq: 7001, ack: sa.Seq() + 1, flags: wire.TCPFlagACK, wnd: 100,
		opts: tsOpt(778, o.TSVal)}.frame())
	c = l.Accept()
	if c == nil || !c.tsOK || c.sackOK || c.wsOK || c.tsRecent != 778 || c.mss != 1460-12 {
		t.Fatal("cookie connection with timestamps only")
	}
	// Without a recent overflow, an ACK is not checked as a cookie (Linux).
	n.now += 3 * cookieTick
	n.b.s.Input(n.now, raw{sport: 3003, dport: 80, seq: 7001, ack: 1, flags: wire.TCPFlagACK, wnd: 100}.frame())
	if st.TCPSynCookiesFailed != 2 {
		t.Fatalf("failed %d", st.TCPSynCookiesFailed)
	}
}
