package shim

import (
	"errors"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// Results of Engine calls besides n >= 0 and -errno. Keep in step with preload/ustack.h.
const (
	// Pass tells the caller to make the real libc call on this fd: it is not ours (any more),
	// or the kernel shadow answers this call.
	Pass = -100000
	// Wait tells the caller the socket is blocking and would block: sleep on the fd's wait set
	// (FDEntry, FDTable.Wake) and call again.
	Wait = -100001
	// noShadow, inside the shim: the stack has nothing, and the kernel shadow is not worth a
	// look (sockBase.shadowWorthLookLocked)
	noShadow = -100002
)

// neg turns an errno into the negative result convention.
func neg(e unix.Errno) int { return -int(e) }

// Constants x/sys/unix does not name on linux.
const (
	pollRdNorm    = 0x40
	pollWrNorm    = 0x100
	ioctlFIONBIO  = 0x5421
	ioctlFIONREAD = 0x541B // also SIOCINQ
	ioctlSIOCOUTQ = 0x5411 // TIOCOUTQ
)

// errnos maps the stack's errors to what the kernel answers; order matters where errors wrap
// others (the unreachable errors also match ErrTimedOut).
var errnos = []struct {
	err   error
	errno unix.Errno
}{
	{stackcore.ErrWouldBlock, unix.EAGAIN},
	{stackcore.ErrReset, unix.ECONNRESET},
	{stackcore.ErrRefused, unix.ECONNREFUSED},
	{stackcore.ErrHostUnreach, unix.EHOSTUNREACH},
	{stackcore.ErrNetUnreach, unix.ENETUNREACH},
	{stackcore.ErrTimedOut, unix.ETIMEDOUT},
	{stackcore.ErrMsgSize, unix.EMSGSIZE},
	{stackcore.ErrClosed, unix.EPIPE},
	{stackcore.ErrNotConnected, unix.ENOTCONN},
	{stackcore.ErrAddrInUse, unix.EADDRINUSE},
}

// errnoOf turns an error into the negative result convention: 0 for nil, EIO for the unknown.
func errnoOf(err error) int {
	if err == nil {
		return 0
	}
	for _, m := range errnos {
		if errors.Is(err, m.err) {
			return neg(m.errno)
		}
	}
	var en unix.Errno
	if errors.As(err, &en) {
		return neg(en)
	}
	return neg(unix.EIO)
}

// isHardErr tells the errors that end a connection (as opposed to would-block or EOF).
func isHardErr(err error) bool {
	return errors.Is(err, stackcore.ErrReset) || errors.Is(err, stackcore.ErrTimedOut) ||
		errors.Is(err, stackcore.ErrRefused) || errors.Is(err, stackcore.ErrHostUnreach) ||
		errors.Is(err, stackcore.ErrNetUnreach)
}
