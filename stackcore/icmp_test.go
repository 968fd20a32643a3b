package stackcore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// icmpError builds the ICMP error a router or host at from would send back
// to the sender of frame (an Ethernet/IPv4 frame from A): the quoted IPv4
// header plus 8 bytes (RFC 792, RFC 1122 3.2.2), with next-hop MTU mtu.
func icmpError(frame []byte, from IPv4, typ, code uint8, mtu uint16) []byte {
	return icmpErrorTo(frame, from, macB, addrA, macA, typ, code, mtu)
}

// icmpErrorTo is icmpError from fromMAC/from to toMAC/to.
func icmpErrorTo(frame []byte, from IPv4, fromMAC MAC, to IPv4, toMAC MAC, typ, code uint8, mtu uint16) []byte {
	ip := wire.IPv4(frame[wire.EthHeaderLen:])
	quote := ip[:ip.HeaderLen()+8]
	out := make([]byte, wire.EthHeaderLen+wire.IPv4MinLen+wire.ICMPHeaderLen+len(quote))
	eth := wire.Ethernet(out)
	eth.SetDst(toMAC)
	eth.SetSrc(fromMAC)
	eth.SetType(wire.EtherTypeIPv4)
	m := wire.ICMPv4(out[wire.EthHeaderLen+wire.IPv4MinLen:])
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint16(m[wire.ICMPNextHopMTU:], mtu)
	copy(m.Body(), quote)
	m.SetChecksum()
	wire.IPv4(out[wire.EthHeaderLen:]).Encode(len(out)-wire.EthHeaderLen, 1, 64, wire.ProtoICMP, from, to)
	return out
}

// capture drops every frame of end and keeps copies of those matching pred.
func capture(end *pair.End, pred func(f []byte) bool) *[][]byte {
	got := new([][]byte)
	end.Hook = func(_ uint64, f []byte) bool {
		if pred(f) {
			*got = append(*got, bytes.Clone(f))
			return true
		}
		return false
	}
	return got
}

func isProto(p uint8) func([]byte) bool {
	return func(f []byte) bool { return wire.IPv4(f[wire.EthHeaderLen:]).Protocol() == p }
}

// RFC 1122 3.2.2.1 / 4.1.3.3: port unreachable is passed to the UDP socket;
// Linux reports it (ECONNREFUSED, once) only on a connected socket.
func TestICMPPortUnreachableUDP(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	sent := capture(n.a.end, isProto(wire.ProtoUDP))
	conn := mustBind(t, n.a.s, 5000)
	conn.Cookie = 3
	conn.Connect(mapB, 7777, macB)
	other := mustBind(t, n.a.s, 5001)
	for _, u := range []*UDPSocket{conn, other} {
		if _, err := u.SendTo([]byte("hello"), mapB, 7777, macB); err != nil {
			t.Fatal(err)
		}
	}
	n.settle()
	if len(*sent) != 2 {
		t.Fatalf("%d datagrams", len(*sent))
	}
	n.a.s.TakeWoken(nil)
	for _, f := range *sent {
		n.a.s.Input(n.now, icmpError(f, addrB, wire.ICMPDestUnreach, wire.ICMPPortUnreach, 0))
	}
	if other.Readable() || other.Err() != nil {
		t.Fatal("unconnected socket got the error")
	}
	if !conn.Readable() || !conn.Writable() || conn.Err() != ErrRefused {
		t.Fatalf("connected socket: readable %v err %v", conn.Readable(), conn.Err())
	}
	if w := n.a.s.TakeWoken(nil); len(w) != 1 || w[0] != 3 {
		t.Fatalf("woken %v", w)
	}
	buf := make([]byte, 10)
	if _, _, _, _, err := conn.RecvFrom(buf, false); err != ErrRefused {
		t.Fatalf("RecvFrom: %v", err)
	}
	if _, _, _, _, err := conn.RecvFrom(buf, false); err != ErrWouldBlock {
		t.Fatalf("error not cleared: %v", err)
	}
	// Reported by the next send too, once.
	n.a.s.Input(n.now, icmpError((*sent)[0], addrB, wire.ICMPDestUnreach, wire.ICMPPortUnreach, 0))
	if _, err := conn.SendTo([]byte("x"), mapB, 7777, macB); err != ErrRefused {
		t.Fatalf("SendTo: %v", err)
	}
	if _, err := conn.SendTo([]byte("x"), mapB, 7777, macB); err != nil {
		t.Fatalf("SendTo after the error: %v", err)
	}
	// From another peer than the connected one: ignored.
	conn.Connect(mapB, 7778, macB)
	n.a.s.Input(n.now, icmpError((*sent)[0], addrB, wire.ICMPDestUnreach, wire.ICMPPortUnreach, 0))
	if conn.Err() != nil {
		t.Fatal("error for another destination")
	}
	st := n.a.s.Stats()
	if st.ICMPInMsgs != 4 || st.ICMPInDestUnreachs != 4 || st.ICMPInErrors != 0 {
		t.Fatalf("icmp counters %d %d %d", st.ICMPInMsgs, st.ICMPInDestUnreachs, st.ICMPInErrors)
	}
}

