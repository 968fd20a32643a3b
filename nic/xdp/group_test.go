package xdp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"ustack/shm"
)

var testGroupGeo = shm.GroupGeometry{Slots: 4, TxPerSlot: 256, RxFrames: 512, FrameSize: 2048}

// startKeeper runs a keeper for n's interface A in a thread of namespace A until the test ends
// or its last member leaves.
func startKeeper(t *testing.T, n *testNet) <-chan error {
	t.Helper()
	ls, err := in(t, n.hA, func() (int, error) { return ListenGroup(n.VethA, 0) })
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(n.hA); err != nil {
			done <- err
			return
		}
		done <- RunKeeper(KeeperOptions{Ifname: n.VethA, Queue: 0, Listener: ls, Log: t.Logf,
			Group: GroupOptions{Geometry: testGroupGeo, RingSize: 512, Build: shm.BuildID{7}}})
	}()
	return done
}

func attachIn(t *testing.T, n *testNet, build shm.BuildID) (*Socket, *Membership, error) {
	t.Helper()
	type res struct {
		s *Socket
		m *Membership
	}
	r, err := in(t, n.hA, func() (res, error) {
		s, m, err := Attach(n.VethA, 0, AttachOptions{Build: build})
		return res{s, m}, err
	})
	return r.s, r.m, err
}

func queryIn(t *testing.T, n *testNet) *GroupStatus {
	t.Helper()
	st, err := in(t, n.hA, func() (*GroupStatus, error) { return QueryGroup(n.VethA, 0) })
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Two members of one group on one queue: each receives only the flows steered to it, each
// transmits from its own frames, and when one leaves the keeper takes back its frames and its
// steering entries while the other goes on.
func TestGroupTwoMembers(t *testing.T) {
	n := newTestNet(t)
	keeper := startKeeper(t, n)
	s1, m1, err := attachIn(t, n, shm.BuildID{7})
	if err != nil {
		t.Fatal(err)
	}
	s2, m2, err := attachIn(t, n, shm.BuildID{7})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Slot() == s2.Slot() {
		t.Fatalf("both members in slot %d", s1.Slot())
	}
	if _, _, err := attachIn(t, n, shm.BuildID{8}); err == nil {
		t.Fatal("another build joined the group")
	} else {
		t.Logf("another build: %v", err)
	}
	for i, s := range []*Socket{s1, s2} {
		if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), uint16(9100+i)); err != nil {
			t.Fatal(err)
		}
	}
	c := udpConnB(t, n, "10.99.0.2:9200")
	macA, macB := ifaceMAC(t, n, n.hA, n.VethA), ifaceMAC(t, n, n.hB, n.VethB)
	for round := range 300 { // more than the group's receive frames: they must circulate
		for i, s := range []*Socket{s1, s2} {
			port := uint16(9100 + i)
			msg := fmt.Appendf(nil, "to %d round %d", port, round)
			if _, err := c.WriteTo(msg, &net.UDPAddr{IP: net.IP(ipA[:]), Port: int(port)}); err != nil {
				t.Fatal(err)
			}
			got := receiveMatch(t, s, 3*time.Second, func(f []byte) bool {
				p, dport := udpPayload(f)
				if dport != port {
					t.Errorf("slot %d received a datagram for port %d", s.Slot(), dport)
				}
				return bytes.Equal(p, msg)
			})
			if got == nil {
				t.Fatalf("round %d: slot %d did not receive %q", round, s.Slot(), msg)
			}
			// and answer from its own transmit frames
			buf := s.AllocTx()
			if buf == nil {
				t.Fatalf("round %d: slot %d has no transmit frame", round, s.Slot())
			}
			s.SubmitTx(buf, copy(buf, buildUDP(t, macA, macB, ipA, ipB, port, 9200, msg)))
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			b := make([]byte, 2048)
			k, from, err := c.ReadFromUDP(b)
			if err != nil || !bytes.Equal(b[:k], msg) || from.Port != int(port) {
				t.Fatalf("round %d: answer %q from %v (%v), want %q from port %d", round, b[:k], from, err, msg, port)
			}
		}
	}
	st := queryIn(t, n)
	if len(st.Members) != 2 {
		t.Fatalf("status lists %d members, want 2: %+v", len(st.Members), st)
	}
	// s2 leaves without a word: its socket and maps closed by no one (as a killed process)
	slot2 := s2.Slot()
	m2.Close()
	var after *GroupStatus
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		after = queryIn(t, n)
		if len(after.Members) == 1 {
			break
		}
	}
	if len(after.Members) != 1 || after.Members[0].Slot != s1.Slot() {
		t.Fatalf("after slot %d left: %+v", slot2, after)
	}
	if after.Unassigned.Steer != 0 || after.Members[0].Steer != 1 {
		t.Fatalf("steering entries after slot %d left: %+v", slot2, after)
	}
	if got := after.RxOnFill + after.Members[0].RxHeld; got != testGroupGeo.RxFrames {
		t.Fatalf("receive frames accounted for: %d of %d (%+v)", got, testGroupGeo.RxFrames, after)
	}
	s2.Close()
	s1.Close()
	m1.Close()
	select {
	case err := <-keeper:
		if err != nil {
			t.Fatalf("keeper: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the keeper did not leave with its last member")
	}
}

