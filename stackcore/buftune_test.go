package stackcore

import (
	"crypto/sha256"
	"testing"

	"ustack/nic/pair"
)

// Buffer autotuning (Linux's dynamic right-sizing and send buffer
// expansion): in a bulk transfer whose reader keeps up, the windows, not
// the network, would limit the sender, so both buffers grow, and the
// window offered grows with the receive buffer. The data arrives intact
// across the reallocations.
func TestBuffersGrowForBulkTransfer(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	data := pattern(16<<20, 3)
	got := make([]byte, 0, len(data))
	buf := make([]byte, 1<<20)
	off := 0
	for i := 0; len(got) < len(data) && i < 1_000_000; i++ {
		if off < len(data) {
			k, _ := c.Write(data[off:])
			off += k
		}
		n.step()
		k, _ := s.Read(buf)
		got = append(got, buf[:k]...)
		n.now += 100 * Microsecond // time passes: rounds of RTT (at least 1ms) end
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("mismatch: %d of %d bytes", len(got), len(data))
	}
	if s.rcvBuf.Cap() <= defaultBuf || c.sndBuf.Cap() <= defaultBuf || s.rcvBuf.Cap() > defaultBufMax ||
		c.sndBuf.Cap() > defaultBufMax || n.b.s.Stats().TCPBufGrown == 0 {
		t.Fatalf("receive buffer %d, send buffer %d", s.rcvBuf.Cap(), c.sndBuf.Cap())
	}
	if w := c.sndWnd; int(w) <= defaultBuf {
		t.Fatalf("peer's window %d after the receive buffer grew to %d", w, s.rcvBuf.Cap())
	}
}

// A reader that does not keep up gets no bigger buffer: what it has not
// read is what limits the sender.
func TestReceiveBufferStaysForSlowReader(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	data := pattern(4<<20, 4)
	off := 0
	for i := 0; off < len(data) && i < 100_000; i++ {
		k, _ := c.Write(data[off:])
		off += k
		n.step()
		if i%8 == 0 {
			s.Read(make([]byte, 4096)) // a trickle
		}
		n.now += 100 * Microsecond
	}
	if s.rcvBuf.Cap() != defaultBuf || c.sndBuf.Cap() != defaultBuf {
		t.Fatalf("receive buffer %d, send buffer %d", s.rcvBuf.Cap(), c.sndBuf.Cap())
	}
}
