// Package nic holds the network-interface side of ustack: the Link interface
// through which the stack receives and transmits Ethernet frames, and its
// implementations (xdp: an AF_XDP socket with an XDP steering program; pair:
// an in-memory wire for tests).
package nic

// Link moves Ethernet frames between the stack and a network interface.
//
// Frames are lent, never copied: Receive returns slices into the link's
// memory that stay valid until ReleaseRx, and AllocTx lends a transmit buffer
// that the caller fills in place and hands back with SubmitTx. A Link is not
// safe for concurrent use; the caller serialises all calls (the stack lock).
type Link interface {
	// Receive fills up to len(frames) received frames (slices into link
	// memory) and returns how many it filled. The frames stay valid until
	// ReleaseRx.
	Receive(frames [][]byte) int
	// ReleaseRx gives the frames of the previous Receive calls back to the link.
	ReleaseRx()
	// AllocTx lends a transmit frame buffer with len == cap >= MTU+14, or
	// returns nil when none is free.
	AllocTx() []byte
	// SubmitTx queues the first n bytes of a buffer obtained from AllocTx.
	// The buffer belongs to the link again after the call.
	SubmitTx(buf []byte, n int)
	// Flush makes submitted frames go out (TX kick). It is cheap when
	// nothing was submitted.
	Flush() error
	// Fd returns a pollable file descriptor that is readable when frames
	// wait, or -1 if the link has none.
	Fd() int
	// Close releases the link; it is safe to call twice.
	Close() error
}
