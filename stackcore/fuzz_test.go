package stackcore

import (
	"testing"
	"time"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// seedFrames returns real frames from a handshake, a transfer and a close.
func seedFrames(t testing.TB) [][]byte {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	var frames [][]byte
	capture := func(_ uint64, f []byte) bool {
		if len(frames) < 24 {
			frames = append(frames, append([]byte(nil), f...))
		}
		return false
	}
	n.a.end.Hook, n.b.end.Hook = capture, capture
	c, s, _ := n.connect(80)
	n.transfer(c, s, pattern(3000, 1), true, 10*Second)
	s.Close()
	n.settle()
	// ACKs with SACK blocks and timestamps (RFC 2018, RFC 7323) from a window with holes.
	n = newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ = n.connect(80)
	n.b.end.Hook = dropSegs(1, 3)
	n.a.end.Hook = func(_ uint64, f []byte) bool {
		if wire.ParseTCPOptions(tcpOf(f).Options()).NSACK > 0 && len(frames) < 32 {
			frames = append(frames, append([]byte(nil), f...))
		}
		return false
	}
	n.transfer(s, c, pattern(8*c.mss, 2), false, 10*Second)
	return frames
}

// FuzzEthernetIPv4TCP feeds arbitrary frames to Input of a stack that has a
// listener and an established connection (RFC 9293 3.10.7: any segment,
// however malformed, must be handled without a crash), then polls it.
func FuzzEthernetIPv4TCP(f *testing.F) {
	for _, fr := range seedFrames(f) {
		f.Add(fr, false)
		f.Add(fr, true)
	}
	f.Fuzz(func(t *testing.T, frame []byte, verify bool) {
		hang := time.AfterFunc(3*time.Second, func() { panic("fuzz input hangs the stack") })
		defer hang.Stop()
		cfg := Config{RecvBuf: 16 << 10, SendBuf: 16 << 10}
		n := newNet(t, pair.Options{NumFrames: 64}, cfg, cfg)
		c, _, _ := n.connect(80)
		_ = c
		n.b.s.cfg.VerifyChecksums = verify
		// Frames from the seeds were built for B (or A); aim everything at B.
		if len(frame) >= 34 {
			copy(frame[0:6], macB[:])
			copy(frame[30:34], addrB[:])
		}
		n.b.s.Input(n.now, frame)
		n.b.s.Input(n.now+1, frame)
		n.now += 2
		n.settle()
		n.runUntil(5*Second, func() bool { return false })
	})
}
