package stackcore

import (
	"errors"

	"ustack/stackcore/wire"
)

// ErrMsgSize is returned by SendTo for a datagram larger than MTU-28 (IPv4)
// or MTU-48 (IPv6): the stack does not fragment (EMSGSIZE).
var ErrMsgSize = errors.New("stackcore: message too long")

// dgram describes one queued datagram; its bytes sit in the queue's ring.
type dgram struct {
	n    int
	addr Addr // source (receive) or destination (send)
	port uint16
	mac  MAC // source MAC (receive) or next hop (send)
}

// dgramQueue is a bounded FIFO of datagrams: payload bytes in a ring and
// their descriptors in a fixed array, both allocated once.
type dgramQueue struct {
	data ring
	meta []dgram
	head int
	cnt  int
}

func newDgramQueue(bytes int) dgramQueue {
	slots := min(max(bytes/128, 16), 8192)
	return dgramQueue{data: newRing(bytes), meta: make([]dgram, slots)}
}

func (q *dgramQueue) fits(n int) bool { return q.cnt < len(q.meta) && q.data.Free() >= n }

func (q *dgramQueue) push(p []byte, d dgram) {
	q.data.Write(p)
	d.n = len(p)
	i := q.head + q.cnt
	if i >= len(q.meta) {
		i -= len(q.meta)
	}
	q.meta[i] = d
	q.cnt++
}

func (q *dgramQueue) front() *dgram { return &q.meta[q.head] }

func (q *dgramQueue) pop() {
	q.data.discard(q.meta[q.head].n)
	q.head++
	if q.head == len(q.meta) {
		q.head = 0
	}
	q.cnt--
}

func (q *dgramQueue) reset() {
	q.data.discard(q.data.Len())
	q.head, q.cnt = 0, 0
}

// resize moves the queued datagrams that fit into a queue of the new size.
func (q *dgramQueue) resize(bytes int) {
	nq := newDgramQueue(bytes)
	tmp := make([]byte, 0, 64<<10)
	for q.cnt > 0 {
		d := *q.front()
		if nq.fits(d.n) {
			tmp = tmp[:d.n]
			q.data.peek(0, tmp)
			nq.push(tmp, d)
		}
		q.pop()
	}
	*q = nq
}

// UDPSocket is a UDP endpoint (RFC 768) on a local port of the stack's
// address. Cookie is the host's handle, reported by TakeWoken.
type UDPSocket struct {
	Cookie uintptr

	s         *Stack
	port      uint16
	fam       Family
	local     Addr // the address it is bound to; unspecified: any
	tclass    uint8
	hops      uint8
	connected bool
	raddr     Addr
	rport     uint16
	rmac      MAC
	rx, tx    dgramQueue
	err       error // pending error (SO_ERROR)
	closed    bool
	woken     bool
	inTx      bool       // listed in s.udpTx
	reuse     bool       // bound with UDPBindReuse: shares its port
	next      *UDPSocket // the next socket on the same port
	mc        udpMcast   // groups and multicast options (mcast.go)
	// datagrams delivered to it and sent by it
	dgramsIn, dgramsOut uint64
	// TableSlot is the host's place for the socket in a table of its own (0: none).
	TableSlot int32
}

// maxUDPPayload is the largest IPv4 datagram sent without fragmenting
// (IPv6's is 20 bytes less).
func (s *Stack) maxUDPPayload() int { return s.cfg.MTU - wire.IPv4MinLen - wire.UDPHeaderLen }

// UDPBind opens a UDP socket on local port port (0 picks an ephemeral
// port). UDP ports are a namespace of their own: ErrAddrInUse only when
// another UDP socket holds the port.
func (s *Stack) UDPBind(port uint16) (*UDPSocket, error) {
	return s.UDPBindOn(port, false, FamilyBoth, Addr{})
}

// UDPBindReuse is UDPBind for a socket with SO_REUSEADDR or SO_REUSEPORT: it may share its port
// with other such sockets. A datagram goes to the socket connected to its sender, else to one
// bound but not connected (as Linux matches the most specific socket).
func (s *Stack) UDPBindReuse(port uint16) (*UDPSocket, error) {
	return s.UDPBindOn(port, true, FamilyBoth, Addr{})
}

