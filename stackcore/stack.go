package stackcore

import (
	"errors"

	"ustack/stackcore/wire"
)

// Time is a point in time in microseconds on the caller's monotonic clock.
type Time int64

// Never is a deadline that never comes.
const Never Time = 1<<63 - 1

// Durations in Time units.
const (
	Microsecond Time = 1
	Millisecond Time = 1000
	Second      Time = 1000 * Millisecond
)

// IPv4 is an IPv4 address.
type IPv4 [4]byte

// MAC is an Ethernet address.
type MAC [6]byte

// Broadcast is the Ethernet broadcast address.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Errors returned by sockets; match them with errors.Is.
var (
	ErrWouldBlock   = errors.New("stackcore: operation would block")
	ErrReset        = errors.New("stackcore: connection reset by peer")
	ErrRefused      = errors.New("stackcore: connection refused")
	ErrTimedOut     = errors.New("stackcore: connection timed out")
	ErrClosed       = errors.New("stackcore: socket closed for writing")
	ErrAddrInUse    = errors.New("stackcore: address already in use")
	ErrNotConnected = errors.New("stackcore: socket not connected")
)

// Config configures a Stack. Zero fields take defaults.
type Config struct {
	MAC             MAC
	Addr            IPv4   // the interface's IPv4 address
	Addrs6          []Addr // the interface's IPv6 addresses, link-local ones included
	MTU             int    // IP MTU (default 1500); MSS = MTU-40 (IPv4), MTU-60 (IPv6)
	VerifyChecksums bool   // verify IP/TCP/UDP/ICMP checksums on input
	Stats           *Stats // counters; nil = internal
	Seed            uint64 // secret for ISNs, ephemeral ports and SYN cookies
	RecvBuf         int    // per-connection receive buffer to start with (default 256 KiB)
	SendBuf         int    // per-connection send buffer to start with (default 256 KiB)
	RecvBufMax      int    // autotuning grows the receive buffer up to this (default 4 MiB)
	SendBufMax      int    // autotuning grows the send buffer up to this (default 4 MiB)

	// Options offered in SYNs and accepted from peers, on by default as in
	// Linux: RFC 7323 timestamps, RFC 2018 SACK.
	NoTimestamps bool
	NoSACK       bool

	// Congestion is the default congestion control of new connections:
	// "cubic" (default) or "reno".
	Congestion string
}

const (
	defaultBuf     = 256 << 10
	defaultBufMax  = 4 << 20 // Linux's tcp_rmem[2] is 6 MiB, tcp_wmem[2] 4 MiB
	defaultBacklog = 128
	maxPendingRST  = 64
	ephemeralLo    = 49152
)

// Output is where Poll writes frames. AllocTx lends a buffer with
// len == cap >= MTU+14 (nil when none is free); SubmitTx queues its first n bytes.
type Output interface {
	AllocTx() []byte
	SubmitTx(buf []byte, n int)
}

type connKey struct {
	raddr Addr
	rport uint16
	lport uint16
}

// rstReq is a queued reset (or challenge ACK for a closed connection) to a
// peer we hold no connection for.
type rstReq struct {
	hdr          ipHdr
	sport, dport uint16 // our port, their port
	seq, ack     seq
	flags        uint8
	cookie       bool            // a SYN-ACK carrying a SYN cookie (syncookie.go)
	syn          wire.SynOptions // its options
	wnd          uint16
}

// Stack is one TCP/IP stack instance bound to one interface's addresses.
type Stack struct {
	cfg    Config
	stats  *Stats
	mss    int    // our MSS over IPv4 (MTU-40); IPv6's is 20 less
	addr4  Addr   // cfg.Addr, mapped
	addrs6 []Addr // cfg.Addrs6

	conns     map[connKey]*TCPConn
	sndPool   ringPool // rings of closed connections (bufpool.go)
	rcvPool   ringPool
	detached  [64]connKey // the last connections Detach gave to a kernel socket (repair.go)
	ndetached int
	list      []*TCPConn           // all live connections
	ready     []*TCPConn           // connections that may have output (sched.go)
	timers    []*TCPConn           // min-heap of connections by deadline (sched.go)
	listeners map[uint16]*Listener // per port, chained by Listener.next (families or addresses apart)
	portRefs  map[uint16]int       // connections + listeners per local port

	rst  [maxPendingRST]rstReq
	nrst int

	wokenConns []*TCPConn
	wokenLns   []*Listener
	released   []uint16
	pins       []Flow // connections born on pinned listeners, and the ends of those (Pins)
	unpins     []Flow

	udpPorts    map[uint16]*UDPSocket
	udpTx       []*UDPSocket // sockets with datagrams to send
	wokenUDP    []*UDPSocket
	releasedUDP []uint16
	mc          mcastState // groups its UDP sockets joined (mcast.go)

	ipID      uint16
	reasm     reassembler           // IPv4 and IPv6 fragment reassembly (ipfrag.go)
	portTable [portTableSize]uint32 // RFC 6056 Algorithm 4 counters (ports.go)
	dirty     bool                  // list has freed connections to compact
}

