package shim

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// parseInet4 reads a struct sockaddr_in. ok is false for another family.
func parseInet4(sa []byte) (ip [4]byte, port uint16, ok bool, errno unix.Errno) {
	if len(sa) < 2 {
		return ip, 0, false, unix.EINVAL
	}
	if binary.NativeEndian.Uint16(sa) != unix.AF_INET {
		return ip, 0, false, 0
	}
	if len(sa) < unix.SizeofSockaddrInet4 {
		return ip, 0, false, unix.EINVAL
	}
	copy(ip[:], sa[4:8])
	return ip, binary.BigEndian.Uint16(sa[2:4]), true, 0
}

// isUnspec reports whether sa is an AF_UNSPEC address (connect(2) with it dissolves an
// association).
func isUnspec(sa []byte) bool {
	return len(sa) >= 2 && binary.NativeEndian.Uint16(sa) == unix.AF_UNSPEC
}

// putInet4 writes a struct sockaddr_in into out (truncating like the kernel) and sets *outLen to
// its full size.
func putInet4(out []byte, outLen *uint32, ip [4]byte, port uint16) {
	var sa [unix.SizeofSockaddrInet4]byte
	binary.NativeEndian.PutUint16(sa[0:], unix.AF_INET)
	binary.BigEndian.PutUint16(sa[2:], port)
	copy(sa[4:8], ip[:])
	if outLen == nil {
		return
	}
	copy(out[:min(int(*outLen), len(out))], sa[:])
	*outLen = unix.SizeofSockaddrInet4
}

// putSockaddr writes a kernel-returned address (an accepted connection's, a datagram's source).
func putSockaddr(out []byte, outLen *uint32, sa unix.Sockaddr) {
	if in, ok := sa.(*unix.SockaddrInet4); ok {
		putInet4(out, outLen, in.Addr, uint16(in.Port))
	} else if outLen != nil {
		*outLen = 0
	}
}

// shadowPort is the local port of a kernel socket.
func shadowPort(fd int) (uint16, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	in, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return 0, unix.EAFNOSUPPORT
	}
	return uint16(in.Port), nil
}

// shadowPending reports whether a kernel shadow has something to read (a connection to accept,
// a datagram).
func shadowPending(fd int) bool {
	p := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(p[:], 0)
	return n > 0
}
