package stackcore

import (
	"encoding/binary"
	"testing"

	"ustack/nic/pair"
	"ustack/stackcore/wire"
)

var group1 = IPv4{239, 1, 2, 3}

// mcastSend has B send n numbered datagrams (4-byte sequence numbers from first) to group:port.
func mcastSend(n *testNet, from *UDPSocket, group IPv4, port uint16, first, count int) {
	n.t.Helper()
	var p [4]byte
	for i := first; i < first+count; i++ {
		binary.BigEndian.PutUint32(p[:], uint32(i))
		if _, err := from.SendTo(p[:], GroupV4(group), port, MulticastMAC(GroupV4(group))); err != nil {
			n.t.Fatalf("send %d: %v", i, err)
		}
		n.settle()
	}
}

// mcastRecv reads everything queued on u, sent by B's IPv4 address, and returns the sequence
// numbers.
func mcastRecv(t *testing.T, u *UDPSocket) []int { return mcastRecvFrom(t, u, mapB) }

// mcastRecvFrom is mcastRecv for datagrams from src.
func mcastRecvFrom(t *testing.T, u *UDPSocket, src Addr) []int {
	t.Helper()
	var got []int
	buf := make([]byte, 64)
	for {
		k, _, from, _, err := u.RecvFrom(buf, false)
		if err != nil {
			return got
		}
		if k != 4 || from != src {
			t.Fatalf("datagram of %d bytes from %v, want 4 from %v", k, from, src)
		}
		got = append(got, int(binary.BigEndian.Uint32(buf)))
	}
}

func wantSeq(t *testing.T, name string, got []int, first, count int) {
	t.Helper()
	if len(got) != count {
		t.Fatalf("%s: got %d datagrams %v, want %d from %d", name, len(got), got, count, first)
	}
	for i, v := range got {
		if v != first+i {
			t.Fatalf("%s: datagram %d is %d, want %d", name, i, v, first+i)
		}
	}
}

func TestMulticastMAC(t *testing.T) {
	if got := MulticastMAC(GroupV4(IPv4{239, 129, 2, 3})); got != (MAC{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}) {
		t.Fatalf("239.129.2.3 maps to %x (RFC 1112 6.4: the low 23 bits)", got)
	}
	v6 := Group{0: 0xff, 1: 0x02, 12: 0xde, 13: 0xad, 14: 0xbe, 15: 0xef}
	if got := MulticastMAC(v6); got != (MAC{0x33, 0x33, 0xde, 0xad, 0xbe, 0xef}) {
		t.Fatalf("ff02::dead:beef maps to %x (RFC 2464 7)", got)
	}
	if !v6.IsMulticast() || !GroupV4(group1).IsMulticast() || GroupV4(addrA).IsMulticast() {
		t.Fatal("IsMulticast")
	}
	if g := GroupV4(group1); !g.Is4() || g.As4() != group1 {
		t.Fatal("a v4-mapped group")
	}
}

// Every socket of the stack on the group's port that joined gets every datagram, in order;
// sockets on another port, and a datagram to a group nobody joined, get nothing.
func TestMulticastDeliverAll(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	var rs []*UDPSocket
	for range 3 {
		u, err := n.a.s.UDPBindReuse(5000)
		if err != nil {
			t.Fatal(err)
		}
		if !u.JoinGroup(GroupV4(group1)) {
			t.Fatal("join")
		}
		rs = append(rs, u)
	}
	if rs[0].JoinGroup(GroupV4(group1)) {
		t.Fatal("a second join of the same group succeeded (Linux: EADDRINUSE)")
	}
	other, _ := n.a.s.UDPBind(5001)
	other.JoinGroup(GroupV4(group1))
	tx, _ := n.b.s.UDPBind(7000)
	mcastSend(n, tx, group1, 5000, 0, 100)
	mcastSend(n, tx, IPv4{239, 1, 2, 4}, 5000, 1000, 5) // not joined
	for i, u := range rs {
		wantSeq(t, "receiver "+string(rune('0'+i)), mcastRecv(t, u), 0, 100)
	}
	if got := mcastRecv(t, other); len(got) != 0 {
		t.Fatalf("a socket on another port got %v", got)
	}
	st := n.a.s.Stats()
	if st.UDPInDatagrams != 300 || st.UDPInMulticast != 100 {
		t.Fatalf("in_datagrams %d in_multicast %d, want 300 and 100", st.UDPInDatagrams, st.UDPInMulticast)
	}
	if st.DropNotForUs != 5 {
		t.Fatalf("drop.not_for_us %d, want the 5 datagrams to a group nobody joined", st.DropNotForUs)
	}
	if st.UDPNoPorts != 0 {
		t.Fatalf("udp.no_ports %d", st.UDPNoPorts)
	}
}

