package stackcore

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// IPv6 tests (RFC 8200 and the RFCs each test names). A has ulaA and llA, B
// ulaB and llB; frames built here go from macA to macB unless said otherwise.

func addr6(s string) Addr { return Addr(netip.MustParseAddr(s).As16()) }

var (
	ulaA = addr6("fd00::a")
	ulaB = addr6("fd00::b")
	llA  = addr6("fe80::a")
	llB  = addr6("fe80::b")
)

// newNet6 is newNet with both stacks given a ULA and a link-local address.
func newNet6(t testing.TB, opts pair.Options, cfgA, cfgB Config) *testNet {
	cfgA.Addrs6 = []Addr{ulaA, llA}
	cfgB.Addrs6 = []Addr{ulaB, llB}
	return newNet(t, opts, cfgA, cfgB)
}

// connectTo is connect to remote (one of B's addresses) through a listener l
// that the caller made, or a FamilyBoth one on port if l is nil.
func (n *testNet) connectTo(port uint16, remote Addr) (client, server *TCPConn, l *Listener) {
	n.t.Helper()
	l, err := n.b.s.Listen(port, 8)
	if err != nil {
		n.t.Fatal(err)
	}
	c, err := n.a.s.Connect(n.now, 40000, remote, port, macB)
	if err != nil {
		n.t.Fatal(err)
	}
	if !n.runUntil(10*Second, func() bool { return l.Readable() && c.State() == StateEstablished }) {
		n.t.Fatalf("handshake did not complete: client %v", c.State())
	}
	srv := l.Accept()
	if srv == nil || srv.State() != StateEstablished {
		n.t.Fatal("accept failed")
	}
	return c, srv, l
}

func isIPv6(f []byte) bool { return wire.Ethernet(f).Type() == wire.EtherTypeIPv6 }

func ip6Of(f []byte) wire.IPv6 { return wire.IPv6(f[wire.EthHeaderLen:]) }

// tcp6Of returns the TCP segment of an Ethernet/IPv6/TCP frame built by us
// (we send no extension headers).
func tcp6Of(f []byte) wire.TCP { return wire.TCP(ip6Of(f).Payload()) }

func hasData6(f []byte) bool {
	return isIPv6(f) && ip6Of(f).NextHeader() == wire.ProtoTCP && len(tcp6Of(f).Payload()) > 0
}

// frame6 is raw.frame from src to dst (either family), macA to macB.
func (r raw) frame6(src, dst Addr) []byte {
	s := &Stack{cfg: Config{MAC: macA}, stats: new(Stats)}
	rg := newRing(len(r.payload) + 1)
	rg.Write(r.payload)
	buf := make([]byte, 2048)
	opts := r.opts
	if opts == nil && r.mss != 0 {
		var o [8]byte
		opts = o[:wire.PutSynOptions(o[:], r.mss, r.ws)]
	}
	n := s.encodeTCPRaw(buf, &ipHdr{mac: macB, src: src, dst: dst}, r.sport, r.dport, seq(r.seq), seq(r.ack), r.flags,
		r.wnd, &rg, 0, len(r.payload), opts)
	return buf[:n]
}

// udp6Frame builds a datagram src:sport -> dst:dport from macA to macB.
func udp6Frame(src, dst Addr, sport, dport uint16, payload []byte) []byte {
	s := &Stack{cfg: Config{MAC: macA}, stats: new(Stats)}
	rg := newRing(len(payload) + 1)
	rg.Write(payload)
	buf := make([]byte, 128+len(payload))
	n := s.encodeUDP(buf, &ipHdr{mac: macB, src: src, dst: dst}, sport, dport, &rg, len(payload))
	return buf[:n]
}

// ext is one extension header: its protocol number and its bytes, whose
// first (Next Header) withExt fills in.
type ext struct {
	proto uint8
	b     []byte
}

// optsHdr is a Hop-by-Hop (ProtoHopByHop) or Destination Options
// (ProtoDestOpts) header holding opts, padded to 8 octets with Pad1 or PadN
// (RFC 8200 4.2, 4.3, 4.6).
func optsHdr(proto uint8, opts ...byte) ext {
	b := append([]byte{0, 0}, opts...)
	switch r := (8 - len(b)%8) % 8; r {
	case 0:
	case 1:
		b = append(b, 0) // Pad1
	default:
		b = append(b, 1, byte(r-2)) // PadN
		b = append(b, make([]byte, r-2)...)
	}
	b[1] = byte(len(b)/8 - 1)
	return ext{proto, b}
}

// routingHdr is a Routing header of type 4 (RFC 8754) with one segment and
// Segments Left segLeft (RFC 8200 4.4).
func routingHdr(segLeft uint8) ext {
	b := make([]byte, 24)
	b[1], b[2], b[3] = 2, 4, segLeft
	copy(b[8:], ulaB[:])
	return ext{wire.ProtoRouting, b}
}

// fragHdr is a Fragment header (RFC 8200 4.5).
func fragHdr(next uint8, off int, more bool, id uint32) []byte {
	b := make([]byte, wire.IPv6FragHdrLen)
	b[0] = next
	v := uint16(off)
	if more {
		v |= wire.IPv6FragMF
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], id)
	return b
}

// withExt returns f (Ethernet/IPv6/upper layer, no extension headers) with
// exts inserted after the IPv6 header, chained by their Next Header fields.
// The upper-layer checksum does not change: the pseudo-header's destination
// is the final one (RFC 8200 8.1) and no Routing header here has segments left
// to visit.
func withExt(f []byte, exts ...ext) []byte {
	hl := wire.EthHeaderLen + wire.IPv6HeaderLen
	upper := f[wire.EthHeaderLen+wire.IPv6NextHeader]
	out := bytes.Clone(f[:hl])
	next := &out[wire.EthHeaderLen+wire.IPv6NextHeader]
	for _, e := range exts {
		*next = e.proto
		k := len(out)
		out = append(out, e.b...)
		next = &out[k]
	}
	*next = upper
	out = append(out, f[hl:]...)
	binary.BigEndian.PutUint16(out[wire.EthHeaderLen+wire.IPv6PayloadLen:], uint16(len(out)-hl))
	return out
}

// frag6 splits the upper-layer packet of f (Ethernet/IPv6/upper, no
// extension headers) at the payload offsets cuts (multiples of 8) into
// fragments with identification id (RFC 8200 4.5).
func frag6(f []byte, id uint32, cuts ...int) [][]byte {
	hl := wire.EthHeaderLen + wire.IPv6HeaderLen
	upper := f[wire.EthHeaderLen+wire.IPv6NextHeader]
	p := f[hl:]
	var out [][]byte
	bounds := append(append([]int{0}, cuts...), len(p))
	for i := 0; i+1 < len(bounds); i++ {
		out = append(out, fragFrame6(f, upper, id, bounds[i], p[bounds[i]:bounds[i+1]], i+2 < len(bounds)))
	}
	return out
}