// A connection attempt answered by port (or protocol) unreachable fails with
// ECONNREFUSED, as Linux does; the quoted sequence number must be one we
// sent (RFC 5927 4.1), otherwise the message is ignored.
func TestICMPSynSentRefused(t *testing.T) {
	for _, code := range []uint8{wire.ICMPPortUnreach, wire.ICMPProtoUnreach} {
		n := newNet(t, pair.Options{}, Config{}, Config{})
		syns := capture(n.a.end, isProto(wire.ProtoTCP))
		c, err := n.a.s.Connect(n.now, 40000, mapB, 81, macB)
		if err != nil {
			t.Fatal(err)
		}
		n.settle()
		if len(*syns) != 1 {
			t.Fatalf("%d SYNs", len(*syns))
		}
		bad := bytes.Clone((*syns)[0])
		tcpOf(bad).SetSeq(tcpOf(bad).Seq() + 100000)
		n.a.s.Input(n.now, icmpError(bad, addrB, wire.ICMPDestUnreach, code, 0))
		if c.State() != StateSynSent {
			t.Fatal("ICMP with a foreign sequence number accepted")
		}
		n.a.s.Input(n.now, icmpError((*syns)[0], addrB, wire.ICMPDestUnreach, code, 0))
		if c.State() != StateClosed || c.Err() != ErrRefused || !c.Readable() {
			t.Fatalf("code %d: state %v err %v", code, c.State(), c.Err())
		}
		if _, err := c.Read(make([]byte, 1)); err != ErrRefused {
			t.Fatalf("Read: %v", err)
		}
		if n.a.s.PortInUse(40000) {
			t.Fatal("port still held")
		}
	}
}

// RFC 1122 4.2.3.9: unreachables other than fragmentation needed are soft
// errors for a synchronized connection; they must not abort it. If it later
// times out, the soft error is what it reports (Linux sk_err_soft).
func TestICMPSoftErrorsEstablished(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	segs := capture(n.a.end, func(f []byte) bool { return hasData(tcpOf(f)) })
	c.Write([]byte("data"))
	n.step()
	if len(*segs) != 1 {
		t.Fatal("no segment")
	}
	f := (*segs)[0]
	n.a.end.Hook = nil
	for _, m := range [][2]uint8{{wire.ICMPDestUnreach, wire.ICMPHostUnreach}, {wire.ICMPDestUnreach, wire.ICMPNetUnreach},
		{wire.ICMPDestUnreach, wire.ICMPPortUnreach}, {wire.ICMPTimeExceeded, 0}, {wire.ICMPSourceQuench, 0},
		{wire.ICMPParamProblem, 0}} {
		n.a.s.Input(n.now, icmpError(f, addrB, m[0], m[1], 0))
		if c.State() != StateEstablished || c.Err() != nil {
			t.Fatalf("type %d code %d: state %v err %v", m[0], m[1], c.State(), c.Err())
		}
	}
	// The connection still works (the lost segment is retransmitted).
	four := make([]byte, 4)
	if !n.runUntil(10*Second, func() bool { return s.InQueue() == 4 }) {
		t.Fatal("segment not retransmitted")
	}
	s.Read(four)
	if got := n.transfer(c, s, pattern(5000, 3), false, 10*Second); !bytes.Equal(got, pattern(5000, 3)) {
		t.Fatal("transfer")
	}
	// Now the peer vanishes after a host unreachable: the timeout reports it.
	c.Write([]byte("more"))
	n.b.end.Hook = func(uint64, []byte) bool { return true }
	capt := capture(n.a.end, func(f []byte) bool { return hasData(tcpOf(f)) })
	n.step()
	n.a.s.Input(n.now, icmpError((*capt)[0], addrB, wire.ICMPDestUnreach, wire.ICMPHostUnreach, 0))
	if !n.runUntil(30*60*Second, func() bool { return c.State() == StateClosed }) {
		t.Fatal("no timeout")
	}
	if c.Err() != ErrHostUnreach || !errors.Is(c.Err(), ErrTimedOut) {
		t.Fatalf("timeout reported %v", c.Err())
	}
}

