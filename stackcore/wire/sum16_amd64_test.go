package wire

import "testing"

// TestChecksumBothPaths runs the reference comparison with the vector
// blocks and without them, over lengths that cross sum16Max (several
// vector calls) and start at odd addresses (unaligned loads).
func TestChecksumBothPaths(t *testing.T) {
	b := make([]byte, 3*sum16Max+200)
	x := uint32(777)
	for i := range b {
		x = x*1103515245 + 12345
		b[i] = byte(x >> 16)
	}
	saved := haveSum16
	defer func() { haveSum16 = saved }()
	for _, vec := range []bool{true, false} {
		if vec && !saved {
			continue
		}
		haveSum16 = vec
		for _, start := range []int{0, 1, 7} {
			for n := 0; start+n <= len(b); n += 1 + n/3 {
				p := b[start : start+n]
				if got, want := Checksum(p, 0xbeef), refChecksum(p, 0xbeef); got != want {
					t.Fatalf("vector %v start %d len %d: got %x want %x", vec, start, n, got, want)
				}
			}
		}
	}
}

func BenchmarkChecksum1480(b *testing.B) {
	buf := make([]byte, 1480)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(buf)))
	var s uint32
	for range b.N {
		s += Checksum(buf, s&0xffff)
	}
	if s == 1 {
		b.Log(s)
	}
}