// fragFrame6 is one fragment of f's packet: data at offset off.
func fragFrame6(f []byte, next uint8, id uint32, off int, data []byte, more bool) []byte {
	hl := wire.EthHeaderLen + wire.IPv6HeaderLen
	out := bytes.Clone(f[:hl])
	out[wire.EthHeaderLen+wire.IPv6NextHeader] = wire.ProtoFragment
	out = append(out, fragHdr(next, off, more, id)...)
	out = append(out, data...)
	binary.BigEndian.PutUint16(out[wire.EthHeaderLen+wire.IPv6PayloadLen:], uint16(len(out)-hl))
	return out
}

// icmp6Error builds the ICMPv6 error that a node at from would send to the
// source of frame (an Ethernet/IPv6 frame), quoting as much of it as fits in
// the minimum MTU (RFC 4443 2.4 c), from fromMAC to toMAC, with the 32-bit
// field (the MTU of packet too big) set to mtu.
func icmp6Error(frame []byte, from Addr, fromMAC, toMAC MAC, typ, code uint8, mtu uint32) []byte {
	q := ip6Of(frame)
	q = q[:min(len(q), wire.IPv6MinMTU-wire.IPv6HeaderLen-wire.ICMPHeaderLen)]
	to := Addr(ip6Of(frame).Src())
	return icmp6Frame(from, to, fromMAC, toMAC, typ, code, mtu, q)
}

// icmp6Frame builds an ICMPv6 message from -> to with body.
func icmp6Frame(from, to Addr, fromMAC, toMAC MAC, typ, code uint8, word uint32, body []byte) []byte {
	out := make([]byte, wire.EthHeaderLen+wire.IPv6HeaderLen+wire.ICMPHeaderLen+len(body))
	eth := wire.Ethernet(out)
	eth.SetDst(toMAC)
	eth.SetSrc(fromMAC)
	eth.SetType(wire.EtherTypeIPv6)
	m := wire.ICMPv6(out[wire.EthHeaderLen+wire.IPv6HeaderLen:])
	m[0], m[1] = typ, code
	m.SetMTU(word)
	copy(m.Body(), body)
	m.SetChecksum((*[16]byte)(&from), (*[16]byte)(&to))
	wire.IPv6(out[wire.EthHeaderLen:]).Encode(len(m), 0, 0, wire.ProtoICMPv6, 255, (*[16]byte)(&from), (*[16]byte)(&to))
	return out
}

// sent6 polls h and returns copies of the frames it put on the wire (taken off it).
func (n *testNet) sent6(h *host) [][]byte {
	h.next = h.s.Poll(n.now, h.end)
	h.end.Flush()
	peer := n.a
	if h == n.a {
		peer = n.b
	}
	var got [][]byte
	for {
		k := peer.end.Receive(peer.rx)
		if k == 0 {
			break
		}
		for _, f := range peer.rx[:k] {
			got = append(got, bytes.Clone(f))
		}
		peer.end.ReleaseRx()
	}
	return got
}

// record keeps a copy of every frame end sends, dropping none.
func record(end *pair.End) *[][]byte {
	got := new([][]byte)
	end.Hook = func(_ uint64, f []byte) bool {
		*got = append(*got, bytes.Clone(f))
		return false
	}
	return got
}

// RFC 8200 carrying RFC 9293: a connection over the ULAs moves 1 MiB each
// way byte for byte, on a perfect wire and on one that drops, duplicates and
// reorders frames; both ends name the right addresses.
func TestIPv6TCPBothDirections(t *testing.T) {
	for _, o := range []pair.Options{{}, {Seed: 5, DropRate: 0.01, DupRate: 0.01, ReorderRate: 0.03}} {
		n := newNet6(t, o, Config{}, Config{})
		c, s, _ := n.connectTo(80, ulaB)
		if c.Local() != ulaA || s.Local() != ulaB {
			t.Fatalf("local addresses %v %v", c.Local(), s.Local())
		}
		if ra, rp := s.Remote(); ra != ulaA || rp != 40000 {
			t.Fatalf("server's remote %v %d", ra, rp)
		}
		up, down := pattern(1<<20, 21), pattern(1<<20, 22)
		if got := n.transfer(c, s, up, true, 300*Second); !bytes.Equal(got, up) {
			t.Fatalf("%+v: a->b differs (%d of %d bytes)", o, len(got), len(up))
		}
		if got := n.transfer(s, c, down, true, 300*Second); !bytes.Equal(got, down) {
			t.Fatalf("%+v: b->a differs (%d of %d bytes)", o, len(got), len(down))
		}
		if st := n.b.s.Stats(); st.IP6RxPackets == 0 || st.IP6TxPackets == 0 || st.IPTxPackets != 0 {
			t.Fatalf("counters: ip6 rx %d tx %d, ip tx %d", st.IP6RxPackets, st.IP6TxPackets, st.IPTxPackets)
		}
	}
}

// RFC 9293 3.7.1 and RFC 8200 5: the MSS a host offers over IPv6 is the MTU
// less 60 (the IPv6 and TCP headers); no packet exceeds the MTU, and full
// segments fill it exactly (with 12 bytes of timestamps, RFC 7323).
func TestIPv6MSSAndSegmentSizes(t *testing.T) {
	for _, mtu := range []int{1500, 1400, 2000} {
		cfg := Config{MTU: mtu}
		n := newNet6(t, pair.Options{}, cfg, cfg)
		fa, fb := record(n.a.end), record(n.b.end)
		c, s, _ := n.connectTo(80, ulaB)
		n.transfer(c, s, pattern(200<<10, 1), false, 30*Second)
		n.transfer(s, c, pattern(200<<10, 2), false, 30*Second)
		if c.MSS() != mtu-60-12 || s.MSS() != mtu-60-12 {
			t.Fatalf("mtu %d: MSS %d %d, want %d", mtu, c.MSS(), s.MSS(), mtu-72)
		}
		syns, largest := 0, 0
		for _, f := range append(*fa, *fb...) {
			if !isIPv6(f) || !ip6Of(f).Valid() || len(f)-wire.EthHeaderLen != wire.IPv6HeaderLen+ip6Of(f).PayloadLen() {
				t.Fatalf("mtu %d: not a whole IPv6 frame: % x", mtu, f[:min(len(f), 60)])
			}
			if l := len(f) - wire.EthHeaderLen; l > mtu {
				t.Fatalf("mtu %d: a %d-byte packet", mtu, l)
			} else {
				largest = max(largest, l)
			}
			tcp := tcp6Of(f)
			if tcp.Flags()&wire.TCPFlagSYN != 0 {
				syns++
				if o := wire.ParseTCPOptions(tcp.Options()); int(o.MSS) != mtu-60 {
					t.Fatalf("mtu %d: SYN offers MSS %d, want %d", mtu, o.MSS, mtu-60)
				}
			}
		}
		if syns != 2 || largest != mtu {
			t.Fatalf("mtu %d: %d SYNs, largest packet %d", mtu, syns, largest)
		}
	}
}