// RFC 1191 (and RFC 5927 for validation): "fragmentation needed" with a
// next-hop MTU lowers the connection's MSS to MTU - 40 (- 12 for the
// timestamp option); the data in flight is resent in segments of the new
// size and every later segment fits. MTUs below 68 are ignored (RFC 791),
// an MTU of 0 means the RFC 1191 section 7 plateau below the datagram size,
// and an MTU above the current one does not raise it.
func TestICMPFragNeededLowersMSS(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	if c.MSS() != 1448 {
		t.Fatalf("initial MSS %d", c.MSS())
	}
	// Drop the first flight (a router with a smaller MTU) and keep it.
	flight := capture(n.a.end, func(f []byte) bool { return hasData(tcpOf(f)) })
	data := pattern(200_000, 7)
	k, _ := c.Write(data)
	n.step()
	if len(*flight) == 0 {
		t.Fatal("no flight")
	}
	f := (*flight)[0]
	for _, mtu := range []uint16{67, 1500, 9000} {
		n.a.s.Input(n.now, icmpError(f, addrB, wire.ICMPDestUnreach, wire.ICMPFragNeeded, mtu))
		if c.MSS() != 1448 {
			t.Fatalf("MTU %d changed MSS to %d", mtu, c.MSS())
		}
	}
	n.a.s.Input(n.now, icmpError(f, addrB, wire.ICMPDestUnreach, wire.ICMPFragNeeded, 1000))
	if c.MSS() != 1000-40-12 || c.PathMTU() != 1000 {
		t.Fatalf("MSS %d PMTU %d", c.MSS(), c.PathMTU())
	}
	// From now on, frames over 1000 bytes of IP are dropped by the "router".
	big := 0
	n.a.end.Hook = func(_ uint64, f []byte) bool {
		if wire.IPv4(f[wire.EthHeaderLen:]).TotalLen() > 1000 {
			big++
			return true
		}
		return false
	}
	got := make([]byte, 0, len(data))
	buf := make([]byte, 64<<10)
	start := n.now
	rtos := n.a.s.Stats().TCPTimeouts
	off := k
	n.runUntil(10*Second, func() bool {
		if off < len(data) {
			w, _ := c.Write(data[off:])
			off += w
		}
		r, _ := s.Read(buf)
		got = append(got, buf[:r]...)
		return len(got) == len(data)
	})
	if !bytes.Equal(got, data) || big != 0 {
		t.Fatalf("got %d of %d bytes, %d oversized frames", len(got), len(data), big)
	}
	if n.now-start >= rtoMin || n.a.s.Stats().TCPTimeouts != rtos {
		t.Fatalf("recovery waited for a timeout: %dus", n.now-start)
	}
	// RFC 1191 5: MTU 0 from an old router: the plateau below 1000 (508).
	n.a.end.Hook = nil
	segs := capture(n.a.end, func(f []byte) bool { return hasData(tcpOf(f)) })
	c.Write(pattern(3000, 8))
	n.step()
	n.a.s.Input(n.now, icmpError((*segs)[0], addrB, wire.ICMPDestUnreach, wire.ICMPFragNeeded, 0))
	if c.PathMTU() != 508 || c.MSS() != 508-52 {
		t.Fatalf("plateau: PMTU %d MSS %d", c.PathMTU(), c.MSS())
	}
}

// Echo requests are the kernel's to answer (the XDP program passes them);
// the stack counts and ignores them. Bad checksums and truncated quotes
// count as icmp.in_errors.
func TestICMPEchoAndMalformed(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _, _ := n.connect(80)
	_ = c
	udp := udpFrame(5000, 6000, []byte("x"))
	echo := icmpError(udp, addrB, wire.ICMPEchoRequest, 0, 0)
	out := 0
	n.a.end.Hook = func(uint64, []byte) bool { out++; return false }
	n.a.s.Input(n.now, echo)
	n.settle()
	if out != 0 {
		t.Fatal("replied to an echo request")
	}
	bad := bytes.Clone(echo)
	bad[len(bad)-1] ^= 1
	n.a.s.Input(n.now, bad)
	short := icmpError(udp, addrB, wire.ICMPDestUnreach, wire.ICMPPortUnreach, 0)
	short = short[:len(short)-4]
	wire.IPv4(short[wire.EthHeaderLen:]).Encode(len(short)-wire.EthHeaderLen, 1, 64, wire.ProtoICMP, addrB, addrA)
	wire.ICMPv4(short[wire.EthHeaderLen+wire.IPv4MinLen:]).SetChecksum()
	n.a.s.Input(n.now, short)
	st := n.a.s.Stats()
	if st.ICMPInMsgs != 3 || st.ICMPInErrors != 2 || st.ICMPInDestUnreachs != 1 {
		t.Fatalf("in %d errors %d unreach %d", st.ICMPInMsgs, st.ICMPInErrors, st.ICMPInDestUnreachs)
	}
}
