package stackcore

import (
	"bytes"
	"encoding/binary"
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// bigUDPFrame builds an unfragmented (oversized) UDP frame from a to b.
func bigUDPFrame(sport, dport uint16, payload []byte) []byte {
	s := &Stack{cfg: Config{MAC: macA, Addr: addrA}, stats: new(Stats)}
	rg := newRing(len(payload) + 1)
	rg.Write(payload)
	buf := make([]byte, wire.EthHeaderLen+wire.IPv4MinLen+wire.UDPHeaderLen+len(payload))
	n := s.encodeUDP(buf, macB, addrB, 64, sport, dport, &rg, len(payload))
	return buf[:n]
}

// fragment splits an unfragmented frame's IP payload at the byte offsets in
// cuts (multiples of 8) into fragment frames with identification id.
func fragment(frame []byte, id uint16, cuts ...int) [][]byte {
	ip := wire.IPv4(frame[wire.EthHeaderLen:])
	data := ip.Payload()
	bounds := append(append([]int{0}, cuts...), len(data))
	var out [][]byte
	for i := 0; i+1 < len(bounds); i++ {
		out = append(out, fragFrame(frame, id, bounds[i], data[bounds[i]:bounds[i+1]], i+2 < len(bounds)))
	}
	return out
}

// fragFrame builds one fragment of frame's datagram: data at offset off.
func fragFrame(frame []byte, id uint16, off int, data []byte, more bool) []byte {
	f := make([]byte, wire.EthHeaderLen+wire.IPv4MinLen+len(data))
	copy(f, frame[:wire.EthHeaderLen+wire.IPv4MinLen])
	copy(f[wire.EthHeaderLen+wire.IPv4MinLen:], data)
	h := wire.IPv4(f[wire.EthHeaderLen:])
	ff := uint16(off / 8)
	if more {
		ff |= wire.IPv4FlagMF
	}
	binary.BigEndian.PutUint16(h[wire.IPv4TotalLen:], uint16(wire.IPv4MinLen+len(data)))
	binary.BigEndian.PutUint16(h[wire.IPv4ID:], id)
	binary.BigEndian.PutUint16(h[wire.IPv4FlagsFrag:], ff)
	h[wire.IPv4Checksum], h[wire.IPv4Checksum+1] = 0, 0
	binary.BigEndian.PutUint16(h[wire.IPv4Checksum:], wire.Finish(wire.Checksum(h[:wire.IPv4MinLen], 0)))
	return f
}

// RFC 791 3.2 (reassembly) / RFC 815: fragments of a UDP datagram arriving
// out of order, interleaved with another datagram's, are reassembled and
// delivered whole, with the checksum over the whole datagram verified.
func TestReassemblyUDP(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	u := mustBind(t, n.b.s, 53)
	p1, p2 := pattern(4000, 1), pattern(9000, 2)
	f1 := fragment(bigUDPFrame(1000, 53, p1), 7, 1480, 2960)
	f2 := fragment(bigUDPFrame(1001, 53, p2), 8, 1480, 2960, 4440, 5920, 7400)
	order := [][]byte{f1[2], f2[5], f2[0], f1[0], f2[3], f2[1], f2[4], f1[1], f2[2]}
	for _, f := range order {
		n.b.s.Input(n.now, f)
	}
	got, full, src, sport := recvOne(t, u, 10000)
	if !bytes.Equal(got, p1) || full != len(p1) || src != addrA || sport != 1000 {
		t.Fatalf("first datagram: %d bytes from %v:%d", full, src, sport)
	}
	got, _, _, sport = recvOne(t, u, 10000)
	if !bytes.Equal(got, p2) || sport != 1001 {
		t.Fatalf("second datagram: %d bytes", len(got))
	}
	st := n.b.s.Stats()
	if st.IPReasmReqds != 9 || st.IPReasmOKs != 2 || st.IPReasmFails != 0 || st.DropFragment != 0 || n.b.s.reasm.used != 0 {
		t.Fatalf("reqds %d oks %d fails %d drops %d", st.IPReasmReqds, st.IPReasmOKs, st.IPReasmFails, st.DropFragment)
	}
}

// RFC 791: a fragmented TCP segment is reassembled and delivered to the
// connection (TCP input sees one segment).
func TestReassemblyTCP(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{NoTimestamps: true}, Config{NoTimestamps: true})
	c, s, _ := n.connect(80)
	data := pattern(1000, 5)
	seg := raw{sport: c.key.lport, dport: 80, seq: uint32(c.sndNxt), ack: uint32(c.rcvNxt), flags: wire.TCPFlagACK | wire.TCPFlagPSH,
		wnd: 1000, payload: data}.frame()
	fr := fragment(seg, 99, 8, 512)
	n.b.s.Input(n.now, fr[1])
	n.b.s.Input(n.now, fr[2])
	n.b.s.Input(n.now, fr[0])
	buf := make([]byte, 2000)
	k, err := s.Read(buf)
	if err != nil || !bytes.Equal(buf[:k], data) {
		t.Fatalf("read %d %v", k, err)
	}
}