// New returns a stack for cfg.
func New(cfg Config) *Stack {
	if cfg.MTU <= 0 {
		cfg.MTU = 1500
	}
	if cfg.MTU < 576 {
		cfg.MTU = 576
	}
	if cfg.RecvBuf <= 0 {
		cfg.RecvBuf = defaultBuf
	}
	if cfg.SendBuf <= 0 {
		cfg.SendBuf = defaultBuf
	}
	if cfg.RecvBufMax <= 0 {
		cfg.RecvBufMax = defaultBufMax
	}
	if cfg.SendBufMax <= 0 {
		cfg.SendBufMax = defaultBufMax
	}
	cfg.RecvBufMax = max(cfg.RecvBufMax, cfg.RecvBuf)
	cfg.SendBufMax = max(cfg.SendBufMax, cfg.SendBuf)
	if cfg.Congestion != CongestionReno {
		cfg.Congestion = CongestionCubic
	}
	st := cfg.Stats
	if st == nil {
		st = new(Stats)
	}
	s := &Stack{
		cfg:        cfg,
		stats:      st,
		mss:        cfg.MTU - 40,
		addr4:      AddrFrom4(cfg.Addr),
		addrs6:     append([]Addr(nil), cfg.Addrs6...),
		conns:      make(map[connKey]*TCPConn),
		listeners:  make(map[uint16]*Listener),
		portRefs:   make(map[uint16]int),
		list:       make([]*TCPConn, 0, 64),
		ready:      make([]*TCPConn, 0, 64),
		timers:     make([]*TCPConn, 0, 64),
		wokenConns: make([]*TCPConn, 0, 64),
		wokenLns:   make([]*Listener, 0, 8),
		udpPorts:   make(map[uint16]*UDPSocket),
		udpTx:      make([]*UDPSocket, 0, 16),
		wokenUDP:   make([]*UDPSocket, 0, 16),
		ipID:       uint16(cfg.Seed),
		sndPool:    newRingPool(cfg.SendBuf),
		rcvPool:    newRingPool(cfg.RecvBuf),
	}
	s.reasm.init()
	return s
}

// Stats returns the stack's counters.
func (s *Stack) Stats() *Stats { return s.stats }

// Config returns the configuration with defaults applied.
func (s *Stack) Config() Config { return s.cfg }

// segment is a parsed TCP segment, valid during Input only.
type segment struct {
	srcMAC  MAC
	src     Addr // the peer
	dst     Addr // ours
	sport   uint16
	dport   uint16
	seq     seq
	ack     seq
	flags   uint8
	wnd     uint32 // raw header value
	payload []byte
	opts    wire.TCPOptions
}

func (g *segment) has(f uint8) bool { return g.flags&f != 0 }

// segLen is the sequence space the segment occupies (RFC 9293 3.4).
func (g *segment) segLen() int {
	n := len(g.payload)
	if g.has(wire.TCPFlagSYN) {
		n++
	}
	if g.has(wire.TCPFlagFIN) {
		n++
	}
	return n
}

// Input processes one received Ethernet frame, borrowed for the call only.
// Replies are queued and go out in the next Poll.
func (s *Stack) Input(now Time, frame []byte) {
	st := s.stats
	inc(&st.EthRxFrames)
	eth := wire.Ethernet(frame)
	if !eth.Valid() {
		inc(&st.DropMalformed)
		return
	}
	dst := MAC(eth.Dst())
	if dst != s.cfg.MAC && dst != Broadcast && !s.mcastFrame(dst) {
		inc(&st.DropNotForUs)
		return
	}
	switch eth.Type() {
	case wire.EtherTypeIPv4:
		s.ip4Input(now, MAC(eth.Src()), eth.Payload())
	case wire.EtherTypeIPv6:
		s.ip6Input(now, MAC(eth.Src()), eth.Payload()) // ipv6.go
	default:
		inc(&st.DropUnsupportedProto)
	}
}