// UDPBindOn is UDPBind or UDPBindReuse for the datagrams of family fam to local
// (unspecified: any of the interface's addresses). Sockets whose families or
// addresses are apart share a port without reuse, as in Linux.
func (s *Stack) UDPBindOn(port uint16, reuse bool, fam Family, local Addr) (*UDPSocket, error) {
	if port == 0 {
		if port = s.udpEphemeralPort(); port == 0 {
			return nil, ErrAddrInUse
		}
	}
	for o := s.udpPorts[port]; o != nil; o = o.next {
		if (!reuse || !o.reuse) && overlaps(fam, &local, o.fam, &o.local) {
			return nil, ErrAddrInUse
		}
	}
	least := s.maxUDPPayload()
	u := &UDPSocket{
		s:     s,
		port:  port,
		fam:   fam,
		local: local,
		rx:    newDgramQueue(max(s.cfg.RecvBuf, least)),
		tx:    newDgramQueue(max(s.cfg.SendBuf, least)),
		reuse: reuse,
		next:  s.udpPorts[port],
	}
	s.udpPorts[port] = u
	return u, nil
}

// udpLookup finds the socket for a datagram from src:sport to dst:port: the one connected to
// that sender, else one that is not connected.
func (s *Stack) udpLookup(dst *Addr, port uint16, src *Addr, sport uint16) *UDPSocket {
	var open *UDPSocket
	for u := s.udpPorts[port]; u != nil; u = u.next {
		if !u.fam.takes(&u.local, dst) || u.mc.only != (Group{}) {
			continue // another family or address, or bound to a group's address: no unicast
		}
		if !u.connected {
			if open == nil {
				open = u
			}
		} else if u.raddr == *src && u.rport == sport {
			return u
		}
	}
	return open
}

// udpEphemeralPort picks a free UDP port for UDPBind(0) (RFC 6056, ports.go).
func (s *Stack) udpEphemeralPort() uint16 {
	return s.pickPort(portProtoUDP, Addr{}, 0, func(p uint16) bool { return s.udpPorts[p] == nil })
}

// UDPPortInUse reports whether a UDP socket holds local port p.
func (s *Stack) UDPPortInUse(p uint16) bool { return s.udpPorts[p] != nil }

// ReleasedUDP appends the UDP ports freed by Close since the last call; the
// host removes their steering entries.
func (s *Stack) ReleasedUDP(dst []uint16) []uint16 {
	for _, p := range s.releasedUDP {
		if s.udpPorts[p] == nil { // not bound again since
			dst = append(dst, p)
		}
	}
	s.releasedUDP = s.releasedUDP[:0]
	return dst
}

// LocalPort returns the bound port.
func (u *UDPSocket) LocalPort() uint16 { return u.port }

// Connect sets the default destination; from then on datagrams from any
// other source are dropped (as Linux does) and ICMP port unreachable from
// the destination is reported as ErrRefused. Datagrams already queued stay.
func (u *UDPSocket) Connect(remote Addr, port uint16, nextHop MAC) {
	u.connected, u.raddr, u.rport, u.rmac = true, remote, port, nextHop
	u.err = nil
}

// Disconnect removes the default destination (connect with AF_UNSPEC).
func (u *UDPSocket) Disconnect() {
	u.connected, u.raddr, u.rport, u.rmac = false, Addr{}, 0, MAC{}
	u.err = nil
}

// Remote returns the default destination; ok is false when not connected.
func (u *UDPSocket) Remote() (Addr, uint16, bool) { return u.raddr, u.rport, u.connected }

// Local returns the address the socket is bound to (unspecified: any).
func (u *UDPSocket) Local() Addr { return u.local }

// SetTrafficClass sets the IPv4 TOS or IPv6 traffic class of its datagrams (IP_TOS, IPV6_TCLASS).
func (u *UDPSocket) SetTrafficClass(v uint8) { u.tclass = v }

// SetHopLimit sets the TTL or hop limit of its datagrams (IP_TTL, IPV6_UNICAST_HOPS); 0 means 64.
func (u *UDPSocket) SetHopLimit(v uint8) { u.hops = v }

// RemoteMAC returns the next hop given to Connect.
func (u *UDPSocket) RemoteMAC() MAC { return u.rmac }

// SendTo copies one datagram into the send queue; it goes out at the next
// Poll. It returns ErrMsgSize for more than MTU-28 bytes (MTU-48 to IPv6),
// ErrWouldBlock when the queue has no room, and a pending error (which it
// clears) first.
func (u *UDPSocket) SendTo(p []byte, dst Addr, dport uint16, nextHop MAC) (int, error) {
	if u.closed {
		return 0, ErrClosed
	}
	if u.err != nil {
		return 0, u.TakeErr()
	}
	if len(p) > u.s.maxUDPPayload()-ipLen(&dst)+wire.IPv4MinLen {
		return 0, ErrMsgSize
	}
	if !u.tx.fits(len(p)) {
		inc(&u.s.stats.UDPSndbufErrors)
		return 0, ErrWouldBlock
	}
	u.tx.push(p, dgram{addr: dst, port: dport, mac: nextHop})
	if !u.inTx {
		u.inTx = true
		u.s.udpTx = append(u.s.udpTx, u)
	}
	return len(p), nil
}

