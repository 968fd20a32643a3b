package stackcore

import (
	"io"

	"ustack/stackcore/wire"
)

// State is a TCP connection state (RFC 9293 3.3.2).
type State uint8

const (
	StateClosed State = iota
	StateListen
	StateSynSent
	StateSynReceived
	StateEstablished
	StateFinWait1
	StateFinWait2
	StateCloseWait
	StateClosing
	StateLastAck
	StateTimeWait
)

var stateNames = [...]string{"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
	"FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "UNKNOWN"
}

// synchronized reports whether the state is past the handshake.
func (s State) synchronized() bool { return s >= StateEstablished }

const (
	msl             = 30 * Second
	timeWaitLen     = 2 * msl
	finWait2Timeout = 60 * Second // orphaned FIN-WAIT-2, like Linux tcp_fin_timeout
	rtoInitial      = 1 * Second
	rtoMin          = 200 * Millisecond
	rtoMax          = 120 * Second
	persistMax      = 60 * Second
	synRetries      = 6
	dataRetries     = 15
	initialCwndSegs = 10
	ssthreshInitial = 1<<31 - 1               // "arbitrarily high" (RFC 5681 3.1)
	maxOOO          = 32                      // out-of-order ranges per connection; their bytes are bounded by the receive buffer
	maxDupOwed      = 16                      // immediate duplicate ACKs per connection per Poll
	oowRateLimit    = 500 * Millisecond       // like Linux tcp_invalid_ratelimit
	defaultPeerMSS  = 536                     // RFC 9293 3.7.1: the send MSS without an MSS option, IPv4
	defaultPeerMSS6 = 1220                    // and IPv6 (the minimum MTU, 1280, less 60)
	atoMin          = 40 * Millisecond        // Linux TCP_ATO_MIN
	atoMax          = 200 * Millisecond       // Linux TCP_DELACK_MAX; RFC 9293 3.8.6.3 requires < 500ms
	maxQuickAcks    = 16                      // Linux TCP_MAX_QUICKACKS
	pawsIdle        = 24 * 24 * 3600 * Second // RFC 7323 5.5: TS.Recent expires after 24 days idle
	corkMax         = 200 * Millisecond       // TCP_CORK ceiling (tcp(7))
	kaIdleDefault   = 7200 * Second           // Linux tcp_keepalive_time
	kaIntvlDefault  = 75 * Second             // Linux tcp_keepalive_intvl
	kaCntDefault    = 9                       // Linux tcp_keepalive_probes
)

// rcvRange is a range of out-of-order data held in the receive ring.
type rcvRange struct {
	start, end seq
	stamp      uint32 // order of the last segment that touched it (SACK block order, RFC 2018 4)
}

