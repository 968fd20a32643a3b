package shim

import (
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// A socket made before the stack ran in this process (preload/cand.c: a candidate) was set up
// in the kernel alone: bound, given options, perhaps listening, perhaps by another process that
// forked this one. Adopt takes it into the stack when it first carries data, reading back from
// the kernel what the program asked for, so that the stack behaves as if it had seen every call.

// Adopt takes the kernel socket fd (socket(2)'s type typ) into the stack, or leaves it to the
// kernel for good (the table then says KindNone). crossed says it was made before a fork: by
// another process, or by this one before it forked. Such a socket may be held by other processes
// too, and only a listener is taken then, on a port the processes share; a connection or a UDP
// socket held by two processes cannot live in two stacks.
func (e *Engine) Adopt(fd, typ int, crossed bool) {
	if fd < 0 || fd >= FDMax {
		return
	}
	st := e.stack()
	if st == nil {
		e.tab.Withdraw(fd)
		return
	}
	if why := e.adopt(fd, typ, crossed); why != "" {
		e.Log.Debug().Int("fd", fd).Str("why", why).Msg("socket stays with the kernel")
		e.tab.Withdraw(fd)
		count(&st.stats.AdoptDeclined)
		return
	}
	e.Log.Debug().Int("fd", fd).Bool("crossed_fork", crossed).Msg("socket set up in the kernel taken into the stack")
	count(&st.stats.SocketsAccelerated)
	count(&st.stats.SocketsAdopted)
}

// adopt answers why the socket stays with the kernel, or "" once it is the stack's.
func (e *Engine) adopt(fd, typ int, crossed bool) string {
	st := e.st
	listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return "reading SO_ACCEPTCONN: " + err.Error()
	}
	udp := typ&0xf == unix.SOCK_DGRAM
	if crossed && (udp || listening == 0) {
		return "made before a fork, and not a listener: other processes may hold it"
	}
	if _, err := unix.Getpeername(fd); err == nil {
		return "connected in the kernel"
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "reading its address: " + err.Error()
	}
	ip, port, ok := addrOfSockaddr(sa)
	if !ok {
		return "neither IPv4 nor IPv6"
	}
	family, v6only := uint16(unix.AF_INET), false
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
		on, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			return "reading IPV6_V6ONLY: " + err.Error()
		}
		v6only = on != 0
	}
	if port != 0 && !ip.IsUnspecified() && !st.core.IsLocal(ip) && !(udp && ip.IsMulticast()) {
		return "bound to an address of another interface"
	}
	if udp {
		if o := kernelAncillary(fd); o != "" {
			return "asks for ancillary data the stack does not produce: " + o
		}
	}
	if dev, err := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE); err == nil && dev != "" && dev != st.ifc.name {
		return "bound to device " + dev
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return "reading its flags: " + err.Error()
	}
	var opts sockOpts
	opts.readKernel(fd)
	rcvMs, sndMs := kernelTimeoutMs(fd, unix.SO_RCVTIMEO), kernelTimeoutMs(fd, unix.SO_SNDTIMEO)
	why := ""
	st.with(nil, faultNone, func() int {
		nonblock := fl&unix.O_NONBLOCK != 0
		if udp {
			u := &udpSock{sockBase: e.newBaseLocked(fd, family, nonblock)}
			u.self = u
			u.opts = opts
			u.v6only = v6only
			if port != 0 {
				u.boundIP = ip
				if ip.IsMulticast() {
					u.mc.only = ip // a group's receiver (mcast.go)
				}
				if r := u.bindStackLocked(port); r != 0 {
					why = "the stack cannot take its port: " + unix.Errno(-r).Error()
					return 0
				}
			}
			e.publishLocked(u.sockBase, fd)
		} else {
			s := e.newTCPLocked(fd, family, nonblock)
			s.opts = opts
			s.v6only = v6only
			if port != 0 {
				s.bound, s.boundIP, s.boundPort = true, ip, port
			}
			if listening != 0 {
				mode := listenAdopted
				if crossed {
					mode = listenShared
				}
				// the kernel keeps the backlog the program gave; the stack's is the most
				// listen(2) could have given
				switch r := e.listenLocked(s, systemSomaxconn(), mode); r {
				case 0:
					return 0 // published as a listener
				case errPortTaken:
					why = "another process of the interface's group steers its port alone"
					return 0
				default:
					why = "the stack cannot listen on its port: " + unix.Errno(-r).Error()
					return 0
				}
			}
			e.publishLocked(s.sockBase, fd)
		}
		return 0
	})
	if why == "" {
		e.tab.SetTimeouts(fd, rcvMs, sndMs)
	}
	return why
}

