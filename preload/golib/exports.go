package main

/*
#include "golib.h"
*/
import "C"

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Every export returns n >= 0, -errno, USTACK_PASS or USTACK_WAIT, and never panics into C.

func guard(r *C.long) {
	if p := recover(); p != nil {
		*r = C.long(eng.Recovered(p))
	}
}

func bytesOf(p unsafe.Pointer, n C.int) []byte {
	if p == nil || n <= 0 {
		return nil
	}
	return unsafe.Slice((*byte)(p), int(n))
}

// outAddr views a (struct sockaddr *, socklen_t *) pair.
func outAddr(p unsafe.Pointer, lenp *C.socklen_t) ([]byte, *uint32) {
	if p == nil || lenp == nil {
		return nil, nil
	}
	return unsafe.Slice((*byte)(p), int(*lenp)), (*uint32)(unsafe.Pointer(lenp))
}

//export ustack_socket
func ustack_socket(fd, domain, typ C.int) (r C.long) {
	if eng == nil {
		return 0
	}
	defer guard(&r)
	eng.SocketOf(int(fd), int(domain), int(typ))
	return 0
}

//export ustack_adopt
func ustack_adopt(fd, typ, crossed C.int) (r C.long) {
	if eng == nil {
		return 0
	}
	defer guard(&r)
	eng.Adopt(int(fd), int(typ), crossed != 0)
	return 0
}

//export ustack_bind
func ustack_bind(fd C.int, addr unsafe.Pointer, alen C.socklen_t) (r C.long) {
	defer guard(&r)
	return C.long(eng.Bind(int(fd), bytesOf(addr, C.int(alen))))
}

//export ustack_listen
func ustack_listen(fd, backlog C.int) (r C.long) {
	defer guard(&r)
	return C.long(eng.Listen(int(fd), int(backlog)))
}

//export ustack_accept
func ustack_accept(fd C.int, addr unsafe.Pointer, alen *C.socklen_t, flags C.int) (r C.long) {
	defer guard(&r)
	sa, l := outAddr(addr, alen)
	return C.long(eng.Accept(int(fd), sa, l, int(flags)))
}

//export ustack_connect
func ustack_connect(fd C.int, addr unsafe.Pointer, alen C.socklen_t) (r C.long) {
	defer guard(&r)
	return C.long(eng.Connect(int(fd), bytesOf(addr, C.int(alen))))
}

//export ustack_connect_wait
func ustack_connect_wait(fd C.int) (r C.long) {
	defer guard(&r)
	return C.long(eng.ConnectWait(int(fd)))
}

//export ustack_shutdown
func ustack_shutdown(fd, how C.int) (r C.long) {
	defer guard(&r)
	return C.long(eng.Shutdown(int(fd), int(how)))
}

//export ustack_close
func ustack_close(fd C.int) (r C.long) {
	defer guard(&r)
	eng.CloseFD(int(fd))
	return 0
}

//export ustack_exit
func ustack_exit() (r C.long) {
	defer guard(&r)
	eng.Drain()
	return 0
}

//export ustack_exec
func ustack_exec() (r C.long) {
	defer guard(&r)
	eng.MoveAll()
	return 0
}

//export ustack_move
func ustack_move(fd C.int) (r C.long) {
	defer guard(&r)
	return C.long(eng.MoveFd(int(fd)))
}

// ustack_resched lets the scheduler see the calling thread: the front calls it every few
// milliseconds from a thread that keeps calling in. A C thread's calls into Go never pass through
// the scheduler, so after 10 ms the runtime's monitor takes such a thread for a goroutine that
// runs too long: it took the thread's P each time it found it outside Go, and, having taken one,
// polled every 20 µs (about 5,000 wake-ups a second on the application's CPU under load).
//
//export ustack_resched
func ustack_resched() C.long {
	runtime.Gosched()
	return 0
}

//export ustack_dup
func ustack_dup(oldfd, newfd C.int) (r C.long) {
	defer guard(&r)
	eng.Dup(int(oldfd), int(newfd))
	return 0
}