// TCPConn is one TCP connection. Cookie is the host's handle for TakeWoken.
type TCPConn struct {
	Cookie uintptr
	// TableSlot is the host's place for the connection in a table of its own (0: none).
	TableSlot int32

	s     *Stack
	state State
	key   connKey
	hdr   ipHdr     // how its packets are addressed: hdr.dst == key.raddr, hdr.src the local address
	lst   *Listener // listener that owns us until accepted
	inAcc bool      // in lst's accept queue

	// Send side (RFC 9293 3.3.1).
	iss     seq
	sndUna  seq
	sndNxt  seq
	sndMax  seq    // highest sequence number sent + 1
	bufSeq  seq    // sequence number of sndBuf's first byte
	sndWnd  uint32 // peer's window, scaled
	maxWnd  uint32 // largest window the peer has offered
	sndWl1  seq
	sndWl2  seq
	sndBuf  ring
	mss     int // effective send MSS
	sndSh   uint8
	rcvSh   uint8
	finQ    bool // CloseWrite called: FIN after the buffered data
	pinned  bool // born on a pinned listener: its end is reported (Stack.Pins)
	finAckd bool
	rtxOne  bool // fast retransmit: resend one segment at sndUna
	probe   bool // send a zero-window probe
	noDelay bool // TCP_NODELAY: Nagle's algorithm off
	cork    bool // TCP_CORK: hold partial segments
	corkAt  Time // when a corked partial segment goes out anyway
	sndSml  seq  // end of the last small segment sent (Minshall's Nagle)
	wsOK    bool // both sides sent window scale

	// RFC 7323 timestamps; RFC 2018 SACK.
	tsOK       bool   // both sides sent timestamps
	sackOK     bool   // both sides sent SACK-permitted
	tsOff      uint32 // per-connection offset of our TSval clock (ms)
	tsRecent   uint32 // TS.Recent
	tsRecentAt Time   // when TS.Recent was last updated
	optBuf     [wire.TCPMaxOptLen]byte

	// Congestion control (RFC 5681, RFC 6582).
	cwnd     uint32
	ssthresh uint32
	cc       congestion // &cubic or renoCC{}
	cubic    cubicCC
	dupAcks  int
	hs       hystart // HyStart++ (hystart.go)
	ackRTT   Time    // RTT of a segment sent once and delivered by the ACK being processed, -1 if none
	recovery bool
	recover  seq

	// Transmission log and RACK (RFC 8985 6, rack.go).
	tx        txLog
	rackAt    Time // RACK.xmit_ts: send time of the most recently sent delivered segment
	rackEnd   seq  // RACK.end_seq
	rackRTT   Time // RACK.rtt
	rackFack  seq  // RACK.fack: highest sequence number delivered
	rackFack0 seq  // rackFack before the ACK being processed
	rackOK    bool // rackAt and rackEnd are set
	rackReo   bool // RACK.reordering_seen
	reoAt     Time // RACK reordering timer

	// Tail loss probe (RFC 8985 7, tlp.go).
	tlpAt    Time // probe timeout (PTO)
	tlpProbe bool // send a probe at the next output
	tlpOut   bool // a probe is outstanding: no other until an ACK moves SND.UNA
	tlpSeq   seq  // first sequence number of the outstanding probe

	// D-SACK (RFC 2883) and undo of spurious recoveries (RFC 3708).
	dsackS, dsackE seq    // duplicate segment to report in the next ACK
	dsackOK        bool   // dsackS..dsackE is set
	reoSteps       int    // RACK's reordering window multiplier (RACK.reo_wnd_mult, Linux reo_wnd_steps)
	undoOK         bool   // the last recovery may still prove spurious
	undoCwnd       uint32 // cwnd and ssthresh before it
	undoSsthresh   uint32
	undoRtx        int // segments it retransmitted
	undoDsack      int // of those, reported as duplicates by the peer

	// RTT and timers (RFC 6298).
	srtt, rttvar Time
	hasRTT       bool
	rto          Time
	rttOn        bool
	rttSeq       seq
	rttAt        Time
	rtoAt        Time
	retries      int
	persistAt    Time
	persistIv    Time
	closeAt      Time // TIME-WAIT or orphaned FIN-WAIT-2 expiry
	userTO       Time // TCP_USER_TIMEOUT (RFC 5482), 0 = off
	utoStart     Time // since when data has been unacknowledged (or the window zero), Never if not

	// Receive side.
	irs      seq
	rcvNxt   seq
	rcvAdv   seq // right edge of the window we advertised
	rcvBuf   ring
	ooo      [maxOOO]rcvRange // sorted by sequence number, disjoint, not touching
	nooo     int
	oooStamp uint32 // stamp of the most recent out-of-order segment
	finRcvd  bool
	oooFin   bool // a FIN was seen beyond rcvNxt, at oooFinS
	oooFinS  seq
	ackNow   bool            // send an ACK at the next Poll
	dupOwed  int             // extra immediate duplicate ACKs owed for out-of-order segments
	dupSeq   [maxDupOwed]seq // the segment each owed ACK answers (its SACK block goes first)
	dupHead  int
	sackHint seq  // report the range holding sackHint first in the SACK option
	hintOK   bool // sackHint is set
	oowAt    Time // last ACK sent for an out-of-window segment (rate limit)
	oowSent  bool

	// Delayed ACKs (RFC 9293 3.8.6.3, RFC 1122 4.2.3.2), modelled on Linux's
	// delayed-ACK engine (quick-ack and ping-pong modes, adaptive ATO).
	rcvWup    seq  // RCV.NXT carried by the last ACK we sent (Last.ACK.sent)
	delackAt  Time // delayed-ACK timer
	ato       Time // current ACK timeout, in [atoMin, atoMax]; 0 before the first data
	quickAcks int  // ACKs still sent at once (quick-ack mode)
	quickAck  bool // SetQuickAck(true): every segment is ACKed at once
	pingpong  bool // interactive: we sent data soon after receiving; ACKs wait for it
	rcvMss    int  // largest segment received (Linux rcv_mss)
	lrcvAt    Time // when data last arrived

	// Receive buffer autotuning (buftune.go).
	rcvTuneAt    Time // start of the current measurement round
	rcvTuneBytes int  // in-order bytes received in it

	// Keepalive (RFC 9293 3.8.4, RFC 1122 4.2.3.6), Linux's timer.
	kaOn      bool
	kaIdle    Time
	kaIntvl   Time
	kaCnt     int
	kaProbes  int  // unanswered probes (tcpi_probes)
	kaAt      Time // next keepalive check
	lastRcvAt Time // last acceptable segment from the peer

	// Per-connection counters for TCPInfo (Linux struct tcp_info).
	totalRetrans uint32
	totalRTO     uint16
	lossRec      bool // after an RTO until SND.UNA passes the recovery point (TCP_CA_Loss)
	segsIn       uint32
	segsOut      uint32
	dataSegsIn   uint32
	dataSegsOut  uint32
	oooPkts      uint32
	delivered    uint32
	bytesAcked   uint64
	bytesRcvd    uint64
	bytesSent    uint64
	bytesRetrans uint64
	lsndAt       Time // last data sent
	minRTT       Time

	pmtu int // path MTU from ICMP fragmentation needed (RFC 1191), 0 = interface MTU

	err       error // pending error (SO_ERROR)
	hardErr   error // sticky error for Read/Write
	softErr   error // last ICMP soft error, reported on timeout (RFC 1122 4.2.3.9)
	appClosed bool
	freed     bool
	inReady   bool // on the stack's ready list (sched.go)
	heapIdx   int  // index in the stack's timer heap, -1 if not there
	heapAt    Time // deadline the heap holds for us
	woken     bool
	estabCnt  bool // counted in tcp.curr_estab
}