// RFC 9293 3.7.1: "SendMSS is the MSS value received from the remote host,
// or the default 536 for IPv4 or 1220 for IPv6, if no MSS Option is received."
func TestIPv6DefaultMSS(t *testing.T) {
	for _, tc := range []struct {
		src, dst Addr
		want     int
	}{{mapA, mapB, 536}, {ulaA, ulaB, 1220}} {
		n := newNet6(t, pair.Options{}, Config{}, Config{})
		n.b.s.Listen(80, 8)
		n.b.s.Input(n.now, raw{sport: 999, dport: 80, seq: 100, flags: wire.TCPFlagSYN, wnd: 65535}.frame6(tc.src, tc.dst))
		c := n.b.s.conns[connKey{tc.src, 999, 80}]
		if c == nil || c.State() != StateSynReceived {
			t.Fatalf("%v: no SYN-RECEIVED connection", tc.src)
		}
		if c.mss != tc.want {
			t.Fatalf("%v: send MSS %d without an MSS option, want %d", tc.src, c.mss, tc.want)
		}
	}
}

// RFC 6724 rule 2 (prefer appropriate scope) on one interface, RFC 4291
// 2.5.6: a connection to a link-local address leaves from our link-local
// address, one to a ULA from our ULA, in both directions of the connection.
func TestIPv6LinkLocalSource(t *testing.T) {
	for _, tc := range []struct{ remote, local Addr }{{llB, llA}, {ulaB, ulaA}} {
		n := newNet6(t, pair.Options{}, Config{}, Config{})
		fa, fb := record(n.a.end), record(n.b.end)
		c, s, _ := n.connectTo(80, tc.remote)
		if c.Local() != tc.local || s.Local() != tc.remote {
			t.Fatalf("to %v: local %v, server local %v", tc.remote, c.Local(), s.Local())
		}
		n.transfer(c, s, pattern(10000, 3), true, 10*Second)
		n.transfer(s, c, pattern(10000, 4), true, 10*Second)
		u, _ := n.a.s.UDPBind(5000)
		v, _ := n.b.s.UDPBind(6000)
		u.SendTo([]byte("x"), tc.remote, 6000, macB)
		n.settle()
		if _, _, src, _ := recvOne(t, v, 10); src != tc.local {
			t.Fatalf("to %v: datagram from %v", tc.remote, src)
		}
		for _, f := range *fa {
			if Addr(ip6Of(f).Src()) != tc.local || Addr(ip6Of(f).Dst()) != tc.remote {
				t.Fatalf("to %v: a sent %v -> %v", tc.remote, Addr(ip6Of(f).Src()), Addr(ip6Of(f).Dst()))
			}
		}
		for _, f := range *fb {
			if Addr(ip6Of(f).Src()) != tc.remote || Addr(ip6Of(f).Dst()) != tc.local {
				t.Fatalf("to %v: b sent %v -> %v", tc.remote, Addr(ip6Of(f).Src()), Addr(ip6Of(f).Dst()))
			}
		}
	}
}

// RFC 768 over IPv6: datagrams both ways with the sender's address reported;
// RFC 8200 8.1: the checksum is mandatory, a zero one is discarded (and
// counted) even when checksums are not otherwise verified, a bad one is
// discarded; a datagram is at most MTU-48 bytes without fragmentation.
func TestIPv6UDP(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	a := mustBind(t, n.a.s, 5000)
	b := mustBind(t, n.b.s, 6000)
	msg := pattern(1452, 5)
	if k, err := a.SendTo(msg, ulaB, 6000, macB); err != nil || k != len(msg) {
		t.Fatalf("SendTo %d bytes: %d %v", len(msg), k, err)
	}
	if _, err := a.SendTo(pattern(1453, 5), ulaB, 6000, macB); err != ErrMsgSize {
		t.Fatalf("SendTo 1453 bytes (MTU-47): %v", err)
	}
	n.settle()
	got, full, src, sport := recvOne(t, b, 2000)
	if !bytes.Equal(got, msg) || full != len(msg) || src != ulaA || sport != 5000 {
		t.Fatalf("b got %d/%d bytes from %v:%d", len(got), full, src, sport)
	}
	b.SendTo([]byte("reply"), src, sport, macA)
	n.settle()
	if got, _, src, _ := recvOne(t, a, 100); string(got) != "reply" || src != ulaB {
		t.Fatalf("a got %q from %v", got, src)
	}
	for _, verify := range []bool{true, false} {
		n.b.s.cfg.VerifyChecksums = verify
		st := *n.b.s.Stats()
		zero := udp6Frame(ulaA, ulaB, 5000, 6000, []byte("zero"))
		zero[wire.EthHeaderLen+wire.IPv6HeaderLen+wire.UDPChecksum] = 0
		zero[wire.EthHeaderLen+wire.IPv6HeaderLen+wire.UDPChecksum+1] = 0
		n.b.s.Input(n.now, zero)
		if b.Readable() || n.b.s.Stats().DropBadChecksum != st.DropBadChecksum+1 || n.b.s.Stats().UDPInErrors != st.UDPInErrors+1 {
			t.Fatalf("verify %v: zero checksum: readable %v, bad checksums %d -> %d", verify, b.Readable(),
				st.DropBadChecksum, n.b.s.Stats().DropBadChecksum)
		}
	}
	n.b.s.cfg.VerifyChecksums = true
	st := *n.b.s.Stats()
	bad := udp6Frame(ulaA, ulaB, 5000, 6000, []byte("bad"))
	bad[len(bad)-1] ^= 1
	n.b.s.Input(n.now, bad)
	if b.Readable() || n.b.s.Stats().DropBadChecksum != st.DropBadChecksum+1 {
		t.Fatal("bad checksum accepted")
	}
	// The checksum covers the pseudo-header: the same datagram to our other address is bad.
	moved := udp6Frame(ulaA, ulaB, 5000, 6000, []byte("moved"))
	copy(moved[wire.EthHeaderLen+wire.IPv6Dst:], llB[:])
	n.b.s.Input(n.now, moved)
	if b.Readable() || n.b.s.Stats().DropBadChecksum != st.DropBadChecksum+2 {
		t.Fatal("checksum over the wrong pseudo-header accepted")
	}
	n.b.s.Input(n.now, udp6Frame(ulaA, ulaB, 5000, 6000, []byte("good")))
	if got, _, _, _ := recvOne(t, b, 100); string(got) != "good" {
		t.Fatalf("good datagram: %q", got)
	}
}