func (s *Stack) ip4Input(now Time, srcMAC MAC, b []byte) {
	st := s.stats
	ip := wire.IPv4(b)
	switch ip.Check(s.cfg.VerifyChecksums) {
	case wire.IPv4Malformed:
		inc(&st.DropMalformed)
		return
	case wire.IPv4BadChecksum:
		inc(&st.DropBadChecksum)
		return
	}
	inc(&st.IPRxPackets)
	if IPv4(ip.Dst()) != s.cfg.Addr && !s.mcastAccept(ip) { // mcast.go
		inc(&st.DropNotForUs)
		return
	}
	if ip.IsFragment() {
		s.fragInput4(now, srcMAC, ip) // ipfrag.go
		return
	}
	s.ipDeliver(now, srcMAC, ip)
}

// ipDeliver hands an IPv4 datagram for our address (not a fragment) to its protocol.
func (s *Stack) ipDeliver(now Time, srcMAC MAC, ip wire.IPv4) {
	switch p := ip.Protocol(); p {
	case wire.ProtoTCP, wire.ProtoUDP:
		src, dst := AddrFrom4(ip.Src()), AddrFrom4(ip.Dst()) // dst: ours, or a group (mcast.go)
		s.l4Input(now, srcMAC, &src, &dst, p, ip.Payload())
	case wire.ProtoICMP:
		s.icmpInput(now, ip)
	default:
		inc(&s.stats.DropUnsupportedProto)
	}
}

// l4Input hands a TCP segment or UDP datagram from src to dst (ours) to the transport.
func (s *Stack) l4Input(now Time, srcMAC MAC, src, dst *Addr, proto uint8, b []byte) {
	if proto == wire.ProtoUDP {
		s.udpInput(srcMAC, src, dst, b)
		return
	}
	st := s.stats
	tcp := wire.TCP(b)
	if !tcp.Valid() {
		inc(&st.DropMalformed)
		return
	}
	v4 := src.Is4()
	if s.cfg.VerifyChecksums {
		ok := false
		if v4 {
			ok = tcp.ChecksumOK(src.As4(), dst.As4())
		} else {
			ok = tcp.ChecksumOK6((*[16]byte)(src), (*[16]byte)(dst))
		}
		if !ok {
			inc(&st.DropBadChecksum)
			return
		}
	}
	inc(&st.TCPSegsIn)
	var g segment
	g.srcMAC = srcMAC
	g.src = *src
	g.dst = *dst
	g.sport = tcp.SrcPort()
	g.dport = tcp.DstPort()
	g.seq = seq(tcp.Seq())
	g.ack = seq(tcp.Ack())
	g.flags = tcp.Flags()
	g.wnd = uint32(tcp.Window())
	g.payload = tcp.Payload()
	if tcp.DataOffset() > wire.TCPMinLen {
		g.opts = wire.ParseTCPOptions(tcp.Options())
	}
	// RFC 9293 3.10.7.2 / RFC 1122 4.2.3.10: no segments from broadcast or multicast
	// sources, nor from ourselves.
	bad := g.sport == 0 || g.dport == 0 || *src == *dst || src.IsMulticast() || src.IsUnspecified() || dst.IsMulticast()
	if v4 && src[12] == 255 && src[13] == 255 && src[14] == 255 && src[15] == 255 {
		bad = true
	}
	if bad {
		inc(&st.DropBadSegment)
		return
	}
	s.tcpInput(now, &g)
}

func (s *Stack) tcpInput(now Time, g *segment) {
	key := connKey{g.src, g.sport, g.dport}
	if c := s.conns[key]; c != nil {
		// RFC 9293 3.10.7.4 / RFC 6191: a new SYN may reopen a TIME_WAIT tuple.
		if c.state == StateTimeWait && g.flags&(wire.TCPFlagSYN|wire.TCPFlagACK|wire.TCPFlagRST) == wire.TCPFlagSYN &&
			s.listenerFor(g) != nil && g.seq.gt(c.rcvNxt) {
			s.free(c)
		} else {
			c.input(now, g)
			return
		}
	}
	if g.flags&wire.TCPFlagSYN == 0 && s.wasDetached(key) {
		// a kernel socket carries it on now: a segment still steered here must not reset it
		inc(&s.stats.DropNoSocket)
		return
	}
	if l := s.listenerFor(g); l != nil {
		l.input(now, g)
		return
	}
	// RFC 9293 3.10.7.1: CLOSED state.
	inc(&s.stats.DropNoSocket)
	if s.portRefs[g.dport] == 0 {
		inc(&s.stats.DropNoPort)
	}
	s.replyReset(g)
}

