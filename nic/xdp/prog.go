package xdp

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"ustack/shm"
)

// steerKey is the key of the steer map: the destination address (16 bytes, an IPv4 address
// as IPv4-mapped IPv6, ::ffff:a.b.c.d, so one map serves both families) and port in network
// byte order, then the IP protocol number and a zero pad byte. Its value is the port's mode,
// portAll, portListed or portShared, and the slot.
type steerKey [20]byte

func makeSteerKey(proto uint8, ip [16]byte, port uint16) steerKey {
	var k steerKey
	copy(k[:16], ip[:])
	k[16], k[17], k[18] = byte(port>>8), byte(port), proto
	return k
}

// flowKey is the key of the flows map, one connection seen from this host:
// remote (source) address, local (destination) address (16 bytes each, IPv4
// as IPv4-mapped IPv6), remote port, local port, all in network byte order,
// then the IP protocol number and three zero pad bytes. Its value is
// FlowToUs, FlowToKernel or FlowDrop, and the slot.
type flowKey [40]byte

func makeFlowKey(proto uint8, local [16]byte, lport uint16, remote [16]byte, rport uint16) flowKey {
	var k flowKey
	copy(k[:16], remote[:])
	copy(k[16:32], local[:])
	k[32], k[33], k[34], k[35], k[36] = byte(rport>>8), byte(rport), byte(lport>>8), byte(lport), proto
	return k
}

// Mapped4 is IPv4 address a as the steering maps hold it: IPv4-mapped IPv6, ::ffff:a.b.c.d.
func Mapped4(a [4]byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]}
}

// Values of the steer map (port modes) and of the flows map, in the low byte; the bits from
// slotShift up name the socket (its key in xsks: a process's slot in its group). The program
// redirects when the low byte is 1 and passes on anything else, so portAll and FlowToUs must
// stay 1.
const (
	portAll    uint32 = 1 // every flow to the port goes to the socket, unless listed to the kernel
	portListed uint32 = 2 // only flows listed as FlowToUs go to the socket
	portShared uint32 = 4 // new flows spread over the sockets in shares, each flow listed once born
	// a multicast group's port joined by several processes: every one must get every datagram,
	// and a frame is redirected to one socket only: to the first member's (the slot above), which
	// relays it to the others (group.go share, shim/relay.go)
	portFanout uint32 = 8
)

// groupKey reports whether k's address is a multicast group: IPv4 (224.0.0.0/4, mapped) or
// IPv6 (ff00::/8).
func groupKey(k steerKey) bool {
	return k[0] == 0xff || [16]byte(k[:16]) == Mapped4([4]byte(k[12:16])) && k[12]&0xf0 == 0xe0
}

// What SteerFlow does with a flow's frames.
const (
	FlowToUs     uint32 = 1 // redirect to the socket
	FlowToKernel uint32 = 2 // XDP_PASS
	FlowDrop     uint32 = 3 // XDP_DROP: the connection is moving between us and the kernel

	slotShift = 8
)

const (
	xdpDrop = 1
	xdpPass = 2

	// struct xdp_md offsets.
	mdData    = 0
	mdDataEnd = 4

	ethHdrLen  = 14
	icmpHdrLen = 8
)

