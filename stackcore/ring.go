package stackcore

// ring is a byte ring buffer allocated once. Bytes [head, head+n) are
// committed (readable); the receive side may also write beyond the committed
// end (out-of-order data) and commit it later.
type ring struct {
	buf  []byte
	head int
	n    int
}

func newRing(size int) ring { return ring{buf: make([]byte, size)} }

// grow reallocates the ring with size bytes, keeping the committed bytes and
// anything written beyond them (out-of-order data) at the same offsets.
func (r *ring) grow(size int) {
	if size <= len(r.buf) {
		return
	}
	b := make([]byte, size)
	k := copy(b, r.buf[r.head:])
	copy(b[k:], r.buf[:r.head])
	r.buf, r.head = b, 0
}

func (r *ring) Len() int  { return r.n }
func (r *ring) Cap() int  { return len(r.buf) }
func (r *ring) Free() int { return len(r.buf) - r.n }

// writeAt copies p to offset off past the committed end without committing;
// it writes at most Free()-off bytes and returns how many it wrote.
func (r *ring) writeAt(off int, p []byte) int {
	room := r.Free() - off
	if room <= 0 {
		return 0
	}
	if len(p) > room {
		p = p[:room]
	}
	pos := r.head + r.n + off
	if pos >= len(r.buf) {
		pos -= len(r.buf)
		if pos >= len(r.buf) {
			pos -= len(r.buf)
		}
	}
	k := copy(r.buf[pos:], p)
	if k < len(p) {
		copy(r.buf, p[k:])
	}
	return len(p)
}

func (r *ring) commit(n int) { r.n += n }

// Write appends p (as much as fits) and returns the count.
func (r *ring) Write(p []byte) int {
	n := r.writeAt(0, p)
	r.n += n
	return n
}

// peek copies committed bytes starting at off into p without consuming.
func (r *ring) peek(off int, p []byte) int {
	avail := r.n - off
	if avail <= 0 {
		return 0
	}
	if len(p) > avail {
		p = p[:avail]
	}
	pos := r.head + off
	if pos >= len(r.buf) {
		pos -= len(r.buf)
	}
	k := copy(p, r.buf[pos:])
	if k < len(p) {
		copy(p[k:], r.buf)
	}
	return len(p)
}

func (r *ring) discard(n int) {
	if n > r.n {
		n = r.n
	}
	r.head += n
	if r.head >= len(r.buf) {
		r.head -= len(r.buf)
	}
	r.n -= n
}

// Read consumes up to len(p) bytes into p.
func (r *ring) Read(p []byte) int {
	n := r.peek(0, p)
	r.discard(n)
	return n
}