// A dual-stack listener (AF_INET6, IPV6_V6ONLY off; RFC 4291 2.5.5.2, RFC
// 3493 5.3) takes IPv4 and IPv6 SYNs; an AF_INET one does not take IPv6 SYNs,
// a v6-only one no IPv4 SYNs: the peer is reset (RFC 9293 3.10.7.1). Two
// listeners share a port only when they take disjoint segments.
func TestIPv6DualStackListeners(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	port := uint16(40000)
	dial := func(to Addr, dport uint16) *TCPConn {
		t.Helper()
		port++
		c, err := n.a.s.Connect(n.now, port, to, dport, macB)
		if err != nil {
			t.Fatal(err)
		}
		n.runUntil(5*Second, func() bool { return c.State() != StateSynSent })
		return c
	}
	listen := func(p uint16, fam Family, local Addr) (*Listener, error) { return n.b.s.ListenOn(p, 8, fam, local) }
	both, err := listen(80, FamilyBoth, Addr{})
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []Addr{mapB, ulaB, llB} {
		if c := dial(to, 80); c.State() != StateEstablished {
			t.Fatalf("FamilyBoth: connection to %v %v", to, c.State())
		}
		s := both.Accept()
		if s == nil || s.Local() != to {
			t.Fatalf("FamilyBoth: accepted %v", s)
		}
	}
	only4, _ := listen(81, Family4, Addr{})
	only6, _ := listen(82, Family6, Addr{})
	for _, tc := range []struct {
		to   Addr
		port uint16
		ok   bool
	}{{mapB, 81, true}, {ulaB, 81, false}, {ulaB, 82, true}, {llB, 82, true}, {mapB, 82, false}} {
		c := dial(tc.to, tc.port)
		if tc.ok && c.State() != StateEstablished || !tc.ok && (c.State() != StateClosed || c.Err() != ErrRefused) {
			t.Fatalf("to %v port %d: %v %v", tc.to, tc.port, c.State(), c.Err())
		}
	}
	if only4.Accept() == nil || only6.Accept() == nil || only6.Accept() == nil {
		t.Fatal("not accepted")
	}
	// Overlaps: AF_INET + v6-only on a port is fine, dual-stack with either is not.
	for _, tc := range []struct {
		port uint16
		fam  Family
		at   Addr
		ok   bool
	}{
		{83, Family4, Addr{}, true}, {83, Family6, Addr{}, true}, {83, FamilyBoth, Addr{}, false},
		{83, Family6, ulaB, false}, {83, Family4, mapB, false},
		{80, Family4, Addr{}, false}, {80, Family6, Addr{}, false}, {80, FamilyBoth, Addr{}, false},
		{80, Family6, llB, false},
		{84, Family6, ulaB, true}, {84, Family6, llB, true}, {84, Family6, Addr{}, false},
		{84, FamilyBoth, Addr{}, false}, {84, Family4, Addr{}, true},
	} {
		if _, err := listen(tc.port, tc.fam, tc.at); (err == nil) != tc.ok || err != nil && err != ErrAddrInUse {
			t.Fatalf("ListenOn(%d, %d, %v): %v, want ok %v", tc.port, tc.fam, tc.at, err, tc.ok)
		}
	}
	// An address-bound listener takes only its address.
	if c := dial(llB, 84); c.State() != StateEstablished {
		t.Fatalf("to llB:84: %v", c.State())
	}
	// Closing one of two listeners on a port leaves the other.
	var l4, l6 *Listener
	for l := n.b.s.listeners[83]; l != nil; l = l.next {
		if l.fam == Family4 {
			l4 = l
		} else {
			l6 = l
		}
	}
	l4.Close()
	if c := dial(mapB, 83); c.State() != StateClosed {
		t.Fatal("closed AF_INET listener still takes SYNs")
	}
	if c := dial(ulaB, 83); c.State() != StateEstablished {
		t.Fatal("v6-only listener gone with the AF_INET one")
	}
	if _, err := listen(83, FamilyBoth, Addr{}); err != ErrAddrInUse {
		t.Fatalf("dual-stack next to a v6-only listener: %v", err)
	}
	l6.Close()
	if _, err := listen(83, FamilyBoth, Addr{}); err != nil {
		t.Fatalf("dual-stack on a free port: %v", err)
	}
}

// The same sharing rules for UDP sockets (UDPBindOn), and each datagram goes
// to the socket of its family.
func TestIPv6DualStackUDP(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	bind := func(p uint16, fam Family, at Addr) (*UDPSocket, error) { return n.b.s.UDPBindOn(p, false, fam, at) }
	u4, err4 := bind(7000, Family4, Addr{})
	u6, err6 := bind(7000, Family6, Addr{})
	if err4 != nil || err6 != nil {
		t.Fatal(err4, err6)
	}
	for _, tc := range []struct {
		port uint16
		fam  Family
		at   Addr
		ok   bool
	}{
		{7000, FamilyBoth, Addr{}, false}, {7000, Family4, Addr{}, false}, {7000, Family6, llB, false},
		{7001, FamilyBoth, Addr{}, true}, {7001, Family4, Addr{}, false}, {7001, Family6, Addr{}, false},
		{7002, Family6, ulaB, true}, {7002, Family6, llB, true}, {7002, FamilyBoth, Addr{}, false},
	} {
		if _, err := bind(tc.port, tc.fam, tc.at); (err == nil) != tc.ok || err != nil && err != ErrAddrInUse {
			t.Fatalf("UDPBindOn(%d, %d, %v): %v, want ok %v", tc.port, tc.fam, tc.at, err, tc.ok)
		}
	}
	a := mustBind(t, n.a.s, 5000)
	a.SendTo([]byte("four"), mapB, 7000, macB)
	a.SendTo([]byte("six"), ulaB, 7000, macB)
	n.settle()
	if got, _, src, _ := recvOne(t, u4, 10); string(got) != "four" || src != mapA || u4.Readable() {
		t.Fatalf("AF_INET socket got %q from %v", got, src)
	}
	if got, _, src, _ := recvOne(t, u6, 10); string(got) != "six" || src != ulaA || u6.Readable() {
		t.Fatalf("v6-only socket got %q from %v", got, src)
	}
	// Address-bound sockets: each takes its own address only.
	var ula, ll *UDPSocket
	for u := n.b.s.udpPorts[7002]; u != nil; u = u.next {
		if u.local == ulaB {
			ula = u
		} else {
			ll = u
		}
	}
	a.SendTo([]byte("ll"), llB, 7002, macB)
	n.settle()
	if ula.Readable() || !ll.Readable() {
		t.Fatalf("to llB: ula socket %v, ll socket %v", ula.Readable(), ll.Readable())
	}
	// Its replies leave from the address it is bound to.
	ula.SendTo([]byte("from ula"), llA, 5000, macA)
	n.settle()
	if _, _, src, _ := recvOne(t, a, 100); src != ulaB {
		t.Fatalf("reply of a socket bound to ulaB came from %v", src)
	}
}