// progInstructions builds the steering program. A TCP/UDP frame over IPv4 or
// IPv6 whose (daddr, dport, proto) is in steer is decided by its flow (saddr,
// daddr, sport, dport, proto) in flows if listed there (FlowToUs: redirect,
// FlowToKernel: pass), else by the port's mode (portAll: redirect,
// portListed: pass, portShared: a sharer in shares picked by the flow's
// hash); a frame whose port is not in steer passes. Both maps hold IPv4
// addresses as IPv4-mapped IPv6. Redirected frames go to the AF_XDP socket
// the value names in xsks (every socket there is bound to the one queue
// ustack uses).
//
// IPv6 extension headers before the transport header are walked, at most
// maxExtHeaders of them: hop-by-hop options, routing, destination options
// and fragment (RFC 8200 4.1); any other header, or a longer chain, passes.
// ICMP errors (types 3, 4, 11, 12) and ICMPv6 errors (types 1-4, RFC 4443)
// quoting a TCP or UDP datagram are decided the same way for the quoted
// datagram reversed: the error is about something this host sent (RFC 792:
// the quote is the original IPv4 header and at least 8 bytes; RFC 4443 2.4:
// as much of the invoking packet as fits), so the quoted source is the local
// end. A quoted IPv6 datagram is looked at only if TCP or UDP follows its
// fixed header, as in what ustack sends. Everything else, including echo
// requests (the kernel answers ping), neighbour discovery and MLD, gets
// XDP_PASS.
//
// Fragments: a first fragment is decided by its ports, and when it is
// redirected the slot is left in frags under its datagram's (source,
// destination, id, protocol; IPv6: no protocol); a later fragment goes to the
// slot frags names for its datagram, or passes. A first fragment that is not
// redirected deletes the entry, so a datagram that reuses an id does not
// inherit an earlier one's decision. Entries otherwise age out of the LRU.
func progInstructions(steerFD, flowsFD, xsksFD, sharesFD, fragsFD int) asm.Instructions {
	const (
		first = asm.R6 // 1 once the frame is a first fragment whose fragKey is on the stack
		data  = asm.R2
		end   = asm.R3

		// Stack: a frags value at fp-4, the steer key at fp-24 (20 bytes), the flow key at
		// fp-64 (40 bytes), the frags key at fp-104 (40 bytes). Stack accesses must be
		// aligned: every field is at a multiple of its size.
		fragValOff  = -4
		steerKeyOff = -24
		flowKeyOff  = -64
		fragKeyOff  = -104
		remoteOff   = flowKeyOff      // remote address, 16 bytes
		localOff    = flowKeyOff + 16 // local address, 16 bytes
		rportOff    = flowKeyOff + 32
		lportOff    = flowKeyOff + 34
		protoOff    = flowKeyOff + 36

		ip6HdrLen = 40
	)
	// mapped writes the IPv4-mapped prefix (::ffff:) of the address at off on the stack (in
	// the flow or frags key); its last four bytes are the IPv4 address.
	mapped := func(off int16) asm.Instructions {
		return asm.Instructions{
			asm.StoreImm(asm.RFP, off, 0, asm.Word), // asm has no 64-bit immediate store
			asm.StoreImm(asm.RFP, off+4, 0, asm.Word),
			asm.StoreImm(asm.RFP, off+8, -65536, asm.Word), // bytes 00 00 ff ff
		}
	}
	// copy16 copies 16 bytes from src+srcOff to the stack at dstOff, through R1.
	copy16 := func(src asm.Register, srcOff, dstOff int16) asm.Instructions {
		return asm.Instructions{
			asm.LoadMem(asm.R1, src, srcOff, asm.DWord),
			asm.StoreMem(asm.RFP, dstOff, asm.R1, asm.DWord),
			asm.LoadMem(asm.R1, src, srcOff+8, asm.DWord),
			asm.StoreMem(asm.RFP, dstOff+8, asm.R1, asm.DWord),
		}
	}
	// at points R4 at data + R5, so that R4+ethHdrLen is byte R5 of the IPv6 header, and
	// passes unless n bytes from there are in bounds.
	at := func(n int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R4, data),
			asm.Add.Reg(asm.R4, asm.R5),
			asm.Mov.Reg(asm.R1, asm.R4),
			asm.Add.Imm(asm.R1, ethHdrLen+n),
			asm.JGT.Reg(asm.R1, end, "pass"),
		}
	}

	// labelled names the first of is.
	labelled := func(label string, is asm.Instructions) asm.Instructions {
		is[0] = is[0].WithSymbol(label)
		return is
	}

	// forget deletes the frags entry of the datagram whose key is on the stack.
	forget := asm.Instructions{
		asm.LoadMapPtr(asm.R1, fragsFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fragKeyOff),
		asm.FnMapDeleteElem.Call(),
	}

	var p asm.Instructions
	add := func(is ...any) {
		for _, i := range is {
			switch i := i.(type) {
			case asm.Instruction:
				p = append(p, i)
			case asm.Instructions:
				p = append(p, i...)
			}
		}
	}

	add(
		asm.Mov.Imm(first, 0),
		asm.LoadMem(data, asm.R1, mdData, asm.Word),
		asm.LoadMem(end, asm.R1, mdDataEnd, asm.Word),

		// Ethernet + minimal IPv4 header in bounds (an IPv6 header is longer).
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethHdrLen+20),
		asm.JGT.Reg(asm.R4, end, "pass"),

		// EtherType 0x0800 or 0x86dd (loaded little-endian: 0x0008, 0xdd86).
		asm.LoadMem(asm.R5, data, 12, asm.Half),
		asm.JEq.Imm(asm.R5, 0xdd86, "ipv6"),
		asm.JNE.Imm(asm.R5, 0x0008, "pass"),

		// Version 4, IHL >= 5.
		asm.LoadMem(asm.R5, data, ethHdrLen, asm.Byte),
		asm.Mov.Reg(asm.R7, asm.R5),
		asm.RSh.Imm(asm.R7, 4),
		asm.JNE.Imm(asm.R7, 4, "pass"),
		asm.And.Imm(asm.R5, 0x0f),
		asm.JLT.Imm(asm.R5, 5, "pass"),
		asm.LSh.Imm(asm.R5, 2), // IHL in bytes, 20..60

		// A fragment (frag_off big-endian: more fragments 0x2000, offset mask 0x1fff): its
		// datagram's frags key, (source, destination, id, protocol) with the addresses
		// IPv4-mapped (RFC 791 reassembles by these). A later fragment (offset != 0) goes
		// where the first went; a first one is decided by its ports.
		asm.LoadMem(asm.R7, data, ethHdrLen+6, asm.Half),
		asm.And.Imm(asm.R7, 0xff3f),
		asm.JEq.Imm(asm.R7, 0, "v4whole"),
		mapped(fragKeyOff),
		mapped(fragKeyOff+16),
		asm.LoadMem(asm.R4, data, ethHdrLen+12, asm.Word),
		asm.StoreMem(asm.RFP, fragKeyOff+12, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, data, ethHdrLen+16, asm.Word),
		asm.StoreMem(asm.RFP, fragKeyOff+28, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, data, ethHdrLen+4, asm.Half),
		asm.StoreMem(asm.RFP, fragKeyOff+32, asm.R4, asm.Half),
		asm.StoreImm(asm.RFP, fragKeyOff+34, 0, asm.Half),
		asm.LoadMem(asm.R4, data, ethHdrLen+9, asm.Byte),
		asm.StoreMem(asm.RFP, fragKeyOff+36, asm.R4, asm.Byte),
		asm.StoreImm(asm.RFP, fragKeyOff+37, 0, asm.Byte),
		asm.StoreImm(asm.RFP, fragKeyOff+38, 0, asm.Half),
		asm.And.Imm(asm.R7, 0xff1f),
		asm.JNE.Imm(asm.R7, 0, "later"),
		asm.Mov.Imm(first, 1),

		// Both addresses of the flow key are IPv4-mapped.
		labelled("v4whole", mapped(remoteOff)),
		mapped(localOff),

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
		// The quote is a datagram this host sent: its source is the local
		// end and its destination the remote one.
		asm.LoadMem(asm.R9, data, ethHdrLen+icmpHdrLen+12, asm.Word).WithSymbol("quoted"),
		asm.StoreMem(asm.RFP, localOff+12, asm.R9, asm.Word),
		asm.LoadMem(asm.R4, data, ethHdrLen+icmpHdrLen+16, asm.Word),
		asm.StoreMem(asm.RFP, remoteOff+12, asm.R4, asm.Word),
		asm.Add.Reg(data, asm.R7),
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethHdrLen+icmpHdrLen+8), // the 8 quoted bytes RFC 1122 3.2.2 requires
		asm.JGT.Reg(asm.R4, end, "pass"),
		asm.LoadMem(asm.R7, data, ethHdrLen+icmpHdrLen, asm.Half),   // quoted source port: local
		asm.LoadMem(asm.R4, data, ethHdrLen+icmpHdrLen+2, asm.Half), // quoted destination port: remote
		asm.StoreMem(asm.RFP, rportOff, asm.R4, asm.Half),
		asm.Ja.Label("key"),

		// Destination (local) and source (remote) addresses into the flow
		// key, in network byte order.
		asm.LoadMem(asm.R9, data, ethHdrLen+16, asm.Word).WithSymbol("l4"),
		asm.StoreMem(asm.RFP, localOff+12, asm.R9, asm.Word),
		asm.LoadMem(asm.R4, data, ethHdrLen+12, asm.Word),
		asm.StoreMem(asm.RFP, remoteOff+12, asm.R4, asm.Word),

		// Transport header: data + 14 + IHL, ports in bounds.
		asm.Add.Reg(data, asm.R5),
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethHdrLen+4),
		asm.JGT.Reg(asm.R4, end, "pass"),
		asm.LoadMem(asm.R7, data, ethHdrLen+2, asm.Half), // destination port: local
		asm.LoadMem(asm.R4, data, ethHdrLen, asm.Half),   // source port: remote
		asm.StoreMem(asm.RFP, rportOff, asm.R4, asm.Half),
		asm.Ja.Label("key"),

		// IPv6: the fixed header in bounds, version 6.
		asm.Mov.Reg(asm.R4, data).WithSymbol("ipv6"),
		asm.Add.Imm(asm.R4, ethHdrLen+ip6HdrLen),
		asm.JGT.Reg(asm.R4, end, "pass"),
		asm.LoadMem(asm.R7, data, ethHdrLen, asm.Byte),
		asm.RSh.Imm(asm.R7, 4),
		asm.JNE.Imm(asm.R7, 6, "pass"),
		// A destination that is IPv4-mapped passes (it never belongs on the wire, RFC 4291
		// 2.5.5.2): the maps' IPv4-mapped entries are for IPv4 frames only.
		asm.LoadMem(asm.R7, data, ethHdrLen+24, asm.DWord),
		asm.JNE.Imm(asm.R7, 0, "v6dst"),
		asm.LoadMem(asm.R7, data, ethHdrLen+32, asm.Word),
		asm.JEq.Imm32(asm.R7, -65536, "pass"), // bytes 00 00 ff ff
		// Source (remote) and destination (local) addresses into the flow key.
		labelled("v6dst", copy16(data, ethHdrLen+8, remoteOff)),
		copy16(data, ethHdrLen+24, localOff),
		// R8: the next header, at R5 bytes from the IPv6 header's start.
		asm.LoadMem(asm.R8, data, ethHdrLen+6, asm.Byte),
		asm.Mov.Imm(asm.R5, ip6HdrLen),
	)
	// The extension header walk, unrolled: each step takes one header or leaves the walk.
	for i := 0; i <= maxExtHeaders; i++ {
		hdr, ext, frag, next := fmt.Sprint("v6hdr", i), fmt.Sprint("v6ext", i), fmt.Sprint("v6frag", i), fmt.Sprint("v6hdr", i+1)
		add(
			asm.JEq.Imm(asm.R8, 6, "l4v6").WithSymbol(hdr),
			asm.JEq.Imm(asm.R8, 17, "l4v6"),
			asm.JEq.Imm(asm.R8, 58, "icmp6"),
		)
		if i == maxExtHeaders {
			add(asm.Ja.Label("pass"))
			break
		}
		add(
			asm.JEq.Imm(asm.R8, 44, frag),
			asm.JEq.Imm(asm.R8, 0, ext),  // hop-by-hop options
			asm.JEq.Imm(asm.R8, 43, ext), // routing
			asm.JNE.Imm(asm.R8, 60, "pass"),
			// Hop-by-hop, routing, destination options: next header, then the length in
			// 8-byte units after the first 8 (RFC 8200 4.3-4.6).
			labelled(ext, at(8)),
			asm.LoadMem(asm.R8, asm.R4, ethHdrLen, asm.Byte),
			asm.LoadMem(asm.R7, asm.R4, ethHdrLen+1, asm.Byte),
			asm.Add.Imm(asm.R7, 1),
			asm.LSh.Imm(asm.R7, 3),
			asm.Add.Reg(asm.R5, asm.R7),
			asm.Ja.Label(next),
			// Fragment (RFC 8200 4.5): the frags key of its datagram, (source,
			// destination, id) and a zero protocol (RFC 8200 4.5 reassembles by these). A
			// later fragment (offset != 0; the offset is the top 13 bits of the big-endian
			// half at 2, loaded little-endian) goes where the first went; a first one is
			// decided by its ports.
			labelled(frag, at(8)),
			copy16(asm.RFP, remoteOff, fragKeyOff),
			copy16(asm.RFP, localOff, fragKeyOff+16),
			asm.LoadMem(asm.R1, asm.R4, ethHdrLen+4, asm.Word),
			asm.StoreMem(asm.RFP, fragKeyOff+32, asm.R1, asm.Word),
			asm.StoreImm(asm.RFP, fragKeyOff+36, 0, asm.Word),
			asm.LoadMem(asm.R7, asm.R4, ethHdrLen+2, asm.Half),
			asm.And.Imm(asm.R7, 0xf8ff),
			asm.JNE.Imm(asm.R7, 0, "later"),
			asm.Mov.Imm(first, 1),
			asm.LoadMem(asm.R8, asm.R4, ethHdrLen, asm.Byte),
			asm.Add.Imm(asm.R5, 8),
		)
	}
	add(
		// IPv6 TCP or UDP: the ports in bounds.
		labelled("l4v6", at(4)),
		asm.LoadMem(asm.R7, asm.R4, ethHdrLen+2, asm.Half), // destination port: local
		asm.LoadMem(asm.R1, asm.R4, ethHdrLen, asm.Half),   // source port: remote
		asm.StoreMem(asm.RFP, rportOff, asm.R1, asm.Half),
		asm.Ja.Label("key"),

		// ICMPv6: the header (8), the quoted IPv6 header (40) and 8 bytes after it in bounds.
		labelled("icmp6", at(icmpHdrLen+ip6HdrLen+8)),
		// Only errors, which quote a datagram (RFC 4443 3.1-3.4): destination unreachable,
		// packet too big, time exceeded, parameter problem. Echo, neighbour discovery and
		// MLD stay with the kernel.
		asm.LoadMem(asm.R7, asm.R4, ethHdrLen, asm.Byte),
		asm.JEq.Imm(asm.R7, 0, "pass"),
		asm.JGT.Imm(asm.R7, 4, "pass"),
		// Quoted header: version 6, TCP or UDP next.
		asm.LoadMem(asm.R7, asm.R4, ethHdrLen+icmpHdrLen, asm.Byte),
		asm.RSh.Imm(asm.R7, 4),
		asm.JNE.Imm(asm.R7, 6, "pass"),
		asm.LoadMem(asm.R8, asm.R4, ethHdrLen+icmpHdrLen+6, asm.Byte),
		asm.JEq.Imm(asm.R8, 6, "quoted6"),
		asm.JNE.Imm(asm.R8, 17, "pass"),
		// A datagram this host sent: its source is the local end, its destination the remote.
		labelled("quoted6", copy16(asm.R4, ethHdrLen+icmpHdrLen+8, localOff)),
		copy16(asm.R4, ethHdrLen+icmpHdrLen+24, remoteOff),
		asm.LoadMem(asm.R7, asm.R4, ethHdrLen+icmpHdrLen+ip6HdrLen, asm.Half),   // quoted source port: local
		asm.LoadMem(asm.R1, asm.R4, ethHdrLen+icmpHdrLen+ip6HdrLen+2, asm.Half), // quoted destination port: remote
		asm.StoreMem(asm.RFP, rportOff, asm.R1, asm.Half),

		// Here R7 is the local port, R8 the protocol; the addresses and the
		// remote port are in the flow key already.
		// Steer key: local address, port, protocol, pad.
		labelled("key", copy16(asm.RFP, localOff, steerKeyOff)),
		asm.StoreMem(asm.RFP, steerKeyOff+16, asm.R7, asm.Half),
		asm.StoreMem(asm.RFP, steerKeyOff+18, asm.R8, asm.Byte),
		asm.StoreImm(asm.RFP, steerKeyOff+19, 0, asm.Byte),
		// Flow key: remote address, local address, remote port, local
		// port, protocol, three pad bytes.
		asm.StoreMem(asm.RFP, lportOff, asm.R7, asm.Half),
		asm.StoreMem(asm.RFP, protoOff, asm.R8, asm.Byte),
		asm.StoreImm(asm.RFP, protoOff+1, 0, asm.Byte),
		asm.StoreImm(asm.RFP, protoOff+2, 0, asm.Half),

		// Port not steered: pass. Else R7 = the port's mode.
		asm.LoadMapPtr(asm.R1, steerFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, steerKeyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),

		// A listed flow overrides the port's mode.
		asm.LoadMapPtr(asm.R1, flowsFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, flowKeyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "decide"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),

		// The low byte decides: 1 (portAll, FlowToUs) and 8 (portFanout): redirect to the socket
		// of the slot in the bits above; 3 (FlowDrop): drop; 4 (portShared): a slot of the
		// port's sharers; anything else: pass.
		asm.Mov.Reg(asm.R8, asm.R7).WithSymbol("decide"),
		asm.And.Imm(asm.R8, 0xff),
		asm.JEq.Imm(asm.R8, int32(FlowDrop), "drop"),
		asm.JEq.Imm(asm.R8, int32(portShared), "shared"),
		asm.JEq.Imm(asm.R8, int32(portFanout), "leader"),
		asm.JNE.Imm(asm.R8, 1, "pass"),
		asm.RSh.Imm(asm.R7, slotShift).WithSymbol("leader"),

		// R7: the slot whose socket gets the frame; a first fragment leaves the slot in
		// frags for the later ones.
		asm.JEq.Imm(first, 0, "xsk").WithSymbol("redirect"),
		asm.StoreMem(asm.RFP, fragValOff, asm.R7, asm.Word),
		asm.LoadMapPtr(asm.R1, fragsFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fragKeyOff),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, fragValOff),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
		asm.Mov.Reg(asm.R2, asm.R7).WithSymbol("xsk"),
		asm.LoadMapPtr(asm.R1, xsksFD),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),

		// A first fragment that is not ours forgets an earlier datagram of the same
		// (source, destination, id), so that its later fragments go where it went.
		asm.JEq.Imm(first, 0, "passed").WithSymbol("pass"),
		forget,
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("passed"),
		asm.Return(),

		asm.JEq.Imm(first, 0, "dropped").WithSymbol("drop"),
		forget,
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("dropped"),
		asm.Return(),

		// A later fragment: to the slot its first fragment went to, if it was steered.
		asm.LoadMapPtr(asm.R1, fragsFD).WithSymbol("later"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fragKeyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "passed"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		asm.Ja.Label("xsk"),

		// A shared port: the flow's hash (remote address and port, as SO_REUSEPORT spreads
		// by the four-tuple) picks one of the n slots in shares; a connection stays with its
		// slot through its flows entry, set when it was born.
		asm.LoadMapPtr(asm.R1, sharesFD).WithSymbol("shared"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, steerKeyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R5, asm.R0, 0, asm.Word), // n
		asm.JEq.Imm(asm.R5, 0, "pass"),
		// The remote address folded to 32 bits: the xor of its four words, and of the
		// IPv4-mapped prefix's, so an IPv4 address folds to itself.
		asm.LoadMem(asm.R4, asm.RFP, remoteOff, asm.Word),
		asm.LoadMem(asm.R1, asm.RFP, remoteOff+4, asm.Word),
		asm.Xor.Reg32(asm.R4, asm.R1),
		asm.LoadMem(asm.R1, asm.RFP, remoteOff+8, asm.Word),
		asm.Xor.Reg32(asm.R4, asm.R1),
		asm.LoadMem(asm.R1, asm.RFP, remoteOff+12, asm.Word),
		asm.Xor.Reg32(asm.R4, asm.R1),
		asm.Xor.Imm32(asm.R4, -65536),
		asm.LoadMem(asm.R3, asm.RFP, rportOff, asm.Half), // remote port
		asm.Mul.Imm32(asm.R3, -1640531535),               // 0x9e3779b1, Fibonacci hashing
		asm.Xor.Reg32(asm.R4, asm.R3),
		asm.Mul.Imm32(asm.R4, -1640531535),
		// the high half: a product's low bits see only the factor's low bits, and the
		// ports a client takes one after another differ in their high byte here (the port
		// is in network order)
		asm.RSh.Imm32(asm.R4, 16),
		asm.Mod.Reg32(asm.R4, asm.R5),
		asm.JGE.Imm(asm.R4, maxSharers, "pass"),
		asm.LSh.Imm(asm.R4, 2),
		asm.Add.Reg(asm.R0, asm.R4),
		asm.LoadMem(asm.R7, asm.R0, 4, asm.Word),
		asm.Ja.Label("redirect"),
	)
	return p
}

