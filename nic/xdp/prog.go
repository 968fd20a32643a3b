package xdp

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"ustack/shm"
)

// steerKey is the key of the steer map: destination IPv4 address and port in
// network byte order, then the IP protocol number and a zero pad byte. Its
// value is the port's mode, portAll or portListed.
type steerKey [8]byte

func makeSteerKey(proto uint8, ip [4]byte, port uint16) steerKey {
	return steerKey{ip[0], ip[1], ip[2], ip[3], byte(port >> 8), byte(port), proto, 0}
}

// flowKey is the key of the flows map, one connection seen from this host:
// remote (source) address, local (destination) address, remote port, local
// port, all in network byte order, then the IP protocol number and three zero
// pad bytes. Its value is FlowToUs or FlowToKernel.
type flowKey [16]byte

func makeFlowKey(proto uint8, local [4]byte, lport uint16, remote [4]byte, rport uint16) flowKey {
	return flowKey{
		remote[0], remote[1], remote[2], remote[3],
		local[0], local[1], local[2], local[3],
		byte(rport >> 8), byte(rport), byte(lport >> 8), byte(lport),
		proto, 0, 0, 0,
	}
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

// groupKey reports whether k's address is an IPv4 multicast group (224.0.0.0/4).
func groupKey(k steerKey) bool { return k[0]&0xf0 == 0xe0 }

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

// progInstructions builds the steering program. An IPv4 TCP/UDP frame whose
// (daddr, dport, proto) is in steer is decided by its flow (saddr, daddr,
// sport, dport, proto) in flows if listed there (FlowToUs: redirect,
// FlowToKernel: pass), else by the port's mode (portAll: redirect,
// portListed: pass, portShared: a sharer in shares picked by the flow's
// hash); a frame whose port is not in steer passes. Redirected
// frames go to the AF_XDP socket the value names in xsks (every socket there
// is bound to the one queue ustack uses). ICMP errors
// (types 3, 4, 11, 12) quoting a TCP or UDP datagram are decided the same way
// for the quoted datagram reversed: the error is about something this host
// sent (RFC 792: the quote is the original IPv4 header and at least 8 bytes),
// so the quoted source is the local end. Everything else, including echo
// requests (the kernel answers ping) and non-first fragments, gets XDP_PASS.
func progInstructions(steerFD, flowsFD, xsksFD, sharesFD int) asm.Instructions {
	const (
		ctx  = asm.R6
		data = asm.R2
		end  = asm.R3

		// Stack: the steer key at fp-8, the flow key at fp-24.
		steerKeyOff = -8
		flowKeyOff  = -24
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
		// The quote is a datagram this host sent: its source is the local
		// end (R9, later R7) and its destination the remote one (flow key).
		asm.LoadMem(asm.R9, data, ethHdrLen+icmpHdrLen+12, asm.Word).WithSymbol("quoted"),
		asm.LoadMem(asm.R4, data, ethHdrLen+icmpHdrLen+16, asm.Word),
		asm.StoreMem(asm.RFP, flowKeyOff, asm.R4, asm.Word), // remote address
		asm.Add.Reg(data, asm.R7),
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethHdrLen+icmpHdrLen+8), // the 8 quoted bytes RFC 1122 3.2.2 requires
		asm.JGT.Reg(asm.R4, end, "pass"),
		asm.LoadMem(asm.R7, data, ethHdrLen+icmpHdrLen, asm.Half),   // quoted source port: local
		asm.LoadMem(asm.R4, data, ethHdrLen+icmpHdrLen+2, asm.Half), // quoted destination port: remote
		asm.StoreMem(asm.RFP, flowKeyOff+8, asm.R4, asm.Half),
		asm.Ja.Label("key"),

		// Destination (local) address in R9, source (remote) address into
		// the flow key, both kept in network byte order.
		asm.LoadMem(asm.R9, data, ethHdrLen+16, asm.Word).WithSymbol("l4"),
		asm.LoadMem(asm.R4, data, ethHdrLen+12, asm.Word),
		asm.StoreMem(asm.RFP, flowKeyOff, asm.R4, asm.Word),

		// Transport header: data + 14 + IHL, ports in bounds.
		asm.Add.Reg(data, asm.R5),
		asm.Mov.Reg(asm.R4, data),
		asm.Add.Imm(asm.R4, ethHdrLen+4),
		asm.JGT.Reg(asm.R4, end, "pass"),
		asm.LoadMem(asm.R7, data, ethHdrLen+2, asm.Half), // destination port: local
		asm.LoadMem(asm.R4, data, ethHdrLen, asm.Half),   // source port: remote
		asm.StoreMem(asm.RFP, flowKeyOff+8, asm.R4, asm.Half),

		// Here R9 is the local address, R7 the local port, R8 the protocol;
		// the remote address and port are in the flow key already.
		// Steer key: address, port, protocol, pad.
		asm.StoreMem(asm.RFP, steerKeyOff, asm.R9, asm.Word).WithSymbol("key"),
		asm.StoreMem(asm.RFP, steerKeyOff+4, asm.R7, asm.Half),
		asm.StoreMem(asm.RFP, steerKeyOff+6, asm.R8, asm.Byte),
		asm.StoreImm(asm.RFP, steerKeyOff+7, 0, asm.Byte),
		// Flow key: remote address, local address, remote port, local
		// port, protocol, three pad bytes.
		asm.StoreMem(asm.RFP, flowKeyOff+4, asm.R9, asm.Word),
		asm.StoreMem(asm.RFP, flowKeyOff+10, asm.R7, asm.Half),
		asm.StoreMem(asm.RFP, flowKeyOff+12, asm.R8, asm.Byte),
		asm.StoreImm(asm.RFP, flowKeyOff+13, 0, asm.Byte),
		asm.StoreImm(asm.RFP, flowKeyOff+14, 0, asm.Half),

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

		// R7: the slot whose socket gets the frame.
		asm.Mov.Reg(asm.R2, asm.R7).WithSymbol("redirect"),
		asm.LoadMapPtr(asm.R1, xsksFD),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),

		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),

		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),

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
		asm.LoadMem(asm.R4, asm.RFP, flowKeyOff, asm.Word),   // remote address
		asm.LoadMem(asm.R3, asm.RFP, flowKeyOff+8, asm.Half), // remote port
		asm.Mul.Imm32(asm.R3, -1640531535),                   // 0x9e3779b1, Fibonacci hashing
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
	}
}

// maxSharers bounds the processes that share a port; a shares value is their count and slots.
const maxSharers = 15

type sharesValue struct {
	N     uint32
	Slots [maxSharers]uint32
}

// objects are the maps and program loadObjects creates.
type objects struct {
	steer, flows, xsks, shares *ebpf.Map
	prog                       *ebpf.Program
}

// close releases whatever is set.
func (o *objects) close() {
	for _, m := range []*ebpf.Map{o.steer, o.flows, o.xsks, o.shares} {
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
	o.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "ustack_steer",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: progInstructions(o.steer.FD(), o.flows.FD(), o.xsks.FD(), o.shares.FD()),
	})
	if err != nil {
		return objects{}, fmt.Errorf("loading xdp program: %w", err)
	}
	return o, nil
}