// RFC 8200 4 and 4.1-4.7: extension headers before a UDP datagram to B.
func TestIPv6ExtensionHeaders(t *testing.T) {
	hbh := func(o ...byte) ext { return optsHdr(wire.ProtoHopByHop, o...) }
	dst := func(o ...byte) ext { return optsHdr(wire.ProtoDestOpts, o...) }
	chain := func(k int) []ext {
		e := []ext{hbh()}
		for len(e) < k {
			e = append(e, dst())
		}
		return e
	}
	type counter func(*Stats) uint64
	extDrop := counter(func(s *Stats) uint64 { return s.DropExtHeader })
	malformed := counter(func(s *Stats) uint64 { return s.DropMalformed })
	for _, tc := range []struct {
		name   string
		exts   []ext
		mutate func(f []byte) []byte
		drop   counter // nil: delivered
	}{
		// RFC 8200 4.2: Pad1 and PadN are skipped, as is an unknown option of action 00.
		{name: "hbh pad1 padn", exts: []ext{hbh(0, 1, 1, 0, 0)}},
		{name: "hbh unknown option 00", exts: []ext{hbh(0x1e, 2, 0xaa, 0xbb)}},
		{name: "hbh router alert", exts: []ext{hbh(5, 2, 0, 0)}},
		{name: "hbh 16 bytes", exts: []ext{hbh(1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)}},
		// Actions 01, 10, 11: discard.
		{name: "hbh unknown option 01", exts: []ext{hbh(0x5e, 2, 0, 0)}, drop: extDrop},
		{name: "hbh unknown option 10", exts: []ext{hbh(0x9e, 2, 0, 0)}, drop: extDrop},
		{name: "hbh unknown option 11", exts: []ext{hbh(0xde, 2, 0, 0)}, drop: extDrop},
		{name: "hbh unknown option after padn", exts: []ext{hbh(1, 0, 0xde, 0)}, drop: extDrop},
		{name: "dstopts unknown option 10", exts: []ext{dst(0x9e, 0)}, drop: extDrop},
		// RFC 8200 4.3: Hop-by-Hop only immediately after the IPv6 header.
		{name: "hbh after dstopts", exts: []ext{dst(), hbh()}, drop: extDrop},
		{name: "hbh twice", exts: []ext{hbh(), hbh()}, drop: extDrop},
		{name: "dstopts", exts: []ext{dst()}},
		{name: "hbh dstopts", exts: []ext{hbh(), dst()}},
		// RFC 8200 4.4: Segments Left 0: ignore the Routing header; otherwise we
		// would have to forward, which a host does not.
		{name: "routing segments left 0", exts: []ext{hbh(), dst(), routingHdr(0), dst()}},
		{name: "routing segments left 1", exts: []ext{routingHdr(1)}, drop: extDrop},
		// The bound on the chain (maxExtHeaders headers are walked).
		{name: "chain at the bound", exts: chain(maxExtHeaders)},
		{name: "chain past the bound", exts: chain(maxExtHeaders + 1), drop: extDrop},
		// RFC 8200 4.7: nothing follows No Next Header; the bytes after it are ignored.
		{name: "no next header", exts: []ext{dst()}, mutate: func(f []byte) []byte {
			f[wire.EthHeaderLen+wire.IPv6HeaderLen] = wire.ProtoNoNext
			return f
		}, drop: func(*Stats) uint64 { return 1 }},
		// Truncated headers are malformed.
		{name: "hbh longer than the packet", exts: []ext{hbh()}, mutate: func(f []byte) []byte {
			f[wire.EthHeaderLen+wire.IPv6HeaderLen+1] = 200
			return f
		}, drop: malformed},
		{name: "routing cut short", exts: []ext{routingHdr(0)}, mutate: func(f []byte) []byte {
			return cutPayload(f, 6)
		}, drop: malformed},
		{name: "dstopts cut short", exts: []ext{dst()}, mutate: func(f []byte) []byte {
			return cutPayload(f, 7)
		}, drop: malformed},
		{name: "fragment header cut short", mutate: func(f []byte) []byte {
			f = withExt(f, ext{wire.ProtoFragment, fragHdr(0, 0, false, 1)})
			return cutPayload(f, 5)
		}, drop: malformed},
		{name: "payload length past the frame", mutate: func(f []byte) []byte {
			binary.BigEndian.PutUint16(f[wire.EthHeaderLen+wire.IPv6PayloadLen:], uint16(len(f)))
			return f
		}, drop: malformed},
		{name: "unknown next header", exts: []ext{dst()}, mutate: func(f []byte) []byte {
			f[wire.EthHeaderLen+wire.IPv6HeaderLen] = 253 // RFC 3692 experimental
			return f
		}, drop: func(s *Stats) uint64 { return s.DropUnsupportedProto }},
	} {
		n := newNet6(t, pair.Options{}, Config{}, Config{})
		u := mustBind(t, n.b.s, 5353)
		f := udp6Frame(ulaA, ulaB, 5000, 5353, []byte("payload"))
		if tc.exts != nil {
			f = withExt(f, tc.exts...)
		}
		if tc.mutate != nil {
			f = tc.mutate(f)
		}
		var before uint64
		if tc.drop != nil {
			before = tc.drop(n.b.s.Stats())
		}
		n.b.s.Input(n.now, f)
		n.settle()
		if tc.drop == nil {
			if !u.Readable() {
				t.Fatalf("%s: not delivered; stats %+v", tc.name, *n.b.s.Stats())
			}
			if got, _, src, _ := recvOne(t, u, 100); string(got) != "payload" || src != ulaA {
				t.Fatalf("%s: got %q from %v", tc.name, got, src)
			}
			continue
		}
		if u.Readable() {
			t.Fatalf("%s: delivered", tc.name)
		}
		if after := tc.drop(n.b.s.Stats()); after != before+1 && tc.name != "no next header" {
			t.Fatalf("%s: counter %d -> %d; stats %+v", tc.name, before, after, *n.b.s.Stats())
		}
	}
}

// cutPayload cuts an Ethernet/IPv6 frame to k payload bytes.
func cutPayload(f []byte, k int) []byte {
	f = f[:wire.EthHeaderLen+wire.IPv6HeaderLen+k]
	binary.BigEndian.PutUint16(f[wire.EthHeaderLen+wire.IPv6PayloadLen:], uint16(k))
	return f
}

// RFC 8200 4.6 and 4.3: a SYN behind Destination Options (and Hop-by-Hop)
// reaches the listener, which answers it.
func TestIPv6ExtHeadersBeforeTCP(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	n.b.s.Listen(80, 8)
	syn := raw{sport: 999, dport: 80, seq: 100, flags: wire.TCPFlagSYN, wnd: 65535, mss: 1440, ws: -1}.frame6(ulaA, ulaB)
	n.b.s.Input(n.now, withExt(syn, optsHdr(wire.ProtoHopByHop, 0x1e, 0), optsHdr(wire.ProtoDestOpts)))
	out := n.sent6(n.b)
	if len(out) != 1 || tcp6Of(out[0]).Flags() != wire.TCPFlagSYN|wire.TCPFlagACK || tcp6Of(out[0]).Ack() != 101 {
		t.Fatalf("%d frames, no SYN-ACK", len(out))
	}
}