// IP_MULTICAST_ALL: a socket on the port that did not join gets the group's datagrams while
// another socket of the stack is a member (Linux's default), and not once it turns the option
// off; a socket bound to another group's address gets nothing, nor unicast; a connected socket
// only its peer's.
func TestMulticastNotJoined(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	member, _ := n.a.s.UDPBindReuse(5000)
	member.JoinGroup(GroupV4(group1))
	all, _ := n.a.s.UDPBindReuse(5000)
	strict, _ := n.a.s.UDPBindReuse(5000)
	strict.SetMulticastAll(false)
	bound, _ := n.a.s.UDPBindReuse(5000)
	bound.BindGroup(GroupV4(IPv4{239, 9, 9, 9}))
	conn, _ := n.a.s.UDPBindReuse(5000)
	conn.JoinGroup(GroupV4(group1))
	conn.Connect(mapB, 7001, macB)
	tx, _ := n.b.s.UDPBind(7000)
	mcastSend(n, tx, group1, 5000, 0, 10)
	wantSeq(t, "member", mcastRecv(t, member), 0, 10)
	wantSeq(t, "IP_MULTICAST_ALL on, not joined", mcastRecv(t, all), 0, 10)
	if got := mcastRecv(t, strict); len(got) != 0 {
		t.Fatalf("IP_MULTICAST_ALL off, not joined: got %v", got)
	}
	if got := mcastRecv(t, bound); len(got) != 0 {
		t.Fatalf("bound to another group: got %v", got)
	}
	if got := mcastRecv(t, conn); len(got) != 0 {
		t.Fatalf("connected to another peer: got %v", got)
	}
	// unicast to the port: never to the socket bound to a group
	tx.SendTo([]byte{0, 0, 0, 9}, mapA, 5000, macA)
	n.settle()
	if got := mcastRecv(t, bound); len(got) != 0 {
		t.Fatalf("bound to a group, got unicast %v", got)
	}
}

// Leave: a socket that left gets nothing more; the last leave (or close) makes the stack drop
// the group's datagrams.
func TestMulticastLeave(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	a, _ := n.a.s.UDPBindReuse(5000)
	b, _ := n.a.s.UDPBindReuse(5000)
	g := GroupV4(group1)
	a.JoinGroup(g)
	b.JoinGroup(g)
	a.SetMulticastAll(false)
	b.SetMulticastAll(false)
	tx, _ := n.b.s.UDPBind(7000)
	mcastSend(n, tx, group1, 5000, 0, 3)
	if !a.LeaveGroup(g) || a.LeaveGroup(g) {
		t.Fatal("leave, then leave again (Linux: EADDRNOTAVAIL)")
	}
	mcastSend(n, tx, group1, 5000, 3, 3)
	wantSeq(t, "left", mcastRecv(t, a), 0, 3)
	wantSeq(t, "stayed", mcastRecv(t, b), 0, 6)
	if !n.a.s.MulticastJoined(g) {
		t.Fatal("the stack left while a member remains")
	}
	b.Close()
	if n.a.s.MulticastJoined(g) {
		t.Fatal("the stack is still a member after its last member closed")
	}
	drops := n.a.s.Stats().DropNotForUs
	mcastSend(n, tx, group1, 5000, 6, 2)
	if got := n.a.s.Stats().DropNotForUs - drops; got != 2 {
		t.Fatalf("%d datagrams dropped after the last member went, want 2", got)
	}
}

// Sending to a group: the group's Ethernet address, TTL 1 unless IP_MULTICAST_TTL says, and a
// copy for the stack's own members (IP_MULTICAST_LOOP) unless turned off.
func TestMulticastSend(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	g := GroupV4(group1)
	rx, _ := n.b.s.UDPBind(5000)
	rx.JoinGroup(g)
	local, _ := n.a.s.UDPBindReuse(5000)
	local.JoinGroup(g)
	tx, _ := n.a.s.UDPBindReuse(5000)
	var frames [][]byte
	out := &captureOut{}
	tx.SendTo([]byte("one"), GroupV4(group1), 5000, MulticastMAC(g))
	n.a.s.Poll(n.now, out)
	frames = out.frames
	if len(frames) != 1 {
		t.Fatalf("%d frames", len(frames))
	}
	f := wire.Ethernet(frames[0])
	ip := wire.IPv4(f.Payload())
	if MAC(f.Dst()) != MulticastMAC(g) || ip.TTL() != 1 || IPv4(ip.Dst()) != group1 {
		t.Fatalf("frame to %x ttl %d dst %v", f.Dst(), ip.TTL(), ip.Dst())
	}
	if k := local.NextLen(); k != 3 {
		t.Fatal("no looped copy for the local member")
	}
	if k := tx.NextLen(); k != 3 {
		t.Fatal("the sender on the port (IP_MULTICAST_ALL) got no looped copy")
	}
	tx.SetMulticastTTL(32)
	tx.SetMulticastLoop(false)
	local.RecvFrom(make([]byte, 8), false)
	tx.SendTo([]byte("two"), GroupV4(group1), 5000, MulticastMAC(g))
	out.frames = nil
	n.a.s.Poll(n.now, out)
	if ip := wire.IPv4(wire.Ethernet(out.frames[0]).Payload()); ip.TTL() != 32 {
		t.Fatalf("ttl %d, want 32", ip.TTL())
	}
	if local.NextLen() != 0 {
		t.Fatal("looped with IP_MULTICAST_LOOP off")
	}
	// through the wire to B's member
	tx.SendTo([]byte("three"), GroupV4(group1), 5000, MulticastMAC(g))
	n.settle()
	buf := make([]byte, 16)
	if k, _, src, _, err := rx.RecvFrom(buf, false); err != nil || string(buf[:k]) != "three" || src != mapA {
		t.Fatalf("B got %q from %v: %v", buf[:k], src, err)
	}
}