// readKernel fills o with the options the kernel socket fd holds (set before the stack knew it).
func (o *sockOpts) readKernel(fd int) {
	for _, opt := range [...]struct{ level, name int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY}, {unix.IPPROTO_TCP, unix.TCP_CORK},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE}, {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT}, {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE}, {unix.SOL_SOCKET, unix.SO_RCVLOWAT},
		{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {unix.SOL_SOCKET, unix.SO_REUSEPORT},
	} {
		// a UDP socket answers no TCP option: those stay unset
		if v, err := unix.GetsockoptInt(fd, opt.level, opt.name); err == nil {
			o.set(opt.level, opt.name, v, true, nil)
		}
	}
	if l, err := unix.GetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER); err == nil {
		o.lingerRST = l.Onoff != 0 && l.Linger == 0
	}
	if cc, err := unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION); err == nil {
		o.set(unix.IPPROTO_TCP, unix.TCP_CONGESTION, 0, false, []byte(cc)) // one the stack lacks: its default
	}
}

// kernelTimeoutMs reads SO_RCVTIMEO or SO_SNDTIMEO of the kernel socket fd in milliseconds.
func kernelTimeoutMs(fd, name int) int32 {
	tv, err := unix.GetsockoptTimeval(fd, unix.SOL_SOCKET, name)
	if err != nil {
		return 0
	}
	ms := tv.Sec*1000 + (int64(tv.Usec)+999)/1000
	if ms < 0 || ms > 1<<31-1 {
		return 0
	}
	return int32(ms)
}

// keepKernelConnsLocked steers to the kernel, each on its own, the kernel's connections on port
// through the interface: those a listener that listened in the kernel alone made (in their
// handshake, waiting to be accepted, accepted, closing). Its port steered to the stack, their
// segments would otherwise reach a stack that does not know them, and be answered with resets.
// Caller holds st.mu.
func (st *stack) keepKernelConnsLocked(port uint16) {
	conns, err := st.kernelConns()
	if err != nil {
		st.eng.Log.Warn().Err(err).Uint16("port", port).Msg("listing the kernel's connections on an adopted listener's port")
		return
	}
	for k := range conns {
		if k.lport != port {
			continue
		}
		if _, ok := st.flows[k]; ok {
			continue
		}
		if err := st.steerFlowLocked(k, flowKernel); err != nil {
			st.eng.Log.Warn().Err(err).Uint16("port", port).Msg("keeping a kernel connection on the kernel")
			return
		}
		count(&st.stats.KernelConnsKept)
	}
}

// kernelConns lists the kernel's TCP connections through the interface's address that may still
// receive segments: every state but LISTEN and TIME-WAIT (a TIME-WAIT connection left by an
// earlier run of a server would take the next connection with its four-tuple to the kernel; a
// FIN it sees again draws a reset from the stack instead of an ACK, which ends the peer's
// LAST-ACK all the same).
func (st *stack) kernelConns() (map[flowKey]bool, error) {
	conns := map[flowKey]bool{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := netlink.SocketDiagTCP(fam)
		if err != nil {
			return nil, err
		}
		for _, s := range socks {
			if s.State == tcpListenState || s.State == tcpTimeWaitState {
				continue
			}
			// IPv4 ones as mapped addresses, as a dual-stack socket has them
			src, dst := s.ID.Source.To16(), s.ID.Destination.To16()
			if src == nil || dst == nil {
				continue
			}
			local, remote := stackcore.Addr(src), stackcore.Addr(dst)
			if !st.core.IsLocal(local) {
				continue
			}
			conns[flowKey{lport: s.ID.SourcePort, laddr: local, raddr: remote, rport: s.ID.DestinationPort}] = true
		}
	}
	return conns, nil
}

// kernelFlowSweep is how often the poller looks for connections steered to the kernel one by one
// (kept there when their listener was adopted, moved there) that the kernel has finished.
const kernelFlowSweep = 2 * stackcore.Second

// sweepKernelFlowsLocked drops the entries of connections steered to the kernel that the kernel
// no longer has: a new connection with the same four-tuple (a client reusing its port) is the
// stack's again. It answers when it wants to look next: Never while there is none. Caller holds
// st.mu.
func (st *stack) sweepKernelFlowsLocked(now stackcore.Time) stackcore.Time {
	if st.kernelFlows == 0 {
		return stackcore.Never
	}
	if now < st.sweepAt {
		return st.sweepAt
	}
	st.sweepAt = now + kernelFlowSweep
	if conns, err := st.kernelConns(); err == nil {
		for k, a := range st.flows {
			if a == flowKernel && !conns[k] {
				st.unsteerFlowLocked(k)
			}
		}
	}
	return st.sweepAt
}

// TCP states in the kernel's numbering (include/net/tcp_states.h).
const (
	tcpTimeWaitState = 6
	tcpListenState   = 10
)