// RFC 8200 4.5: fragments of a UDP datagram reassembled whatever their order,
// duplicates ignored; RFC 5722: overlapping fragments drop the datagram; a
// Fragment header inside a reassembled packet, or a Hop-by-Hop header after
// the Fragment header, drops it; a fragment other than the last whose length is
// not a multiple of 8 is discarded; RFC 6946: an atomic fragment is a whole
// packet, not a reassembly.
func TestIPv6FragmentsUDP(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	u := mustBind(t, n.b.s, 5353)
	st := n.b.s.Stats()
	msg := pattern(3000, 7)
	whole := udp6Frame(ulaA, ulaB, 5000, 5353, msg)
	fr := frag6(whole, 77, 1232, 2464)
	id := uint32(100)
	expect := func(name string, frames [][]byte, deliver bool) {
		t.Helper()
		oks, fails := st.IP6ReasmOKs, st.IP6ReasmFails
		for _, f := range frames {
			n.b.s.Input(n.now, f)
		}
		n.settle()
		if !deliver {
			if u.Readable() {
				t.Fatalf("%s: delivered", name)
			}
			return
		}
		if !u.Readable() {
			t.Fatalf("%s: not delivered; stats %+v", name, *st)
		}
		got, _, src, _ := recvOne(t, u, 4000)
		if !bytes.Equal(got, msg) || src != ulaA || u.Readable() || st.IP6ReasmOKs != oks+1 || st.IP6ReasmFails != fails {
			t.Fatalf("%s: got %d bytes from %v, again %v, reasm oks %d -> %d fails %d -> %d", name, len(got), src,
				u.Readable(), oks, st.IP6ReasmOKs, fails, st.IP6ReasmFails)
		}
	}
	reid := func(frames [][]byte) [][]byte {
		id++
		out := make([][]byte, len(frames))
		for i, f := range frames {
			out[i] = bytes.Clone(f)
			binary.BigEndian.PutUint32(out[i][wire.EthHeaderLen+wire.IPv6HeaderLen+4:], id)
		}
		return out
	}
	expect("in order", reid(fr), true)
	expect("reversed", reid([][]byte{fr[2], fr[1], fr[0]}), true)
	expect("duplicated", reid([][]byte{fr[1], fr[0], fr[1], fr[0], fr[2]}), true)
	expect("two byte-sized", frag6(udp6Frame(ulaA, ulaB, 5000, 5353, msg), 5, 8), true)

	fails := st.IP6ReasmFails
	p := whole[wire.EthHeaderLen+wire.IPv6HeaderLen:]
	overlap := reid([][]byte{fragFrame6(whole, wire.ProtoUDP, 0, 0, p[:1232], true),
		fragFrame6(whole, wire.ProtoUDP, 0, 1224, p[1224:], false)})
	oks := st.IP6ReasmOKs
	expect("overlapping", overlap, false)
	if st.IP6ReasmFails != fails+1 || st.IP6ReasmOKs != oks {
		t.Fatalf("overlap: reasm fails %d -> %d", fails, st.IP6ReasmFails)
	}
	// The rest of an overlapped datagram does not bring it back (RFC 5722 3).
	expect("after the overlap", [][]byte{overlap[1]}, false)

	// Nested: the reassembled packet starts with another Fragment header.
	inner := withExt(whole, ext{wire.ProtoFragment, fragHdr(0, 0, true, 9)})
	malformed := st.DropMalformed
	expect("nested fragment header", reid(frag6(inner, 0, 1232)), false)
	if st.DropMalformed != malformed+1 {
		t.Fatalf("nested: malformed %d -> %d", malformed, st.DropMalformed)
	}
	hbhInside := withExt(whole, optsHdr(wire.ProtoHopByHop))
	drops := st.DropExtHeader
	expect("hop-by-hop after the fragment header", reid(frag6(hbhInside, 0, 1232)), false)
	if st.DropExtHeader != drops+1 {
		t.Fatalf("hbh after fragment: ext drops %d -> %d", drops, st.DropExtHeader)
	}
	df := st.DropFragment
	expect("first fragment not a multiple of 8", reid([][]byte{fragFrame6(whole, wire.ProtoUDP, 0, 0, p[:1230], true)}), false)
	if st.DropFragment != df+1 {
		t.Fatalf("odd length: fragment drops %d -> %d", df, st.DropFragment)
	}

	// Atomic fragment: delivered at once, outside reassembly, even with a
	// reassembly of its identification pending.
	pend := reid(fr)
	n.b.s.Input(n.now, pend[0])
	reqds, oks := st.IP6ReasmReqds, st.IP6ReasmOKs
	atomic := fragFrame6(whole, wire.ProtoUDP, id, 0, p, false)
	n.b.s.Input(n.now, atomic)
	if got, _, _, _ := recvOne(t, u, 4000); !bytes.Equal(got, msg) || st.IP6ReasmReqds != reqds || st.IP6ReasmOKs != oks {
		t.Fatalf("atomic fragment: %d bytes, reqds %d -> %d", len(got), reqds, st.IP6ReasmReqds)
	}
	expect("the pending one completes", pend[1:], true)
}

// RFC 8200 4.5: reassembly is abandoned 60 seconds after the first fragment
// arrived (Linux ipfrag_time for IPv6 is 60 s, IPv4's 30 s), counted in
// ip6.reasm_fails, and Poll reports that deadline.
func TestIPv6FragmentTimeout(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	u := mustBind(t, n.b.s, 5353)
	st := n.b.s.Stats()
	msg := pattern(3000, 8)
	fr := frag6(udp6Frame(ulaA, ulaB, 5000, 5353, msg), 1, 1232, 2464)
	t0 := n.now
	n.b.s.Input(n.now, fr[0])
	n.step()
	if n.b.next != t0+60*Second {
		t.Fatalf("next deadline %v after the first fragment, want %v", n.b.next-t0, 60*Second)
	}
	n.now = t0 + 45*Second // past IPv4's 30 s
	n.step()
	n.b.s.Input(n.now, fr[1])
	n.b.s.Input(n.now, fr[2])
	if got, _, _, _ := recvOne(t, u, 4000); !bytes.Equal(got, msg) || st.IP6ReasmFails != 0 {
		t.Fatalf("completed after 45 s: %d bytes, fails %d", len(got), st.IP6ReasmFails)
	}
	fr = frag6(udp6Frame(ulaA, ulaB, 5000, 5353, msg), 2, 1232, 2464)
	t1 := n.now
	n.b.s.Input(n.now, fr[0])
	n.b.s.Input(n.now, fr[1])
	n.now = t1 + 60*Second - 1
	n.step()
	if st.IP6ReasmFails != 0 {
		t.Fatal("given up before 60 s")
	}
	n.now = t1 + 60*Second
	n.step()
	if st.IP6ReasmFails != 1 || st.IPReasmFails != 0 {
		t.Fatalf("after 60 s: ip6 reasm fails %d, ip %d", st.IP6ReasmFails, st.IPReasmFails)
	}
	n.b.s.Input(n.now, fr[2])
	if u.Readable() {
		t.Fatal("a timed-out datagram completed")
	}
}

// RFC 8200 4.5: a TCP segment sent in fragments (in reverse order) is
// reassembled and delivered to its connection.
func TestIPv6FragmentsTCP(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connectTo(80, ulaB)
	segs := capture(n.a.end, hasData6)
	data := pattern(1000, 9)
	c.Write(data)
	n.step()
	if len(*segs) != 1 {
		t.Fatalf("%d segments", len(*segs))
	}
	n.a.end.Hook = nil
	fr := frag6((*segs)[0], 3, 256, 512)
	for i := len(fr) - 1; i >= 0; i-- {
		n.b.s.Input(n.now, fr[i])
	}
	if s.InQueue() != len(data) || n.b.s.Stats().IP6ReasmOKs != 1 {
		t.Fatalf("in queue %d, reasm oks %d", s.InQueue(), n.b.s.Stats().IP6ReasmOKs)
	}
	buf := make([]byte, 2000)
	if k, _ := s.Read(buf); !bytes.Equal(buf[:k], data) {
		t.Fatal("data differs")
	}
	if got := n.transfer(c, s, pattern(50000, 10), true, 10*Second); !bytes.Equal(got, pattern(50000, 10)) {
		t.Fatal("transfer after the fragmented segment")
	}
}