// RFC 5722 (spirit), Linux since 2018: overlapping fragments drop the whole
// datagram; an exact duplicate is ignored. Inconsistent ends and a datagram
// longer than 64 KiB fail too; fragments that are not a multiple of 8 bytes
// (but the last) are not taken.
func TestReassemblyOverlapAndLimits(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	u := mustBind(t, n.b.s, 53)
	s := n.b.s
	st := s.Stats()
	p := pattern(3000, 3)
	frame := bigUDPFrame(1000, 53, p)
	fr := fragment(frame, 1, 1480)
	// Overlap: [0,1480) then [1472, end).
	data := wire.IPv4(frame[wire.EthHeaderLen:]).Payload()
	s.Input(n.now, fr[0])
	s.Input(n.now, fragFrame(frame, 1, 1472, data[1472:], false))
	if st.IPReasmFails != 1 || s.reasm.used != 0 {
		t.Fatalf("overlap: fails %d used %d", st.IPReasmFails, s.reasm.used)
	}
	s.Input(n.now, fr[1]) // starts a new datagram that never completes
	if _, _, _, _, err := u.RecvFrom(make([]byte, 4000), false); err != ErrWouldBlock {
		t.Fatal("datagram delivered despite overlap")
	}
	// Exact duplicate: ignored, the datagram completes.
	fr = fragment(frame, 2, 1480)
	s.Input(n.now, fr[0])
	s.Input(n.now, fr[0])
	s.Input(n.now, fr[1])
	if got, _, _, _ := recvOne(t, u, 4000); !bytes.Equal(got, p) || st.IPReasmOKs != 1 {
		t.Fatal("duplicate fragment broke reassembly")
	}
	// Beyond 64 KiB: offset 65528 with 100 bytes.
	fails := st.IPReasmFails
	s.Input(n.now, fragFrame(frame, 3, 65528, make([]byte, 100), false))
	if st.IPReasmFails != fails+1 {
		t.Fatal("oversized datagram not failed")
	}
	// Two last fragments that disagree on the end.
	s.Input(n.now, fragFrame(frame, 4, 1480, data[1480:2000], false))
	s.Input(n.now, fragFrame(frame, 4, 2000, data[2000:], false))
	if st.IPReasmFails != fails+2 {
		t.Fatal("inconsistent last fragments not failed")
	}
	// Not a multiple of 8 with MF set: not taken.
	drops := st.DropFragment
	s.Input(n.now, fragFrame(frame, 5, 0, data[:1001], true))
	if st.DropFragment != drops+1 {
		t.Fatal("odd-sized fragment taken")
	}
}