func (s *Stack) newConn(key connKey, local Addr, rmac MAC, now Time) *TCPConn {
	c := &TCPConn{
		s:         s,
		key:       key,
		hdr:       ipHdr{mac: rmac, src: local, dst: key.raddr},
		sndBuf:    s.sndPool.get(),
		rcvBuf:    s.rcvPool.get(),
		rto:       rtoInitial,
		rtoAt:     Never,
		persistAt: Never,
		utoStart:  Never,
		closeAt:   Never,
		tlpAt:     Never,
		reoAt:     Never,
		delackAt:  Never,
		corkAt:    Never,
		kaAt:      Never,
		lastRcvAt: now,
		mss:       defaultPeerMSS,
		ssthresh:  ssthreshInitial,
		heapIdx:   -1,
		reoSteps:  1,
	}
	c.iss = s.isn(key, now)
	if !key.raddr.Is4() {
		c.hdr.flow = uint32(s.isn(key, 0)) & 0xfffff // RFC 6437 3: a pseudo-random label per flow
	}
	c.tsOff = s.tsOffset(key)
	c.sndUna, c.sndNxt, c.sndMax = c.iss, c.iss, c.iss
	c.recover = c.iss
	c.sndSml = c.iss
	c.rackFack = c.iss
	c.cwnd = uint32(initialCwndSegs * c.mss)
	c.cc = &c.cubic
	if s.cfg.Congestion == CongestionReno {
		c.cc = renoCC{}
	}
	c.bufSeq = c.iss + 1
	c.rcvSh = s.rcvShift()
	s.conns[key] = c
	s.list = append(s.list, c)
	s.markReady(c)
	s.refPort(key.lport)
	return c
}

