package stackcore

import (
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// RFC 9293 3.7.1 (default MSS 536) and RFC 7323 2.2 (no window scale unless
// both SYNs carry it): a bare SYN gets a SYN-ACK with MSS and without wscale.
func TestPassiveOpenWithoutOptions(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	l, _ := n.b.s.Listen(80, 4)
	n.b.s.Input(n.now, raw{sport: 5000, dport: 80, seq: 100, flags: wire.TCPFlagSYN, wnd: 8192}.frame())
	out := n.outFrames(n.b)
	if len(out) != 1 || out[0].Flags() != wire.TCPFlagSYN|wire.TCPFlagACK || out[0].Ack() != 101 {
		t.Fatalf("reply %v", out)
	}
	o := wire.ParseTCPOptions(out[0].Options())
	if o.MSS != 1460 || o.HasWScale {
		t.Fatalf("options %+v", o)
	}
	iss := out[0].Seq()
	n.b.s.Input(n.now, raw{sport: 5000, dport: 80, seq: 101, ack: iss + 1, flags: wire.TCPFlagACK, wnd: 8192}.frame())
	c := l.Accept()
	if c == nil || c.mss != 536 || c.rcvSh != 0 || c.sndSh != 0 || c.sndWnd != 8192 {
		t.Fatalf("conn %+v", c)
	}
	// Window field is capped at 64 KiB - 1 without scaling.
	n.b.s.Input(n.now, raw{sport: 5000, dport: 80, seq: 101, ack: iss + 1, flags: wire.TCPFlagACK | wire.TCPFlagPSH,
		wnd: 8192, payload: []byte("hi")}.frame())
	out = n.outFrames(n.b)
	if len(out) != 1 || out[0].Ack() != 103 || out[0].Window() != 0xffff {
		t.Fatalf("ack %v", out)
	}
}

// RFC 5961 3.2 (adopted by RFC 9293 3.10.7.4): an in-window RST whose
// sequence number is not exactly RCV.NXT draws a challenge ACK and does not
// reset; an exact one resets. An out-of-window RST is dropped silently.
func TestRSTAcceptance(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	rst := func(sq seq) []byte {
		return raw{sport: 40000, dport: 80, seq: uint32(sq), flags: wire.TCPFlagRST}.frame()
	}
	n.b.s.Input(n.now, rst(s.rcvNxt+1000))
	out := n.outFrames(n.b)
	if len(out) != 1 || out[0].Flags() != wire.TCPFlagACK || s.State() != StateEstablished {
		t.Fatalf("challenge ack: %v, %v", out, s.State())
	}
	n.b.s.Input(n.now, rst(s.rcvNxt-1000))
	if out := n.outFrames(n.b); len(out) != 0 || s.State() != StateEstablished {
		t.Fatal("out-of-window RST not ignored")
	}
	n.b.s.Input(n.now, rst(s.rcvNxt))
	if s.State() != StateClosed || s.Err() != ErrReset {
		t.Fatalf("exact RST: %v %v", s.State(), s.Err())
	}
	if _, err := s.Write([]byte("x")); err != ErrReset {
		t.Fatalf("write after reset: %v", err)
	}
	_ = c
}

// RFC 5961 4: a SYN on an established connection draws a challenge ACK.
func TestSynOnEstablished(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	_, s, _ := n.connect(80)
	n.b.s.Input(n.now, raw{sport: 40000, dport: 80, seq: 7, flags: wire.TCPFlagSYN, mss: 1460, ws: 0}.frame())
	out := n.outFrames(n.b)
	if len(out) != 1 || out[0].Flags() != wire.TCPFlagACK || out[0].Ack() != uint32(s.rcvNxt) || s.State() != StateEstablished {
		t.Fatalf("%v %v", out, s.State())
	}
}

// RFC 9293 3.10.7.2: the listener's queue is bounded by the backlog. A SYN
// beyond it gets a SYN cookie (RFC 4987 3.6, as Linux); an ACK completing a
// handshake while the accept queue is full is dropped, and the SYN-ACK
// retransmission retries once Accept made room. Listener.Close resets the
// connections that were never accepted and frees the port.
func TestBacklogAndListenerClose(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	l, _ := n.b.s.Listen(80, 2)
	var cs []*TCPConn
	for i := range 3 {
		c, err := n.a.s.Connect(n.now, uint16(40000+i), mapB, 80, macB)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	n.settle()
	st := n.b.s.Stats()
	if cs[0].State() != StateEstablished || cs[1].State() != StateEstablished || cs[2].State() != StateEstablished {
		t.Fatalf("states %v %v %v", cs[0].State(), cs[1].State(), cs[2].State())
	}
	if st.TCPSynCookiesSent != 1 || st.TCPSynCookiesRecv != 1 || st.TCPListenDrops != 1 || len(l.queue) != 2 {
		t.Fatalf("cookies %d/%d, listen drops %d, queued %d", st.TCPSynCookiesSent, st.TCPSynCookiesRecv,
			st.TCPListenDrops, len(l.queue))
	}
	// Accepting one makes room; the dropped handshake then completes.
	acc := l.Accept()
	if acc == nil {
		t.Fatal("accept")
	}
	if !n.runUntil(3*Second, func() bool { return len(l.queue) == 2 }) {
		t.Fatal("retried handshake not accepted")
	}
	l.Close()
	n.settle()
	for _, c := range cs {
		if c.key.lport == acc.key.rport {
			if c.State() != StateEstablished {
				t.Fatalf("accepted connection: %v", c.State())
			}
		} else if c.Err() != ErrReset {
			t.Fatalf("after listener close: %v", c.Err())
		}
	}
	if _, err := n.b.s.Listen(80, 1); err != nil {
		t.Fatalf("relisten: %v", err)
	}
	if _, err := n.b.s.Listen(80, 1); err != ErrAddrInUse {
		t.Fatalf("double listen: %v", err)
	}
}

// RFC 9293 3.8.3 (R2) and RFC 6298 5.5: with the peer gone, data is
// retransmitted with exponential backoff and the connection finally fails
// with ErrTimedOut after R2 timeouts. Each timeout's retransmission is
// followed by one loss probe (tlp.go).
func TestDataRetransmitTimeout(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _, _ := n.connect(80)
	n.a.end.Hook = func(uint64, []byte) bool { return true }
	c.Write([]byte("into the void"))
	start := n.now
	n.runUntil(3600*Second, func() bool { return c.State() == StateClosed })
	if c.Err() != ErrTimedOut || c.State() != StateClosed {
		t.Fatalf("%v %v", c.State(), c.Err())
	}
	if st := n.a.s.Stats(); st.TCPTimeouts != dataRetries+1 || st.TCPRetransSegs != 2*dataRetries {
		t.Fatalf("%d timeouts, %d retransmissions", st.TCPTimeouts, st.TCPRetransSegs)
	}
	// 0.2+0.4+...+102.4 (capped at 120) s.
	t.Logf("gave up after %v s", (n.now-start)/Second)
	if _, err := c.Read(make([]byte, 4)); err != ErrTimedOut {
		t.Fatalf("read: %v", err)
	}
	if n.a.s.Stats().TCPCurrEstab != 0 {
		t.Fatal("curr_estab")
	}
}

// Contract: TakeWoken reports sockets whose readiness changed, each once.
func TestTakeWoken(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	l, _ := n.b.s.Listen(80, 4)
	l.Cookie = 7
	c, _ := n.a.s.Connect(n.now, 40000, mapB, 80, macB)
	c.Cookie = 1
	n.settle()
	if w := n.b.s.TakeWoken(nil); len(w) != 1 || w[0] != 7 {
		t.Fatalf("listener not woken: %v", w)
	}
	if w := n.a.s.TakeWoken(nil); len(w) != 1 || w[0] != 1 {
		t.Fatalf("client not woken once: %v", w)
	}
	s := l.Accept()
	s.Cookie = 9
	n.b.s.TakeWoken(nil)
	c.Write([]byte("ping"))
	n.settle()
	if w := n.b.s.TakeWoken(nil); len(w) != 1 || w[0] != 9 || !s.Readable() {
		t.Fatalf("server not woken by data: %v", w)
	}
	if w := n.b.s.TakeWoken(nil); len(w) != 0 {
		t.Fatalf("marks not cleared: %v", w)
	}
}

// RFC 9293 3.10.7.4 (TIME-WAIT, FIN bit): when the last ACK is lost the peer
// retransmits its FIN; we ACK it again and the peer reaches CLOSED.
func TestLastAckLost(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.Close()
	n.settle()
	hook, dropped := dropNth(0, func(tcp wire.TCP) bool { return true })
	n.a.end.Hook = hook // drop the client's ACK of the server's FIN
	s.Close()
	n.settle()
	if *dropped != 1 || c.State() != StateTimeWait || s.State() != StateLastAck {
		t.Fatalf("%d %v %v", *dropped, c.State(), s.State())
	}
	if !n.runUntil(5*Second, func() bool { return s.State() == StateClosed }) {
		t.Fatalf("server stuck in %v", s.State())
	}
	if c.State() != StateTimeWait || c.closeAt-n.now < timeWaitLen-Second {
		t.Fatalf("TIME-WAIT not restarted: %v", c.closeAt-n.now)
	}
}
