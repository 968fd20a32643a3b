package stackcore

import (
	"encoding/binary"
	"testing"

	"ustack/nic/pair"
)

// The binary form is the kernel's struct tcp_info: offsets from
// include/uapi/linux/tcp.h (checked with gcc's offsetof on x86-64), the two
// 4-bit window scale fields packed low (snd) and high (rcv) in byte 6.
func TestTCPInfoLayout(t *testing.T) {
	i := TCPInfo{State: 1, CAState: 4, Retransmits: 3, Probes: 5, Backoff: 6, Options: 7, SndWscale: 1, RcvWscale: 2,
		RTO: 0x10, Unacked: 0x11, LastDataSent: 0x12, PMTU: 0x13, RcvRTT: 0x14, TotalRetrans: 0x15,
		PacingRate: 0x16, SegsOut: 0x17, NotsentBytes: 0x18, DeliveryRate: 0x19, BusyTime: 0x1a, Delivered: 0x1b,
		BytesSent: 0x1c, DSACKDups: 0x1d, RcvOOOPack: 0x1e, SndWnd: 0x1f, RcvWnd: 0x20, TotalRTO: 0x21,
		TotalRTOTime: 0x22, SndCwnd: 0x23, BytesReceived: 0x24}
	b := i.Append(nil)
	if len(b) != TCPInfoLen {
		t.Fatalf("len %d", len(b))
	}
	if b[0] != 1 || b[1] != 4 || b[2] != 3 || b[3] != 5 || b[4] != 6 || b[5] != 7 || b[6] != 0x21 {
		t.Fatalf("header bytes % x", b[:8])
	}
	u32 := map[int]uint32{8: 0x10, 24: 0x11, 44: 0x12, 60: 0x13, 80: 0x23, 92: 0x14, 100: 0x15, 136: 0x17, 144: 0x18,
		192: 0x1b, 216: 0x1d, 224: 0x1e, 228: 0x1f, 232: 0x20, 244: 0x22}
	for off, v := range u32 {
		if got := binary.LittleEndian.Uint32(b[off:]); got != v {
			t.Errorf("u32 at %d: %#x, want %#x", off, got, v)
		}
	}
	u64 := map[int]uint64{104: 0x16, 128: 0x24, 160: 0x19, 168: 0x1a, 200: 0x1c}
	for off, v := range u64 {
		if got := binary.LittleEndian.Uint64(b[off:]); got != v {
			t.Errorf("u64 at %d: %#x, want %#x", off, got, v)
		}
	}
	if got := binary.LittleEndian.Uint16(b[240:]); got != 0x21 {
		t.Errorf("total_rto %#x", got)
	}
}

// TCP_INFO from the live connection state (state, rtt, rttvar,
// rto, snd_cwnd, ssthresh, retransmits, total_retrans, unacked, ...), in
// Linux's units.
func TestTCPInfoFromConnection(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	n.transfer(c, s, pattern(100000, 1), false, 10*Second)
	n.now += 2 * Second
	i := c.TCPInfo(n.now)
	if i.State != 1 || i.CAState != CAOpen || i.Options != TCPIOptTimestamps|TCPIOptSACK|TCPIOptWscale ||
		i.SndWscale != 7 || i.RcvWscale != 7 {
		t.Fatalf("state/options %+v", i)
	}
	if i.SndMSS != 1448 || i.AdvMSS != 1460 || i.PMTU != 1500 || i.RTO != uint32(rtoMin) || i.ATO != uint32(atoMin) ||
		i.SndSsthresh != 0x7fffffff || i.SndCwnd <= initialCwndSegs || i.Unacked != 0 || i.TotalRetrans != 0 {
		t.Fatalf("metrics %+v", i)
	}
	if i.BytesAcked != 100000 || i.BytesSent != 100000 || i.LastDataSent < 2000 || i.LastAckRecv < 2000 ||
		i.DataSegsOut < 100000/1448 || i.SegsIn == 0 || i.SndWnd == 0 {
		t.Fatalf("counters %+v", i)
	}
	if si := s.TCPInfo(n.now); si.BytesReceived != 100000 || si.RcvMSS != 1448 || si.DataSegsIn != i.DataSegsOut ||
		si.RcvWnd == 0 {
		t.Fatalf("receiver %+v", si)
	}
	// The peer vanishes: retransmission timeouts show up.
	n.a.end.Hook = func(uint64, []byte) bool { return true }
	c.Write(make([]byte, 3000))
	n.settle()
	if i := c.TCPInfo(n.now); i.Unacked != 3 || i.NotsentBytes != 0 {
		t.Fatalf("in flight: unacked %d notsent %d", i.Unacked, i.NotsentBytes)
	}
	// First a tail loss probe (RFC 8985 7, after 2*SRTT + 2ms), which
	// restarts the retransmission timer; then a timeout, one probe in
	// the loss state (tlp.go), and the second timeout.
	pto := 2*c.srtt + ptoMin
	n.runUntil(pto+rtoMin+2*rtoMin+Millisecond, func() bool { return false })
	i = c.TCPInfo(n.now)
	if i.CAState != CALoss || i.Retransmits != 2 || i.Backoff != 2 || i.TotalRetrans != 4 || i.TotalRTO != 2 ||
		i.RTO != uint32(4*rtoMin) || i.SndCwnd != 1 || i.SndSsthresh == 0x7fffffff {
		t.Fatalf("after 2 RTOs %+v", i)
	}
	buf := make([]byte, 0, TCPInfoLen)
	if a := testing.AllocsPerRun(100, func() { buf = c.AppendTCPInfo(buf[:0], n.now) }); a != 0 {
		t.Fatalf("AppendTCPInfo allocates %v", a)
	}
	if buf[1] != CALoss || binary.LittleEndian.Uint32(buf[100:]) != 4 {
		t.Fatal("binary form differs from TCPInfo")
	}
}