// maxExtHeaders bounds the IPv6 extension headers the program walks before the transport
// header; a longer chain passes to the kernel.
const maxExtHeaders = 4

// maxSharers bounds the processes that share a port; a shares value is their count and slots.
const maxSharers = 15

type sharesValue struct {
	N     uint32
	Slots [maxSharers]uint32
}

// objects are the maps and program loadObjects creates.
type objects struct {
	steer, flows, xsks, shares, frags *ebpf.Map
	prog                              *ebpf.Program
}

// close releases whatever is set.
func (o *objects) close() {
	for _, m := range []*ebpf.Map{o.steer, o.flows, o.xsks, o.shares, o.frags} {
		if m != nil {
			m.Close()
		}
	}
	if o.prog != nil {
		o.prog.Close()
	}
}

// loadObjects creates the maps and loads the program.
func loadObjects() (_ objects, err error) {
	var o objects
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	o.steer, err = ebpf.NewMap(&ebpf.MapSpec{
		Name:       "steer",
		Type:       ebpf.Hash,
		KeySize:    uint32(len(steerKey{})),
		ValueSize:  4,
		MaxEntries: 65536,
	})
	if err != nil {
		return objects{}, fmt.Errorf("creating steer map: %w", err)
	}
	o.flows, err = ebpf.NewMap(&ebpf.MapSpec{
		Name:      "flows",
		Type:      ebpf.Hash,
		KeySize:   uint32(len(flowKey{})),
		ValueSize: 4,
		// a connection of a shared port has an entry from its birth to its end (TIME-WAIT
		// included): allocated as needed
		MaxEntries: 1 << 18,
		Flags:      unix.BPF_F_NO_PREALLOC,
	})
	if err != nil {
		return objects{}, fmt.Errorf("creating flows map: %w", err)
	}
	entries := uint32(shm.MaxSlots)
	o.xsks, err = ebpf.NewMap(&ebpf.MapSpec{
		Name:       "xsks_map",
		Type:       ebpf.XSKMap,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: entries,
	})
	if err != nil {
		return objects{}, fmt.Errorf("creating xsks map: %w", err)
	}
	o.shares, err = ebpf.NewMap(&ebpf.MapSpec{
		Name:       "shares",
		Type:       ebpf.Hash,
		KeySize:    uint32(len(steerKey{})),
		ValueSize:  uint32(unsafe.Sizeof(sharesValue{})),
		MaxEntries: 4096,
	})
	if err != nil {
		return objects{}, fmt.Errorf("creating shares map: %w", err)
	}
	o.frags, err = ebpf.NewMap(&ebpf.MapSpec{
		Name:       "frags",
		Type:       ebpf.LRUHash,
		KeySize:    uint32(len(flowKey{})), // (source 16, destination 16, id 4, protocol, 3 pad)
		ValueSize:  4,
		MaxEntries: 4096,
	})
	if err != nil {
		return objects{}, fmt.Errorf("creating frags map: %w", err)
	}
	o.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "ustack_steer",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: progInstructions(o.steer.FD(), o.flows.FD(), o.xsks.FD(), o.shares.FD(), o.frags.FD()),
	})
	if err != nil {
		return objects{}, fmt.Errorf("loading xdp program: %w", err)
	}
	return o, nil
}
