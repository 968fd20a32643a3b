package stackcore

import (
	"testing"

	"ustack/nic/pair"
)

// SO_REUSEADDR on UDP (socket(7), udp(7)): sockets bound with reuse share a port; a datagram
// goes to the socket connected to its sender, others to the unconnected one; the port is
// released when the last of them closes. Without reuse the port stays exclusive.
func TestUDPReusePort(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	if _, err := n.a.s.UDPBind(5000); err != nil {
		t.Fatal(err)
	}
	if _, err := n.a.s.UDPBindReuse(5000); err != ErrAddrInUse {
		t.Fatalf("reuse next to an exclusive socket: %v, want ErrAddrInUse", err)
	}
	open, err := n.a.s.UDPBindReuse(5001)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := n.a.s.UDPBindReuse(5001)
	if err != nil {
		t.Fatalf("second reuse socket: %v", err)
	}
	if _, err := n.a.s.UDPBind(5001); err != ErrAddrInUse {
		t.Fatalf("exclusive bind on a shared port: %v, want ErrAddrInUse", err)
	}
	b1, _ := n.b.s.UDPBind(6001)
	b2, _ := n.b.s.UDPBind(6002)
	conn.Connect(mapB, 6001, macB)
	b1.SendTo([]byte("to the connected"), mapA, 5001, macA)
	b2.SendTo([]byte("to the open one"), mapA, 5001, macA)
	n.settle()
	buf := make([]byte, 32)
	if k, _, _, p, err := conn.RecvFrom(buf, false); err != nil || p != 6001 || string(buf[:k]) != "to the connected" {
		t.Fatalf("connected socket got %q from %d: %v", buf[:k], p, err)
	}
	if k, _, _, p, err := open.RecvFrom(buf, false); err != nil || p != 6002 || string(buf[:k]) != "to the open one" {
		t.Fatalf("open socket got %q from %d: %v", buf[:k], p, err)
	}
	conn.Close()
	if got := n.a.s.ReleasedUDP(nil); len(got) != 0 {
		t.Fatalf("port released while a socket still holds it: %v", got)
	}
	open.Close()
	if got := n.a.s.ReleasedUDP(nil); len(got) != 1 || got[0] != 5001 {
		t.Fatalf("released %v, want [5001]", got)
	}
}
