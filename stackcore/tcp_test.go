package stackcore

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"
	"ustack/stackcore/wire"

	"ustack/nic/pair"
)

// RFC 9293 3.5: three-way handshake, active and passive open.
func TestHandshake(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	// RFC 7323 3.2 / RFC 2018 2: timestamps and SACK both ways; the
	// 12-byte timestamp option comes out of the MSS.
	if c.mss != 1448 || s.mss != 1448 || !c.tsOK || !s.tsOK || !c.sackOK || !s.sackOK {
		t.Fatalf("mss %d %d ts %v %v sack %v %v", c.mss, s.mss, c.tsOK, s.tsOK, c.sackOK, s.sackOK)
	}
	if !c.wsOK || c.sndSh != s.rcvSh || s.sndSh != c.rcvSh || c.rcvSh != 7 { // RFC 7323 2.3: the least shift covering RecvBufMax (4 MiB)
		t.Fatalf("wscale: c snd %d rcv %d, s snd %d rcv %d", c.sndSh, c.rcvSh, s.sndSh, s.rcvSh)
	}
	if got := n.a.s.Stats().TCPCurrEstab; got != 1 {
		t.Fatalf("curr_estab %d", got)
	}
}

// RFC 9293 3.8.6 (flow control) and 3.10.7.4: 1 MB each way, byte-exact.
func TestTransferBothWays(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	up := pattern(1<<20, 1)
	down := pattern(1<<20, 2)
	if got := n.transfer(c, s, up, false, 60*Second); sha256.Sum256(got) != sha256.Sum256(up) {
		t.Fatal("client->server data mismatch")
	}
	if got := n.transfer(s, c, down, false, 60*Second); sha256.Sum256(got) != sha256.Sum256(down) {
		t.Fatal("server->client data mismatch")
	}
	st := n.a.s.Stats()
	if st.TCPRetransSegs != 0 || n.b.s.Stats().TCPRetransSegs != 0 {
		t.Fatalf("unexpected retransmissions on a clean wire")
	}
}

// RFC 9293 3.6: client closes first; client goes through FIN-WAIT-1/2 to
// TIME-WAIT, server through CLOSE-WAIT and LAST-ACK to CLOSED.
func TestCloseClientFirst(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.Close()
	n.settle()
	if c.State() != StateFinWait2 || s.State() != StateCloseWait {
		t.Fatalf("after client close: %v %v", c.State(), s.State())
	}
	if _, err := s.Read(make([]byte, 10)); err != io.EOF {
		t.Fatalf("server read: %v", err)
	}
	s.Close()
	n.settle()
	if c.State() != StateTimeWait || s.State() != StateClosed {
		t.Fatalf("after server close: %v %v", c.State(), s.State())
	}
	if got := n.b.s.Released(nil); len(got) != 0 {
		t.Fatalf("listener still holds port 80, released %v", got)
	}
	// RFC 9293 3.6.1: TIME-WAIT lasts 2*MSL, then the port is released.
	n.runUntil(2*msl-Second, func() bool { return false })
	if c.State() != StateTimeWait {
		t.Fatalf("left TIME-WAIT early: %v", c.State())
	}
	n.runUntil(2*Second, func() bool { return c.State() == StateClosed })
	if c.State() != StateClosed {
		t.Fatalf("TIME-WAIT did not expire: %v", c.State())
	}
	if got := n.a.s.Released(nil); len(got) != 1 || got[0] != 40000 {
		t.Fatalf("released %v", got)
	}
	if n.a.s.Stats().TCPCurrEstab != 0 || n.b.s.Stats().TCPCurrEstab != 0 {
		t.Fatal("curr_estab not back to 0")
	}
}

// RFC 9293 3.6: server closes first; then the client; the server ends in TIME-WAIT.
func TestCloseServerFirst(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	s.Close()
	n.settle()
	if _, err := c.Read(make([]byte, 10)); err != io.EOF {
		t.Fatalf("client read: %v", err)
	}
	c.Close()
	n.settle()
	if s.State() != StateTimeWait || c.State() != StateClosed {
		t.Fatalf("states %v %v", s.State(), c.State())
	}
}

// RFC 9293 3.6: simultaneous close goes through CLOSING to TIME-WAIT on both sides.
func TestSimultaneousClose(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.Close()
	s.Close()
	n.settle()
	if s.State() != StateTimeWait || c.State() != StateTimeWait {
		t.Fatalf("states %v %v", s.State(), c.State())
	}
}

