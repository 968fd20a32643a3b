package shim

import (
	"math"
	"testing"
)

// listen(2)'s backlog is truncated to net.core.somaxconn as Linux does (iperf3 passes INT_MAX).
func TestClampBacklog(t *testing.T) {
	for _, c := range []struct{ in, max, want int }{
		{math.MaxInt32, 4096, 4096},
		{-1, 4096, 4096},
		{0, 4096, 0},
		{128, 4096, 128},
		{4096, 4096, 4096},
		{5000, 4096, 4096},
	} {
		if got := clampBacklog(c.in, c.max); got != c.want {
			t.Errorf("clampBacklog(%d, %d) = %d, want %d", c.in, c.max, got, c.want)
		}
	}
	if n := systemSomaxconn(); n <= 0 {
		t.Errorf("systemSomaxconn() = %d", n)
	}
}