// Linux ipfrag_time (30 s): an incomplete datagram is dropped 30 s after
// its first fragment, which Poll reports as its deadline; the pool holds at
// most 64 datagrams and fragments beyond it count as drop.fragment.
func TestReassemblyTimeoutAndPool(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	u := mustBind(t, n.b.s, 53)
	s := n.b.s
	st := s.Stats()
	frame := bigUDPFrame(1000, 53, pattern(3000, 4))
	fr := fragment(frame, 1, 1480)
	start := n.now
	s.Input(n.now, fr[0])
	if next := s.Poll(n.now, n.b.end); next != start+reasmTimeout {
		t.Fatalf("deadline %d, want %d", next-start, reasmTimeout)
	}
	n.now = start + reasmTimeout - 1
	s.Poll(n.now, n.b.end)
	if st.IPReasmTimeout != 0 {
		t.Fatal("expired early")
	}
	n.now = start + reasmTimeout
	if next := s.Poll(n.now, n.b.end); next != Never || st.IPReasmTimeout != 1 || st.IPReasmFails != 1 || s.reasm.used != 0 {
		t.Fatalf("timeout %d fails %d next %d", st.IPReasmTimeout, st.IPReasmFails, next)
	}
	s.Input(n.now, fr[1]) // the late rest does not complete anything
	if _, _, _, _, err := u.RecvFrom(make([]byte, 4000), false); err != ErrWouldBlock {
		t.Fatal("expired datagram delivered")
	}
	// Pool: 64 datagrams in progress (one is fr[1] above), the 65th is refused.
	for id := range uint16(reasmSlots - 1) {
		s.Input(n.now, fragment(frame, 100+id, 1480)[0])
	}
	drops := st.DropFragment
	s.Input(n.now, fragment(frame, 999, 1480)[0])
	if st.DropFragment != drops+1 || s.reasm.used != reasmSlots {
		t.Fatalf("pool: drops %d used %d", st.DropFragment-drops, s.reasm.used)
	}
	// Completing one frees its slot.
	s.Input(n.now, fragment(frame, 100, 1480)[1])
	if st.IPReasmOKs != 1 || s.reasm.used != reasmSlots-1 {
		t.Fatalf("oks %d used %d", st.IPReasmOKs, s.reasm.used)
	}
}

// Reassembly uses the pool allocated in New: no allocation per fragment.
func TestReassemblyAllocs(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	u := mustBind(t, n.b.s, 53)
	fr := fragment(bigUDPFrame(1000, 53, pattern(4000, 1)), 7, 1480, 2960)
	buf := make([]byte, 5000)
	allocs := testing.AllocsPerRun(100, func() {
		for _, f := range fr {
			n.b.s.Input(n.now, f)
		}
		if _, _, _, _, err := u.RecvFrom(buf, false); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per reassembled datagram", allocs)
	}
}

// FuzzReassembly feeds arbitrary fragment sequences (4 bytes each: id,
// offset/8 (2 bytes), length/8 and MF) into the reassembler and checks its
// invariants: slot count, sorted disjoint non-touching ranges within 64 KiB.
func FuzzReassembly(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0x85, 1, 0, 5, 0x05})
	f.Add([]byte{1, 0, 0, 0x85, 1, 0, 4, 0x05, 1, 0, 5, 0x05})
	f.Add([]byte{2, 0x1f, 0xff, 0x7f, 3, 0, 0, 0xff})
	frame := bigUDPFrame(1000, 53, pattern(64, 1))
	payload := pattern(1<<10, 2)
	s := New(Config{MAC: macB, Addr: addrB, VerifyChecksums: true})
	s.UDPBind(53)
	snap := snapshot(f, s) // restored per input: New costs more than an input
	f.Fuzz(func(t *testing.T, in []byte) {
		snap.restore()
		now := Time(1000 * Second)
		for ; len(in) >= 4; in = in[4:] {
			off := int(binary.BigEndian.Uint16(in[1:])&wire.IPv4FragOffMask) * 8
			k := int(in[3]&0x7f) * 8
			s.Input(now, fragFrame(frame, uint16(in[0]), off, payload[:k], in[3]&0x80 != 0))
			now += Second
		}
		used := 0
		for i := range s.reasm.slots {
			sl := &s.reasm.slots[i]
			if !sl.used {
				continue
			}
			used++
			for j := range sl.nranges {
				r := sl.ranges[j]
				if r.start >= r.end || r.end > reasmMaxData || j > 0 && sl.ranges[j-1].end >= r.start {
					t.Fatalf("slot %d ranges %v", i, sl.ranges[:sl.nranges])
				}
			}
		}
		if used != s.reasm.used {
			t.Fatalf("used %d, counted %d", s.reasm.used, used)
		}
	})
}
