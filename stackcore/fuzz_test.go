package stackcore

import (
	"testing"
	"time"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// seedFrames returns real frames from a handshake, a transfer and a close.
func seedFrames(t testing.TB) [][]byte {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	var frames [][]byte
	capture := func(_ uint64, f []byte) bool {
		if len(frames) < 24 {
			frames = append(frames, append([]byte(nil), f...))
		}
		return false
	}
	n.a.end.Hook, n.b.end.Hook = capture, capture
	c, s, _ := n.connect(80)
	n.transfer(c, s, pattern(3000, 1), true, 10*Second)
	s.Close()
	n.settle()
	// ACKs with SACK blocks and timestamps (RFC 2018, RFC 7323) from a window with holes.
	n = newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ = n.connect(80)
	n.b.end.Hook = dropSegs(1, 3)
	n.a.end.Hook = func(_ uint64, f []byte) bool {
		if wire.ParseTCPOptions(tcpOf(f).Options()).NSACK > 0 && len(frames) < 32 {
			frames = append(frames, append([]byte(nil), f...))
		}
		return false
	}
	n.transfer(s, c, pattern(8*c.mss, 2), false, 10*Second)
	return append(frames, udpICMPSeeds(t)...)
}

// udpICMPSeeds returns UDP datagrams for B's sockets of the fuzz target and
// ICMP messages to B quoting a data segment B sent on a fresh connection and
// a datagram from B's connected UDP socket (RFC 792, RFC 1191).
func udpICMPSeeds(t testing.TB) [][]byte {
	cfg := Config{RecvBuf: 16 << 10, SendBuf: 16 << 10}
	n := newNet(t, pair.Options{}, cfg, cfg)
	_, s, _ := n.connect(80)
	segs := capture(n.b.end, func(f []byte) bool { return hasData(tcpOf(f)) })
	s.Write(pattern(3000, 3))
	n.step()
	seg := (*segs)[0]
	dgram := udpFrameFrom(macB, addrB, macA, addrA, 5354, 5000, []byte("query"))
	to := func(f []byte, typ, code uint8, mtu uint16) []byte {
		return icmpErrorTo(f, addrA, macA, addrB, macB, typ, code, mtu)
	}
	return [][]byte{
		udpFrame(5000, 5353, []byte("datagram")),
		udpFrame(5000, 5354, []byte("connected")),
		udpFrame(5001, 5354, nil),
		to(seg, wire.ICMPDestUnreach, wire.ICMPFragNeeded, 576),
		to(seg, wire.ICMPDestUnreach, wire.ICMPFragNeeded, 0),
		to(seg, wire.ICMPDestUnreach, wire.ICMPPortUnreach, 0),
		to(seg, wire.ICMPDestUnreach, wire.ICMPHostUnreach, 0),
		to(seg, wire.ICMPTimeExceeded, 0, 0),
		to(seg, wire.ICMPEchoRequest, 0, 0),
		to(dgram, wire.ICMPDestUnreach, wire.ICMPPortUnreach, 0),
	}
}

// FuzzEthernetIPv4TCP feeds arbitrary frames to Input of a stack that has a
// listener and an established connection (RFC 9293 3.10.7: any segment,
// however malformed, must be handled without a crash), then polls it.
func FuzzEthernetIPv4TCP(f *testing.F) {
	for _, fr := range seedFrames(f) {
		f.Add(fr, false)
		f.Add(fr, true)
	}
	f.Fuzz(func(t *testing.T, frame []byte, verify bool) {
		hang := time.AfterFunc(3*time.Second, func() { panic("fuzz input hangs the stack") })
		defer hang.Stop()
		cfg := Config{RecvBuf: 16 << 10, SendBuf: 16 << 10}
		n := newNet(t, pair.Options{NumFrames: 64}, cfg, cfg)
		c, _, _ := n.connect(80)
		_ = c
		u, _ := n.b.s.UDPBind(5353)
		uc, _ := n.b.s.UDPBind(5354)
		uc.Connect(addrA, 5000, macA)
		uc.SendTo([]byte("query"), addrA, 5000, macA)
		n.b.s.cfg.VerifyChecksums = verify
		// Frames from the seeds were built for B (or A); aim everything at B.
		if len(frame) >= 34 {
			copy(frame[0:6], macB[:])
			copy(frame[30:34], addrB[:])
		}
		n.b.s.Input(n.now, frame)
		n.b.s.Input(n.now+1, frame)
		n.now += 2
		n.settle()
		n.runUntil(5*Second, func() bool { return false })
		buf := make([]byte, 64)
		for _, x := range []*UDPSocket{u, uc} {
			for x.Readable() {
				x.RecvFrom(buf, false)
			}
		}
	})
}