// Two members share a TCP port over IPv6 and IPv4 through the keeper (a dual-stack listener
// has an entry for each family): the status names both, and a connection from B over IPv6
// reaches the member the hash of its remote address and port picks; when one member stops
// sharing, the other gets every flow.
func TestGroupSharesIPv6(t *testing.T) {
	n := newTestNet6(t)
	keeper := startKeeper(t, n)
	s1, m1, err := attachIn(t, n, shm.BuildID{7})
	if err != nil {
		t.Fatal(err)
	}
	s2, m2, err := attachIn(t, n, shm.BuildID{7})
	if err != nil {
		t.Fatal(err)
	}
	const port = 9300
	for _, s := range []*Socket{s1, s2} {
		for _, ip := range [][16]byte{ip6A, Mapped4(ipA)} {
			if err := s.SteerShared(unix.IPPROTO_TCP, ip, port); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := queryIn(t, n)
	for _, m := range st.Members {
		want := []string{"tcp/9300 (shared)", "tcp6/9300 (shared)"}
		if m.Shared != 2 || !slices.Equal(m.Ports, want) {
			t.Errorf("slot %d: %d shared ports %q, want 2 %q", m.Slot, m.Shared, m.Ports, want)
		}
	}
	sharers := []*Socket{s1, s2} // in the order they joined the port: the shares value's
	// connect dials from B's lport and reports which member's slot received the SYN (-1: none).
	connect := func(lport uint16) int {
		t.Helper()
		res := make(chan error, 1)
		go func() {
			_, err := in(t, n.hB, func() (struct{}, error) {
				d := net.Dialer{Timeout: 500 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.IP(ip6B[:]), Port: int(lport)}}
				c, err := d.Dial("tcp6", "[fd00:99::1]:9300")
				if err == nil {
					c.Close()
				}
				return struct{}{}, err
			})
			res <- err
		}()
		syn := func(f []byte) bool {
			ip := ipv6Of(f)
			return ip != nil && ip.NextHeader == layers.IPProtocolTCP && len(ip.Payload) >= 14 &&
				binary.BigEndian.Uint16(ip.Payload) == lport && ip.Payload[13]&0x02 != 0
		}
		got := -1
		for _, s := range sharers {
			if receiveMatch(t, s, time.Second, syn) != nil {
				if got >= 0 {
					t.Errorf("SYN from port %d reached both members", lport)
				}
				got = int(s.Slot())
			}
		}
		<-res
		return got
	}
	var ports [2][]uint16 // B's ports whose flows go to sharers[0], sharers[1]
	for p := uint16(42000); len(ports[0]) < 2 || len(ports[1]) < 2; p++ {
		if i := shareIndex(ip6B, p, 2); len(ports[i]) < 2 {
			ports[i] = append(ports[i], p)
		}
	}
	for i, ps := range ports {
		for _, p := range ps {
			if got := connect(p); got != int(sharers[i].Slot()) {
				t.Errorf("SYN from [fd00:99::2]:%d: reached slot %d, want slot %d", p, got, sharers[i].Slot())
			}
		}
	}
	if err := s1.UnsteerShared(unix.IPPROTO_TCP, ip6A, port); err != nil {
		t.Fatal(err)
	}
	if got := connect(ports[0][0] + 1000); got != int(s2.Slot()) {
		t.Errorf("after slot %d stopped sharing: SYN reached slot %d, want slot %d", s1.Slot(), got, s2.Slot())
	}
	st = queryIn(t, n)
	for _, m := range st.Members {
		if want := map[uint32]int{s1.Slot(): 1, s2.Slot(): 2}[m.Slot]; m.Shared != want {
			t.Errorf("slot %d shares %d ports %q, want %d", m.Slot, m.Shared, m.Ports, want)
		}
	}
	s1.Close()
	m1.Close()
	s2.Close()
	m2.Close()
	select {
	case err := <-keeper:
		if err != nil {
			t.Fatalf("keeper: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the keeper did not leave with its last member")
	}
}

// A multicast group's port is shared by membership: its one member process gets its frames
// (portAll), with several the first gets them and relays them to the others (portFanout: a frame
// goes to one AF_XDP socket only); a member that dies is taken out, and the entry goes with the
// last member.
func TestGroupMulticastShare(t *testing.T) {
	n := newTestNet(t)
	keeper := startKeeper(t, n)
	s1, m1, err := attachIn(t, n, shm.BuildID{7})
	if err != nil {
		t.Fatal(err)
	}
	s2, m2, err := attachIn(t, n, shm.BuildID{7})
	if err != nil {
		t.Fatal(err)
	}
	group := [4]byte{239, 1, 2, 3}
	k := makeSteerKey(unix.IPPROTO_UDP, Mapped4(group), 5000)
	entry := func() (uint32, bool) {
		var v uint32
		err := s1.steer.Lookup(k, &v)
		return v, err == nil
	}
	want := func(what string, v uint32, ok bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
			got, there := entry()
			if got == v && there == ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: steer entry %#x (present %v), want %#x (present %v)", what, got, there, v, ok)
			}
		}
	}
	if err := s1.SteerShared(unix.IPPROTO_UDP, Mapped4(group), 5000); err != nil {
		t.Fatal(err)
	}
	want("one member", portAll|s1.Slot()<<slotShift, true)
	if err := s2.SteerShared(unix.IPPROTO_UDP, Mapped4(group), 5000); err != nil {
		t.Fatalf("a second member process: %v", err)
	}
	want("two members", portFanout|s1.Slot()<<slotShift, true)
	if got := s2.GroupMembers(unix.IPPROTO_UDP, Mapped4(group), 5000, nil); len(got) != 2 || got[0] != s1.Slot() || got[1] != s2.Slot() {
		t.Fatalf("members %v, want [%d %d]", got, s1.Slot(), s2.Slot())
	}
	m2.Close() // dies
	want("the second died", portAll|s1.Slot()<<slotShift, true)
	if err := s1.UnsteerShared(unix.IPPROTO_UDP, Mapped4(group), 5000); err != nil {
		t.Fatal(err)
	}
	want("the last left", 0, false)
	s2.Close()
	s1.Close()
	m1.Close()
	select {
	case err := <-keeper:
		if err != nil {
			t.Fatalf("keeper: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the keeper did not leave with its last member")
	}
}
