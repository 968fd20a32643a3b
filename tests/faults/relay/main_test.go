package main

import (
	"bytes"
	"testing"
)

// frame builds Ethernet + IPv4 (20 bytes) + a transport header of hdr bytes
// (TCP data offset from hdr) + payload bytes, padded to 60 bytes.
func frame(proto byte, hdr, payload int) []byte {
	f := make([]byte, 14+20+hdr+payload)
	f[12], f[13] = 0x08, 0x00
	ip := f[14:]
	ip[0] = 0x45
	tot := 20 + hdr + payload
	ip[2], ip[3] = byte(tot>>8), byte(tot)
	ip[9] = proto
	if proto == 6 {
		ip[20+12] = byte(hdr/4) << 4
	}
	if proto == 17 {
		ip[20+6] = 0x12 // a checksum
	}
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

func TestCorruptFlipsOneCoveredByte(t *testing.T) {
	for _, c := range []struct {
		name   string
		f      []byte
		lo, hi int // where the flipped byte must be
	}{
		{"tcp data", frame(6, 20, 100), 14 + 40, 14 + 140},
		{"tcp options, no data", frame(6, 32, 0), 14 + 20, 14 + 52},
		{"udp data", frame(17, 8, 30), 14 + 28, 14 + 58},
		{"icmp", frame(1, 8, 56), 14 + 20, 14 + 84},
		{"other protocol: ip header", frame(47, 4, 4), 14, 14 + 20},
	} {
		for pos := range uint64(300) {
			g := bytes.Clone(c.f)
			if !corrupt(g, pos, 0x5a) {
				t.Fatalf("%s: not corrupted", c.name)
			}
			n, at := 0, -1
			for i := range g {
				if g[i] != c.f[i] {
					n, at = n+1, i
				}
			}
			if n != 1 || at < c.lo || at >= c.hi {
				t.Fatalf("%s pos %d: %d bytes changed, at %d; want one in [%d, %d)", c.name, pos, n, at, c.lo, c.hi)
			}
		}
	}
	arp := make([]byte, 60)
	arp[12], arp[13] = 0x08, 0x06
	orig := bytes.Clone(arp)
	if corrupt(arp, 5, 1) || !bytes.Equal(arp, orig) {
		t.Fatal("ARP frame corrupted")
	}
}