// RecvFrom takes the next datagram: n bytes are copied into p, full is the
// datagram's length (n < full: truncated, MSG_TRUNC). peek leaves it queued
// (MSG_PEEK). A pending error is returned (and cleared) first; ErrWouldBlock
// when nothing is queued.
func (u *UDPSocket) RecvFrom(p []byte, peek bool) (n, full int, src Addr, sport uint16, err error) {
	n, full, src, sport, _, err = u.RecvFromMAC(p, peek)
	return
}

// RecvFromMAC is RecvFrom that also returns the Ethernet source of the
// datagram (the next hop for a reply).
func (u *UDPSocket) RecvFromMAC(p []byte, peek bool) (n, full int, src Addr, sport uint16, mac MAC, err error) {
	if u.err != nil {
		return 0, 0, src, 0, mac, u.TakeErr()
	}
	if u.rx.cnt == 0 {
		if u.closed {
			return 0, 0, src, 0, mac, ErrNotConnected
		}
		return 0, 0, src, 0, mac, ErrWouldBlock
	}
	d := u.rx.front()
	full = d.n
	n = u.rx.data.peek(0, p[:min(len(p), d.n)])
	src, sport, mac = d.addr, d.port, d.mac
	if !peek {
		u.rx.pop()
	}
	return n, full, src, sport, mac, nil
}

// Readable reports whether a datagram or an error is pending.
func (u *UDPSocket) Readable() bool { return u.rx.cnt > 0 || u.err != nil }

// Writable reports whether the send queue has room for a datagram of the
// largest size (a pending error also makes it writable: the send fails).
func (u *UDPSocket) Writable() bool {
	return u.err != nil || u.tx.fits(u.s.maxUDPPayload())
}

// NextLen returns the length of the next datagram, 0 if none (FIONREAD).
func (u *UDPSocket) NextLen() int {
	if u.rx.cnt == 0 {
		return 0
	}
	return u.rx.front().n
}

// InQueue returns the bytes of all queued received datagrams.
func (u *UDPSocket) InQueue() int { return u.rx.data.Len() }

// OutQueue returns the bytes queued to send (SIOCOUTQ).
func (u *UDPSocket) OutQueue() int { return u.tx.data.Len() }

// Err returns the pending error (SO_ERROR) without clearing it.
func (u *UDPSocket) Err() error { return u.err }

// TakeErr returns and clears the pending error.
func (u *UDPSocket) TakeErr() error {
	e := u.err
	u.err = nil
	return e
}

// SetBuffers sets the receive and send queue sizes in bytes (SO_RCVBUF,
// SO_SNDBUF); 0 keeps a size. Sizes are raised to at least one datagram of
// the largest size. Queued datagrams that do not fit the new size are dropped.
func (u *UDPSocket) SetBuffers(rcv, snd int) {
	least := u.s.maxUDPPayload()
	if rcv > 0 {
		u.rx.resize(max(rcv, least))
	}
	if snd > 0 {
		u.tx.resize(max(snd, least))
		if u.tx.cnt == 0 && u.inTx {
			u.inTx = false
			for i, x := range u.s.udpTx {
				if x == u {
					u.s.udpTx = append(u.s.udpTx[:i], u.s.udpTx[i+1:]...)
					break
				}
			}
		}
	}
}

// Buffers returns the receive and send queue sizes in bytes.
func (u *UDPSocket) Buffers() (rcv, snd int) { return u.rx.data.Cap(), u.tx.data.Cap() }

// Close frees the port (reported by ReleasedUDP) and drops received
// datagrams; datagrams already queued to send still go out at the next Poll.
func (u *UDPSocket) Close() {
	if u.closed {
		return
	}
	u.closed = true
	u.mcastLeaveAll()
	u.rx.reset()
	u.err = nil
	ports := u.s.udpPorts
	if head := ports[u.port]; head == u {
		ports[u.port] = u.next
	} else {
		for o := head; o != nil; o = o.next {
			if o.next == u {
				o.next = u.next
				break
			}
		}
	}
	if ports[u.port] == nil {
		delete(ports, u.port)
		u.s.releasedUDP = append(u.s.releasedUDP, u.port)
	}
}

func (u *UDPSocket) wake() {
	if !u.woken && !u.closed {
		u.woken = true
		u.s.wokenUDP = append(u.s.wokenUDP, u)
	}
}

