package wire

import "golang.org/x/sys/cpu"

// haveSum16 says whether Checksum may hand whole 64-byte blocks to
// sum16AVX2: one carry chain adds 8 bytes a cycle at best, AVX2 lanes
// about 32.
var haveSum16 = cpu.X86.HasAVX2

// sum16AVX2 is in sum16_amd64.s.
//
//go:noescape
func sum16AVX2(p *byte, n int) uint64

func sum16(b []byte) uint64 { return sum16AVX2(&b[0], len(b)) }
