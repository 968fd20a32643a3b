package shim

import "golang.org/x/sys/unix"

// Results of Engine calls besides n >= 0 and -errno. Keep in step with preload/ustack.h.
const (
	// Pass tells the caller to make the real libc call on this fd.
	Pass = -100000
	// Wait tells the caller the socket is blocking and would block: sleep on the fd's
	// wait set (FDEntry) and call again.
	Wait = -100001
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
