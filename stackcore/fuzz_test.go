package stackcore

import (
	"maps"
	"reflect"
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
	cfg := Config{RecvBuf: 16 << 10, SendBuf: 16 << 10}
	var u, uc *UDPSocket
	fn := newFuzzNet(f, pair.Options{NumFrames: 64}, cfg, cfg, func(n *testNet) {
		u, _ = n.b.s.UDPBind(5353)
		uc, _ = n.b.s.UDPBind(5354)
	})
	buf := make([]byte, 64)
	f.Fuzz(func(t *testing.T, frame []byte, verify bool) {
		hang := time.AfterFunc(3*time.Second, func() { panic("fuzz input hangs the stack") })
		defer hang.Stop()
		n := fn.reset(t)
		c, _, _ := n.connect(80)
		_ = c
		uc.Connect(mapA, 5000, macA)
		uc.SendTo([]byte("query"), mapA, 5000, macA)
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
		for _, x := range []*UDPSocket{u, uc} {
			for x.Readable() {
				x.RecvFrom(buf, false)
			}
		}
	})
}

// The fuzz engine runs one input at a time in each worker process, so a
// target builds its stacks and wire once per worker and restores them before
// each input rather than building them per input: New allocates a 4 MiB
// reassembly pool and pair.New a pool of frames, far more work than most
// inputs are.

// stackSnap restores a Stack, and the UDP sockets bound on it, to the state
// they had when snapshot took it: every value field, the contents of the
// maps and the counters. The stack must have no TCP connection or listener
// then and its lists must be empty. Buffers (the reassembly pool, the
// sockets' rings) keep their bytes; the stack writes them before it reads
// them, as it does when it reuses a slot or a ring.
type stackSnap struct {
	s        *Stack
	saved    Stack
	stats    Stats
	udpPorts map[uint16]*UDPSocket
	udp      []*UDPSocket
	udpSaved []UDPSocket
}

// snapRefs says how a snapshot treats each field of Stack and UDPSocket that
// refers to memory: "empty" and "nil" fields must be so when the snapshot is
// taken, "copied" ones are restored, "buffer" ones keep their bytes, "fixed"
// ones are set by New and never written after, "stack" is the stack itself. checkSnap fails on a field missing here, so one added
// to Stack later is not shared between inputs unnoticed.
var snapRefs = map[string]string{
	"Stack.cfg.Stats":         "nil",
	"Stack.cfg.Addrs6":        "fixed",
	"Stack.addrs6":            "fixed",
	"Stack.stats":             "copied",
	"Stack.conns":             "empty",
	"Stack.listeners":         "empty",
	"Stack.portRefs":          "empty",
	"Stack.udpPorts":          "copied",
	"Stack.list":              "empty",
	"Stack.ready":             "empty",
	"Stack.timers":            "empty",
	"Stack.wokenConns":        "empty",
	"Stack.wokenLns":          "empty",
	"Stack.released":          "empty",
	"Stack.pins":              "empty",
	"Stack.unpins":            "empty",
	"Stack.udpTx":             "empty",
	"Stack.wokenUDP":          "empty",
	"Stack.releasedUDP":       "empty",
	"Stack.sndPool.free":      "empty",
	"Stack.rcvPool.free":      "empty",
	"Stack.reasm.slots[].buf": "buffer",
	"Stack.mc.joined":         "nil", // no socket joins a group in the fuzzers
	"UDPSocket.s":             "stack",
	"UDPSocket.next":          "copied",
	"UDPSocket.err":           "nil",
	"UDPSocket.mc.groups":     "nil",
	"UDPSocket.rx.data.buf":   "buffer",
	"UDPSocket.rx.meta":       "buffer",
	"UDPSocket.tx.data.buf":   "buffer",
	"UDPSocket.tx.meta":       "buffer",
}

func checkSnap(t testing.TB, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			checkSnap(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Array:
		if v.Len() > 0 {
			checkSnap(t, v.Index(0), path+"[]")
		}
	case reflect.Map, reflect.Pointer, reflect.Slice, reflect.Interface, reflect.Chan, reflect.Func,
		reflect.UnsafePointer:
		switch snapRefs[path] {
		case "":
			t.Fatalf("snapshot: %s (%s) is not restored; add it to snapRefs and stackSnap", path, v.Type())
		case "empty":
			if v.Len() != 0 {
				t.Fatalf("snapshot: %s is not empty", path)
			}
		case "nil":
			if !v.IsNil() {
				t.Fatalf("snapshot: %s is not nil", path)
			}
		}
	}
}

// snapshot takes s's state (with its UDP sockets) for restore.
func snapshot(t testing.TB, s *Stack) *stackSnap {
	checkSnap(t, reflect.ValueOf(s).Elem(), "Stack")
	p := &stackSnap{s: s, saved: *s, stats: *s.stats, udpPorts: maps.Clone(s.udpPorts)}
	for _, u := range s.udpPorts {
		for ; u != nil; u = u.next {
			checkSnap(t, reflect.ValueOf(u).Elem(), "UDPSocket")
			if u.rx.cnt != 0 || u.tx.cnt != 0 {
				t.Fatalf("snapshot: UDP port %d has datagrams queued", u.port)
			}
			p.udp = append(p.udp, u)
			p.udpSaved = append(p.udpSaved, *u)
		}
	}
	return p
}

// restore returns the stack and its snapshotted sockets to the snapshot.
func (p *stackSnap) restore() {
	s := p.s
	*s = p.saved
	clear(s.conns)
	clear(s.listeners)
	clear(s.portRefs)
	clear(s.udpPorts)
	maps.Copy(s.udpPorts, p.udpPorts)
	*s.stats = p.stats
	for i, u := range p.udp {
		*u = p.udpSaved[i]
	}
}

// fuzzNet is a testNet that reset returns to the state it had when built.
type fuzzNet struct {
	n     *testNet
	a, b  *stackSnap
	start Time
	rx    [][]byte
}

// newFuzzNet builds a testNet, lets setup bind UDP sockets on it and takes
// its snapshot.
func newFuzzNet(t testing.TB, opts pair.Options, cfgA, cfgB Config, setup func(n *testNet)) *fuzzNet {
	n := newNet(t, opts, cfgA, cfgB)
	if setup != nil {
		setup(n)
	}
	return &fuzzNet{n: n, a: snapshot(t, n.a.s), b: snapshot(t, n.b.s), start: n.now, rx: make([][]byte, 64)}
}

// reset empties the wire (a failed input may leave frames in flight or
// lent), restores both stacks and the clock and reports to t.
func (f *fuzzNet) reset(t testing.TB) *testNet {
	n := f.n
	ends := []*pair.End{n.a.end, n.b.end}
	for _, e := range ends {
		e.Hook = nil
		e.ReleaseRx()
	}
	for moved := true; moved; {
		moved = false
		for _, e := range ends {
			e.Flush()
		}
		for _, e := range ends {
			for e.Receive(f.rx) > 0 {
				e.ReleaseRx()
				moved = true
			}
		}
	}
	f.a.restore()
	f.b.restore()
	n.t, n.now = t, f.start
	n.a.next, n.b.next = Never, Never
	return n
}
