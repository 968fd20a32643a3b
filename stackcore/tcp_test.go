package stackcore

import (
	"crypto/sha256"
	"testing"

	"ustack/nic/pair"
)

// RFC 9293 3.5: three-way handshake, active and passive open.
func TestHandshake(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	if c.mss != 1460 || s.mss != 1460 {
		t.Fatalf("mss %d %d", c.mss, s.mss)
	}
	if !c.wsOK || c.sndSh != s.rcvSh || s.sndSh != c.rcvSh || c.rcvSh != 3 {
		t.Fatalf("wscale: c snd %d rcv %d, s snd %d rcv %d", c.sndSh, c.rcvSh, s.sndSh, s.rcvSh)
	}
	if got := n.a.s.Stats().TCPCurrEstab; got != 1 {
		t.Fatalf("curr_estab %d", got)
	}
}

// RFC 9293 3.8.6 (flow control) and 3.10.7.4: 1 MB each way, byte-exact.
func TestTransferBothWays(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	up := pattern(1<<20, 1)
	down := pattern(1<<20, 2)
	if got := n.transfer(c, s, up, false, 60*Second); sha256.Sum256(got) != sha256.Sum256(up) {
		t.Fatal("client->server data mismatch")
	}
	if got := n.transfer(s, c, down, false, 60*Second); sha256.Sum256(got) != sha256.Sum256(down) {
		t.Fatal("server->client data mismatch")
	}
	st := n.a.s.Stats()
	if st.TCPRetransSegs != 0 || n.b.s.Stats().TCPRetransSegs != 0 {
		t.Fatalf("unexpected retransmissions on a clean wire")
	}
}
