package xdp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

func openIn(t testing.TB, n *testNet, opts Options) *Socket {
	t.Helper()
	s, err := in(t, n.hA, func() (*Socket, error) { return Open(n.VethA, 0, opts) })
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	t.Logf("attached %s mode %s", n.VethA, s.Mode())
	return s
}

// receiveMatch waits up to d for one frame that match accepts.
func receiveMatch(t testing.TB, s *Socket, d time.Duration, match func([]byte) bool) []byte {
	t.Helper()
	frames := make([][]byte, 16)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(s.Fd()), Events: unix.POLLIN}}
		unix.Poll(pfd, 50)
		n := s.Receive(frames)
		for _, f := range frames[:n] {
			if match(f) {
				c := bytes.Clone(f)
				s.ReleaseRx()
				return c
			}
		}
		s.ReleaseRx()
	}
	return nil
}

func udpPayload(f []byte) ([]byte, uint16) {
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if u == nil {
		return nil, 0
	}
	return u.Payload, uint16(u.DstPort)
}

func udpConnB(t testing.TB, n *testNet, laddr string) *net.UDPConn {
	t.Helper()
	c, err := in(t, n.hB, func() (*net.UDPConn, error) {
		a, _ := net.ResolveUDPAddr("udp4", laddr)
		return net.ListenUDP("udp4", a)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestReceiveSteeredUDP(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_UDP, Mapped4(ipA), 9000); err != nil {
		t.Fatal(err)
	}
	c := udpConnB(t, n, "10.99.0.2:0")
	dst := &net.UDPAddr{IP: net.IP(ipA[:]), Port: 9000}
	for i := range 20 {
		msg := fmt.Appendf(nil, "hello %d", i)
		if _, err := c.WriteTo(msg, dst); err != nil {
			t.Fatal(err)
		}
		got := receiveMatch(t, s, 3*time.Second, func(f []byte) bool {
			p, port := udpPayload(f)
			return port == 9000 && bytes.Equal(p, msg)
		})
		if got == nil {
			s.RefreshKernelStats()
			t.Fatalf("datagram %d not received; stats %+v", i, *s.Stats())
		}
	}
	if err := s.RefreshKernelStats(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stats %+v", *s.Stats())
}

func TestTransmitUDP(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	c := udpConnB(t, n, "10.99.0.2:9001")
	macA := ifaceMAC(t, n, n.hA, n.VethA)
	macB := ifaceMAC(t, n, n.hB, n.VethB)
	for i := range 50 {
		msg := fmt.Appendf(nil, "from xsk %d", i)
		frame := buildUDP(t, macA, macB, ipA, ipB, 4242, 9001, msg)
		buf := s.AllocTx()
		if buf == nil {
			t.Fatal("AllocTx returned nil")
		}
		if len(buf) != cap(buf) || len(buf) < 1514 {
			t.Fatalf("AllocTx len %d cap %d", len(buf), cap(buf))
		}
		m := copy(buf, frame)
		s.SubmitTx(buf, m)
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		got := make([]byte, 2048)
		k, from, err := c.ReadFromUDP(got)
		if err != nil {
			t.Fatalf("datagram %d: %v; stats %+v", i, err, *s.Stats())
		}
		if !bytes.Equal(got[:k], msg) || from.Port != 4242 {
			t.Fatalf("got %q from %v, want %q", got[:k], from, msg)
		}
	}
}

func ifaceMAC(t testing.TB, n *testNet, h interface{}, name string) net.HardwareAddr {
	t.Helper()
	ns := n.NsA
	if name == n.VethB {
		ns = n.NsB
	}
	out := run(t, "ip", "-n", ns, "-o", "link", "show", "dev", name)
	f := strings.Fields(out[strings.Index(out, "link/ether"):])
	mac, err := net.ParseMAC(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func buildUDP(t testing.TB, src, dst net.HardwareAddr, sip, dip [4]byte, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(sip[:]), DstIP: net.IP(dip[:])}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	udp.SetNetworkLayerForChecksum(ip)
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestKernelTrafficPasses(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if err := s.Steer(unix.IPPROTO_TCP, Mapped4(ipA), 80); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", n.NsB, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.99.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("ping with program attached: %v\n%s", err, out)
	}
	ln, err := in(t, n.hA, func() (net.Listener, error) { return net.Listen("tcp4", "10.99.0.1:9100") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			done <- err
			return
		}
		_, err = c.Write(buf)
		done <- err
	}()
	c, err := in(t, n.hB, func() (net.Conn, error) { return net.DialTimeout("tcp4", "10.99.0.1:9100", 3*time.Second) })
	if err != nil {
		t.Fatalf("kernel TCP connect with program attached: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server timed out")
	}
}

func TestBusyAndClose(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if !strings.Contains(run(t, "ip", "-n", n.NsA, "link", "show", "dev", n.VethA), "xdp") {
		t.Fatal("no xdp program shown on the interface after Open")
	}
	_, err := in(t, n.hA, func() (*Socket, error) { return Open(n.VethA, 0, Options{}) })
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second Open: got %v, want ErrBusy", err)
	}
	t.Logf("second Open: %v", err)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var nilSock *Socket
	if err := nilSock.Close(); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "ip", "-n", n.NsA, "link", "show", "dev", n.VethA); strings.Contains(out, "xdp") {
		t.Fatalf("xdp still attached after Close:\n%s", out)
	}
	// The interface is free again.
	s2 := openIn(t, n, Options{})
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

// In copy mode the kernel sends at most 32 descriptors per kick unless the socket raised its
// budget (XDP_MAX_TX_SKB_BUDGET, net/xdp/xsk.c): one Flush must send a burst larger than that,
// and empty looks at the RX ring must not make wake-up system calls (copy mode needs none).
func TestOneKickSendsABurst(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if !strings.HasSuffix(s.Mode(), "/copy") {
		t.Skipf("mode %s: the budget is a copy-mode limit", s.Mode())
	}
	if !kernelAtLeast(t, 6, 17) {
		t.Skip("XDP_MAX_TX_SKB_BUDGET came in Linux 6.17")
	}
	if b := s.Stats().TxBudget; b != defaultRingSize {
		t.Fatalf("tx budget %d, want the TX ring size %d", b, defaultRingSize)
	}
	c := udpConnB(t, n, "10.99.0.2:9002")
	macA := ifaceMAC(t, n, n.hA, n.VethA)
	macB := ifaceMAC(t, n, n.hB, n.VethB)
	const burst = 200
	for i := range burst {
		frame := buildUDP(t, macA, macB, ipA, ipB, 4243, 9002, fmt.Appendf(nil, "burst %d", i))
		buf := s.AllocTx()
		if buf == nil {
			t.Fatal("AllocTx returned nil")
		}
		s.SubmitTx(buf, copy(buf, frame))
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.TxKicks != 1 || st.TxKicksBusy != 0 || st.TxCompleted != burst {
		t.Fatalf("one Flush of %d frames: %d kicks (%d busy), %d completed", burst, st.TxKicks, st.TxKicksBusy, st.TxCompleted)
	}
	got := 0
	buf := make([]byte, 2048)
	for got < burst {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			break
		}
		got++
	}
	if got == 0 {
		t.Fatal("no datagram of the burst arrived")
	}
	t.Logf("%d of %d datagrams reached the kernel socket", got, burst)
	frames := make([][]byte, 16)
	for range 100 {
		if k := s.Receive(frames); k > 0 {
			s.ReleaseRx()
		}
	}
	if w := s.Stats().RxWakeups; w != 0 {
		t.Fatalf("%d rx wake-ups in copy mode", w)
	}
}

func kernelAtLeast(t testing.TB, major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var ma, mi int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi)
	return ma > major || ma == major && mi >= minor
}

// TestPublishLeavesTheKick: Publish makes frames visible without a system call and says a kick
// is due; nothing leaves until Kick, which another thread may make (the interposer does).
func TestPublishLeavesTheKick(t *testing.T) {
	n := newTestNet(t)
	s := openIn(t, n, Options{})
	if !strings.HasSuffix(s.Mode(), "/copy") {
		t.Skipf("mode %s: a zero-copy driver may send without a kick", s.Mode())
	}
	c := udpConnB(t, n, "10.99.0.2:9003")
	macA := ifaceMAC(t, n, n.hA, n.VethA)
	macB := ifaceMAC(t, n, n.hB, n.VethB)
	if s.Publish() {
		t.Fatal("Publish with nothing submitted says a kick is due")
	}
	const burst = 8
	for i := range burst {
		buf := s.AllocTx()
		if buf == nil {
			t.Fatal("AllocTx returned nil")
		}
		s.SubmitTx(buf, copy(buf, buildUDP(t, macA, macB, ipA, ipB, 4243, 9003, fmt.Appendf(nil, "late %d", i))))
	}
	if !s.Publish() {
		t.Fatal("Publish of submitted frames says no kick is due (copy mode always needs one)")
	}
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, _, err := c.ReadFromUDP(buf); err == nil {
		t.Fatal("a frame left before the kick")
	}
	if st := s.Stats(); st.TxKicks != 0 {
		t.Fatalf("Publish made %d kicks", st.TxKicks)
	}
	done := make(chan error)
	go func() { done <- s.Kick() }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < burst {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			break
		}
		got++
	}
	if got != burst {
		t.Fatalf("%d of %d frames arrived after the kick", got, burst)
	}
	s.Publish() // reclaims what the kick completed
	if st := s.Stats(); st.TxKicks != 1 || st.TxCompleted != burst {
		t.Fatalf("after one kick: %d kicks, %d completed, want 1 and %d", st.TxKicks, st.TxCompleted, burst)
	}
}