// RFC 9293 3.6 (half-close): after CloseWrite the peer reads EOF but can
// still send data, which we receive.
func TestHalfClose(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	data := pattern(100000, 3)
	got := n.transfer(c, s, data, true, 10*Second)
	if !bytes.Equal(got, data) {
		t.Fatal("mismatch")
	}
	if _, err := c.Write([]byte("x")); err != ErrClosed {
		t.Fatalf("write after CloseWrite: %v", err)
	}
	if c.State() != StateFinWait2 || s.State() != StateCloseWait {
		t.Fatalf("states %v %v", c.State(), s.State())
	}
	back := pattern(200000, 4)
	got = n.transfer(s, c, back, true, 10*Second)
	if !bytes.Equal(got, back) {
		t.Fatal("mismatch on the way back")
	}
	if c.State() != StateTimeWait || s.State() != StateClosed {
		t.Fatalf("states %v %v", c.State(), s.State())
	}
}

// Linux behaviour (RFC 9293 3.10.4 permits): Close with unread data sends RST.
func TestCloseWithUnreadDataResets(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.Write([]byte("hello"))
	n.settle()
	s.Close()
	n.settle()
	if _, err := c.Read(make([]byte, 10)); err != ErrReset {
		t.Fatalf("client read: %v", err)
	}
	if c.Err() != ErrReset || n.b.s.Stats().TCPRstsSent != 1 || n.a.s.Stats().TCPRstsRecv != 1 {
		t.Fatalf("err %v, stats %+v", c.Err(), n.b.s.Stats())
	}
}

// RFC 6298 5.4-5.6: a lost data segment is retransmitted after the RTO.
func TestRetransmitOnRTO(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	hook, dropped := dropNth(0, hasData)
	n.a.end.Hook = hook
	c.Write([]byte("single segment"))
	n.settle()
	if *dropped != 1 || s.InQueue() != 0 {
		t.Fatal("segment not dropped")
	}
	start := n.now
	buf := make([]byte, 100)
	if !n.runUntil(5*Second, func() bool { return s.InQueue() > 0 }) {
		t.Fatal("not retransmitted")
	}
	// Fake clock RTT is 0, so RTO is the 200ms floor.
	if el := n.now - start; el != rtoMin {
		t.Fatalf("retransmitted after %dus", el)
	}
	k, _ := s.Read(buf)
	if string(buf[:k]) != "single segment" {
		t.Fatalf("got %q", buf[:k])
	}
	if n.a.s.Stats().TCPRetransSegs != 1 || n.a.s.Stats().TCPTimeouts != 1 {
		t.Fatalf("stats %+v", n.a.s.Stats())
	}
}

// RFC 5681 3.2: three duplicate ACKs trigger fast retransmit before the RTO.
func TestFastRetransmit(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	hook, dropped := dropNth(1, hasData)
	n.a.end.Hook = hook
	data := pattern(8*1460, 5)
	c.Write(data)
	n.settle() // no clock advance: only fast retransmit can repair the hole
	if *dropped != 1 {
		t.Fatal("nothing dropped")
	}
	got := make([]byte, len(data))
	k, _ := s.Read(got)
	if k != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes", k)
	}
	st := n.a.s.Stats()
	if st.TCPFastRetrans != 1 || st.TCPRetransSegs != 1 || st.TCPTimeouts != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n.b.s.Stats().TCPOOOQueued == 0 {
		t.Fatal("receiver did not queue out-of-order data")
	}
}

// RFC 9293 3.8.1 / RFC 6298 5.7: a lost SYN is retransmitted after the 1 s initial RTO.
func TestSynRetransmit(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	hook, dropped := dropNth(0, func(tcp wire.TCP) bool { return tcp.Flags()&wire.TCPFlagSYN != 0 })
	n.a.end.Hook = hook
	l, _ := n.b.s.Listen(80, 4)
	c, _ := n.a.s.Connect(n.now, 40000, mapB, 80, macB)
	start := n.now
	if !n.runUntil(10*Second, func() bool { return c.State() == StateEstablished }) {
		t.Fatalf("state %v", c.State())
	}
	if *dropped != 1 || n.now-start != rtoInitial || l.Accept() == nil {
		t.Fatalf("dropped %d, took %d", *dropped, n.now-start)
	}
}

// RFC 9293 3.8.1 (R2 for SYN): with no answer the connect gives up with ErrTimedOut.
func TestSynTimeout(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	n.a.end.Hook = func(uint64, []byte) bool { return true }
	c, _ := n.a.s.Connect(n.now, 40000, mapB, 80, macB)
	start := n.now
	n.runUntil(1000*Second, func() bool { return c.State() == StateClosed })
	if c.Err() != ErrTimedOut {
		t.Fatalf("err %v state %v", c.Err(), c.State())
	}
	// 1+2+4+8+16+32+64 s, as Linux with tcp_syn_retries=6.
	if el := n.now - start; el != 127*Second {
		t.Fatalf("gave up after %v s", el/Second)
	}
	if n.a.end.Sent != 7 {
		t.Fatalf("%d SYNs", n.a.end.Sent)
	}
}

