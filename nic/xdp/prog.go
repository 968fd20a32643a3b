package xdp

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// steerKey is the key of the steer map: destination IPv4 address and port in
// network byte order, then the IP protocol number and a zero pad byte.
type steerKey [8]byte

func makeSteerKey(proto uint8, ip [4]byte, port uint16) steerKey {
	return steerKey{ip[0], ip[1], ip[2], ip[3], byte(port >> 8), byte(port), proto, 0}
}

const (
	xdpPass = 2

	// struct xdp_md offsets.
	mdData         = 0
	mdDataEnd      = 4
	mdRxQueueIndex = 16

	ethHdrLen  = 14
	icmpHdrLen = 8
)

// progInstructions builds the steering program: IPv4 TCP/UDP frames whose
// (daddr, dport, proto) is in steer go to the AF_XDP socket of the receive
// queue in xsks, and so do ICMP errors (types 3, 4, 11, 12) quoting a TCP or
// UDP datagram whose (saddr, sport, proto) is in steer: the error is about
// something the steered socket sent (RFC 792: the quote is the original IPv4
// header and at least 8 bytes). Everything else, including echo requests
// (the kernel answers ping) and non-first fragments, gets XDP_PASS.
func progInstructions(steerFD, xsksFD int) asm.Instructions {
	const (
		ctx  = asm.R6
		data = asm.R2
		end  = asm.R3
	)
	return asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMem(data, asm.R1, mdData, asm.Word),
		asm.LoadMem(end, asm.R1, mdDataEnd, asm.Word),

		// Ethernet + minimal IPv4 header in bounds.
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethHdrLen+20),
		asm.JGT.Reg(asm.R4, end, "pass"),

		// EtherType 0x0800 (loaded little-endian: 0x0008).
		asm.LoadMem(asm.R5, data, 12, asm.Half),
		asm.JNE.Imm(asm.R5, 0x0008, "pass"),

		// Version 4, IHL >= 5.
		asm.LoadMem(asm.R5, data, ethHdrLen, asm.Byte),
		asm.Mov.Reg(asm.R7, asm.R5),
		asm.RSh.Imm(asm.R7, 4),
		asm.JNE.Imm(asm.R7, 4, "pass"),
		asm.And.Imm(asm.R5, 0x0f),
		asm.JLT.Imm(asm.R5, 5, "pass"),
		asm.LSh.Imm(asm.R5, 2), // IHL in bytes, 20..60

		// Fragment offset != 0: pass (frag_off big-endian, offset mask 0x1fff).
		asm.LoadMem(asm.R7, data, ethHdrLen+6, asm.Half),
		asm.And.Imm(asm.R7, 0xff1f),
		asm.JNE.Imm(asm.R7, 0, "pass"),

		// Protocol TCP or UDP; ICMP errors are looked at below.
		asm.LoadMem(asm.R8, data, ethHdrLen+9, asm.Byte),
		asm.JEq.Imm(asm.R8, 6, "l4"),
		asm.JEq.Imm(asm.R8, 17, "l4"),
		asm.JNE.Imm(asm.R8, 1, "pass"),

		// ICMP: header (8) and a minimal quoted IPv4 header (20) in bounds.
		asm.Add.Reg(data, asm.R5),
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethHdrLen+icmpHdrLen+20),
		asm.JGT.Reg(asm.R4, end, "pass"),
		// Only errors that quote a datagram (RFC 792): destination
		// unreachable, source quench, time exceeded, parameter problem.
		// Echo and other queries stay with the kernel.
		asm.LoadMem(asm.R7, data, ethHdrLen, asm.Byte),
		asm.JEq.Imm(asm.R7, 3, "icmperr"),
		asm.JEq.Imm(asm.R7, 4, "icmperr"),
		asm.JEq.Imm(asm.R7, 11, "icmperr"),
		asm.JNE.Imm(asm.R7, 12, "pass"),

		// Quoted header: version 4, IHL >= 5, not a later fragment, TCP or UDP.
		asm.LoadMem(asm.R7, data, ethHdrLen+icmpHdrLen, asm.Byte).WithSymbol("icmperr"),
		asm.Mov.Reg(asm.R9, asm.R7),
		asm.RSh.Imm(asm.R9, 4),
		asm.JNE.Imm(asm.R9, 4, "pass"),
		asm.And.Imm(asm.R7, 0x0f),
		asm.JLT.Imm(asm.R7, 5, "pass"),
		asm.LSh.Imm(asm.R7, 2), // quoted IHL in bytes, 20..60
		asm.LoadMem(asm.R9, data, ethHdrLen+icmpHdrLen+6, asm.Half),
		asm.And.Imm(asm.R9, 0xff1f),
		asm.JNE.Imm(asm.R9, 0, "pass"),
		asm.LoadMem(asm.R8, data, ethHdrLen+icmpHdrLen+9, asm.Byte),
		asm.JEq.Imm(asm.R8, 6, "quoted"),
		asm.JNE.Imm(asm.R8, 17, "pass"),
		// The quoted source is our address and port: the steered socket sent it.
		asm.LoadMem(asm.R9, data, ethHdrLen+icmpHdrLen+12, asm.Word).WithSymbol("quoted"),
		asm.Add.Reg(data, asm.R7),
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethHdrLen+icmpHdrLen+8), // the 8 quoted bytes RFC 1122 3.2.2 requires
		asm.JGT.Reg(asm.R4, end, "pass"),
		asm.LoadMem(asm.R7, data, ethHdrLen+icmpHdrLen, asm.Half), // quoted source port
		asm.Ja.Label("key"),

		// Destination address (kept in network byte order).
		asm.LoadMem(asm.R9, data, ethHdrLen+16, asm.Word).WithSymbol("l4"),

		// Transport header: data + 14 + IHL, ports in bounds.
		asm.Add.Reg(data, asm.R5),
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethHdrLen+4),
		asm.JGT.Reg(asm.R4, end, "pass"),
		asm.LoadMem(asm.R7, data, ethHdrLen+2, asm.Half), // destination port

		// Key on the stack at fp-8: address, port, protocol, pad.
		asm.StoreMem(asm.RFP, -8, asm.R9, asm.Word).WithSymbol("key"),
		asm.StoreMem(asm.RFP, -4, asm.R7, asm.Half),
		asm.StoreMem(asm.RFP, -2, asm.R8, asm.Byte),
		asm.StoreImm(asm.RFP, -1, 0, asm.Byte),

		asm.LoadMapPtr(asm.R1, steerFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),

		asm.LoadMem(asm.R2, ctx, mdRxQueueIndex, asm.Word),
		asm.LoadMapPtr(asm.R1, xsksFD),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),

		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}
}

// loadObjects creates the maps and loads the program.
func loadObjects(queue int) (steer, xsks *ebpf.Map, prog *ebpf.Program, err error) {
	steer, err = ebpf.NewMap(&ebpf.MapSpec{
		Name:       "steer",
		Type:       ebpf.Hash,
		KeySize:    8,
		ValueSize:  4,
		MaxEntries: 65536,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("creating steer map: %w", err)
	}
	entries := uint32(64)
	if uint32(queue) >= entries {
		entries = uint32(queue) + 1
	}
	xsks, err = ebpf.NewMap(&ebpf.MapSpec{
		Name:       "xsks_map",
		Type:       ebpf.XSKMap,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: entries,
	})
	if err != nil {
		steer.Close()
		return nil, nil, nil, fmt.Errorf("creating xsks map: %w", err)
	}
	prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "ustack_steer",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: progInstructions(steer.FD(), xsks.FD()),
	})
	if err != nil {
		steer.Close()
		xsks.Close()
		return nil, nil, nil, fmt.Errorf("loading xdp program: %w", err)
	}
	return steer, xsks, prog, nil
}
