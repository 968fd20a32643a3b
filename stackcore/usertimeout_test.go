package stackcore

import (
	"errors"
	"testing"

	"ustack/nic/pair"
)

// RFC 5482 (TCP User Timeout Option) / RFC 9293 3.8.3, Linux TCP_USER_TIMEOUT:
// data that stays unacknowledged for the user timeout fails the connection
// with ErrTimedOut then, long before the retransmission limit would.
func TestUserTimeoutUnackedData(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _, _ := n.connect(80)
	c.SetUserTimeout(3 * Second)
	if c.UserTimeout() != 3*Second {
		t.Fatal("UserTimeout")
	}
	n.a.end.Hook = func(uint64, []byte) bool { return true } // the peer vanishes
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	start := n.now
	n.runUntil(600*Second, func() bool { return c.State() == StateClosed })
	if !errors.Is(c.Err(), ErrTimedOut) {
		t.Fatalf("err %v state %v", c.Err(), c.State())
	}
	if el := n.now - start; el != 3*Second {
		t.Fatalf("failed after %dus, want exactly the user timeout", el)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrTimedOut) {
		t.Fatalf("write after timeout: %v", err)
	}
}

// A user timeout longer than the transfer's stalls never fires while the peer
// acknowledges: the clock restarts whenever SND.UNA advances.
func TestUserTimeoutProgress(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	c.SetUserTimeout(2 * Second)
	data := pattern(1<<20, 7)
	got := n.transfer(c, s, data, false, 60*Second)
	if len(got) != len(data) || c.State() != StateEstablished {
		t.Fatalf("got %d of %d, state %v err %v", len(got), len(data), c.State(), c.Err())
	}
	// Idle with nothing outstanding: no timeout however long.
	n.runUntil(100*Second, func() bool { return c.State() != StateEstablished })
	if c.State() != StateEstablished {
		t.Fatalf("idle connection failed: %v", c.Err())
	}
	// Off (0): the peer vanishes and the retransmission limit still applies,
	// much later than 2 s.
	c.SetUserTimeout(0)
	n.a.end.Hook = func(uint64, []byte) bool { return true }
	c.Write([]byte("x"))
	start := n.now
	n.runUntil(3600*Second, func() bool { return c.State() == StateClosed })
	if !errors.Is(c.Err(), ErrTimedOut) || n.now-start < 60*Second {
		t.Fatalf("without user timeout: %v after %ds", c.Err(), (n.now-start)/Second)
	}
}

// Linux applies TCP_USER_TIMEOUT to a zero window too (tcp_probe_timer): a
// receiver that never reads, answering every probe, is given up on after the
// user timeout counted from when the window closed with data waiting.
func TestUserTimeoutZeroWindow(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{RecvBuf: 16 << 10})
	c, _, _ := n.connect(80)
	c.SetUserTimeout(20 * Second)
	data := pattern(256<<10, 3)
	off := 0
	var closedAt Time = -1
	n.runUntil(600*Second, func() bool {
		if off < len(data) {
			if k, err := c.Write(data[off:]); err == nil {
				off += k
			}
		}
		if closedAt < 0 && c.sndWnd == 0 && c.sndUna == c.sndMax {
			closedAt = n.now
		}
		return c.State() == StateClosed
	})
	if !errors.Is(c.Err(), ErrTimedOut) || closedAt < 0 {
		t.Fatalf("err %v, window closed at %d", c.Err(), closedAt)
	}
	if el := n.now - closedAt; el > 21*Second || el < 19*Second {
		t.Fatalf("gave up %dus after the window closed", el)
	}
}

// Linux tcp_keepalive_timer: with TCP_USER_TIMEOUT set, keepalive gives up
// once the peer has been silent for the user timeout and a probe went
// unanswered, instead of after the probe count (RFC 5482 4.2: the user
// timeout bounds how long a dead peer goes unnoticed).
func TestUserTimeoutKeepAlive(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, _, _ := n.connect(80)
	c.SetKeepAlive(true, 10*Second, 2*Second, 9)
	c.SetUserTimeout(15 * Second)
	n.a.end.Hook = func(uint64, []byte) bool { return true } // peer gone
	start := c.lastRcvAt
	n.runUntil(3600*Second, func() bool { return c.State() == StateClosed })
	// Probes at 10, 12, 14 s; at 16 s the silence exceeds 15 s: reset.
	if !errors.Is(c.Err(), ErrTimedOut) || n.now-start != 16*Second {
		t.Fatalf("err %v after %dus (count alone would give 28 s)", c.Err(), n.now-start)
	}
}

// Linux tcp_write_timeout: the user timeout does not shorten the handshake,
// which keeps its SYN retry limit.
func TestUserTimeoutNotInSynSent(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	n.a.end.Hook = func(uint64, []byte) bool { return true }
	c, err := n.a.s.Connect(n.now, 0, mapB, 80, macB)
	if err != nil {
		t.Fatal(err)
	}
	c.SetUserTimeout(Second)
	start := n.now
	n.runUntil(600*Second, func() bool { return c.State() == StateClosed })
	if !errors.Is(c.Err(), ErrTimedOut) || n.now-start <= 2*Second {
		t.Fatalf("err %v after %dus", c.Err(), n.now-start)
	}
}
