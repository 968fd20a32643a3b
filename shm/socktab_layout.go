package shm

// Byte layout of a socket table, version 1: the file ustack-socks.<pid> beside the stats
// segment. Little-endian, naturally aligned. The header's capture fields are the one place
// another process writes: onloadctl asks for a capture there (capture_layout.go).
//
//	offset size  field
//	0      8     magic "USTKSOCK" (SockTableMagic)
//	8      4     layout version (SockTableVersion)
//	12     4     header size (sockHeaderSize)
//	16     8     pid
//	24     8     process start time: field 22 of /proc/<pid>/stat
//	32     4     slots in the file
//	36     4     slot size (sockSlotSize)
//	40     4     high-water mark: slots at and above it have never been used
//	44     4     sockets the table had no room for at the last publication
//	48     8     last publication, Unix nanoseconds
//	56     8     publications so far
//	64     8     capture request: an id chosen by onloadctl, 0 = none (written by onloadctl)
//	72     8     capture attached: the id the stack writes into now, 0 = none (written by the stack)
//	80     64    capture ring's file name in the same directory, NUL-padded (written by onloadctl)
//	144    112   reserved
//	256          slots
//
// A slot:
//
//	0      4     sequence: odd while the stack writes the slot (a reader retries), even when done
//	4      1     in use (1) or free (0)
//	5      1     protocol (6 TCP, 17 UDP)
//	6      1     state, Linux TCP_* numbering (UDP: 1 connected, 7 not)
//	7      1     flags (SockFlag*)
//	8      1     why the socket is on the kernel (SockReason*), with SockFlagKernel
//	9      3     reserved
//	12     2     local port
//	14     2     remote port
//	16     16    local address (IPv6; IPv4 mapped, ::ffff:a.b.c.d)
//	32     16    remote address
//	48     4     receive queue bytes (listener: connections waiting for accept)
//	52     4     send queue bytes (listener: its backlog)
//	56     4     file descriptor in the process, -1 if none (closed, not yet accepted)
//	60     4     listener: connections in their handshake
//	64     16    congestion control, NUL-padded
//	80     8     when the slot was written, Unix nanoseconds
//	88     8     UDP: datagrams in; kernel socket: its inode
//	96     8     UDP: datagrams out
//	104    248   TCP: struct tcp_info as getsockopt(TCP_INFO) gives it (stackcore.TCPInfoLen)
//	352    32    reserved
const (
	// SockTableMagic is "USTKSOCK" read as a little-endian uint64.
	SockTableMagic uint64 = 0x4b434f53_4b545355
	// SockTableVersion is the layout version this package writes and reads.
	SockTableVersion uint32 = 1

	sockOffMagic     = 0
	sockOffVersion   = 8
	sockOffHdrSize   = 12
	sockOffPid       = 16
	sockOffStart     = 24
	sockOffSlots     = 32
	sockOffSlotSize  = 36
	sockOffHighWater = 40
	sockOffUnlisted  = 44
	sockOffPubTime   = 48
	sockOffPubCount  = 56
	sockOffCapReq    = 64
	sockOffCapAck    = 72
	sockOffCapName   = 80
	sockCapNameLen   = 64

	sockHeaderSize = 256
	sockSlotSize   = 384

	slotOffSeq      = 0
	slotOffUsed     = 4
	slotOffProto    = 5
	slotOffState    = 6
	slotOffFlags    = 7
	slotOffReason   = 8
	slotOffLPort    = 12
	slotOffRPort    = 14
	slotOffLAddr    = 16
	slotOffRAddr    = 32
	slotOffRecvQ    = 48
	slotOffSendQ    = 52
	slotOffFd       = 56
	slotOffPending  = 60
	slotOffCC       = 64
	slotCCLen       = 16
	slotOffWritten  = 80
	slotOffIn       = 88
	slotOffOut      = 96
	slotOffTCPInfo  = 104
	slotTCPInfoSize = 248

	// SockFilePrefix is the file name of a socket table without the pid.
	SockFilePrefix = "ustack-socks."
	// sockMaxSlots bounds what a reader accepts from a file.
	sockMaxSlots = 1 << 20
)

// Slot flags.
const (
	SockFlagListen    = 1 << 0 // a TCP listener
	SockFlagKernel    = 1 << 1 // the socket was the stack's and now is a kernel socket (SockReason*)
	SockFlagOrphan    = 1 << 2 // the application closed it; the stack finishes it (FIN-WAIT, TIME-WAIT)
	SockFlagShared    = 1 << 3 // a listener whose port other processes share (SO_REUSEPORT, fork)
	SockFlagConnected = 1 << 4 // a UDP socket with a peer
)

// Why a socket is on the kernel (SockFlagKernel).
const (
	SockReasonNone     = 0
	SockReasonFork     = 1 // a fork child used it: moved with its state
	SockReasonExec     = 2 // the program exec'd: moved with its state
	SockReasonOption   = 3 // an option or call the stack does not carry (e.g. multicast, IP_TRANSPARENT)
	SockReasonDeclined = 4 // set up in the kernel before the stack started, and left there
	SockReasonExit     = 5 // the process exited with it open
	SockReasonRoute    = 6 // its peer is reached through another interface, or is this host
	SockReasonAddress  = 7 // bound to an address of another interface (loopback too)
	SockReasonPort     = 8 // its port is another process's on the interface
)

// SockReasonName returns the word onloadctl prints for a reason.
func SockReasonName(r uint8) string {
	switch r {
	case SockReasonFork:
		return "fork"
	case SockReasonExec:
		return "exec"
	case SockReasonOption:
		return "option"
	case SockReasonDeclined:
		return "declined"
	case SockReasonExit:
		return "exit"
	case SockReasonRoute:
		return "route"
	case SockReasonAddress:
		return "address"
	case SockReasonPort:
		return "port"
	}
	return ""
}