//export ustack_getsockname
func ustack_getsockname(fd C.int, addr unsafe.Pointer, alen *C.socklen_t) (r C.long) {
	defer guard(&r)
	sa, l := outAddr(addr, alen)
	return C.long(eng.Getsockname(int(fd), sa, l))
}

//export ustack_getpeername
func ustack_getpeername(fd C.int, addr unsafe.Pointer, alen *C.socklen_t) (r C.long) {
	defer guard(&r)
	sa, l := outAddr(addr, alen)
	return C.long(eng.Getpeername(int(fd), sa, l))
}

//export ustack_getsockopt
func ustack_getsockopt(fd, level, name C.int, val unsafe.Pointer, vlen *C.socklen_t) (r C.long) {
	defer guard(&r)
	v, l := outAddr(val, vlen)
	return C.long(eng.Getsockopt(int(fd), int(level), int(name), v, l))
}

//export ustack_setsockopt
func ustack_setsockopt(fd, level, name C.int, val unsafe.Pointer, vlen C.socklen_t) (r C.long) {
	defer guard(&r)
	return C.long(eng.Setsockopt(int(fd), int(level), int(name), bytesOf(val, C.int(vlen))))
}

func iovecs(iov *C.struct_iovec, cnt C.int) []unix.Iovec {
	if iov == nil || cnt <= 0 {
		return nil
	}
	return unsafe.Slice((*unix.Iovec)(unsafe.Pointer(iov)), int(cnt))
}

//export ustack_recvmsg
func ustack_recvmsg(fd C.int, iov *C.struct_iovec, cnt, flags C.int, name unsafe.Pointer, namelen *C.socklen_t, msgflags *C.int) (r C.long) {
	defer guard(&r)
	sa, l := outAddr(name, namelen)
	return C.long(eng.Recv(int(fd), iovecs(iov, cnt), int(flags), sa, l, (*int32)(unsafe.Pointer(msgflags))))
}

//export ustack_sendmsg
func ustack_sendmsg(fd C.int, iov *C.struct_iovec, cnt, flags C.int, name unsafe.Pointer, namelen C.socklen_t) (r C.long) {
	defer guard(&r)
	return C.long(eng.Send(int(fd), iovecs(iov, cnt), int(flags), bytesOf(name, C.int(namelen))))
}

//export ustack_fcntl
func ustack_fcntl(fd, cmd C.int, arg C.long) (r C.long) {
	defer guard(&r)
	return C.long(eng.Fcntl(int(fd), int(cmd), uintptr(arg)))
}

//export ustack_ioctl
func ustack_ioctl(fd C.int, req C.ulong, arg unsafe.Pointer) (r C.long) {
	defer guard(&r)
	return C.long(eng.Ioctl(int(fd), uint(req), arg))
}

//export ustack_poll_check
func ustack_poll_check(fds *C.struct_pollfd, n C.int) (r C.long) {
	defer guard(&r)
	if fds == nil || n <= 0 {
		return 0
	}
	return C.long(eng.PollCheck(unsafe.Slice((*unix.PollFd)(unsafe.Pointer(fds)), int(n))))
}

//export ustack_epoll_ctl
func ustack_epoll_ctl(epfd, op, fd C.int, ev *C.struct_epoll_event) (r C.long) {
	defer guard(&r)
	return C.long(eng.EpollCtl(int(epfd), int(op), int(fd), (*unix.EpollEvent)(unsafe.Pointer(ev))))
}

//export ustack_epoll_check
func ustack_epoll_check(epfd C.int, evs *C.struct_epoll_event, max C.int) (r C.long) {
	defer guard(&r)
	if evs == nil || max <= 0 {
		return 0
	}
	return C.long(eng.EpollCheck(int(epfd), unsafe.Slice((*unix.EpollEvent)(unsafe.Pointer(evs)), int(max))))
}

//export ustack_epoll_close
func ustack_epoll_close(epfd C.int) (r C.long) {
	defer guard(&r)
	eng.EpollClose(int(epfd))
	return 0
}

//export ustack_epoll_adopt
func ustack_epoll_adopt(epfd C.int) (r C.long) {
	defer guard(&r)
	if eng.EpollAdopt(int(epfd)) {
		return 1
	}
	return 0
}
