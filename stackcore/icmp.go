package stackcore

import (
	"encoding/binary"

	"ustack/stackcore/wire"
)

// Soft errors from ICMP (RFC 1122 4.2.3.9): kept on the connection and
// reported instead of ErrTimedOut if it later times out, as Linux reports
// sk_err_soft (EHOSTUNREACH, ENETUNREACH). Both also match ErrTimedOut
// with errors.Is, so a host that does not know them sees a timeout.
var (
	ErrHostUnreach error = &timeoutCause{"stackcore: no route to host"}
	ErrNetUnreach  error = &timeoutCause{"stackcore: network is unreachable"}
)

type timeoutCause struct{ msg string }

func (e *timeoutCause) Error() string        { return e.msg }
func (e *timeoutCause) Is(target error) bool { return target == ErrTimedOut }

const minPMTU = 68 // RFC 791: every host must take 68-byte datagrams unfragmented

// icmpInput handles an ICMP message addressed to us (RFC 792). Echo requests
// and other queries are left alone: the kernel answers ping (the XDP program
// does not steer them here). Errors quoting a datagram we sent go to its
// socket (RFC 1122 3.2.2, RFC 5927).
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
	if !m.IsError() {
		return
	}
	q, l4, ok := wire.Quoted(m.Body())
	if !ok {
		inc(&st.ICMPInErrors)
		return
	}
	// Only errors about datagrams we sent, and first fragments (the ports
	// are in the quoted bytes).
	if IPv4(q.Src()) != s.cfg.Addr || q.FlagsFrag()&wire.IPv4FragOffMask != 0 {
		return
	}
	kind, mtu := icmpHostUnreach, 0
	switch typ, code := m.Type(), m.Code(); {
	case typ == wire.ICMPDestUnreach && code == wire.ICMPFragNeeded:
		kind, mtu = icmpPacketTooBig, int(m.NextHopMTU())
		if mtu == 0 {
			mtu = plateauBelow(q.TotalLen()) // RFC 1191 5: a router that predates RFC 1191
		}
		if mtu < minPMTU {
			return
		}
	case typ == wire.ICMPDestUnreach && (code == wire.ICMPPortUnreach || code == wire.ICMPProtoUnreach):
		kind = icmpRefused
	case typ == wire.ICMPDestUnreach:
		switch code {
		case 0, 6, 9, 11: // net unreachable, net unknown, net prohibited, net for TOS
			kind = icmpNetUnreach
		}
	case typ == wire.ICMPTimeExceeded:
	default:
		return // source quench is ignored (RFC 6633), parameter problem too
	}
	dst := AddrFrom4(q.Dst())
	s.icmpToSocket(now, kind, mtu, q.Protocol(), &dst, l4)
}

// icmpKind is what an ICMP or ICMPv6 error means to the socket it is about.
type icmpKind uint8

const (
	icmpHostUnreach  icmpKind = iota // a soft error (RFC 1122 4.2.3.9), EHOSTUNREACH
	icmpNetUnreach                   // a soft error, ENETUNREACH
	icmpRefused                      // port (or protocol) unreachable: the host itself refuses
	icmpPacketTooBig                 // RFC 1191 fragmentation needed, RFC 8201 packet too big
)

// icmpToSocket hands an error quoting a datagram we sent to dst (l4: its
// first transport bytes, at least 8) to the socket that sent it.
func (s *Stack) icmpToSocket(now Time, kind icmpKind, mtu int, proto uint8, dst *Addr, l4 []byte) {
	sport := binary.BigEndian.Uint16(l4[0:])
	dport := binary.BigEndian.Uint16(l4[2:])
	switch proto {
	case wire.ProtoTCP:
		if c := s.conns[connKey{*dst, dport, sport}]; c != nil {
			c.icmpError(now, kind, mtu, seq(binary.BigEndian.Uint32(l4[4:])))
		}
	case wire.ProtoUDP:
		for u := s.udpPorts[sport]; u != nil; u = u.next {
			u.icmpError(kind, dst, dport)
		}
	}
}

// icmpError applies an ICMP error quoting one of our segments with sequence
// number sq (RFC 5927 4.1: it must lie in SND.UNA..SND.MAX, as Linux
// checks, or it is ignored as a likely blind attack).
func (c *TCPConn) icmpError(now Time, kind icmpKind, mtu int, sq seq) {
	if c.freed || c.state == StateTimeWait || sq.lt(c.sndUna) || sq.gt(c.sndMax) {
		return
	}
	_ = now
	c.s.markReady(c) // the MSS may have dropped: resend at the new size
	switch kind {
	case icmpPacketTooBig:
		c.pmtuUpdate(mtu)
	case icmpRefused:
		// A connection attempt refused by the host itself: Linux reports
		// ECONNREFUSED and gives up. Once synchronized it is a soft error
		// (RFC 1122 4.2.3.9: do not abort).
		if c.state == StateSynSent {
			c.fail(ErrRefused)
			return
		}
		c.softErr = ErrRefused
	case icmpNetUnreach:
		c.softErr = ErrNetUnreach
	default:
		c.softErr = ErrHostUnreach
	}
}

// pmtuUpdate is path MTU discovery (RFC 1191, RFC 8201) for a message
// announcing next-hop MTU mtu: lower the connection's MSS to fit (never raise
// it from ICMP), and resend what is in flight in segments of the new size
// (Linux tcp_simple_retransmit).
func (c *TCPConn) pmtuUpdate(mtu int) {
	if !c.key.raddr.Is4() {
		mtu = max(mtu, wire.IPv6MinMTU) // RFC 8201 4: never below the IPv6 minimum link MTU
	}
	mtu = min(mtu, c.s.cfg.MTU)
	if c.pmtu != 0 && mtu >= c.pmtu {
		return
	}
	c.pmtu = mtu
	mss := mtu - c.hdrLen()
	if c.tsOK {
		mss -= 12
	}
	mss = max(mss, 8)
	if mss >= c.mss {
		return
	}
	c.mss = mss
	if c.sndMax.gt(c.sndUna) && c.state.synchronized() {
		c.sndNxt = c.sndUna
		c.rtxOne = false
		c.rttOn = false // Karn's rule
	}
}

// plateauBelow returns the RFC 1191 section 7 plateau MTU below size.
func plateauBelow(size int) int {
	for _, p := range [...]int{32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68} {
		if p < size {
			return p
		}
	}
	return 0
}

// PathMTU returns the path MTU learnt from ICMP, or the interface MTU.
func (c *TCPConn) PathMTU() int {
	if c.pmtu != 0 {
		return c.pmtu
	}
	return c.s.cfg.MTU
}

// MSS returns the current send MSS (payload bytes per segment, TCP_MAXSEG).
func (c *TCPConn) MSS() int { return c.mss }

// icmpError reports ICMP port unreachable from the connected peer as
// ErrRefused; Linux reports it only on connected sockets.
func (u *UDPSocket) icmpError(kind icmpKind, dst *Addr, dport uint16) {
	if u.closed || !u.connected || u.raddr != *dst || u.rport != dport {
		return
	}
	if kind == icmpRefused {
		u.err = ErrRefused
		u.wake()
	}
}