// captureOut is an Output that keeps copies of the frames.
type captureOut struct{ frames [][]byte }

func (c *captureOut) AllocTx() []byte { return make([]byte, 2048) }
func (c *captureOut) SubmitTx(buf []byte, n int) {
	c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
}

// Delivering a group's datagram to several members allocates nothing.
func TestMulticastAllocs(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	var rs []*UDPSocket
	for range 3 {
		u, _ := n.a.s.UDPBindReuse(5000)
		u.JoinGroup(GroupV4(group1))
		rs = append(rs, u)
	}
	tx, _ := n.b.s.UDPBind(7000)
	frame := make([]byte, 0, 128)
	out := &captureOut{}
	tx.SendTo([]byte{1, 2, 3, 4}, GroupV4(group1), 5000, MulticastMAC(GroupV4(group1)))
	n.b.s.Poll(n.now, out)
	frame = append(frame, out.frames[0]...)
	buf := make([]byte, 16)
	woken := make([]uintptr, 0, 8)
	allocs := testing.AllocsPerRun(1000, func() {
		n.a.s.Input(n.now, frame)
		for _, u := range rs {
			u.RecvFrom(buf, false)
		}
		woken = n.a.s.TakeWoken(woken[:0])
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per datagram", allocs)
	}
}

// IPv6 groups (RFC 4291 2.7): a datagram to a joined group (Ethernet 33:33 and its low 32 bits,
// RFC 2464 7) reaches the IPv6 and dual-stack sockets on its port that joined, not an IPv4-only
// one; a datagram to a group nobody joined is not for us; a send to a group of link-local scope
// leaves from the link-local address (RFC 6724 rule 2) with IPV6_MULTICAST_HOPS as its hop limit.
func TestMulticastIPv6(t *testing.T) {
	n := newNet6(t, pair.Options{}, Config{}, Config{})
	group := Addr{0: 0xff, 1: 0x15, 15: 0x42} // ff15::42, site scope
	ll := Addr{0: 0xff, 1: 0x02, 15: 0x43}    // ff02::43, link-local scope
	v6, _ := n.a.s.UDPBindOn(5000, true, Family6, Addr{})
	both, _ := n.a.s.UDPBindOn(5000, true, FamilyBoth, Addr{})
	v4, _ := n.a.s.UDPBindOn(5000, true, Family4, Addr{})
	for _, u := range []*UDPSocket{v6, both, v4} {
		if !u.JoinGroup(group) {
			t.Fatal("join")
		}
	}
	tx, _ := n.b.s.UDPBind(7000)
	tx.SetMulticastTTL(5)
	send := func(g Addr, first, count int) {
		var p [4]byte
		for i := first; i < first+count; i++ {
			binary.BigEndian.PutUint32(p[:], uint32(i))
			if _, err := tx.SendTo(p[:], g, 5000, MulticastMAC(g)); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			n.settle()
		}
	}
	frames := record(n.b.end)
	send(group, 0, 50)
	send(ll, 100, 3) // nobody joined it
	recv := func(u *UDPSocket) []int { return mcastRecvFrom(t, u, ulaB) }
	wantSeq(t, "IPv6 socket", recv(v6), 0, 50)
	wantSeq(t, "dual-stack socket", recv(both), 0, 50)
	if got := recv(v4); len(got) != 0 {
		t.Fatalf("an IPv4-only socket got IPv6 group datagrams %v", got)
	}
	if st := n.a.s.Stats(); st.UDPInMulticast != 50 || st.DropNotForUs != 3 {
		t.Fatalf("in_multicast %d drop.not_for_us %d, want 50 and 3", st.UDPInMulticast, st.DropNotForUs)
	}
	var seen []wire.IPv6
	for _, f := range *frames {
		if wire.Ethernet(f).Type() == wire.EtherTypeIPv6 {
			seen = append(seen, wire.IPv6(f[wire.EthHeaderLen:]))
		}
	}
	if len(seen) != 53 {
		t.Fatalf("saw %d IPv6 packets from B, want 53", len(seen))
	}
	for i, ip := range seen {
		src, dst := Addr(ip.Src()), Addr(ip.Dst())
		wantSrc, wantDst := ulaB, group
		if i >= 50 {
			wantSrc, wantDst = llB, ll
		}
		if src != wantSrc || dst != wantDst || ip.HopLimit() != 5 {
			t.Fatalf("packet %d: %v -> %v hop limit %d, want %v -> %v hop limit 5", i, src, dst, ip.HopLimit(), wantSrc, wantDst)
		}
	}
}
