package shim

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"ustack/shm"
)

// A fork child that did not exec has no Go runtime that works: it cannot drive the stack. When
// it first uses a socket it inherited, it asks the process that owns the stack to move the
// socket to the kernel with its state (handover.go moveToKernel), waits for the answer, and from
// then on both use the kernel socket. The request goes over an abstract unix datagram socket
// that the owner binds at start and its poller watches: a child cannot close it by accident, and
// sending to it fails at once when the owner is gone. Only what a child uses moves; a child that
// only closes its copies costs the owner nothing.

// moveRequestLen is the size of what a child sends (preload/fork.c, keep in step): the fd
// number, which is the same in both processes, and the socket's SO_COOKIE, which proves it is
// still the same socket.
const moveRequestLen = 16

// ownerSocket binds the owner's request socket to a name no other process has.
func ownerSocket(nonce uint64) (fd int, name string, err error) {
	fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("creating the fork request socket: %w", err)
	}
	name = fmt.Sprintf("@ustack/%d/%016x", unix.Getpid(), nonce)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("binding the fork request socket: %w", err)
	}
	return fd, name, nil
}

// pendingMove is a request that must wait (a connection in its handshake).
type pendingMove struct {
	fd     int
	cookie uint64
	from   unix.Sockaddr
}

// serveMoves answers the children's requests waiting on the request socket, and those that had
// to wait before. It reports whether some still wait (the poller then looks again soon).
func (st *stack) serveMoves() bool {
	if st.moveFd < 0 {
		return false
	}
	var buf [moveRequestLen]byte
	for {
		n, from, err := unix.Recvfrom(st.moveFd, buf[:], 0)
		if err != nil {
			break
		}
		if n != moveRequestLen || from == nil {
			continue
		}
		st.pendingMoves = append(st.pendingMoves, pendingMove{
			fd: int(int32(binary.LittleEndian.Uint32(buf[0:]))), cookie: binary.LittleEndian.Uint64(buf[8:]), from: from})
	}
	left := st.pendingMoves[:0]
	for _, p := range st.pendingMoves {
		r := st.eng.moveForChild(p.fd, p.cookie)
		if r == errNotYet {
			left = append(left, p)
			continue
		}
		binary.LittleEndian.PutUint32(buf[0:], uint32(int32(r)))
		_ = unix.Sendto(st.moveFd, buf[:4], unix.MSG_DONTWAIT, p.from)
	}
	clear(st.pendingMoves[len(left):])
	st.pendingMoves = left
	return len(left) > 0
}

// moveForChild moves the socket behind fd if it is the one the child has (same SO_COOKIE).
func (e *Engine) moveForChild(fd int, cookie uint64) int {
	s := e.sock(fd)
	if s == nil {
		return 0 // moved already, or never ours: the child's socket is a kernel socket
	}
	if c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err != nil || c != cookie {
		return neg(unix.ESTALE) // this process closed it and the number is another socket's now
	}
	return e.moveToKernel(s, shm.SockReasonFork)
}