// RFC 9293 3.10.7.1: a segment to a closed port draws a RST, and a SYN to a
// closed port makes connect fail with ErrRefused (3.10.7.3).
func TestRefused(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _ := n.a.s.Connect(n.now, 40000, mapB, 81, macB)
	n.settle()
	if c.State() != StateClosed || c.Err() != ErrRefused {
		t.Fatalf("state %v err %v", c.State(), c.Err())
	}
	if _, err := c.Read(nil); err != ErrRefused {
		t.Fatalf("read %v", err)
	}
	sb := n.b.s.Stats()
	if sb.DropNoSocket != 1 || sb.DropNoPort != 1 || sb.TCPRstsSent != 1 || n.a.s.Stats().TCPRstsRecv != 1 {
		t.Fatalf("stats b %+v", sb)
	}
	if got := n.a.s.Released(nil); len(got) != 1 {
		t.Fatalf("released %v", got)
	}
}

// RFC 9293 3.10.7.1: the RST for an ACK-bearing segment to a closed port
// takes its sequence number from the segment's ACK field.
func TestRSTForStrayAck(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	_ = s
	var rst wire.TCP
	n.b.end.Hook = func(_ uint64, f []byte) bool {
		if tcpOf(f).Flags()&wire.TCPFlagRST != 0 {
			rst = append(wire.TCP(nil), tcpOf(f)...)
		}
		return false
	}
	// Forget the server side without telling the peer.
	n.b.s.free(s)
	c.Write([]byte("x"))
	n.settle()
	if rst == nil || rst.Flags() != wire.TCPFlagRST || rst.Seq() != uint32(c.rcvNxt) {
		t.Fatalf("rst %v", rst)
	}
	if c.Err() != ErrReset {
		t.Fatalf("client err %v", c.Err())
	}
}

// RFC 9293 3.8.6 (zero window, probing): the receiver never reads, the
// sender fills the window and its buffer, probes, then drains when reading starts.
func TestWindowFullThenDrains(t *testing.T) {
	cfg := Config{RecvBuf: 64 << 10, SendBuf: 64 << 10}
	n := newNet(t, pair.Options{}, cfg, cfg)
	c, s, _ := n.connect(80)
	data := pattern(1<<20, 6)
	off := 0
	for {
		k, err := c.Write(data[off:])
		if err == ErrWouldBlock {
			break
		}
		off += k
		n.settle()
	}
	if s.InQueue() <= 64<<10-1<<s.rcvSh || c.OutQueue() != 64<<10 || c.Writable() { // window granularity 1<<rcvSh
		t.Fatalf("inq %d outq %d", s.InQueue(), c.OutQueue())
	}
	// Nothing moves for a while but probes; the connection must stay up.
	sent := n.a.end.Sent
	n.runUntil(300*Second, func() bool { return false })
	probes := n.a.end.Sent - sent
	if c.State() != StateEstablished || probes == 0 || probes > 20 {
		t.Fatalf("state %v after %d probes", c.State(), probes)
	}
	got := make([]byte, 0, len(data))
	buf := make([]byte, 32<<10)
	ok := n.runUntil(30*Second, func() bool {
		if off < len(data) {
			k, _ := c.Write(data[off:])
			off += k
		}
		k, _ := s.Read(buf)
		got = append(got, buf[:k]...)
		n.step()
		return len(got) == len(data)
	})
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("drain: ok %v, got %d bytes", ok, len(got))
	}
}

// RFC 9293 3.6.1 + RFC 6191: a new SYN for a TIME-WAIT tuple reopens it, as
// does a Connect on that tuple.
func TestTimeWaitReuse(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, l := n.connect(80)
	s.Close() // server ends in TIME-WAIT
	n.settle()
	c.Close()
	n.settle()
	if s.State() != StateTimeWait {
		t.Fatalf("server %v", s.State())
	}
	n.now += 10 * Second // ISN clock moves on
	c2, err := n.a.s.Connect(n.now, 40000, mapB, 80, macB)
	if err != nil {
		t.Fatal(err)
	}
	if !n.runUntil(5*Second, func() bool { return c2.State() == StateEstablished && l.Readable() }) {
		t.Fatalf("reopen failed: %v", c2.State())
	}
	if s.State() != StateClosed {
		t.Fatalf("old server conn %v", s.State())
	}
	// And from the client side: A is in TIME-WAIT, Connect again replaces it.
	s2 := l.Accept()
	c2.Close()
	n.settle()
	s2.Close()
	n.settle()
	if c2.State() != StateTimeWait {
		t.Fatalf("client %v", c2.State())
	}
	c3, err := n.a.s.Connect(n.now, 40000, mapB, 80, macB)
	if err != nil || !n.runUntil(5*Second, func() bool { return c3.State() == StateEstablished }) {
		t.Fatalf("connect over TIME-WAIT: %v", err)
	}
}
