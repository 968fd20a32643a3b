package stackcore

import (
	"testing"
	"time"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// seedFrames6 returns IPv6 frames for B: a handshake, a transfer and a close
// from A; UDP datagrams; extension-header chains; fragments; ICMPv6 errors
// quoting a segment and a datagram B sent; echo and Neighbor Solicitation.
func seedFrames6(t testing.TB) [][]byte {
	cfg := Config{RecvBuf: 16 << 10, SendBuf: 16 << 10}
	n := newNet6(t, pair.Options{}, cfg, cfg)
	var frames [][]byte
	n.a.end.Hook = func(_ uint64, f []byte) bool {
		if len(frames) < 16 {
			frames = append(frames, append([]byte(nil), f...))
		}
		return false
	}
	c, s, _ := n.connectTo(80, ulaB)
	n.transfer(c, s, pattern(3000, 1), true, 10*Second)
	n.a.end.Hook = nil
	segs := capture(n.b.end, hasData6)
	s.Write(pattern(3000, 3))
	n.step()
	seg := (*segs)[0]
	dgram := udp6Frame(ulaB, ulaA, 5354, 5000, []byte("query"))
	to := func(f []byte, typ, code uint8, mtu uint32) []byte {
		return icmp6Error(f, addr6("fd00::1"), macA, macB, typ, code, mtu)
	}
	d := udp6Frame(ulaA, ulaB, 5000, 5353, []byte("datagram"))
	big := udp6Frame(ulaA, ulaB, 5000, 5353, pattern(1500, 4))
	syn := raw{sport: 999, dport: 80, seq: 1, flags: wire.TCPFlagSYN, wnd: 1000, mss: 1440, ws: 7}.frame6(ulaA, ulaB)
	frames = append(frames,
		d,
		udp6Frame(ulaA, ulaB, 5000, 5354, []byte("connected")),
		udp6Frame(llA, llB, 5000, 5353, nil),
		withExt(d, optsHdr(wire.ProtoHopByHop, 0, 1, 0, 0x1e, 0), routingHdr(0), optsHdr(wire.ProtoDestOpts)),
		withExt(syn, optsHdr(wire.ProtoHopByHop, 5, 2, 0, 0), optsHdr(wire.ProtoDestOpts, 0x9e, 0)),
		withExt(d, routingHdr(1)),
		withExt(d, ext{wire.ProtoFragment, fragHdr(wire.ProtoUDP, 0, false, 5)}),
		to(seg, wire.ICMPv6PacketTooBig, 0, 1280),
		to(seg, wire.ICMPv6PacketTooBig, 0, 500),
		to(seg, wire.ICMPv6DestUnreach, wire.ICMPv6PortUnreach, 0),
		to(seg, wire.ICMPv6DestUnreach, wire.ICMPv6NoRoute, 0),
		to(seg, wire.ICMPv6TimeExceeded, 0, 0),
		to(seg, wire.ICMPv6ParamProblem, 0, 40),
		to(dgram, wire.ICMPv6DestUnreach, wire.ICMPv6PortUnreach, 0),
		icmp6Frame(ulaA, ulaB, macA, macB, wire.ICMPv6EchoRequest, 0, 1, []byte("ping")),
		icmp6Frame(llA, llB, macA, macB, 135, 0, 0, ulaB[:]),
	)
	frames = append(frames, frag6(big, 7, 1232)...)
	frames = append(frames, frag6(syn, 8, 16)...)
	return frames
}

// FuzzEthernetIPv6 feeds arbitrary frames to Input of a stack with IPv6
// addresses that has a listener, an established IPv6 connection and UDP
// sockets (RFC 8200: any packet, however malformed, must be handled without a
// crash), each frame twice, then polls it for a while.
func FuzzEthernetIPv6(f *testing.F) {
	for _, fr := range seedFrames6(f) {
		f.Add(fr, false)
		f.Add(fr, true)
	}
	cfg := Config{RecvBuf: 16 << 10, SendBuf: 16 << 10, Addrs6: []Addr{ulaB, llB}}
	var u, uc *UDPSocket
	fn := newFuzzNet(f, pair.Options{NumFrames: 64}, Config{RecvBuf: 16 << 10, SendBuf: 16 << 10, Addrs6: []Addr{ulaA, llA}}, cfg,
		func(n *testNet) {
			u, _ = n.b.s.UDPBind(5353)
			uc, _ = n.b.s.UDPBindOn(5354, false, Family6, Addr{})
		})
	buf := make([]byte, 64)
	f.Fuzz(func(t *testing.T, frame []byte, verify bool) {
		hang := time.AfterFunc(3*time.Second, func() { panic("fuzz input hangs the stack") })
		defer hang.Stop()
		n := fn.reset(t)
		n.connectTo(80, ulaB)
		uc.Connect(ulaA, 5000, macA)
		uc.SendTo([]byte("query"), ulaA, 5000, macA)
		n.b.s.cfg.VerifyChecksums = verify
		if len(frame) >= wire.EthHeaderLen {
			copy(frame[0:6], macB[:])
		}
		n.b.s.Input(n.now, frame)
		n.b.s.Input(n.now+1, frame)
		n.now += 2
		n.settle()
		n.runUntil(5*Second, func() bool { return false })
		for _, x := range []*UDPSocket{u, uc} {
			for x.Readable() {
				x.RecvFrom(buf, false)
			}
		}
	})
}
