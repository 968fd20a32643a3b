package stackcore

// RepairState is a synchronized connection as a kernel socket needs it to take the connection
// over with TCP_REPAIR (tcp(7); what CRIU saves and restores): sequence numbers, windows,
// negotiated options and the bytes in flight either way. Sequence numbers are raw uint32s.
type RepairState struct {
	LocalPort  uint16
	Local      Addr
	Remote     Addr
	RemotePort uint16

	// Send side: Sent were transmitted and are not acknowledged (SndUna is their first
	// sequence number); Unsent follow them. FinQueued says a FIN follows Unsent (shutdown
	// SHUT_WR or close).
	SndUna    uint32
	Sent      []byte
	Unsent    []byte
	FinQueued bool

	// Receive side: Unread were received in order and not read; RcvNxt follows them (the
	// peer's FIN excluded). FinRcvd says the peer's FIN came right after them.
	RcvNxt  uint32
	Unread  []byte
	FinRcvd bool

	// Negotiated options (TCP_REPAIR_OPTIONS) and windows (TCP_REPAIR_WINDOW).
	MSS                  int
	WScaleOK             bool
	SndWScale, RcvWScale uint8
	SACKOK, TSOK         bool
	TSVal                uint32 // our timestamp clock now (TCP_TIMESTAMP)
	SndWl1               uint32
	SndWnd, MaxWnd       uint32
	RcvWnd, RcvWup       uint32
}

// Repairable reports whether the connection is in a state a kernel socket can take over: it is
// synchronized and not closed (RFC 9293 3.3.2; SYN-SENT and SYN-RECEIVED have no such state
// yet, TIME-WAIT nothing left to deliver).
func (c *TCPConn) Repairable() bool {
	switch c.state {
	case StateEstablished, StateCloseWait, StateFinWait1, StateFinWait2, StateClosing, StateLastAck:
		return !c.freed
	}
	return false
}

// Repair returns the connection's state for a kernel socket (see RepairState). The byte slices
// are copies. It changes nothing: Detach ends the connection here once the kernel has it.
func (c *TCPConn) Repair(now Time) RepairState {
	r := RepairState{
		LocalPort: c.key.lport, Local: c.hdr.src, Remote: c.key.raddr, RemotePort: c.key.rport,
		SndUna: uint32(c.sndUna), FinQueued: c.finQ, FinRcvd: c.finRcvd,
		MSS: c.mss, WScaleOK: c.wsOK, SndWScale: c.sndSh, RcvWScale: c.rcvSh,
		SACKOK: c.sackOK, TSOK: c.tsOK, TSVal: c.tsNow(now),
		SndWl1: uint32(c.sndWl1), SndWnd: c.sndWnd, MaxWnd: max(c.maxWnd, c.sndWnd),
		RcvWup: uint32(c.rcvWup),
	}
	if c.finAckd {
		// FIN-WAIT-2: nothing is left to send but the FIN, which the peer has: the kernel
		// socket sends it again at its own sequence number, the peer acknowledges the
		// duplicate, and the kernel is in FIN-WAIT-2 too
		r.SndUna = uint32(c.finSeq())
		r.Sent, r.Unsent = []byte{}, []byte{}
	} else {
		// the send buffer holds bufSeq..bufSeq+len: the acknowledged part is gone already
		start := max(c.sndUna.sub(c.bufSeq), 0)
		end := c.sndBuf.Len()
		sent := min(max(c.sndMax.sub(c.bufSeq), start), end)
		r.Sent = make([]byte, sent-start)
		c.sndBuf.peek(start, r.Sent)
		r.Unsent = make([]byte, end-sent)
		c.sndBuf.peek(sent, r.Unsent)
		if start > 0 {
			// SND.UNA is inside the buffer only while an ACK is being processed; be exact anyway
			r.SndUna = uint32(c.bufSeq.add(start))
		}
	}

	rcvNxt := c.rcvNxt
	if c.finRcvd {
		rcvNxt-- // the FIN's sequence number
	}
	r.RcvNxt = uint32(rcvNxt)
	r.Unread = make([]byte, c.rcvBuf.Len())
	c.rcvBuf.peek(0, r.Unread)
	// the window we last advertised, as the kernel keeps it: from RCV.WUP
	if w := c.rcvAdv.sub(c.rcvWup); w > 0 {
		r.RcvWnd = uint32(w)
	}
	if c.rcvWup.gt(rcvNxt) {
		r.RcvWup = uint32(rcvNxt)
	}
	return r
}

// Detach ends the connection here without a segment to the peer: a kernel socket carries it on
// (TCP_REPAIR). Its port is released like a closed connection's.
func (c *TCPConn) Detach() {
	if c.freed {
		return
	}
	c.hardErr = ErrClosed
	c.appClosed = true
	c.pinned = false // its steering is the kernel's now: not to be undone
	s := c.s
	s.detached[s.ndetached%len(s.detached)] = c.key
	s.ndetached++
	s.free(c)
}

// wasDetached reports whether key is one of the connections recently detached: its segments
// that were already on their way here are dropped, not answered with a reset.
func (s *Stack) wasDetached(key connKey) bool {
	for i := range min(s.ndetached, len(s.detached)) {
		if s.detached[i] == key {
			return true
		}
	}
	return false
}

// Conns appends the connections on local port to dst: a listener handed to the kernel leaves
// them here, each steered on its own.
func (s *Stack) Conns(dst []*TCPConn, port uint16) []*TCPConn {
	for k, c := range s.conns {
		if k.lport == port && !c.freed {
			dst = append(dst, c)
		}
	}
	return dst
}
