package stackcore

import (
	"math"
	"runtime"
	"testing"

	"ustack/nic/pair"
)

// A huge backlog (iperf3 listens with INT_MAX) is a bound, not a size: Listen must not
// allocate in proportion to it (make([]*TCPConn, 0, INT_MAX) is 16 GiB, zeroed page by page
// when the runtime reuses heap memory, which stalled listen(2) for a minute and more).
func TestListenHugeBacklogAllocatesLittle(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	l, err := n.a.s.Listen(8080, math.MaxInt32)
	runtime.ReadMemStats(&m1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if d := m1.TotalAlloc - m0.TotalAlloc; d > 64<<10 {
		t.Fatalf("Listen(backlog INT_MAX) allocated %d bytes", d)
	}
	if l.backlog != math.MaxInt32 {
		t.Fatalf("backlog %d, want INT_MAX (the bound stays)", l.backlog)
	}
}