// udpInput delivers a datagram from src to dst (ours) to the socket bound to its port (RFC 768).
func (s *Stack) udpInput(srcMAC MAC, src, dst *Addr, b []byte) {
	st := s.stats
	d := wire.UDP(b)
	if !d.Valid() {
		inc(&st.UDPInErrors)
		inc(&st.DropMalformed)
		return
	}
	ok := true
	if src.Is4() {
		ok = !s.cfg.VerifyChecksums || d.ChecksumOK(src.As4(), dst.As4())
	} else if s.cfg.VerifyChecksums {
		ok = d.ChecksumOK6((*[16]byte)(src), (*[16]byte)(dst))
	} else {
		ok = d.Checksum() != 0 // RFC 8200 8.1: IPv6 receivers discard a zero checksum
	}
	if !ok {
		inc(&st.UDPInErrors)
		inc(&st.DropBadChecksum)
		return
	}
	sport := d.SrcPort()
	if dst.IsMulticast() {
		s.mcastDeliver(srcMAC, src, sport, dst, d.DstPort(), d.Payload()) // mcast.go
		return
	}
	u := s.udpLookup(dst, d.DstPort(), src, sport)
	if u == nil {
		// Linux matches no socket either: a connected socket accepts only its peer.
		inc(&st.UDPNoPorts)
		inc(&st.DropNoSocket)
		if s.udpPorts[d.DstPort()] == nil {
			inc(&st.DropNoPort)
		}
		return
	}
	u.deliver(d.Payload(), src, sport, srcMAC)
}

// deliver queues a datagram from src:sport (Ethernet source mac) on u, or counts it dropped when
// the receive queue has no room.
func (u *UDPSocket) deliver(p []byte, src *Addr, sport uint16, mac MAC) {
	st := u.s.stats
	if !u.rx.fits(len(p)) {
		inc(&st.UDPRcvbufErrors)
		inc(&st.UDPInErrors)
		return
	}
	u.rx.push(p, dgram{addr: *src, port: sport, mac: mac})
	u.dgramsIn++
	inc(&st.UDPInDatagrams)
	u.wake()
}

// flushUDP emits the queued datagrams; false when the Output ran out of buffers.
func (s *Stack) flushUDP(out Output) bool {
	ok := true
	j := 0
	for _, u := range s.udpTx {
		sent := false
		for ok && u.tx.cnt > 0 {
			buf := out.AllocTx()
			if buf == nil {
				inc(&s.stats.DropTxNoBuffer)
				ok = false
				break
			}
			d := u.tx.front()
			h := ipHdr{mac: d.mac, src: u.local, dst: d.addr, tclass: u.tclass, hops: u.hops}
			if h.src.IsUnspecified() || h.src.Is4() != h.dst.Is4() {
				h.src = s.SourceFor(h.dst)
			}
			group := h.dst.IsMulticast()
			if group {
				h.hops = u.mc.ttl + 1 // IP_MULTICAST_TTL
			}
			n := s.encodeUDP(buf, &h, u.port, d.port, &u.tx.data, d.n)
			if group {
				inc(&s.stats.UDPOutMulticast)
				s.mcastLoop(u, &h, d.port, buf[n-d.n:n]) // mcast.go
			}
			out.SubmitTx(buf, n)
			u.tx.pop()
			u.dgramsOut++
			sent = true
		}
		if u.tx.cnt > 0 {
			s.udpTx[j] = u
			j++
		} else {
			u.inTx = false
		}
		if sent {
			u.wake()
		}
	}
	clear(s.udpTx[j:])
	s.udpTx = s.udpTx[:j]
	return ok
}

// encodeUDP writes Ethernet+IP+UDP headers and n payload bytes from the
// front of src into buf; it returns the frame length.
func (s *Stack) encodeUDP(buf []byte, h *ipHdr, sport, dport uint16, src *ring, n int) int {
	ul := wire.UDPHeaderLen + n
	off := wire.EthHeaderLen + ipLen(&h.dst)
	d := wire.UDP(buf[off : off+ul])
	d.SetSrcPort(sport)
	d.SetDstPort(dport)
	d.SetLength(ul)
	src.peek(0, d[wire.UDPHeaderLen:])
	d.SetChecksum(0)
	c := wire.Finish(wire.Checksum(d, h.pseudo(wire.ProtoUDP, ul)))
	if c == 0 {
		c = 0xffff
	}
	d.SetChecksum(c)
	inc(&s.stats.UDPOutDatagrams)
	return s.putIP(buf, h, wire.ProtoUDP, ul)
}
