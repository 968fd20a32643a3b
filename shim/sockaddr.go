package shim

import (
	"encoding/binary"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// Socket addresses. Inside the shim every address is a stackcore.Addr: an IPv6 address, or an
// IPv4 one in its mapped form ::ffff:a.b.c.d, which is also what a dual-stack AF_INET6 socket
// shows the program for an IPv4 peer (ipv6(7)). A socket's family decides the form of what it
// takes and returns: sockaddr_in for AF_INET, sockaddr_in6 for AF_INET6.

// sinLen6 is the shortest sockaddr_in6 the kernel takes (SIN6_LEN_RFC2133: without the scope id).
const sinLen6 = 24

// parseAddr reads a socket address given to a socket of b's family. ok is false for what the
// stack does not carry, which the kernel shadow answers instead: another family, a v4-mapped
// address on an IPV6_V6ONLY socket, a link-local address of another interface (its scope id). errno is the kernel's
// answer to a malformed address. A link-local address without a scope id is EINVAL for bind and
// connect (ipv6(7)); sendto (sending true) takes it, and the kernel would send by its route:
// the interface's, as the stack has it.
func (b *sockBase) parseAddr(sa []byte, sending bool) (ip stackcore.Addr, port uint16, ok bool, errno unix.Errno) {
	if len(sa) < 2 {
		return ip, 0, false, unix.EINVAL
	}
	fam := binary.NativeEndian.Uint16(sa)
	if fam != b.family {
		return ip, 0, false, 0
	}
	if fam == unix.AF_INET {
		if len(sa) < unix.SizeofSockaddrInet4 {
			return ip, 0, false, unix.EINVAL
		}
		return stackcore.AddrFrom4(stackcore.IPv4(sa[4:8])), binary.BigEndian.Uint16(sa[2:4]), true, 0
	}
	if len(sa) < sinLen6 {
		return ip, 0, false, unix.EINVAL
	}
	copy(ip[:], sa[8:24])
	port = binary.BigEndian.Uint16(sa[2:4])
	if ip.Is4() && b.v6only {
		return ip, port, false, 0
	}
	if ip.IsLinkLocal() {
		var scope uint32
		if len(sa) >= unix.SizeofSockaddrInet6 {
			scope = binary.NativeEndian.Uint32(sa[24:28])
		}
		if scope == 0 && !sending {
			return ip, port, false, unix.EINVAL // ipv6(7): a link-local address needs its interface
		}
		if scope != 0 && int(scope) != b.st.ifc.index {
			return ip, port, false, 0
		}
	}
	return ip, port, true, 0
}

// isUnspec reports whether sa is an AF_UNSPEC address (connect(2) with it dissolves an
// association).
func isUnspec(sa []byte) bool {
	return len(sa) >= 2 && binary.NativeEndian.Uint16(sa) == unix.AF_UNSPEC
}

// putAddr writes ip:port in the form of b's family into out (truncating like the kernel) and
// sets *outLen to its full size. An AF_INET6 socket shows IPv4 addresses v4-mapped, and a
// link-local address with its interface as scope id.
func (b *sockBase) putAddr(out []byte, outLen *uint32, ip stackcore.Addr, port uint16) {
	putAddrFamily(out, outLen, b.family, b.st.ifc.index, ip, port)
}

func putAddrFamily(out []byte, outLen *uint32, family uint16, ifindex int, ip stackcore.Addr, port uint16) {
	if outLen == nil {
		return
	}
	var sa [unix.SizeofSockaddrInet6]byte
	binary.NativeEndian.PutUint16(sa[0:], family)
	binary.BigEndian.PutUint16(sa[2:], port)
	n := unix.SizeofSockaddrInet4
	if family == unix.AF_INET {
		if ip.Is4() {
			copy(sa[4:8], ip[12:16])
		}
	} else {
		n = unix.SizeofSockaddrInet6
		copy(sa[8:24], ip[:])
		if ip.IsLinkLocal() {
			binary.NativeEndian.PutUint32(sa[24:], uint32(ifindex))
		}
	}
	copy(out[:min(int(*outLen), len(out))], sa[:n])
	*outLen = uint32(n)
}

// putSockaddr writes a kernel-returned address (an accepted connection's, a datagram's source).
func putSockaddr(out []byte, outLen *uint32, sa unix.Sockaddr) {
	switch in := sa.(type) {
	case *unix.SockaddrInet4:
		putAddrFamily(out, outLen, unix.AF_INET, 0, stackcore.AddrFrom4(in.Addr), uint16(in.Port))
	case *unix.SockaddrInet6:
		putAddrFamily(out, outLen, unix.AF_INET6, int(in.ZoneId), in.Addr, uint16(in.Port))
	default:
		if outLen != nil {
			*outLen = 0
		}
	}
}

// kernelAddr is ip:port as the kernel shadow of b's family takes it (bind, connect).
func (b *sockBase) kernelAddr(ip stackcore.Addr, port uint16) unix.Sockaddr {
	return kernelSockaddr(b.family, b.st.ifc.index, ip, port)
}

// kernelSockaddr is ip:port as a kernel socket of family takes it: IPv4 as sockaddr_in, or as
// mapped in a sockaddr_in6; a link-local address with the interface ifindex as its zone.
func kernelSockaddr(family uint16, ifindex int, ip stackcore.Addr, port uint16) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(port), Addr: ip.As4()}
	}
	sa := &unix.SockaddrInet6{Port: int(port), Addr: ip}
	if ip.IsLinkLocal() {
		sa.ZoneId = uint32(ifindex)
	}
	return sa
}

// addrOfSockaddr is a kernel address as the shim keeps it.
func addrOfSockaddr(sa unix.Sockaddr) (ip stackcore.Addr, port uint16, ok bool) {
	switch in := sa.(type) {
	case *unix.SockaddrInet4:
		return stackcore.AddrFrom4(in.Addr), uint16(in.Port), true
	case *unix.SockaddrInet6:
		return in.Addr, uint16(in.Port), true
	}
	return ip, 0, false
}

// shadowPort is the local port of a kernel socket.
func shadowPort(fd int) (uint16, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	_, port, ok := addrOfSockaddr(sa)
	if !ok {
		return 0, unix.EAFNOSUPPORT
	}
	return port, nil
}

// shadowPending reports whether a kernel shadow has something to read (a connection to accept,
// a datagram).
func shadowPending(fd int) bool {
	p := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(p[:], 0)
	return n > 0
}

// stackFamily is which packets a socket of b's family takes, bound to local.
func (b *sockBase) stackFamily() stackcore.Family {
	switch {
	case b.family == unix.AF_INET:
		return stackcore.Family4
	case b.v6only:
		return stackcore.Family6
	}
	return stackcore.FamilyBoth
}
