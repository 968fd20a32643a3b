package stackcore

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"ustack/nic/pair"
)

// TestLossyWireHeavy is TestLossyWire with more seeds, harsher faults and
// small buffers (window scale 0 and many zero-window episodes). Skipped with -short.
func TestLossyWireHeavy(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			opts := pair.Options{Seed: seed, DropRate: 0.1, DupRate: 0.05, ReorderRate: 0.1, CorruptRate: 0.02}
			cfg := Config{Seed: seed, RecvBuf: 8 << 10 * int(1+seed%4), SendBuf: 12 << 10}
			n := newNet(t, opts, cfg, cfg)
			c, s, _ := n.connect(80)
			up := pattern(200<<10, seed)
			if got := n.transfer(c, s, up, true, 3600*Second); sha256.Sum256(got) != sha256.Sum256(up) {
				t.Fatal("up mismatch")
			}
			down := pattern(100<<10, seed+1)
			if got := n.transfer(s, c, down, true, 3600*Second); sha256.Sum256(got) != sha256.Sum256(down) {
				t.Fatal("down mismatch")
			}
			if !n.runUntil(3600*Second, func() bool { return c.State() == StateClosed && s.State() == StateClosed }) {
				t.Fatalf("not closed: %v %v", c.State(), s.State())
			}
		})
	}
}
