package shim

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// A connection leaves the stack with its state when a process that cannot drive the stack
// needs it (a fork child, an exit): the kernel socket takes over sequence numbers, windows,
// options and the bytes in flight through TCP_REPAIR (tcp(7)), the way CRIU restores one, and
// the peer sees nothing but a window probe.

// tcpRepairWindow is struct tcp_repair_window (linux/tcp.h).
type tcpRepairWindow struct {
	sndWl1, sndWnd, maxWindow, rcvWnd, rcvWup uint32
}

const (
	tcpNoQueue   = 0 // TCP_NO_QUEUE
	tcpRecvQueue = 1 // TCP_RECV_QUEUE
	tcpSendQueue = 2 // TCP_SEND_QUEUE

	tcpoptMSS       = 2
	tcpoptWindow    = 3
	tcpoptSACKPerm  = 4
	tcpoptTimestamp = 8
)

// repairInto makes the kernel TCP socket fd (closed: fresh, or bound to laddr:r.LocalPort) the
// connection r describes. The socket's O_NONBLOCK is left as it was. On error the socket is
// left in no defined state.
func repairInto(fd int, ifindex int, r *stackcore.RepairState) error {
	step := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("TCP_REPAIR %s: %w", what, err)
		}
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return step("on", err) // EPERM without CAP_NET_ADMIN
	}
	// room for everything at once: the kernel queues repaired data only within its buffers
	if n := len(r.Sent) + len(r.Unsent) + 64<<10; n > 64<<10 {
		growBuf(fd, unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, n)
	}
	if n := len(r.Unread) + 64<<10; n > 64<<10 {
		growBuf(fd, unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, n)
	}
	setInt := func(name, v int) error { return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, name, v) }
	if err := setInt(unix.TCP_REPAIR_QUEUE, tcpRecvQueue); err != nil {
		return step("queue", err)
	}
	if err := setInt(unix.TCP_QUEUE_SEQ, int(int32(r.RcvNxt-uint32(len(r.Unread))))); err != nil {
		return step("receive sequence", err)
	}
	if err := setInt(unix.TCP_REPAIR_QUEUE, tcpSendQueue); err != nil {
		return step("queue", err)
	}
	if err := setInt(unix.TCP_QUEUE_SEQ, int(int32(r.SndUna))); err != nil {
		return step("send sequence", err)
	}
	// the kernel sizes its segments at connect, before TCP_REPAIR_OPTIONS can say the peer's MSS:
	// without this it would send 536-byte segments for the rest of the connection
	_ = setInt(unix.TCP_MAXSEG, r.MSS)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return step("getsockname", err)
	}
	_, port, _ := addrOfSockaddr(sa)
	family := uint16(unix.AF_INET)
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6 // v4-mapped addresses for an IPv4 connection of a dual-stack socket
	}
	if port != r.LocalPort {
		// in repair mode the kernel lets the port be shared with its listener (SK_FORCE_REUSE)
		if err := unix.Bind(fd, kernelSockaddr(family, ifindex, r.Local, r.LocalPort)); err != nil {
			return step("bind", err)
		}
	}
	if err := unix.Connect(fd, kernelSockaddr(family, ifindex, r.Remote, r.RemotePort)); err != nil {
		return step("connect", err)
	}
	opts := []unix.TCPRepairOpt{{Code: tcpoptMSS, Val: uint32(r.MSS)}}
	if r.WScaleOK {
		opts = append(opts, unix.TCPRepairOpt{Code: tcpoptWindow, Val: uint32(r.SndWScale) | uint32(r.RcvWScale)<<16})
	}
	if r.SACKOK {
		opts = append(opts, unix.TCPRepairOpt{Code: tcpoptSACKPerm})
	}
	if r.TSOK {
		opts = append(opts, unix.TCPRepairOpt{Code: tcpoptTimestamp})
	}
	if err := setsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_OPTIONS, unsafe.Pointer(&opts[0]),
		uintptr(len(opts))*unsafe.Sizeof(opts[0])); err != nil {
		return step("options", err)
	}
	if r.TSOK {
		if err := setInt(unix.TCP_TIMESTAMP, int(int32(r.TSVal))); err != nil {
			return step("timestamp", err)
		}
	}
	if err := setInt(unix.TCP_REPAIR_QUEUE, tcpRecvQueue); err != nil {
		return step("queue", err)
	}
	if err := sendAll(fd, r.Unread); err != nil {
		return step("receive queue", err)
	}
	// what was sent and not acknowledged goes in as sent: the kernel retransmits it if need be
	if err := setInt(unix.TCP_REPAIR_QUEUE, tcpSendQueue); err != nil {
		return step("queue", err)
	}
	if err := sendAll(fd, r.Sent); err != nil {
		return step("send queue", err)
	}
	w := tcpRepairWindow{sndWl1: r.SndWl1, sndWnd: r.SndWnd, maxWindow: r.MaxWnd, rcvWnd: r.RcvWnd, rcvWup: r.RcvWup}
	if err := setsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, unsafe.Pointer(&w), unsafe.Sizeof(w)); err != nil {
		return step("window", err)
	}
	_ = setInt(unix.TCP_REPAIR_QUEUE, tcpNoQueue)
	// off with a window probe: the peer's answer brings the kernel's view up to date at once
	if err := setInt(unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
		return step("off", err)
	}
	// what was never sent is sent the ordinary way
	if err := sendAll(fd, r.Unsent); err != nil {
		return step("unsent data", err)
	}
	if r.FinQueued {
		if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
			return step("shutdown", err)
		}
	}
	if r.FinRcvd {
		// the kernel cannot be told in repair mode that the peer closed: it is told the way it
		// learnt it from the peer, by a FIN (libsoccr does the same)
		if err := injectFIN(r); err != nil {
			return step("peer's FIN", err)
		}
	}
	return nil
}

