package stackcore

import (
	"fmt"
	"testing"

	"ustack/nic/pair"
)

// idleNet returns a net with idle established connections from a to b
// (port 80, local ports from 20000) and one more to port 81 for traffic.
func idleNet(tb testing.TB, idle int) (n *testNet, c, s *TCPConn) {
	n = newNet(tb, pair.Options{NumFrames: 8192}, Config{RecvBuf: 16 << 10, SendBuf: 16 << 10},
		Config{RecvBuf: 16 << 10, SendBuf: 16 << 10})
	l, err := n.b.s.Listen(80, idle+1)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range idle {
		if _, err := n.a.s.Connect(n.now, uint16(20000+i), mapB, 80, macB); err != nil {
			tb.Fatal(err)
		}
		if i%64 == 63 {
			n.settle()
		}
	}
	n.settle()
	for range idle {
		if l.Accept() == nil {
			tb.Fatal("accept")
		}
	}
	c, s, _ = n.connect(81)
	// Let delayed ACKs and handshake timers run out.
	n.runUntil(10*Second, func() bool { return false })
	return n, c, s
}

// Poll's cost follows the connections with work (sched.go): with a
// thousand idle established connections, none is on the ready list or in
// the timer heap, and a Poll with nothing to do visits none; one busy
// connection enters and leaves both.
func TestPollSkipsIdleConnections(t *testing.T) {
	n, c, s := idleNet(t, 1000)
	for _, h := range []*host{n.a, n.b} {
		if len(h.s.list) != 1001 || len(h.s.ready) != 0 || len(h.s.timers) != 0 {
			t.Fatalf("%d connections, %d ready, %d timers", len(h.s.list), len(h.s.ready), len(h.s.timers))
		}
		if d := h.s.Poll(n.now, h.end); d != Never {
			t.Fatalf("idle stack: next deadline %d", d-n.now)
		}
	}
	c.Write(make([]byte, 100))
	if len(n.a.s.ready) != 1 || n.a.s.ready[0] != c {
		t.Fatalf("write: %d ready", len(n.a.s.ready))
	}
	n.a.next = n.a.s.Poll(n.now, n.a.end)
	n.a.end.Flush()
	if len(n.a.s.ready) != 0 || len(n.a.s.timers) != 1 || n.a.next != c.rtoAt {
		t.Fatalf("after sending: %d ready, %d timers, next %d, rto at %d", len(n.a.s.ready), len(n.a.s.timers),
			n.a.next-n.now, c.rtoAt-n.now)
	}
	n.settle()
	buf := make([]byte, 200)
	if k, _ := s.Read(buf); k != 100 {
		t.Fatalf("read %d", k)
	}
	n.runUntil(Second, func() bool { return false })
	if len(n.a.s.timers) != 0 || len(n.b.s.timers) != 0 {
		t.Fatalf("timers left: %d %d", len(n.a.s.timers), len(n.b.s.timers))
	}
	// Timers of many connections come out of the heap in deadline order.
	for i, cc := range n.a.s.list[:50] {
		cc.SetKeepAlive(true, Time(50-i)*Second, Second, 1)
	}
	n.a.next = n.a.s.Poll(n.now, n.a.end)
	if len(n.a.s.timers) != 50 || n.a.next != n.a.s.list[49].kaAt {
		t.Fatalf("%d timers, next in %d", len(n.a.s.timers), n.a.next-n.now)
	}
}

// BenchmarkPollIdleConns moves segments on one busy connection while idle
// established connections sit on the same stacks: the cost per cycle must
// not grow with their number.
func BenchmarkPollIdleConns(b *testing.B) {
	for _, idle := range []int{0, 1000} {
		b.Run(fmt.Sprint("idle", idle), func(b *testing.B) {
			n, c, s := idleNet(b, idle)
			data := pattern(1000, 3)
			buf := make([]byte, 2048)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c.Write(data)
				n.step()
				n.step()
				s.Read(buf)
			}
		})
	}
}