// rcvShift is the window scale we offer: the least that lets the window
// cover the largest receive buffer autotuning may reach (RFC 7323 2.3).
func (s *Stack) rcvShift() uint8 {
	sh := uint8(0)
	for sh < 14 && s.cfg.RecvBufMax>>sh > 0xffff {
		sh++
	}
	return sh
}

// tsOffset is a connection's TSval offset: random per tuple, like Linux.
func (s *Stack) tsOffset(key connKey) uint32 { return uint32(s.isn(key, 0)) * 0x9E3779B1 }

// isn is RFC 6528: a 4 microsecond clock plus a keyed hash of the tuple.
func (s *Stack) isn(k connKey, now Time) seq {
	h := s.cfg.Seed ^ 0x9E3779B97F4A7C15
	mix := func(v uint64) {
		h ^= v
		h *= 0xff51afd7ed558ccd
		h ^= h >> 33
	}
	mix(k.raddr.fold())
	mix(uint64(k.rport)<<16 | uint64(k.lport))
	local := s.SourceFor(k.raddr)
	mix(local.fold())
	return seq(uint32(h) + uint32(now/4))
}

func (c *TCPConn) setState(st State) {
	c.state = st
	estab := st == StateEstablished || st == StateCloseWait
	if estab != c.estabCnt {
		c.estabCnt = estab
		if estab {
			inc(&c.s.stats.TCPCurrEstab)
		} else {
			dec(&c.s.stats.TCPCurrEstab)
		}
	}
	if st == StateTimeWait {
		c.releaseRings()
	}
	c.wake()
}

// wake marks the connection for TakeWoken. Children not yet accepted are
// unknown to the host; their listener is woken instead when they are queued.
func (c *TCPConn) wake() {
	if !c.woken && c.lst == nil {
		c.woken = true
		c.s.wokenConns = append(c.s.wokenConns, c)
	}
}

// free removes the connection from the stack (CLOSED).
func (s *Stack) free(c *TCPConn) {
	if c.freed {
		return
	}
	c.setState(StateClosed)
	c.freed = true
	if c.pinned {
		s.unpins = append(s.unpins, c.flow())
	}
	if s.conns[c.key] == c {
		delete(s.conns, c.key)
	}
	if c.lst != nil && !c.inAcc {
		c.lst.pending--
		c.lst = nil
	}
	s.heapRemove(c)
	s.dirty = true
	s.unrefPort(c.key.lport)
	c.releaseRings()
}

// fail ends the connection with err (reported by Read, Write and Err).
func (c *TCPConn) fail(err error) {
	c.err = err
	c.hardErr = err
	c.s.free(c)
}

// Connect starts an active open (RFC 9293 3.5) from localPort (0 = pick an
// ephemeral port) to remote:remotePort through the next-hop MAC nextHop.
func (s *Stack) Connect(now Time, localPort uint16, remote Addr, remotePort uint16, nextHop MAC) (*TCPConn, error) {
	return s.ConnectFrom(now, Addr{}, localPort, remote, remotePort, nextHop)
}

// ConnectFrom is Connect from local address local (unspecified: the source
// address for remote, SourceFor).
func (s *Stack) ConnectFrom(now Time, local Addr, localPort uint16, remote Addr, remotePort uint16, nextHop MAC) (*TCPConn, error) {
	if remotePort == 0 {
		return nil, ErrRefused
	}
	if local.IsUnspecified() {
		local = s.SourceFor(remote)
	}
	if localPort == 0 {
		if localPort = s.ephemeralPort(remote, remotePort); localPort == 0 {
			return nil, ErrAddrInUse
		}
	}
	key := connKey{remote, remotePort, localPort}
	if old := s.conns[key]; old != nil {
		if old.state != StateTimeWait {
			return nil, ErrAddrInUse
		}
		s.free(old)
	}
	c := s.newConn(key, local, nextHop, now)
	c.setState(StateSynSent)
	inc(&s.stats.TCPActiveOpens)
	return c, nil
}

