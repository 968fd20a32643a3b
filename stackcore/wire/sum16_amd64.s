#include "textflag.h"

// func sum16AVX2(p *byte, n int) uint64
//
// Adds the n bytes at p as little-endian 16-bit words into 32-bit lanes
// (four accumulators of eight lanes each, one 16-bit word per lane per
// 64 bytes) and returns the total. n is a multiple of 64 and at most
// 64 KiB, so no lane and no partial total can pass 2^32.
TEXT ·sum16AVX2(SB), NOSPLIT, $0-24
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPXOR Y7, Y7, Y7
loop:
	VMOVDQU (SI), Y4
	VMOVDQU 32(SI), Y5
	VPUNPCKLWD Y7, Y4, Y6
	VPADDD Y6, Y0, Y0
	VPUNPCKHWD Y7, Y4, Y6
	VPADDD Y6, Y1, Y1
	VPUNPCKLWD Y7, Y5, Y6
	VPADDD Y6, Y2, Y2
	VPUNPCKHWD Y7, Y5, Y6
	VPADDD Y6, Y3, Y3
	ADDQ $64, SI
	SUBQ $64, CX
	JNZ loop
	VPADDD Y1, Y0, Y0
	VPADDD Y3, Y2, Y2
	VPADDD Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD X1, X0, X0
	VPSHUFD $0x4e, X0, X1
	VPADDD X1, X0, X0
	VPSHUFD $0xb1, X0, X1
	VPADDD X1, X0, X0
	VMOVD X0, AX
	MOVQ AX, ret+16(FP)
	VZEROUPPER
	RET
