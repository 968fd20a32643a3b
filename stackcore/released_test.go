package stackcore

import (
	"testing"

	"ustack/nic/pair"
)

// A port freed and taken again before the host asks (a connect replacing a TIME-WAIT
// connection, RFC 9293 3.10.7.4, or a listener closed and reopened) is not reported released:
// the host would otherwise stop steering a port in use. One freed for good is reported once.
func TestReleasedSkipsPortsTakenAgain(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	l, err := n.a.s.Listen(8080, 4)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := n.a.s.Listen(8080, 4); err != nil {
		t.Fatal(err)
	}
	if got := n.a.s.Released(nil); len(got) != 0 {
		t.Fatalf("released %v while a listener holds the port again", got)
	}
	l2, _ := n.a.s.Listen(8081, 4)
	l2.Close()
	if got := n.a.s.Released(nil); len(got) != 1 || got[0] != 8081 {
		t.Fatalf("released %v, want [8081]", got)
	}
	u, _ := n.a.s.UDPBind(9000)
	u.Close()
	if _, err := n.a.s.UDPBind(9000); err != nil {
		t.Fatal(err)
	}
	if got := n.a.s.ReleasedUDP(nil); len(got) != 0 {
		t.Fatalf("UDP released %v while a socket holds the port again", got)
	}
}