// replyReset queues the RST RFC 9293 3.10.7.1 prescribes for a segment that
// matches no connection (or is unacceptable in LISTEN / SYN-SENT).
func (s *Stack) replyReset(g *segment) {
	if g.has(wire.TCPFlagRST) {
		return
	}
	if g.has(wire.TCPFlagACK) {
		s.queueRST(g, g.ack, 0, wire.TCPFlagRST)
	} else {
		s.queueRST(g, 0, g.seq.add(g.segLen()), wire.TCPFlagRST|wire.TCPFlagACK)
	}
}

// queueRST queues a reset (or a SYN-ACK carrying a cookie) answering g.
func (s *Stack) queueRST(g *segment, sq, ack seq, flags uint8) *rstReq {
	return s.queueRSTTo(&ipHdr{mac: g.srcMAC, src: g.dst, dst: g.src}, g.dport, g.sport, sq, ack, flags)
}

func (s *Stack) queueRSTTo(h *ipHdr, sport, dport uint16, sq, ack seq, flags uint8) *rstReq {
	if s.nrst == len(s.rst) {
		return nil // rate limit: drop resets beyond the queue
	}
	r := &s.rst[s.nrst]
	*r = rstReq{hdr: *h, sport: sport, dport: dport, seq: sq, ack: ack, flags: flags}
	s.nrst++
	return r
}

// Poll emits everything due (data, ACKs, retransmissions, RST, FIN), runs
// timers, and returns the next deadline (Never if none). Its cost follows the
// connections with work, not the connections open (sched.go).
func (s *Stack) Poll(now Time, out Output) Time {
	next := Never
	if !s.flushRST(out) {
		return now + 50*Microsecond
	}
	if len(s.udpTx) > 0 && !s.flushUDP(out) {
		next = now + 50*Microsecond
	}
	for len(s.timers) > 0 && s.timers[0].heapAt <= now {
		c := s.timers[0]
		s.heapRemove(c)
		c.timers(now)
		s.markReady(c)
	}
	j := 0
	for i := 0; i < len(s.ready); i++ {
		c := s.ready[i]
		if c.freed {
			c.inReady = false
			continue
		}
		if c.appClosed && c.state == StateFinWait2 && c.closeAt == Never {
			c.closeAt = now + finWait2Timeout // orphaned FIN-WAIT-2
		}
		if !c.output(now, out) {
			next = now + 50*Microsecond
			if !c.freed {
				s.ready[j] = c // out of buffers: again at the next Poll
				j++
				continue
			}
		}
		c.inReady = false
		if !c.freed {
			s.refile(c)
		}
	}
	clear(s.ready[j:])
	s.ready = s.ready[:j]
	if !s.flushRST(out) { // resets queued by timers (keepalive, Abort)
		next = now + 50*Microsecond
	}
	if s.reasm.used > 0 {
		s.reasmExpire(now)
		next = min(next, s.reasmDeadline())
	}
	if s.dirty {
		k := 0
		for _, c := range s.list {
			if !c.freed {
				s.list[k] = c
				k++
			}
		}
		clear(s.list[k:])
		s.list = s.list[:k]
		s.dirty = false
	}
	return min(next, s.nextTimer())
}

// flushRST emits the queued resets; false when the Output ran out of buffers.
func (s *Stack) flushRST(out Output) bool {
	for s.nrst > 0 {
		r := &s.rst[0]
		buf := out.AllocTx()
		if buf == nil {
			inc(&s.stats.DropTxNoBuffer)
			return false
		}
		var o [wire.TCPMaxOptLen]byte
		var opts []byte
		if r.cookie {
			opts = o[:wire.PutSynOptionsFull(o[:], r.syn)]
		}
		n := s.encodeTCPRaw(buf, &r.hdr, r.sport, r.dport, r.seq, r.ack, r.flags, r.wnd, nil, 0, -1, opts)
		out.SubmitTx(buf, n)
		if r.flags&wire.TCPFlagRST != 0 {
			inc(&s.stats.TCPRstsSent)
		}
		copy(s.rst[:], s.rst[1:s.nrst])
		s.nrst--
	}
	return true
}

