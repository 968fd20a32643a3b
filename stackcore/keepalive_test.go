package stackcore

import (
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

// RFC 9293 3.8.4 / RFC 1122 4.2.3.6 (keep-alives, Linux timing): an idle
// connection with keepalive on probes after idle, every interval, and a live
// peer's ACK keeps it up without limit; a vanished peer ends the connection
// with ErrTimedOut after count unanswered probes (idle + count*interval).
func TestKeepAlive(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetKeepAlive(true, 10*Second, 2*Second, 3)
	var probes int
	n.a.end.Hook = func(_ uint64, f []byte) bool {
		tcp := tcpOf(f)
		if len(tcp.Payload()) == 0 && tcp.Seq() == uint32(c.sndUna-1) {
			probes++
		}
		return false
	}
	// A live peer: one probe per idle period, answered, for an hour.
	n.runUntil(3600*Second, func() bool { return c.State() != StateEstablished })
	if c.State() != StateEstablished || probes < 300 || probes > 360 {
		t.Fatalf("live peer: %v after %d probes", c.State(), probes)
	}
	// The peer vanishes: probes at idle, idle+2, idle+4, then reset at idle+6.
	n.b.s.free(s)
	hook := n.a.end.Hook
	var rst bool
	n.a.end.Hook = func(i uint64, f []byte) bool {
		hook(i, f)
		rst = rst || tcpOf(f).Flags()&wire.TCPFlagRST != 0
		return true
	}
	probes = 0
	start := n.now
	n.runUntil(3600*Second, func() bool { return c.State() == StateClosed })
	if c.Err() != ErrTimedOut || probes != 3 || !rst {
		t.Fatalf("dead peer: err %v, %d probes, rst %v", c.Err(), probes, rst)
	}
	if el := n.now - start; el > 16*Second || el < 14*Second {
		t.Fatalf("gave up after %dus", el)
	}
	if _, err := c.Read(make([]byte, 1)); err != ErrTimedOut {
		t.Fatalf("read: %v", err)
	}
}

// Linux defaults (tcp_keepalive_time 7200s, intvl 75s, probes 9), and
// keepalive stays silent while the connection is busy or switched off.
func TestKeepAliveDefaults(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _, _ := n.connect(80)
	if on, idle, iv, cnt := c.KeepAlive(); on || idle != 7200*Second || iv != 75*Second || cnt != 9 {
		t.Fatalf("defaults %v %v %v %v", on, idle, iv, cnt)
	}
	sent := n.a.end.Sent
	n.runUntil(3*7200*Second, func() bool { return false })
	if n.a.end.Sent != sent {
		t.Fatal("probes without SO_KEEPALIVE")
	}
	c.SetKeepAlive(true, 0, 0, 0)
	n.a.end.Hook = func(uint64, []byte) bool { return true } // peer gone
	start := n.now
	n.runUntil(4*7200*Second, func() bool { return c.State() == StateClosed })
	// Idle is measured from the last segment heard (the handshake), which is
	// already longer ago than 7200s: the probes start at once.
	if c.Err() != ErrTimedOut || n.now-start != 9*75*Second {
		t.Fatalf("err %v after %ds", c.Err(), (n.now-start)/Second)
	}
}
