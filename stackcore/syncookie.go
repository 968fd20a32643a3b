package stackcore

import "ustack/stackcore/wire"

// SYN cookies (RFC 4987 3.6), encoded as Linux's IPv4 cookies
// (net/ipv4/syncookies.c): when a listener's SYN queue is full, the SYN is
// answered with a SYN-ACK whose ISN is
//
//	H1(tuple) + ISN(peer) + (count << 24) + ((H2(tuple, count) + mssIndex) & 0xffffff)
//
// and nothing is kept. count is a coarse clock (cookieTick); H1 and H2 are
// keyed hashes from Config.Seed. The ACK that completes the handshake
// (ack-1 = cookie, seq-1 = the peer's ISN) is accepted when count is at most
// cookieMaxAge ticks old and the low bits decode to a valid MSS index; it
// creates an established connection queued for Accept.
//
// When the SYN carries timestamps, the SYN-ACK offers timestamps, SACK and
// window scaling too, and (Linux cookie_init_timestamp) the low 6 bits of its
// TSval hold the peer's window scale (4 bits, 0xf = none) and SACK-permitted;
// the peer's TSecr brings them back. Without timestamps the cookie connection
// has no window scaling or SACK, as in Linux.

const (
	cookieTick   = 64 * Second // Linux: one minute
	cookieMaxAge = 2           // Linux MAX_SYNCOOKIE_AGE
	cookieSaltH1 = 0xa54ff53a5f1d36f1
	cookieSaltH2 = 0x510e527fade682d1
)

// cookieMSS4 and cookieMSS6 are Linux's msstab for IPv4 and IPv6.
var (
	cookieMSS4 = [4]uint16{536, 1300, 1440, 1460}
	cookieMSS6 = [4]uint16{1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60}
)

// cookieTable is the MSS table of a peer's family.
func cookieTable(peer *Addr) *[4]uint16 {
	if peer.Is4() {
		return &cookieMSS4
	}
	return &cookieMSS6
}

// familyMSS is our MSS towards a peer of that family.
func (s *Stack) familyMSS(peer *Addr) int { return s.cfg.MTU - ipLen(peer) - wire.TCPMinLen }

func cookieCount(now Time) uint32 { return uint32(now / cookieTick) }

func (s *Stack) cookieHash(salt uint64, src, dst *Addr, sport, dport uint16, count uint32) uint32 {
	return uint32(s.keyedHash(salt, src.fold()<<32^dst.fold(), uint64(sport)<<16|uint64(dport), uint64(count)))
}

// makeCookie returns the ISN for a SYN (RFC 4987 3.6) and the MSS it encodes.
func (s *Stack) makeCookie(now Time, g *segment) (seq, uint16) {
	peer := g.opts.MSS
	if peer == 0 {
		peer = defaultPeerMSS
	}
	peer = min(peer, uint16(s.familyMSS(&g.src)))
	cookieMSS := cookieTable(&g.src)
	idx := 0
	for i := len(cookieMSS) - 1; i > 0; i-- {
		if cookieMSS[i] <= peer {
			idx = i
			break
		}
	}
	count := cookieCount(now)
	c := s.cookieHash(cookieSaltH1, &g.src, &g.dst, g.sport, g.dport, 0) + uint32(g.seq) + count<<24 +
		(s.cookieHash(cookieSaltH2, &g.src, &g.dst, g.sport, g.dport, count)+uint32(idx))&0xffffff
	return seq(c), cookieMSS[idx]
}

// checkCookie decodes the cookie an ACK acknowledges: the MSS, or 0 if invalid.
func (s *Stack) checkCookie(now Time, g *segment) uint16 {
	c := uint32(g.ack-1) - s.cookieHash(cookieSaltH1, &g.src, &g.dst, g.sport, g.dport, 0) - uint32(g.seq-1)
	count := cookieCount(now)
	diff := (count - c>>24) & 0xff
	if diff >= cookieMaxAge {
		return 0
	}
	idx := (c - s.cookieHash(cookieSaltH2, &g.src, &g.dst, g.sport, g.dport, count-diff)) & 0xffffff
	if idx >= 4 {
		return 0
	}
	return cookieTable(&g.src)[idx]
}

