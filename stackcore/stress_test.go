package stackcore

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"ustack/nic/pair"
)

// RFC 9293 3.10.7.4 and RFC 5681/6298 together: bulk transfer both ways and
// close over a wire that drops, duplicates, reorders and corrupts frames.
// Corrupted frames must be caught by the checksums (RFC 9293 3.1).
func TestLossyWire(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			opts := pair.Options{Seed: seed, DropRate: 0.03, DupRate: 0.02, ReorderRate: 0.05, CorruptRate: 0.01}
			n := newNet(t, opts, Config{Seed: seed}, Config{Seed: seed + 100})
			c, s, _ := n.connect(80)
			up := pattern(300<<10, seed)
			down := pattern(200<<10, seed+7)
			if got := n.transfer(c, s, up, true, 600*Second); sha256.Sum256(got) != sha256.Sum256(up) {
				t.Fatal("up mismatch")
			}
			if got := n.transfer(s, c, down, true, 600*Second); sha256.Sum256(got) != sha256.Sum256(down) {
				t.Fatal("down mismatch")
			}
			if !n.runUntil(600*Second, func() bool { return c.State() == StateClosed && s.State() == StateClosed }) {
				t.Fatalf("not closed: %v %v", c.State(), s.State())
			}
			sa, sb := n.a.s.Stats(), n.b.s.Stats()
			t.Logf("a: retrans %d fast %d timeouts %d badsum %d ooo %d; b: retrans %d badsum %d ooo %d",
				sa.TCPRetransSegs, sa.TCPFastRetrans, sa.TCPTimeouts, sa.DropBadChecksum, sa.TCPOOOQueued,
				sb.TCPRetransSegs, sb.DropBadChecksum, sb.TCPOOOQueued)
		})
	}
}
