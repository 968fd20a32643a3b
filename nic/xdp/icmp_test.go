package xdp

import (
	"encoding/binary"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// icmpOf returns the ICMP message of an Ethernet/IPv4 frame, or nil.
func icmpOf(f []byte) []byte {
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[23] != unix.IPPROTO_ICMP {
		return nil
	}
	hl := int(f[14]&0x0f) * 4
	if len(f) < 14+hl+8 {
		return nil
	}
	return f[14+hl:]
}

// quotedPorts returns the source and destination ports quoted by an ICMP error.
func quotedPorts(m []byte) (sport, dport uint16, ok bool) {
	if len(m) < 8+20 {
		return 0, 0, false
	}
	hl := int(m[8]&0x0f) * 4
	if len(m) < 8+hl+4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(m[8+hl:]), binary.BigEndian.Uint16(m[8+hl+2:]), true
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// TestICMPErrorSteered: a datagram sent from the XSK to a closed UDP port of
// the kernel in B draws the kernel's port unreachable (RFC 1122 3.2.2.1),
// which the program steers to the XSK because it quotes a steered (local
// address, local port, UDP). A quote of an unsteered port stays with the
// kernel, and so does ping: B's echo requests get the kernel's replies.
func TestICMPErrorSteered(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), 4243); err != nil {
		t.Fatal(err)
	}
	macA := ifaceMAC(t, n, n.hA, n.VethA)
	macB := ifaceMAC(t, n, n.hB, n.VethB)
	// B must know A's MAC to answer; let the kernels ARP first.
	if out, err := exec.Command("ip", "netns", "exec", n.NsB, "ping", "-c", "1", "-W", "2", "10.99.0.1").CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	send := func(sport, dport uint16) {
		buf := s.AllocTx()
		k := copy(buf, buildUDP(t, macA, macB, ipA, ipB, sport, dport, []byte("anyone there?")))
		s.SubmitTx(buf, k)
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	unreach := func(sport, dport uint16) func([]byte) bool {
		return func(f []byte) bool {
			m := icmpOf(f)
			if m == nil || m[0] != 3 || m[1] != 3 {
				return false
			}
			sp, dp, ok := quotedPorts(m)
			return ok && sp == sport && dp == dport
		}
	}
	send(4243, 9)
	if f := receiveMatch(t, s, 3*time.Second, unreach(4243, 9)); f == nil {
		t.Fatalf("port unreachable not steered; stats %+v", *s.Stats())
	}
	// Unsteered local port: the kernel's (ICMP rate limit: wait past it).
	time.Sleep(1100 * time.Millisecond)
	send(4244, 9)
	if f := receiveMatch(t, s, 700*time.Millisecond, unreach(4244, 9)); f != nil {
		t.Fatal("ICMP error for an unsteered port reached the XSK")
	}
	// Ping still answered by A's kernel, and echo requests never reach the XSK.
	if err := s.Steer(unix.IPPROTO_TCP, Mapped4(ipA), 80); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", n.NsB, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.99.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("ping with ICMP steering: %v\n%s", err, out)
	}
	if f := receiveMatch(t, s, 300*time.Millisecond, func(f []byte) bool { m := icmpOf(f); return m != nil && m[0] == 8 }); f != nil {
		t.Fatal("echo request steered to the XSK")
	}
}

// TestICMPErrorQuotes exercises the program's parsing of the quote with
// errors sent from B over a raw socket: TCP and UDP quotes, a quoted header
// with options (IHL 6), time exceeded, and quotes that must stay with the
// kernel (unsteered port, truncated, a quoted later fragment).
func TestICMPErrorQuotes(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_TCP, Mapped4(ipA), 80); err != nil {
		t.Fatal(err)
	}
	if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), 5353); err != nil {
		t.Fatal(err)
	}
	fd, err := in(t, n.hB, func() (int, error) { return unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP) })
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// quote builds an ICMP error of type typ quoting proto from ipA:sport
	// to ipB:dport with ihl words of header, cut to n quoted bytes after it.
	quote := func(typ, code, proto uint8, ihl int, frag uint16, sport, dport uint16, cut int) []byte {
		q := make([]byte, ihl*4+8)
		q[0] = 0x40 | uint8(ihl)
		binary.BigEndian.PutUint16(q[2:], 1200)
		binary.BigEndian.PutUint16(q[6:], frag)
		q[8], q[9] = 64, proto
		copy(q[12:], ipA[:])
		copy(q[16:], ipB[:])
		for i := 20; i < ihl*4; i++ {
			q[i] = 1 // NOP options
		}
		binary.BigEndian.PutUint16(q[ihl*4:], sport)
		binary.BigEndian.PutUint16(q[ihl*4+2:], dport)
		q = q[:ihl*4+cut]
		m := append([]byte{typ, code, 0, 0, 0, 0, 0x02, 0x40}, q...) // next-hop MTU 576
		binary.BigEndian.PutUint16(m[2:], icmpChecksum(m))
		return m
	}
	sendICMP := func(m []byte) {
		if err := unix.Sendto(fd, m, 0, &unix.SockaddrInet4{Addr: ipA}); err != nil {
			t.Fatal(err)
		}
	}
	match := func(dport uint16) func([]byte) bool {
		return func(f []byte) bool {
			m := icmpOf(f)
			if m == nil || len(m) < 8+20+4 {
				return false
			}
			hl := int(m[8]&0x0f) * 4
			return len(m) >= 8+hl+4 && binary.BigEndian.Uint16(m[8+hl+2:]) == dport
		}
	}
	cases := []struct {
		name  string
		m     []byte
		dport uint16
		want  bool
	}{
		{"TCP frag needed", quote(3, 4, unix.IPPROTO_TCP, 5, 0x4000, 80, 1001, 8), 1001, true},
		{"UDP port unreachable, quoted options", quote(3, 3, unix.IPPROTO_UDP, 6, 0, 5353, 1002, 8), 1002, true},
		{"TCP time exceeded", quote(11, 0, unix.IPPROTO_TCP, 5, 0, 80, 1003, 8), 1003, true},
		{"UDP parameter problem, IHL 15", quote(12, 0, unix.IPPROTO_UDP, 15, 0, 5353, 1004, 8), 1004, true},
		{"unsteered TCP port", quote(3, 4, unix.IPPROTO_TCP, 5, 0, 81, 1005, 8), 1005, false},
		{"UDP quote of a TCP steering", quote(3, 3, unix.IPPROTO_UDP, 5, 0, 80, 1006, 8), 1006, false},
		{"truncated quote", quote(3, 3, unix.IPPROTO_UDP, 5, 0, 5353, 1007, 4), 1007, false},
		{"quoted later fragment", quote(3, 3, unix.IPPROTO_UDP, 5, 0x0010, 5353, 1008, 8), 1008, false},
		{"echo reply", quote(0, 0, unix.IPPROTO_UDP, 5, 0, 5353, 1009, 8), 1009, false},
	}
	for _, c := range cases {
		sendICMP(c.m)
		wait := 3 * time.Second
		if !c.want {
			wait = 300 * time.Millisecond
		}
		got := receiveMatch(t, s, wait, match(c.dport)) != nil
		if got != c.want {
			t.Errorf("%s: steered %v, want %v", c.name, got, c.want)
		}
	}
}