// growBuf raises a socket buffer to hold n bytes, beyond net.core.[rw]mem_max if need be.
func growBuf(fd, opt, force, n int) {
	if cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt); err == nil && cur >= 2*n {
		return
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, n) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, n)
	}
}

func setsockoptBytes(fd, level, name int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(name), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

// sendAll writes b whole; a full buffer is waited for (the socket may be a blocking one).
func sendAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.SendmsgN(fd, b, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if err == unix.EAGAIN || err == unix.EINTR {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(fds, 1000); err != nil && err != unix.EINTR {
				return err
			}
			if fds[0].Revents&unix.POLLOUT == 0 {
				return unix.ETIMEDOUT
			}
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// injectFIN delivers the peer's FIN to the repaired socket: from the peer's address and port to
// ours, in sequence, acknowledging what the socket knows is acknowledged.
func injectFIN(r *stackcore.RepairState) error {
	var tcp [20]byte
	binary.BigEndian.PutUint16(tcp[0:], r.RemotePort)
	binary.BigEndian.PutUint16(tcp[2:], r.LocalPort)
	binary.BigEndian.PutUint32(tcp[4:], r.RcvNxt)
	binary.BigEndian.PutUint32(tcp[8:], r.SndUna)
	tcp[12], tcp[13] = 5<<4, 0x11 // FIN|ACK
	wnd := r.SndWnd
	if r.WScaleOK {
		wnd >>= r.SndWScale
	}
	binary.BigEndian.PutUint16(tcp[14:], uint16(min(wnd, 0xffff)))
	return injectIP(r.Remote, r.Local, unix.IPPROTO_TCP, tcp[:], 16)
}

// injectUDP delivers a datagram to our kernel UDP socket as if it came from src:sport.
func injectUDP(src stackcore.Addr, sport uint16, dst stackcore.Addr, dport uint16, payload []byte) error {
	l4 := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	copy(l4[8:], payload)
	return injectIP(src, dst, unix.IPPROTO_UDP, l4, 6)
}

// injectIP is injectIPv4 or injectIPv6 by the addresses' family.
func injectIP(src, dst stackcore.Addr, proto uint8, l4 []byte, csumAt int) error {
	if src.Is4() {
		return injectIPv4(src.As4(), dst.As4(), proto, l4, csumAt)
	}
	return injectIPv6(src, dst, proto, l4, csumAt)
}

// injectIPv6 is injectIPv4 over IPv6: an AF_INET6 raw socket of protocol IPPROTO_RAW takes the
// IPv6 header from the caller (ipv6 raw sockets imply IPV6_HDRINCL for it).
func injectIPv6(src, dst stackcore.Addr, proto uint8, l4 []byte, csumAt int) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	pkt := make([]byte, 40+len(l4))
	pkt[0] = 6 << 4
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(l4)))
	pkt[6], pkt[7] = proto, 64
	copy(pkt[8:24], src[:])
	copy(pkt[24:40], dst[:])
	copy(pkt[40:], l4)
	var pseudo [40]byte
	copy(pseudo[0:16], src[:])
	copy(pseudo[16:32], dst[:])
	binary.BigEndian.PutUint32(pseudo[32:], uint32(len(l4)))
	pseudo[39] = proto
	sum := ^checksum(checksum(0, pseudo[:]), pkt[40:])
	if sum == 0 && proto == unix.IPPROTO_UDP {
		sum = 0xffff // RFC 8200 8.1
	}
	binary.BigEndian.PutUint16(pkt[40+csumAt:], sum)
	return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet6{Addr: dst})
}