// RFC 8201 4 (and RFC 4443 3.2): packet too big quoting a segment in flight
// lowers the path MTU and the MSS, and the retransmission fits; an MTU below
// 1280 is taken as 1280 (RFC 8200 5: every link carries 1280 bytes); a
// larger MTU never raises it. RFC 5927 4.1: a quote of a sequence number not
// in flight, or of a packet not from us, is ignored; RFC 4443 2.3: a bad
// checksum is an error, counted.
func TestIPv6PacketTooBig(t *testing.T) {
	for _, tc := range []struct{ mtu, want int }{{1400, 1400}, {600, 1280}, {1280, 1280}, {1499, 1499}} {
		n := newNet6(t, pair.Options{}, Config{}, Config{})
		c, s, _ := n.connectTo(80, ulaB)
		segs := capture(n.a.end, hasData6)
		c.Write(pattern(20000, 11))
		n.step()
		if len(*segs) == 0 {
			t.Fatal("no segment")
		}
		seg := (*segs)[0]
		router := addr6("fd00::1")
		ptb := func(f []byte, mtu int) []byte {
			return icmp6Error(f, router, macB, macA, wire.ICMPv6PacketTooBig, 0, uint32(mtu))
		}
		st := n.a.s.Stats()
		// Ignored: a bad checksum; a quote with a sequence number not in flight;
		// a quote of a packet from another address.
		bad := ptb(seg, tc.mtu)
		bad[len(bad)-1] ^= 0x10
		n.a.s.Input(n.now, bad)
		if st.ICMP6InErrors != 1 || c.PathMTU() != 1500 {
			t.Fatalf("bad checksum: in errors %d, pmtu %d", st.ICMP6InErrors, c.PathMTU())
		}
		foreign := bytes.Clone(seg)
		tcp6Of(foreign).SetSeq(tcp6Of(foreign).Seq() + 1<<30)
		n.a.s.Input(n.now, ptb(foreign, tc.mtu))
		notOurs := bytes.Clone(seg)
		other := addr6("fd00::99")
		copy(notOurs[wire.EthHeaderLen+wire.IPv6Src:], other[:])
		m := ptb(seg, tc.mtu)
		copy(m[wire.EthHeaderLen+wire.IPv6HeaderLen+wire.ICMPHeaderLen+wire.IPv6Src:], other[:])
		wire.ICMPv6(m[wire.EthHeaderLen+wire.IPv6HeaderLen:]).SetChecksum((*[16]byte)(&router), (*[16]byte)(&ulaA))
		n.a.s.Input(n.now, m)
		if c.PathMTU() != 1500 || c.MSS() != 1500-72 {
			t.Fatalf("ignored messages changed pmtu %d mss %d", c.PathMTU(), c.MSS())
		}
		n.a.s.Input(n.now, ptb(seg, tc.mtu))
		if c.PathMTU() != tc.want || c.MSS() != tc.want-60-12 || st.ICMP6InPktTooBigs < 1 {
			t.Fatalf("PTB %d: pmtu %d mss %d, want %d %d", tc.mtu, c.PathMTU(), c.MSS(), tc.want, tc.want-72)
		}
		n.a.s.Input(n.now, ptb(seg, 1500))
		if c.PathMTU() != tc.want {
			t.Fatalf("PTB 1500 raised the path MTU to %d", c.PathMTU())
		}
		n.a.end.Hook = nil
		sent := record(n.a.end)
		want := pattern(20000, 11)
		buf := make([]byte, 30000)
		got := 0
		if !n.runUntil(10*Second, func() bool {
			k, _ := s.Read(buf[got:])
			got += k
			return got == len(want)
		}) || !bytes.Equal(buf[:got], want) {
			t.Fatalf("PTB %d: %d of %d bytes after the message", tc.mtu, got, len(want))
		}
		largest := 0
		for _, f := range *sent {
			largest = max(largest, len(f)-wire.EthHeaderLen)
		}
		if largest != tc.want {
			t.Fatalf("PTB %d: largest packet %d, want %d", tc.mtu, largest, tc.want)
		}
	}
}

// RFC 4443 3.1 with RFC 1122 4.2.3.9 as Linux applies it: port unreachable
// answering a SYN refuses the connection (ECONNREFUSED); other unreachable
// codes are soft errors; the quoted sequence number must be ours (RFC 5927).
func TestIPv6UnreachableSynSent(t *testing.T) {
	for _, code := range []uint8{wire.ICMPv6PortUnreach, wire.ICMPv6NoRoute, wire.ICMPv6AddrUnreach} {
		n := newNet6(t, pair.Options{}, Config{}, Config{})
		syns := capture(n.a.end, isIPv6)
		c, err := n.a.s.Connect(n.now, 40000, ulaB, 81, macB)
		if err != nil {
			t.Fatal(err)
		}
		n.settle()
		if len(*syns) != 1 {
			t.Fatalf("%d SYNs", len(*syns))
		}
		unreach := func(f []byte) []byte {
			return icmp6Error(f, ulaB, macB, macA, wire.ICMPv6DestUnreach, code, 0)
		}
		bad := bytes.Clone((*syns)[0])
		tcp6Of(bad).SetSeq(tcp6Of(bad).Seq() + 100000)
		n.a.s.Input(n.now, unreach(bad))
		if c.State() != StateSynSent {
			t.Fatal("a foreign sequence number accepted")
		}
		n.a.s.Input(n.now, unreach((*syns)[0]))
		if n.a.s.Stats().ICMP6InDestUnreachs != 2 {
			t.Fatalf("dest unreachs %d", n.a.s.Stats().ICMP6InDestUnreachs)
		}
		if code == wire.ICMPv6PortUnreach {
			if c.State() != StateClosed || c.Err() != ErrRefused {
				t.Fatalf("port unreachable: %v %v", c.State(), c.Err())
			}
			continue
		}
		if c.State() != StateSynSent || c.Err() != nil {
			t.Fatalf("code %d: %v %v", code, c.State(), c.Err())
		}
	}
}

// Port unreachable from the peer of a connected UDP socket is reported on it
// (RFC 4443 3.1, Linux: ECONNREFUSED on connected sockets only).
func TestIPv6UnreachableUDP(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	sent := capture(n.a.end, isIPv6)
	u := mustBind(t, n.a.s, 5000)
	u.Connect(ulaB, 7777, macB)
	u.SendTo([]byte("x"), ulaB, 7777, macB)
	n.settle()
	if len(*sent) != 1 {
		t.Fatal("no datagram")
	}
	n.a.s.Input(n.now, icmp6Error((*sent)[0], ulaB, macB, macA, wire.ICMPv6DestUnreach, wire.ICMPv6PortUnreach, 0))
	if u.Err() != ErrRefused {
		t.Fatalf("err %v", u.Err())
	}
}