// sendCookie answers a SYN on a listener whose SYN queue is full.
func (l *Listener) sendCookie(now Time, g *segment) {
	s := l.s
	if s.nrst == len(s.rst) {
		inc(&s.stats.TCPListenDrops) // no room to answer this poll
		return
	}
	iss, mss := s.makeCookie(now, g)
	r := s.queueRST(g, iss, g.seq+1, wire.TCPFlagSYN|wire.TCPFlagACK)
	r.cookie = true
	r.syn = wire.SynOptions{MSS: mss, WScale: -1}
	if g.opts.HasTS && !s.cfg.NoTimestamps {
		bits := uint32(0xf)
		if g.opts.HasWScale {
			bits = uint32(min(g.opts.WScale, 14))
			r.syn.WScale = int(s.rcvShift())
		}
		if g.opts.SACKPerm && !s.cfg.NoSACK {
			bits |= 0x10
			r.syn.SACKPerm = true
		}
		ts := uint32(now/Millisecond) + s.tsOffset(connKey{g.src, g.sport, g.dport})
		r.syn.TS, r.syn.TSVal, r.syn.TSEcr = true, ts&^0x3f|bits, g.opts.TSVal
	}
	r.wnd = uint16(min(s.cfg.RecvBuf, 0xffff))
	l.cookieAt, l.cookieSent = now, true
	inc(&s.stats.TCPSynCookiesSent)
}

// cookieAck handles an ACK that matches no connection on a listener that sent
// cookies recently; false when it is not a valid cookie (the caller resets).
func (l *Listener) cookieAck(now Time, g *segment) bool {
	s := l.s
	if !l.cookieSent || now-l.cookieAt >= cookieMaxAge*cookieTick {
		return false // no recent overflow (Linux tcp_synq_no_recent_overflow)
	}
	mss := s.checkCookie(now, g)
	if mss == 0 {
		inc(&s.stats.TCPSynCookiesFailed)
		return false
	}
	inc(&s.stats.TCPSynCookiesRecv)
	if len(l.queue) >= l.backlog {
		inc(&s.stats.TCPListenDrops) // accept queue full: drop, the peer retransmits
		return true
	}
	c := s.newConn(connKey{g.src, g.sport, l.port}, g.dst, g.srcMAC, now)
	l.born(c)
	c.lst = l
	l.pending++
	iss := g.ack - 1
	c.iss = iss
	c.sndUna, c.sndNxt, c.sndMax = g.ack, g.ack, g.ack
	c.recover, c.sndSml, c.bufSeq = iss, iss, g.ack
	c.irs = g.seq - 1
	c.rcvNxt = g.seq
	c.rcvWup = c.rcvNxt
	c.rcvAdv = c.rcvNxt.add(min(s.cfg.RecvBuf, 0xffff))
	c.sndSh, c.rcvSh, c.wsOK, c.tsOK, c.sackOK = 0, 0, false, false, false
	c.mss = min(int(mss), c.advMSS())
	if g.opts.HasTS && g.opts.TSEcr != 0 && !s.cfg.NoTimestamps {
		// Options from the TSval we sent (Linux cookie_timestamp_decode).
		bits := g.opts.TSEcr & 0x3f
		if ws := uint8(bits & 0xf); ws != 0xf {
			c.wsOK, c.sndSh, c.rcvSh = true, min(ws, 14), s.rcvShift()
		}
		c.sackOK = bits&0x10 != 0 && !s.cfg.NoSACK
		c.tsOK = true
		c.tsRecent, c.tsRecentAt = g.opts.TSVal, now
		c.mss = max(c.mss-12, min(64, c.mss))
	}
	c.cwnd = uint32(initialCwndSegs * c.mss)
	c.sndWnd = g.wnd << c.sndSh
	c.maxWnd = c.sndWnd
	c.sndWl1, c.sndWl2 = g.seq-1, g.ack
	c.setState(StateEstablished)
	inc(&s.stats.TCPPassiveOpens)
	l.established(c)
	c.input(now, g) // data or FIN that came with the ACK
	return true
}
