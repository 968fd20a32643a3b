package stackcore

// Buffer autotuning. Fixed buffers cap a connection at one buffer per round
// trip: 256 KiB over a 100 ms path is 2.5 MB/s whatever the link. As Linux
// does, each buffer starts small and doubles, up to Config.RecvBufMax and
// SendBufMax, when a round trip's worth of data fills half of it; the
// window scale offered in the SYN covers the largest receive buffer. Growth
// allocates, a handful of times per connection, never per segment.

// rcvTune is receive-side dynamic right-sizing (Linux tcp_rcv_space_adjust):
// once per round trip, if the peer delivered in order more than half the
// buffer during it and the application keeps the buffer less than half full,
// the window is what limits the peer, and the buffer doubles.
func (c *TCPConn) rcvTune(now Time, n int) {
	c.rcvTuneBytes += n
	if now-c.rcvTuneAt < max(c.srtt, Millisecond) {
		return
	}
	round := c.rcvTuneBytes
	c.rcvTuneAt, c.rcvTuneBytes = now, 0
	size := c.rcvBuf.Cap()
	if round > size/2 && c.rcvBuf.Len() < size/2 && size < c.s.cfg.RecvBufMax {
		c.rcvBuf.grow(min(2*size, c.s.cfg.RecvBufMax))
		inc(&c.s.stats.TCPBufGrown)
	}
}

// sndTune runs before a write that does not fit: when most of the buffer is in
// flight (not waiting for the peer's window) and the congestion window
// could use half of it, the buffer is what holds the application back, and
// it doubles (Linux tcp_sndbuf_expand keeps it at twice the congestion
// window).
func (c *TCPConn) sndTune() {
	size := c.sndBuf.Cap()
	unsent := max(c.finSeq().sub(c.sndNxt), 0)
	if size >= c.s.cfg.SendBufMax || unsent > size/4 || int(c.cwnd) < size/2 {
		return
	}
	c.sndBuf.grow(min(2*size, c.s.cfg.SendBufMax))
	inc(&c.s.stats.TCPBufGrown)
}