// TakeWoken appends the Cookies of sockets whose readiness may have changed
// since the last call, each once, and clears the marks.
func (s *Stack) TakeWoken(dst []uintptr) []uintptr {
	for _, c := range s.wokenConns {
		dst = append(dst, c.Cookie)
		c.woken = false
	}
	clear(s.wokenConns)
	s.wokenConns = s.wokenConns[:0]
	for _, l := range s.wokenLns {
		dst = append(dst, l.Cookie)
		l.woken = false
	}
	clear(s.wokenLns)
	s.wokenLns = s.wokenLns[:0]
	for _, u := range s.wokenUDP {
		if !u.closed {
			dst = append(dst, u.Cookie)
		}
		u.woken = false
	}
	clear(s.wokenUDP)
	s.wokenUDP = s.wokenUDP[:0]
	return dst
}

// Released appends the local ports that stopped being used by any connection
// or listener of this stack since the last call (a connection fully freed
// after TIME_WAIT, a reset, a timeout, or a closed listener whose port has no
// connection left). The host removes their steering entries.
//
// A port freed and taken again since the last call (a connect replacing a TIME-WAIT connection)
// is not reported: the host must keep steering it.
func (s *Stack) Released(dst []uint16) []uint16 {
	for _, p := range s.released {
		if s.portRefs[p] == 0 {
			dst = append(dst, p)
		}
	}
	s.released = s.released[:0]
	return dst
}

// Flow is one connection as the steering knows it: local port, remote address and port.
type Flow struct {
	LocalPort  uint16
	Local      Addr
	Remote     Addr
	RemotePort uint16
}

// Pins appends to pin the connections born on pinned listeners since the last call, and to
// unpin those of them that ended (freed, or handed to a kernel socket: Detach); a connection
// born and ended in between is in both.
func (s *Stack) Pins(pin, unpin []Flow) ([]Flow, []Flow) {
	pin, unpin = append(pin, s.pins...), append(unpin, s.unpins...)
	s.pins, s.unpins = s.pins[:0], s.unpins[:0]
	return pin, unpin
}

// PortInUse reports whether a listener or a connection (TIME-WAIT included) holds local port p.
func (s *Stack) PortInUse(p uint16) bool { return s.portRefs[p] > 0 }

func (s *Stack) refPort(p uint16) { s.portRefs[p]++ }

func (s *Stack) unrefPort(p uint16) {
	n := s.portRefs[p] - 1
	if n > 0 {
		s.portRefs[p] = n
		return
	}
	delete(s.portRefs, p)
	s.released = append(s.released, p)
}

// ephemeralPort picks an unused local port for Connect with port 0 towards
// remote:rport (RFC 6056, ports.go).
func (s *Stack) ephemeralPort(remote Addr, rport uint16) uint16 {
	return s.pickPort(portProtoTCP, remote, rport, func(p uint16) bool {
		return s.portRefs[p] == 0 && s.conns[connKey{remote, rport, p}] == nil
	})
}

// encodeTCPRaw writes Ethernet+IP+TCP headers into buf with the payload taken
// from src (a send ring, at offset off) or none (n <= 0), and the given option
// bytes (a multiple of 4 long); it returns the frame length.
func (s *Stack) encodeTCPRaw(buf []byte, h *ipHdr, sport, dport uint16, sq, ack seq, flags uint8,
	wnd uint16, src *ring, off, n int, opts []byte) int {
	if n < 0 {
		n = 0
	}
	tcp := wire.TCP(buf[wire.EthHeaderLen+ipLen(&h.dst):])
	hl := wire.TCPMinLen + copy(tcp[wire.TCPMinLen:wire.TCPMinLen+wire.TCPMaxOptLen], opts)
	tcp = tcp[:hl+n]
	tcp.SetSrcPort(sport)
	tcp.SetDstPort(dport)
	tcp.SetSeq(uint32(sq))
	tcp.SetAck(uint32(ack))
	tcp.SetDataOffset(hl)
	tcp.SetFlags(flags)
	tcp.SetWindow(wnd)
	tcp.SetUrgent(0)
	if n > 0 {
		src.peek(off, tcp[hl:])
	}
	tcp.SetChecksum(0)
	tcp.SetChecksum(wire.Finish(wire.Checksum(tcp, h.pseudo(wire.ProtoTCP, len(tcp)))))
	st := s.stats
	inc(&st.TCPSegsOut)
	if n > 0 {
		add(&st.TCPBytesOut, uint64(n))
	}
	return s.putIP(buf, h, wire.ProtoTCP, len(tcp))
}
