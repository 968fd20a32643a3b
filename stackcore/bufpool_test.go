package stackcore

import (
	"bytes"
	"testing"

	"ustack/nic/pair"
)

// A connection's rings go to the next connection once the application has
// closed it and it is in TIME-WAIT or CLOSED (RFC 9293 3.6: nothing more is
// sent from or read into them), and the bytes the last owner left in them
// never reach the next one, over a wire that loses and reorders (data
// written ahead of the committed end of a recycled ring). The buffers do not
// grow here: a grown ring is not of the pooled size and goes to the collector.
func TestRingsRecycledAfterClose(t *testing.T) {
	cfg := Config{SendBuf: 64 << 10, SendBufMax: 64 << 10, RecvBuf: 64 << 10, RecvBufMax: 64 << 10}
	n := newNet(t, pair.Options{Seed: 5, DropRate: 0.02, ReorderRate: 0.05}, cfg, cfg)
	c, s, _ := n.connect(80)
	first := pattern(600_000, 1)
	if got := n.transfer(c, s, first, true, 60*Second); !bytes.Equal(got, first) {
		t.Fatal("first connection: data mismatch")
	}
	s.Close()
	n.settle()
	c.Close()
	n.settle()
	if c.State() != StateTimeWait || s.State() != StateClosed {
		t.Fatalf("states %v %v", c.State(), s.State())
	}
	if len(n.a.s.sndPool.free) != 1 || len(n.a.s.rcvPool.free) != 1 {
		t.Fatalf("client in TIME-WAIT kept its rings: pools %d %d", len(n.a.s.sndPool.free), len(n.a.s.rcvPool.free))
	}
	if len(n.b.s.sndPool.free) != 1 || len(n.b.s.rcvPool.free) != 1 {
		t.Fatalf("closed server kept its rings: pools %d %d", len(n.b.s.sndPool.free), len(n.b.s.rcvPool.free))
	}
	c2, s2, _ := n.connect(81)
	if len(n.a.s.sndPool.free) != 0 || len(n.b.s.rcvPool.free) != 0 {
		t.Fatal("the next connection did not take the pooled rings")
	}
	second := pattern(700_000, 2)
	if got := n.transfer(c2, s2, second, false, 60*Second); !bytes.Equal(got, second) {
		t.Fatal("second connection, client to server: data mismatch")
	}
	back := pattern(500_000, 3)
	if got := n.transfer(s2, c2, back, true, 60*Second); !bytes.Equal(got, back) {
		t.Fatal("second connection, server to client: data mismatch")
	}
}

// A half-closed connection reaches TIME-WAIT with data the application has
// not read yet (RFC 9293 3.6): its rings stay until the application closes it.
func TestTimeWaitKeepsUnreadData(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.CloseWrite()
	n.settle()
	data := pattern(30_000, 4)
	if k, err := s.Write(data); k != len(data) || err != nil {
		t.Fatalf("write %d %v", k, err)
	}
	s.Close()
	n.settle()
	if c.State() != StateTimeWait {
		t.Fatalf("client in %v", c.State())
	}
	buf := make([]byte, 64<<10)
	k, err := c.Read(buf)
	if err != nil || !bytes.Equal(buf[:k], data) {
		t.Fatalf("read in TIME-WAIT: %d bytes, %v", k, err)
	}
	if len(n.a.s.rcvPool.free) != 0 {
		t.Fatal("rings released before the application closed")
	}
	c.Close()
	if len(n.a.s.rcvPool.free) != 1 {
		t.Fatal("rings not released at close in TIME-WAIT")
	}
}