// Read copies received bytes into p. It returns ErrWouldBlock when nothing is
// ready, io.EOF after the peer's FIN once drained, or the connection's error.
func (c *TCPConn) Read(p []byte) (int, error) {
	if c.rcvBuf.Len() > 0 {
		if len(p) == 0 {
			return 0, nil
		}
		n := c.rcvBuf.Read(p)
		c.maybeWindowUpdate()
		return n, nil
	}
	if c.hardErr != nil {
		return 0, c.hardErr
	}
	if c.finRcvd {
		return 0, io.EOF
	}
	if c.freed || c.appClosed {
		return 0, ErrNotConnected
	}
	return 0, ErrWouldBlock
}

// Peek copies received bytes starting off bytes into the receive queue into p without consuming
// them (MSG_PEEK). Nothing there gives the same results as Read.
func (c *TCPConn) Peek(off int, p []byte) (int, error) {
	if c.rcvBuf.Len() > off {
		return c.rcvBuf.peek(off, p), nil
	}
	if off > 0 {
		return 0, nil
	}
	return c.Read(p[:0:0])
}

// PeerClosed reports whether the peer's FIN has arrived (poll's POLLRDHUP).
func (c *TCPConn) PeerClosed() bool { return c.finRcvd }

// maybeWindowUpdate schedules an ACK when reading opened the window enough
// that the peer, which may be blocked on a small window, should hear of it
// (RFC 9293 3.8.6.2.2).
func (c *TCPConn) maybeWindowUpdate() {
	if !c.state.synchronized() || c.finRcvd {
		return
	}
	edge := c.rcvNxt.add(c.rcvBuf.Free())
	adv := c.rcvAdv.sub(c.rcvNxt)
	if edge.sub(c.rcvAdv) >= c.swsThreshold() && adv < c.rcvBuf.Cap()/2 {
		c.ackNow = true
		c.s.markReady(c)
	}
}

func (c *TCPConn) swsThreshold() int {
	t := c.rcvBuf.Cap() / 2
	if c.advMSS() < t {
		t = c.advMSS()
	}
	return t
}

