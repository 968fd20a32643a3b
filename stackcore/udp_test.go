package stackcore

import (
	"bytes"
	"slices"
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// udpFrame builds a datagram from macA/addrA:sport to macB/addrB:dport.
func udpFrame(sport, dport uint16, payload []byte) []byte {
	return udpFrameFrom(macA, addrA, macB, addrB, sport, dport, payload)
}

func udpFrameFrom(fromMAC MAC, from IPv4, toMAC MAC, to IPv4, sport, dport uint16, payload []byte) []byte {
	s := &Stack{cfg: Config{MAC: fromMAC, Addr: from}, stats: new(Stats)}
	rg := newRing(len(payload) + 1)
	rg.Write(payload)
	buf := make([]byte, 2048)
	n := s.encodeUDP(buf, toMAC, to, 64, sport, dport, &rg, len(payload))
	return buf[:n]
}

func udpOf(f []byte) wire.UDP { return wire.UDP(wire.IPv4(f[wire.EthHeaderLen:]).Payload()) }

func mustBind(t testing.TB, s *Stack, port uint16) *UDPSocket {
	t.Helper()
	u, err := s.UDPBind(port)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func recvOne(t testing.TB, u *UDPSocket, size int) ([]byte, int, IPv4, uint16) {
	t.Helper()
	buf := make([]byte, size)
	n, full, src, sport, err := u.RecvFrom(buf, false)
	if err != nil {
		t.Fatalf("RecvFrom: %v", err)
	}
	return buf[:n], full, src, sport
}

// RFC 768: datagrams both ways between two stacks, with the source address
// and port reported to the receiver and the reply sent back to them.
func TestUDPSendReceiveBothWays(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a := mustBind(t, n.a.s, 5000)
	b := mustBind(t, n.b.s, 6000)
	a.Cookie, b.Cookie = 1, 2
	msg := pattern(1200, 1)
	if k, err := a.SendTo(msg, addrB, 6000, macB); err != nil || k != len(msg) {
		t.Fatalf("SendTo %d %v", k, err)
	}
	if b.Readable() {
		t.Fatal("readable before Poll")
	}
	if a.OutQueue() != len(msg) {
		t.Fatalf("OutQueue %d", a.OutQueue())
	}
	n.settle()
	if a.OutQueue() != 0 || !b.Readable() || b.NextLen() != len(msg) {
		t.Fatalf("after Poll: outq %d readable %v nextlen %d", a.OutQueue(), b.Readable(), b.NextLen())
	}
	if w := n.b.s.TakeWoken(nil); !slices.Contains(w, 2) {
		t.Fatalf("receiver not woken: %v", w)
	}
	buf := make([]byte, 2000)
	k, full, src, sport, mac, err := b.RecvFromMAC(buf, false)
	if err != nil || k != len(msg) || full != len(msg) || src != addrA || sport != 5000 || mac != macA ||
		!bytes.Equal(buf[:k], msg) {
		t.Fatalf("RecvFrom %d %d %v %d %v %v", k, full, src, sport, mac, err)
	}
	if _, _, _, _, err := b.RecvFrom(buf, false); err != ErrWouldBlock {
		t.Fatalf("empty queue: %v", err)
	}
	reply := pattern(10, 2)
	if _, err := b.SendTo(reply, src, sport, mac); err != nil {
		t.Fatal(err)
	}
	n.settle()
	got, _, src, sport := recvOne(t, a, 100)
	if !bytes.Equal(got, reply) || src != addrB || sport != 6000 {
		t.Fatalf("reply %x from %v:%d", got, src, sport)
	}
	// A zero-length datagram is a datagram (RFC 768: length 8).
	if _, err := a.SendTo(nil, addrB, 6000, macB); err != nil {
		t.Fatal(err)
	}
	n.settle()
	if !b.Readable() || b.NextLen() != 0 {
		t.Fatal("empty datagram not queued")
	}
	if got, full, _, _ := recvOne(t, b, 10); len(got) != 0 || full != 0 {
		t.Fatal("empty datagram")
	}
	sa, sb := n.a.s.Stats(), n.b.s.Stats()
	if sa.UDPOutDatagrams != 2 || sb.UDPOutDatagrams != 1 || sb.UDPInDatagrams != 2 || sa.UDPInDatagrams != 1 {
		t.Fatalf("counters a %+v b %+v", sa, sb)
	}
}

func TestUDPBindPorts(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	s := n.a.s
	u := mustBind(t, s, 0)
	if u.LocalPort() < ephemeralLo {
		t.Fatalf("ephemeral port %d", u.LocalPort())
	}
	if _, err := s.UDPBind(u.LocalPort()); err != ErrAddrInUse {
		t.Fatalf("second bind: %v", err)
	}
	v := mustBind(t, s, 0)
	if v.LocalPort() == u.LocalPort() {
		t.Fatal("same ephemeral port twice")
	}
	// TCP and UDP port numbers are separate namespaces.
	if _, err := s.Listen(u.LocalPort(), 1); err != nil {
		t.Fatalf("TCP listen on a UDP port: %v", err)
	}
	if s.PortInUse(v.LocalPort()) || !s.UDPPortInUse(v.LocalPort()) {
		t.Fatal("port accounting")
	}
	u.Close()
	u.Close()
	if got := s.ReleasedUDP(nil); !slices.Equal(got, []uint16{u.LocalPort()}) {
		t.Fatalf("ReleasedUDP %v", got)
	}
	if got := s.ReleasedUDP(nil); len(got) != 0 {
		t.Fatalf("ReleasedUDP twice %v", got)
	}
	if _, err := s.UDPBind(u.LocalPort()); err != nil {
		t.Fatalf("rebind after close: %v", err)
	}
}

// A connected socket accepts datagrams only from its peer (Linux; RFC 768
// leaves it to the implementation); others count as no_ports.
func TestUDPConnectedFilter(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	b := mustBind(t, n.b.s, 6000)
	b.Connect(addrA, 5000, macA)
	if ip, port, ok := b.Remote(); !ok || ip != addrA || port != 5000 {
		t.Fatal("Remote")
	}
	n.b.s.Input(n.now, udpFrame(5001, 6000, []byte("other")))
	n.b.s.Input(n.now, udpFrame(5000, 6000, []byte("peer")))
	if got, _, _, sport := recvOne(t, b, 100); string(got) != "peer" || sport != 5000 {
		t.Fatalf("got %q from %d", got, sport)
	}
	if b.Readable() || n.b.s.Stats().UDPNoPorts != 1 {
		t.Fatalf("datagram from another port not dropped: no_ports %d", n.b.s.Stats().UDPNoPorts)
	}
	b.Disconnect()
	if _, _, ok := b.Remote(); ok {
		t.Fatal("still connected")
	}
	n.b.s.Input(n.now, udpFrame(5001, 6000, []byte("other")))
	if got, _, _, _ := recvOne(t, b, 100); string(got) != "other" {
		t.Fatalf("after Disconnect: %q", got)
	}
	n.b.s.Input(n.now, udpFrame(5001, 6001, []byte("nobody")))
	if n.b.s.Stats().UDPNoPorts != 2 {
		t.Fatal("unbound port not counted")
	}
}

// MSG_TRUNC: a short buffer takes the head of the datagram, the rest is
// discarded, and full reports the real length. MSG_PEEK leaves it queued.
func TestUDPTruncAndPeek(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	b := mustBind(t, n.b.s, 6000)
	msg := pattern(1000, 3)
	n.b.s.Input(n.now, udpFrame(5000, 6000, msg))
	n.b.s.Input(n.now, udpFrame(5000, 6000, []byte("second")))
	buf := make([]byte, 100)
	for range 2 {
		k, full, _, _, err := b.RecvFrom(buf, true)
		if err != nil || k != 100 || full != 1000 || !bytes.Equal(buf, msg[:100]) {
			t.Fatalf("peek %d %d %v", k, full, err)
		}
	}
	if b.NextLen() != 1000 || b.InQueue() != 1006 {
		t.Fatalf("NextLen %d InQueue %d", b.NextLen(), b.InQueue())
	}
	k, full, _, _, err := b.RecvFrom(buf, false)
	if err != nil || k != 100 || full != 1000 || !bytes.Equal(buf, msg[:100]) {
		t.Fatalf("trunc %d %d %v", k, full, err)
	}
	if got, full, _, _ := recvOne(t, b, 100); string(got) != "second" || full != 6 {
		t.Fatalf("next datagram %q", got)
	}
}

// The receive queue is bounded: datagrams beyond it are dropped and counted
// (Linux UDP_MIB_RCVBUFERRORS, also InErrors).
func TestUDPReceiveQueueOverflow(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	b := mustBind(t, n.b.s, 6000)
	b.SetBuffers(3000, 0)
	if rcv, _ := b.Buffers(); rcv != 3000 {
		t.Fatalf("rcvbuf %d", rcv)
	}
	for i := range 5 {
		n.b.s.Input(n.now, udpFrame(5000, 6000, pattern(1000, uint64(i))))
	}
	st := n.b.s.Stats()
	if st.UDPInDatagrams != 3 || st.UDPRcvbufErrors != 2 || st.UDPInErrors != 2 {
		t.Fatalf("in %d rcvbuf %d inerr %d", st.UDPInDatagrams, st.UDPRcvbufErrors, st.UDPInErrors)
	}
	for i := range 3 {
		if got, _, _, _ := recvOne(t, b, 2000); !bytes.Equal(got, pattern(1000, uint64(i))) {
			t.Fatalf("datagram %d", i)
		}
	}
	// Room again after reading.
	n.b.s.Input(n.now, udpFrame(5000, 6000, pattern(1000, 9)))
	if got, _, _, _ := recvOne(t, b, 2000); !bytes.Equal(got, pattern(1000, 9)) {
		t.Fatal("after drain")
	}
}

// The send queue is bounded: SendTo fails with ErrWouldBlock when full and
// succeeds again once Poll has emitted the queue; the socket is woken.
func TestUDPSendQueueFull(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a := mustBind(t, n.a.s, 5000)
	b := mustBind(t, n.b.s, 6000)
	a.Cookie = 7
	a.SetBuffers(0, 4000)
	msg := pattern(1000, 4)
	for i := range 4 {
		if _, err := a.SendTo(msg, addrB, 6000, macB); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if _, err := a.SendTo(msg, addrB, 6000, macB); err != ErrWouldBlock {
		t.Fatalf("full queue: %v", err)
	}
	if a.Writable() || a.OutQueue() != 4000 || n.a.s.Stats().UDPSndbufErrors != 1 {
		t.Fatalf("writable %v outq %d", a.Writable(), a.OutQueue())
	}
	n.a.s.TakeWoken(nil)
	n.step()
	if !a.Writable() || a.OutQueue() != 0 {
		t.Fatalf("after Poll: writable %v outq %d", a.Writable(), a.OutQueue())
	}
	if w := n.a.s.TakeWoken(nil); !slices.Contains(w, 7) {
		t.Fatalf("sender not woken: %v", w)
	}
	if _, err := a.SendTo(msg, addrB, 6000, macB); err != nil {
		t.Fatal(err)
	}
	n.settle()
	for i := range 5 {
		if got, _, _, _ := recvOne(t, b, 2000); !bytes.Equal(got, msg) {
			t.Fatalf("datagram %d", i)
		}
	}
}

// Poll out of transmit buffers keeps the rest queued for the next Poll.
func TestUDPSendNoTxBuffers(t *testing.T) {
	n := newNet(t, pair.Options{NumFrames: 4}, Config{}, Config{})
	a := mustBind(t, n.a.s, 5000)
	b := mustBind(t, n.b.s, 6000)
	for i := range 20 {
		if _, err := a.SendTo(pattern(100, uint64(i)), addrB, 6000, macB); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if !n.runUntil(Second, func() bool { return b.Readable() }) {
			t.Fatalf("datagram %d did not arrive", i)
		}
		if got, _, _, _ := recvOne(t, b, 200); !bytes.Equal(got, pattern(100, uint64(i))) {
			t.Fatalf("datagram %d out of order", i)
		}
	}
}

// We do not fragment: more than MTU - 20 (IPv4) - 8 (UDP) bytes is EMSGSIZE.
func TestUDPMsgSize(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a := mustBind(t, n.a.s, 5000)
	b := mustBind(t, n.b.s, 6000)
	if _, err := a.SendTo(make([]byte, 1473), addrB, 6000, macB); err != ErrMsgSize {
		t.Fatalf("1473 bytes: %v", err)
	}
	msg := pattern(1472, 5)
	if _, err := a.SendTo(msg, addrB, 6000, macB); err != nil {
		t.Fatal(err)
	}
	n.settle()
	if got, _, _, _ := recvOne(t, b, 2000); !bytes.Equal(got, msg) {
		t.Fatal("1472-byte datagram")
	}
}

// RFC 768: a zero checksum means the sender computed none and is accepted;
// a wrong one is dropped (counted in udp.in_errors).
func TestUDPChecksum(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	b := mustBind(t, n.b.s, 6000)
	f := udpFrame(5000, 6000, []byte("no checksum"))
	udpOf(f).SetChecksum(0)
	n.b.s.Input(n.now, f)
	if got, _, _, _ := recvOne(t, b, 100); string(got) != "no checksum" {
		t.Fatalf("got %q", got)
	}
	f = udpFrame(5000, 6000, []byte("bad checksum"))
	f[len(f)-1] ^= 0x40
	n.b.s.Input(n.now, f)
	if b.Readable() || n.b.s.Stats().UDPInErrors != 1 || n.b.s.Stats().DropBadChecksum != 1 {
		t.Fatal("bad checksum accepted")
	}
	// Checksums we send verify, and one that sums to zero is sent as 0xffff.
	f = udpFrame(5000, 6000, []byte("x"))
	if !udpOf(f).ChecksumOK(addrA, addrB) || udpOf(f).Checksum() == 0 {
		t.Fatal("own checksum")
	}
	// Length field longer than the IP payload: malformed.
	f = udpFrame(5000, 6000, []byte("short"))
	udpOf(f).SetLength(100)
	n.b.s.Input(n.now, f)
	if b.Readable() || n.b.s.Stats().UDPInErrors != 2 {
		t.Fatal("bad length accepted")
	}
}

// DESIGN.md: the hot path allocates nothing. SendTo, Poll emitting the
// datagram, Input queueing it and RecvFrom, both directions.
func TestUDPAllocs(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a := mustBind(t, n.a.s, 5000)
	b := mustBind(t, n.b.s, 6000)
	a.Cookie, b.Cookie = 1, 2
	msg := pattern(1400, 6)
	buf := make([]byte, 2048)
	woken := make([]uintptr, 0, 16)
	cycle := func() {
		if _, err := a.SendTo(msg, addrB, 6000, macB); err != nil {
			t.Fatal(err)
		}
		n.step()
		n.step()
		k, _, src, sport, err := b.RecvFrom(buf, false)
		if err != nil || k != len(msg) {
			t.Fatalf("recv %d %v", k, err)
		}
		if _, err := b.SendTo(buf[:k], src, sport, macA); err != nil {
			t.Fatal(err)
		}
		n.step()
		n.step()
		if _, _, _, _, err := a.RecvFrom(buf, false); err != nil {
			t.Fatal(err)
		}
		woken = n.a.s.TakeWoken(woken[:0])
		woken = n.b.s.TakeWoken(woken[:0])
	}
	for range 20 {
		cycle()
	}
	if allocs := testing.AllocsPerRun(200, cycle); allocs != 0 {
		t.Fatalf("UDP path allocates %v times per cycle", allocs)
	}
}

// Close drops what was received but still sends what was queued (as a
// kernel socket whose datagrams already left sendto); the port is free at
// once. SetBuffers keeps the queued datagrams that fit.
func TestUDPCloseAndResize(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a := mustBind(t, n.a.s, 5000)
	b := mustBind(t, n.b.s, 6000)
	n.a.s.Input(n.now, udpFrameFrom(macB, addrB, macA, addrA, 6000, 5000, []byte("unread")))
	if a.NextLen() != 6 {
		t.Fatal("datagram for A not queued")
	}
	for i := range 3 {
		if _, err := a.SendTo(pattern(500, uint64(i)), addrB, 6000, macB); err != nil {
			t.Fatal(err)
		}
	}
	a.SetBuffers(0, 1200) // raised to 1472 (one largest datagram): 2 of 3 kept
	if _, snd := a.Buffers(); snd != 1472 || a.OutQueue() != 1000 {
		t.Fatalf("sndbuf %d outq %d", snd, a.OutQueue())
	}
	a.Cookie = 9
	a.Close()
	if _, err := a.SendTo([]byte("x"), addrB, 6000, macB); err != ErrClosed {
		t.Fatalf("SendTo after Close: %v", err)
	}
	if n.a.s.UDPPortInUse(5000) || a.InQueue() != 0 {
		t.Fatal("port or received data held after Close")
	}
	if _, _, _, _, err := a.RecvFrom(make([]byte, 10), false); err != ErrNotConnected {
		t.Fatalf("RecvFrom after Close: %v", err)
	}
	n.settle()
	if w := n.a.s.TakeWoken(nil); slices.Contains(w, 9) {
		t.Fatal("closed socket reported woken")
	}
	for i := range 2 {
		if got, _, _, _ := recvOne(t, b, 1000); !bytes.Equal(got, pattern(500, uint64(i))) {
			t.Fatalf("datagram %d", i)
		}
	}
	if b.Readable() {
		t.Fatal("third datagram survived the resize")
	}
}
