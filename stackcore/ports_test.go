package stackcore

import (
	"testing"

	"ustack/nic/pair"
)

// RFC 6056 section 3.3.4: ephemeral ports come from a keyed hash of the
// tuple plus a counter, so they differ between stacks with different secrets
// and between destinations, and are not the sequential 49152, 49153, ...
func TestEphemeralPortsRandomised(t *testing.T) {
	connectPort := func(seed uint64, remote IPv4, rport uint16) uint16 {
		s := New(Config{MAC: macA, Addr: addrA, Seed: seed})
		c, err := s.Connect(0, 0, AddrFrom4(remote), rport, macB)
		if err != nil {
			t.Fatal(err)
		}
		return c.key.lport
	}
	seen := map[uint16]bool{}
	for seed := uint64(1); seed <= 8; seed++ {
		p := connectPort(seed, addrB, 80)
		if p < ephemeralLo {
			t.Fatalf("seed %d: port %d below the ephemeral range", seed, p)
		}
		seen[p] = true
		if connectPort(seed, addrB, 80) != p {
			t.Fatalf("seed %d: not deterministic", seed)
		}
	}
	if len(seen) < 6 {
		t.Fatalf("RFC 6056: 8 secrets gave only %d distinct first ports: %v", len(seen), seen)
	}
	// Same stack: a second destination does not get the next port in sequence.
	s := New(Config{MAC: macA, Addr: addrA, Seed: 42})
	c1, _ := s.Connect(0, 0, mapB, 80, macB)
	c2, _ := s.Connect(0, 0, AddrFrom4(IPv4{10, 0, 0, 3}), 443, macB)
	c3, _ := s.Connect(0, 0, mapB, 80, macB)
	p1, p2, p3 := c1.key.lport, c2.key.lport, c3.key.lport
	if p2 == p1+1 || p2 == p1 {
		t.Fatalf("RFC 6056: port for another destination is predictable: %d then %d", p1, p2)
	}
	if p3 == p1 {
		t.Fatalf("same tuple reused: %d", p3)
	}
	// UDPBind(0) is randomised too and never hands out a port in use.
	seenU := map[uint16]bool{}
	for seed := uint64(1); seed <= 8; seed++ {
		st := New(Config{MAC: macA, Addr: addrA, Seed: seed})
		u, err := st.UDPBind(0)
		if err != nil {
			t.Fatal(err)
		}
		seenU[u.LocalPort()] = true
		v, _ := st.UDPBind(0)
		if v.LocalPort() == u.LocalPort() {
			t.Fatal("UDP ephemeral port handed out twice")
		}
	}
	if len(seenU) < 6 {
		t.Fatalf("RFC 6056: UDP ports not randomised: %v", seenU)
	}
}

// The full range stays usable: every ephemeral port can be taken, then Connect fails.
func TestEphemeralPortsExhaust(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	s := n.a.s
	for i := range ephemeralNum {
		if _, err := s.Connect(n.now, 0, mapB, 80, macB); err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
	}
	if _, err := s.Connect(n.now, 0, mapB, 80, macB); err != ErrAddrInUse {
		t.Fatalf("after exhausting: %v", err)
	}
}
