package wire

import (
	"encoding/binary"
	"testing"
)

// refChecksum is RFC 1071 section 4.1, 16 bits at a time.
func refChecksum(b []byte, initial uint32) uint32 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return sum
}

func TestChecksumMatchesReference(t *testing.T) {
	b := make([]byte, 2000)
	x := uint32(12345)
	for i := range b {
		x = x*1103515245 + 12345
		b[i] = byte(x >> 16)
	}
	for n := 0; n <= len(b); n += 1 + n/7 {
		for _, init := range []uint32{0, 0xffff, 0x1234} {
			if got, want := Checksum(b[:n], init), refChecksum(b[:n], init); got != want {
				t.Fatalf("len %d init %x: got %x want %x", n, init, got, want)
			}
		}
	}
	ff := make([]byte, 1500)
	for i := range ff {
		ff[i] = 0xff
	}
	if got, want := Checksum(ff, 0xffff), refChecksum(ff, 0xffff); got != want {
		t.Fatalf("all ones: %x %x", got, want)
	}
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 0x3c}, uint32(0))
	f.Add([]byte{0xff, 0xff, 0xff}, uint32(0xffff))
	f.Fuzz(func(t *testing.T, b []byte, init uint32) {
		init &= 0xffff
		if got, want := Checksum(b, init), refChecksum(b, init); got != want {
			t.Fatalf("got %x want %x", got, want)
		}
	})
}

func FuzzParsers(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0, 80, 0x9c, 0x40, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 2, 0xff, 0xff, 0, 0, 0, 0, 2, 4, 5, 0xb4})
	// UDP, and ICMP port unreachable quoting a UDP header (RFC 792).
	f.Add([]byte{0x45, 0, 0, 29, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0x13, 0x88, 0x17, 0x70, 0, 9, 0, 0, 'x'})
	f.Add([]byte{0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
		3, 3, 0, 0, 0, 0, 0, 0,
		0x45, 0, 0, 29, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0x13, 0x88, 0x17, 0x70, 0, 9, 0, 0})
	f.Add([]byte{0x46, 0, 0, 24, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ip := IPv4(b)
		if ip.Check(false) != IPv4OK {
			return
		}
		_ = ip.Src()
		_ = ip.IsFragment()
		if u := UDP(ip.Payload()); u.Valid() {
			_ = u.Payload()
			_ = u.ChecksumOK(ip.Src(), ip.Dst())
		}
		if m := ICMPv4(ip.Payload()); m.Valid() {
			_ = m.ChecksumOK()
			_ = m.NextHopMTU()
			if q, l4, ok := Quoted(m.Body()); ok {
				_ = q.Src()
				_ = q.Protocol()
				_ = q.FlagsFrag()
				_ = l4[7]
			}
		}
		tcp := TCP(ip.Payload())
		if !tcp.Valid() {
			return
		}
		o := ParseTCPOptions(tcp.Options())
		_ = o
		_ = tcp.Payload()
		_ = tcp.ChecksumOK(ip.Src(), ip.Dst())
	})
}

func FuzzTCPOptions(f *testing.F) {
	f.Add([]byte{2, 4, 5, 0xb4, 1, 3, 3, 7})
	f.Add([]byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{3, 1})
	f.Add([]byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 3, 3, 7})
	f.Add([]byte{1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		o := ParseTCPOptions(b)
		var buf [8]byte
		n := PutSynOptions(buf[:], o.MSS, int(o.WScale))
		if r := ParseTCPOptions(buf[:n]); r.MSS != o.MSS || r.WScale != o.WScale || !r.HasWScale {
			t.Fatalf("round trip %+v -> %+v", o, r)
		}
		// Full SYN options and data-segment options round-trip too.
		var big [40]byte
		n = PutSynOptionsFull(big[:], SynOptions{MSS: o.MSS, WScale: int(o.WScale), SACKPerm: o.SACKPerm, TS: o.HasTS,
			TSVal: o.TSVal, TSEcr: o.TSEcr})
		r := ParseTCPOptions(big[:n])
		if n%4 != 0 || n > 20 || r.MSS != o.MSS || r.SACKPerm != o.SACKPerm || r.HasTS != o.HasTS || r.TSVal != o.TSVal ||
			r.TSEcr != o.TSEcr || r.WScale != o.WScale {
			t.Fatalf("syn round trip %+v -> %+v", o, r)
		}
		k := min(o.NSACK, 3)
		n = PutTimestamp(big[:], o.TSVal, o.TSEcr)
		n += PutSACK(big[n:], o.SACK[:k])
		r = ParseTCPOptions(big[:n])
		if n > 40 || !r.HasTS || r.TSVal != o.TSVal || r.NSACK != k || r.SACK != ([TCPMaxSACKBlocks]SACKBlock{}) && k == 0 {
			t.Fatalf("data round trip %+v -> %+v", o, r)
		}
		for i := range k {
			if r.SACK[i] != o.SACK[i] {
				t.Fatalf("sack block %d: %+v -> %+v", i, o.SACK[i], r.SACK[i])
			}
		}
	})
}
