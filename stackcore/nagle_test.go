package stackcore

import (
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// sentData polls a and returns the payload lengths of the segments it emits
// (left on the wire for b).
func (n *testNet) sentData() []int {
	var got []int
	n.a.end.Hook = func(_ uint64, f []byte) bool {
		if l := len(tcpOf(f).Payload()); l > 0 || tcpOf(f).Flags()&wire.TCPFlagFIN != 0 {
			got = append(got, l)
		}
		return false
	}
	n.a.next = n.a.s.Poll(n.now, n.a.end)
	n.a.end.Flush()
	n.a.end.Hook = nil
	return got
}

func eqInts(a []int, b ...int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// RFC 9293 3.7.4 (SHLD-7) and RFC 896: with Nagle's algorithm (on by default,
// as Linux) small writes made while a small segment is unacknowledged are
// held and coalesced until the ACK; TCP_NODELAY sends each at once.
func TestNagle(t *testing.T) {
	for _, nodelay := range []bool{false, true} {
		n := newNet(t, pair.Options{}, Config{}, Config{})
		c, s, _ := n.connect(80)
		c.SetNoDelay(nodelay)
		small := make([]byte, 100)
		c.Write(small)
		if got := n.sentData(); !eqInts(got, 100) {
			t.Fatalf("nodelay %v: first write sent %v", nodelay, got)
		}
		c.Write(small)
		c.Write(small)
		got := n.sentData()
		if nodelay && !eqInts(got, 200) || !nodelay && len(got) != 0 {
			t.Fatalf("nodelay %v: writes behind an unacked small segment sent %v", nodelay, got)
		}
		n.settle() // the ACK arrives, the held bytes go out as one segment
		if s.InQueue() != 300 {
			t.Fatalf("nodelay %v: received %d", nodelay, s.InQueue())
		}
	}
}

// Minshall's variant (as Linux): a partial segment after full ones goes out
// at once when no small segment is outstanding; the next small one waits.
func TestNagleMinshall(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.Write(make([]byte, 2000))
	if got := n.sentData(); !eqInts(got, c.mss, 2000-c.mss) {
		t.Fatalf("sent %v, want [%d %d]", got, c.mss, 2000-c.mss)
	}
	c.Write(make([]byte, 10))
	if got := n.sentData(); len(got) != 0 {
		t.Fatalf("small write behind the 540-byte segment sent %v", got)
	}
	// A FIN is not held: the tail goes out with it (Linux tcp_nagle_check).
	c.CloseWrite()
	if got := n.sentData(); !eqInts(got, 10) {
		t.Fatalf("with FIN sent %v", got)
	}
	n.settle()
	if s.InQueue() != 2010 || !s.PeerClosed() {
		t.Fatalf("received %d", s.InQueue())
	}
}

// TCP_CORK (tcp(7)): only full segments leave while corked; the partial tail
// goes out when uncorked, or after the 200ms ceiling.
func TestCork(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetCork(true)
	c.Write(make([]byte, 100))
	if got := n.sentData(); len(got) != 0 {
		t.Fatalf("corked write sent %v", got)
	}
	start := n.now
	if !n.runUntil(Second, func() bool { return s.InQueue() == 100 }) || n.now-start != corkMax {
		t.Fatalf("corked data after %dus", n.now-start)
	}
	c.Write(make([]byte, 3000))
	if got := n.sentData(); !eqInts(got, c.mss, c.mss) {
		t.Fatalf("corked 3000 bytes sent %v", got)
	}
	c.SetCork(false)
	if got := n.sentData(); !eqInts(got, 3000-2*c.mss) {
		t.Fatalf("uncork sent %v", got)
	}
	n.settle()
	if s.InQueue() != 3100 {
		t.Fatalf("received %d", s.InQueue())
	}
}