// Write copies as much of p as fits into the send buffer.
func (c *TCPConn) Write(p []byte) (int, error) {
	if c.hardErr != nil {
		return 0, c.hardErr
	}
	if c.finQ || c.appClosed {
		return 0, ErrClosed
	}
	switch c.state {
	case StateEstablished, StateCloseWait:
	case StateClosed:
		return 0, ErrNotConnected
	default:
		if c.state < StateEstablished {
			return 0, ErrNotConnected
		}
		return 0, ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.sndBuf.Free() < len(p) {
		c.sndTune()
	}
	n := c.sndBuf.Write(p)
	if n == 0 {
		return 0, ErrWouldBlock
	}
	c.s.markReady(c)
	return n, nil
}

// CloseWrite queues a FIN after the buffered data (shutdown SHUT_WR).
func (c *TCPConn) CloseWrite() {
	if c.finQ || c.freed {
		return
	}
	c.s.markReady(c)
	switch c.state {
	case StateSynSent:
		c.s.free(c)
		return
	case StateSynReceived, StateEstablished:
		c.finQ = true
		if c.state == StateEstablished {
			c.setState(StateFinWait1)
		}
	case StateCloseWait:
		c.finQ = true
		c.setState(StateLastAck)
	}
}

// Close releases the handle: a FIN follows the buffered data, or a RST when
// received data was left unread (as Linux does). The stack finishes the
// connection on its own.
func (c *TCPConn) Close() {
	if c.appClosed {
		return
	}
	c.appClosed = true
	if c.freed || c.state == StateTimeWait {
		c.releaseRings()
		return
	}
	c.s.markReady(c) // an orphan in FIN-WAIT-2 gets its timeout
	if c.rcvBuf.Len() > 0 && c.state.synchronized() {
		c.Abort()
		return
	}
	c.CloseWrite()
}

// Abort resets the connection now (RST if synchronized) and frees it.
func (c *TCPConn) Abort() {
	if c.freed {
		return
	}
	switch c.state {
	case StateSynReceived, StateEstablished, StateFinWait1, StateFinWait2, StateCloseWait, StateClosing, StateLastAck:
		c.s.queueRSTTo(&c.hdr, c.key.lport, c.key.rport, c.sndNxt, 0, wire.TCPFlagRST)
	}
	c.hardErr = ErrClosed
	c.s.free(c)
}

// State returns the connection state.
func (c *TCPConn) State() State { return c.state }

// Readable reports whether Read would not block.
func (c *TCPConn) Readable() bool {
	return c.rcvBuf.Len() > 0 || c.finRcvd || c.hardErr != nil || c.freed
}

// Writable reports whether poll says POLLOUT: Write would not block, with hysteresis.
func (c *TCPConn) Writable() bool {
	if c.hardErr != nil || c.err != nil {
		return true
	}
	// Linux's sk_stream_is_writeable: room for half of what is queued again, so that a writer
	// woken for room finds enough to make the wake-up worth it, and poll does not flip to
	// writable for every ACK that frees a few bytes of a full buffer
	free := c.sndBuf.Free()
	return (c.state == StateEstablished || c.state == StateCloseWait) && !c.finQ && free > 0 && free >= c.sndBuf.Len()/2
}

// Connecting reports whether the connection is in SYN-SENT.
func (c *TCPConn) Connecting() bool { return c.state == StateSynSent }

// Err returns the pending error (SO_ERROR) without clearing it.
func (c *TCPConn) Err() error { return c.err }

// TakeErr returns and clears the pending error.
func (c *TCPConn) TakeErr() error {
	e := c.err
	c.err = nil
	return e
}

// InQueue returns the number of readable bytes.
func (c *TCPConn) InQueue() int { return c.rcvBuf.Len() }

// OutQueue returns the number of unacknowledged plus unsent bytes, and one for a FIN not yet
// acknowledged: the sequence space still to be acknowledged, as Linux answers SIOCOUTQ
// (write_seq - snd_una), so that a program that waits for 0 knows its close was received.
func (c *TCPConn) OutQueue() int {
	if c.finQ && !c.finAckd {
		return c.sndBuf.Len() + 1
	}
	return c.sndBuf.Len()
}

func (c *TCPConn) flow() Flow { return Flow{c.key.lport, c.hdr.src, c.key.raddr, c.key.rport} }

// LocalPort returns the local port.
func (c *TCPConn) LocalPort() uint16 { return c.key.lport }

// Remote returns the peer's address and port.
func (c *TCPConn) Remote() (Addr, uint16) { return c.key.raddr, c.key.rport }

// Local returns the local address.
func (c *TCPConn) Local() Addr { return c.hdr.src }

// SetTrafficClass sets the IPv4 TOS or IPv6 traffic class of its packets (IP_TOS, IPV6_TCLASS).
func (c *TCPConn) SetTrafficClass(v uint8) { c.hdr.tclass = v }

// SetHopLimit sets the TTL or hop limit of its packets (IP_TTL, IPV6_UNICAST_HOPS); 0 means 64.
func (c *TCPConn) SetHopLimit(v uint8) { c.hdr.hops = v }

// advMSS is the MSS we offer: the interface MTU less the IP and TCP headers.
func (c *TCPConn) advMSS() int { return c.s.cfg.MTU - c.hdrLen() }

// hdrLen is the length of the IP and TCP headers without options.
func (c *TCPConn) hdrLen() int { return ipLen(&c.key.raddr) + wire.TCPMinLen }

// SetNoDelay is TCP_NODELAY: true turns Nagle's algorithm off, so partial
// segments go out as soon as the windows allow (it is on by default, as in
// Linux). Held data goes out at the next Poll.
func (c *TCPConn) SetNoDelay(v bool) {
	c.noDelay = v
	c.s.markReady(c)
}

// NoDelay returns the value set by SetNoDelay.
func (c *TCPConn) NoDelay() bool { return c.noDelay }

// SetCork is TCP_CORK: while corked only full-sized segments are sent; a
// partial one waits until SetCork(false) (it goes out at the next Poll) or
// at most 200ms, as in Linux.
func (c *TCPConn) SetCork(v bool) {
	c.s.markReady(c)
	c.cork = v
	if !v {
		c.corkAt = Never
	}
}

// Cork returns the value set by SetCork.
func (c *TCPConn) Cork() bool { return c.cork }

// SetQuickAck is TCP_QUICKACK. true sends a pending delayed ACK at the next
// Poll and then ACKs every segment at once; false returns to delayed ACKs.
// Unlike Linux, where the flag is a one-shot that the stack may clear again,
// the setting stays until changed (applications that set it after every
// read get the same behaviour).
func (c *TCPConn) SetQuickAck(v bool) {
	c.s.markReady(c)
	c.quickAck = v
	if v && c.delackAt != Never {
		c.ackNow = true
	}
}

// QuickAck returns the value set by SetQuickAck.
func (c *TCPConn) QuickAck() bool { return c.quickAck }

// SetKeepAlive is SO_KEEPALIVE with TCP_KEEPIDLE, TCP_KEEPINTVL and
// TCP_KEEPCNT (RFC 9293 3.8.4, RFC 1122 4.2.3.6). When on, a connection that
// has heard nothing from the peer for idle and has no data outstanding sends
// a probe (an old sequence number, which draws an ACK) every interval; after
// count unanswered probes it is reset and fails with ErrTimedOut. Zero or
// negative idle, interval or count take Linux's defaults: 7200s, 75s, 9.
func (c *TCPConn) SetKeepAlive(on bool, idle, interval Time, count int) {
	if idle <= 0 {
		idle = kaIdleDefault
	}
	if interval <= 0 {
		interval = kaIntvlDefault
	}
	if count <= 0 {
		count = kaCntDefault
	}
	c.s.markReady(c) // its deadline changes
	c.kaOn, c.kaIdle, c.kaIntvl, c.kaCnt = on, idle, interval, count
	c.kaProbes = 0
	c.kaAt = Never
	if on {
		c.kaAt = c.lastRcvAt + idle // rechecked when due
	}
}

// SetUserTimeout is TCP_USER_TIMEOUT (RFC 5482, Linux semantics): when d > 0
// and transmitted data stays unacknowledged for d, or the peer's window stays
// zero for d while we have data to send, the connection fails with
// ErrTimedOut at that moment, whatever the retransmission count. With
// keepalive on, d replaces the probe count: the connection is reset once the
// peer has been silent for d and a probe went unanswered. As in Linux, the
// handshake keeps its SYN retry limit. d <= 0 turns it off.
func (c *TCPConn) SetUserTimeout(d Time) {
	c.s.markReady(c) // its deadline changes
	c.userTO = max(d, 0)
}

// UserTimeout returns the value set by SetUserTimeout.
func (c *TCPConn) UserTimeout() Time { return c.userTO }

// utoArm starts the user-timeout clock if it is not running.
func (c *TCPConn) utoArm(now Time) {
	if c.utoStart == Never {
		c.utoStart = now
	}
}

// utoAt is when the user timeout expires (Never when off or not running).
func (c *TCPConn) utoAt() Time {
	if c.userTO <= 0 || c.utoStart == Never || c.state == StateSynSent || c.state == StateSynReceived {
		return Never // Linux tcp_write_timeout: SYN states count retries only
	}
	return c.utoStart + c.userTO
}

// KeepAlive returns the keepalive settings.
func (c *TCPConn) KeepAlive() (on bool, idle, interval Time, count int) {
	if c.kaIdle == 0 {
		return c.kaOn, kaIdleDefault, kaIntvlDefault, kaCntDefault
	}
	return c.kaOn, c.kaIdle, c.kaIntvl, c.kaCnt
}