// injectIPv4 sends the transport segment l4 (checksum field at csumAt, zero) from src to our own
// address dst through a raw socket: the kernel delivers it through loopback to its socket as it
// would a segment from the wire (libsoccr restores a peer's FIN the same way).
func injectIPv4(src, dst stackcore.IPv4, proto uint8, l4 []byte, csumAt int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	pkt := make([]byte, 20+len(l4))
	ip := pkt[:20]
	ip[0], ip[8], ip[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], ^checksum(0, ip))
	copy(pkt[20:], l4)
	var pseudo [12]byte
	copy(pseudo[0:4], src[:])
	copy(pseudo[4:8], dst[:])
	pseudo[9] = proto
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(l4)))
	sum := ^checksum(checksum(0, pseudo[:]), pkt[20:])
	if sum == 0 && proto == unix.IPPROTO_UDP {
		sum = 0xffff // RFC 768: zero means no checksum
	}
	binary.BigEndian.PutUint16(pkt[20+csumAt:], sum)
	return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte(dst)})
}

// checksum folds b into the Internet checksum sum (RFC 1071), not complemented.
func checksum(sum uint16, b []byte) uint16 {
	s := uint32(sum)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// applyKernel sets the options the stack kept for a connection on its kernel socket (an
// accepted connection's were never set there: it inherited them from its listener here).
func (o *sockOpts) applyKernel(fd int) {
	set := func(level, name, v int) { _ = unix.SetsockoptInt(fd, level, name, v) }
	// repair mode let the socket share its port; leaving it, the kernel cleared that, and the
	// port would stay taken for a new listener of the program's (SO_REUSEADDR) until the
	// connection is gone, where the kernel's own accepted socket inherits its listener's flag
	if o.reuseAddr {
		set(unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if o.reusePort {
		set(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	if o.nodelay {
		set(unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if o.keepalive {
		set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	}
	if o.keepIdle > 0 {
		set(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(o.keepIdle/stackcore.Second))
	}
	if o.keepIntvl > 0 {
		set(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(o.keepIntvl/stackcore.Second))
	}
	if o.keepCnt > 0 {
		set(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, o.keepCnt)
	}
	if o.userTimeout > 0 {
		set(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(o.userTimeout/stackcore.Millisecond))
	}
	if o.congestion != "" {
		_ = unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, o.congestion)
	}
}
