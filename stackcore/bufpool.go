package stackcore

// A fresh ring is fresh memory: the Go heap hands out pages the kernel faults
// in one by one as the ring first fills, and the collector runs for every few
// megabytes of rings. A server that closes its keep-alive connections (nginx
// after 1000 requests) made a connection every 1000/64 requests and took a
// page fault every 13th request. Rings of the configured starting size come
// back here when their connection no longer needs them and go to the next
// connection, as Linux recycles its socket and skb slabs.

// maxPooledRings bounds each pool: enough for the connections a busy server
// opens between two closes, little memory kept after a burst of closes.
const maxPooledRings = 16

// ringPool keeps rings of one size.
type ringPool struct {
	size int
	free [][]byte // cap maxPooledRings: put never allocates
}

func newRingPool(size int) ringPool {
	return ringPool{size: size, free: make([][]byte, 0, maxPooledRings)}
}

func (p *ringPool) get() ring {
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return ring{buf: b}
	}
	return newRing(p.size)
}

// put keeps b if it is of the pool's size (a ring that grew goes to the collector).
func (p *ringPool) put(b []byte) {
	if len(b) == p.size && len(p.free) < cap(p.free) {
		p.free = append(p.free, b)
	}
}

// releaseRings returns the connection's rings to the stack once nothing will
// read or write them: the application has closed it and it is in TIME-WAIT
// (everything sent was acknowledged, nothing more will be read) or freed.
// The connection keeps empty rings, on which every operation is a no-op.
func (c *TCPConn) releaseRings() {
	if !c.appClosed || (!c.freed && c.state != StateTimeWait) || c.sndBuf.buf == nil {
		return
	}
	c.s.sndPool.put(c.sndBuf.buf)
	c.s.rcvPool.put(c.rcvBuf.buf)
	c.sndBuf, c.rcvBuf = ring{}, ring{}
}