// Informational ICMPv6 (echo, RFC 4443 4) and Neighbor Discovery (RFC 4861)
// stay with the kernel: the stack ignores them, sends nothing, and survives
// malformed ones; an ICMPv6 error quoting an IPv4 packet, or too short a
// quote, is an error.
func TestIPv6InformationalIgnored(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	st := n.b.s.Stats()
	ns := make([]byte, 24) // reserved, target
	copy(ns[4:], ulaB[:])
	for _, m := range []struct{ typ, code uint8 }{{128, 0}, {129, 0}, {133, 0}, {134, 0}, {135, 0}, {136, 0}, {143, 0}} {
		for _, body := range [][]byte{nil, ns, {1}} {
			n.b.s.Input(n.now, icmp6Frame(ulaA, ulaB, macA, macB, m.typ, m.code, 0, body))
			n.b.s.Input(n.now, icmp6Frame(llA, llB, macA, macB, m.typ, m.code, 0, body))
		}
	}
	if out := n.sent6(n.b); len(out) != 0 || st.ICMP6InErrors != 0 || st.ICMP6InMsgs != 42 {
		t.Fatalf("%d frames sent, in msgs %d errors %d", len(out), st.ICMP6InMsgs, st.ICMP6InErrors)
	}
	v4 := udpFrame(5000, 5353, make([]byte, 40))[wire.EthHeaderLen:]
	for _, body := range [][]byte{v4, make([]byte, 47), {}} {
		n.b.s.Input(n.now, icmp6Frame(ulaA, ulaB, macA, macB, wire.ICMPv6DestUnreach, 4, 0, body))
	}
	n.b.s.Input(n.now, cutPayload(icmp6Frame(ulaA, ulaB, macA, macB, 1, 4, 0, nil), 4))
	if st.ICMP6InErrors != 4 {
		t.Fatalf("in errors %d, want 4", st.ICMP6InErrors)
	}
}

// RFC 4291 2.5.5.2: IPv4-mapped addresses are not used in IPv6 packets on the
// wire; 2.7: a multicast address is never a source. Packets to an address
// that is not ours are not for us.
func TestIPv6BadAddresses(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	u := mustBind(t, n.b.s, 5353)
	n.b.s.Listen(80, 8)
	st := n.b.s.Stats()
	for _, src := range []Addr{mapA, addr6("ff02::1")} {
		n.b.s.Input(n.now, udp6Frame(src, ulaB, 5000, 5353, []byte("x")))
		n.b.s.Input(n.now, raw{sport: 999, dport: 80, seq: 1, flags: wire.TCPFlagSYN, wnd: 100}.frame6(src, ulaB))
	}
	if u.Readable() || len(n.b.s.conns) != 0 || st.DropMalformed != 4 {
		t.Fatalf("readable %v, conns %d, malformed %d", u.Readable(), len(n.b.s.conns), st.DropMalformed)
	}
	for _, dst := range []Addr{addr6("fd00::99"), mapB, addr6("ff02::1")} {
		f := udp6Frame(ulaA, ulaB, 5000, 5353, []byte("x"))
		copy(f[wire.EthHeaderLen+wire.IPv6Dst:], dst[:])
		n.b.s.Input(n.now, f)
	}
	if u.Readable() || st.DropNotForUs != 3 {
		t.Fatalf("readable %v, not for us %d", u.Readable(), st.DropNotForUs)
	}
	if out := n.sent6(n.b); len(out) != 0 {
		t.Fatalf("%d frames sent", len(out))
	}
}

// RFC 4987 3.6 over IPv6: with the SYN queue full, a SYN is answered with a
// cookie encoding an MSS from Linux's IPv6 table (1220, 1420, 1440, 8940), and
// the returning ACK makes the connection, which moves data both ways.
func TestIPv6SynCookies(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	l, err := n.b.s.Listen(80, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		n.b.s.Input(n.now, raw{sport: uint16(1000 + i), dport: 80, seq: 5000, flags: wire.TCPFlagSYN, wnd: 8192, mss: 1440, ws: -1}.frame6(ulaA, ulaB))
	}
	n.sent6(n.b)
	st := n.b.s.Stats()
	// Table: the peer's MSS, capped by ours (1440), rounded down to an entry.
	for i, tc := range []struct{ peer, want uint16 }{{1440, 1440}, {9000, 1440}, {1430, 1420}, {1419, 1220}, {536, 1220}, {0, 1220}} {
		sport := uint16(2000 + i)
		n.b.s.Input(n.now, raw{sport: sport, dport: 80, seq: 7000, flags: wire.TCPFlagSYN, wnd: 8192, mss: tc.peer, ws: -1}.frame6(ulaA, ulaB))
		out := n.sent6(n.b)
		if len(out) != 1 || tcp6Of(out[0]).Flags() != wire.TCPFlagSYN|wire.TCPFlagACK {
			t.Fatalf("MSS %d: %d frames, no cookie SYN-ACK", tc.peer, len(out))
		}
		sa := tcp6Of(out[0])
		if o := wire.ParseTCPOptions(sa.Options()); o.MSS != tc.want {
			t.Fatalf("peer MSS %d: cookie MSS %d, want %d", tc.peer, o.MSS, tc.want)
		}
		if Addr(ip6Of(out[0]).Src()) != ulaB {
			t.Fatalf("cookie SYN-ACK from %v", Addr(ip6Of(out[0]).Src()))
		}
		if tc.peer != 1430 {
			continue
		}
		// The ACK returning that cookie makes a connection with the MSS it encodes.
		n.b.s.Input(n.now, raw{sport: sport, dport: 80, seq: 7001, ack: sa.Seq() + 1, flags: wire.TCPFlagACK, wnd: 8192}.frame6(ulaA, ulaB))
		c := n.b.s.conns[connKey{ulaA, sport, 80}]
		if c == nil || c.mss != 1420 || st.TCPSynCookiesRecv != 1 {
			t.Fatalf("cookie ACK: conn %v, recv %d", c != nil, st.TCPSynCookiesRecv)
		}
		// The same ACK from the IPv4-mapped form of another peer is no cookie of ours.
		n.b.s.Input(n.now, raw{sport: sport, dport: 80, seq: 7001, ack: sa.Seq() + 1, flags: wire.TCPFlagACK, wnd: 8192}.frame6(mapA, mapB))
		if n.b.s.conns[connKey{mapA, sport, 80}] != nil || st.TCPSynCookiesFailed != 1 {
			t.Fatalf("cookie accepted from another address; failed %d", st.TCPSynCookiesFailed)
		}
		n.sent6(n.b)
	}
	for l.Accept() != nil {
	}
	c, err := n.a.s.Connect(n.now, 0, ulaB, 80, macB)
	if err != nil {
		t.Fatal(err)
	}
	sent := st.TCPSynCookiesSent
	if !n.runUntil(Second/2, func() bool { return l.Readable() && c.State() == StateEstablished }) {
		t.Fatalf("cookie handshake: %v", c.State())
	}
	srv := l.Accept()
	if st.TCPSynCookiesSent != sent+1 || srv == nil || srv.mss != 1440-12 || !srv.tsOK {
		t.Fatalf("cookies sent %d -> %d, server %v", sent, st.TCPSynCookiesSent, srv)
	}
	data := pattern(300<<10, 13)
	if got := n.transfer(c, srv, data, false, 30*Second); !bytes.Equal(got, data) {
		t.Fatal("a->b differs")
	}
	if got := n.transfer(srv, c, data, false, 30*Second); !bytes.Equal(got, data) {
		t.Fatal("b->a differs")
	}
}
