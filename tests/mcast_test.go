package tests

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ustack/tests/topo"
)

// Multicast receivers under ustack (shim/mcast.go, stackcore/mcast.go): a kernel sender in B
// sends numbered datagrams to a group; receivers in A join it through IP_ADD_MEMBERSHIP.

const (
	mcastGroup = "239.77.1.2"
	mcastPort  = 5400
	mcastCount = 100000
)

// mcastSender sends count numbered datagrams (4-byte sequence number, 60 bytes of padding) from
// B to the group, TTL (hop limit) 1, paced at rate datagrams a second in bursts of 50: through
// IfB's address (IP_MULTICAST_IF) for an IPv4 group, its index (IPV6_MULTICAST_IF) for an IPv6 one.
const mcastSender = `
import socket, struct, sys, time
group, port, ifname, ifaddr, count, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
if ":" in group:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(ifname))
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
pad = b"x" * 60
t0 = time.monotonic()
for i in range(count):
    s.sendto(struct.pack(">I", i) + pad, (group, port))
    if i % 50 == 49:
        due = t0 + (i + 1) / rate
        while time.monotonic() < due:
            time.sleep(0.0002)
print("sent", count, "in %.2fs" % (time.monotonic() - t0))
`

// igmpSniffer prints every IGMP packet IfB sees, as hex of the IP payload, one per line.
const igmpSniffer = `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
while True:
    f = s.recv(2048)
    ip = f[14:]
    if len(ip) < 20 or ip[9] != 2:
        continue
    ihl = (ip[0] & 15) * 4
    print(ip[ihl:].hex(), flush=True)
`

// igmpRecords returns, for the group, the IGMP record types seen: IGMPv3 reports (0x22) give
// their records' types (4: CHANGE_TO_EXCLUDE, a join; 3: CHANGE_TO_INCLUDE, a leave with no
// sources), IGMPv2 reports (0x16) "join" and leaves (0x17) "leave".
func igmpRecords(out string, group net.IP) (joins, leaves int) {
	g := group.To4()
	for line := range strings.Lines(out) {
		b, err := hex.DecodeString(strings.TrimSpace(line))
		if err != nil || len(b) < 8 {
			continue
		}
		switch b[0] {
		case 0x16:
			if net.IP(b[4:8]).Equal(g) {
				joins++
			}
		case 0x17:
			if net.IP(b[4:8]).Equal(g) {
				leaves++
			}
		case 0x22:
			n := int(b[6])<<8 | int(b[7])
			r := b[8:]
			for range n {
				if len(r) < 8 {
					break
				}
				typ, aux, ns := r[0], int(r[1]), int(r[2])<<8|int(r[3])
				if net.IP(r[4:8]).Equal(g) {
					switch typ {
					case 2, 4: // MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE
						joins++
					case 3: // CHANGE_TO_INCLUDE
						if ns == 0 {
							leaves++
						}
					}
				}
				skip := 8 + 4*ns + 4*aux
				if skip > len(r) {
					break
				}
				r = r[skip:]
			}
		}
	}
	return joins, leaves
}

// maddrHas reports whether `ip maddr show dev IF` in ns lists the group.
func maddrHas(t *testing.T, ns, ifname, group string) bool {
	t.Helper()
	r := topo.Run(ns, nil, 10*time.Second, "ip", "maddr", "show", "dev", ifname)
	if r.Err != nil {
		t.Fatalf("ip maddr: %s", r)
	}
	for line := range strings.Lines(string(r.Stdout)) {
		if fs := strings.Fields(line); len(fs) >= 2 && (fs[0] == "inet" || fs[0] == "inet6") && fs[1] == group {
			return true
		}
	}
	return false
}

// waitLine waits until p printed line (a whole line of its stdout).
func waitLine(t *testing.T, p *topo.Proc, line string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Output(), line+"\n") {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("%s did not print %q: exited %v\n%s", p.Name, line, p.Exited(), p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Three receivers in one process under ustack each get all 100,000 datagrams in order through
// the user-space stack: the kernel's Udp InDatagrams in A stays flat, ustack counts 3 x 100,000
// deliveries. The membership is the kernel's too: A's interface lists the group while joined
// and not after the drops, and B sees the IGMP join and leave.
func TestMulticastReceivers(t *testing.T) {
	e := setup(t, "gcc")
	tp := e.tp
	recv := filepath.Join(repoRoot(t), "build/tests/mcast_recv")
	if _, err := os.Stat(recv); err != nil {
		t.Skipf("SKIP: %s missing: run `make`", recv)
	}
	sniff, err := tp.Start(tp.NSB, nil, python, "-c", igmpSniffer, tp.IfB)
	if err != nil {
		t.Fatal(err)
	}
	defer sniff.Stop()
	waitLine(t, sniff, "ready", 10*time.Second)

	k0 := snmp(t, tp.NSA)
	p, err := tp.Start(tp.NSA, e.accel(), recv, mcastGroup, fmt.Sprint(mcastPort), tp.IfA, tp.AddrA, "3", fmt.Sprint(mcastCount))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	waitLine(t, p, "joined", serverWait)
	if !maddrHas(t, tp.NSA, tp.IfA, mcastGroup) {
		t.Errorf("ip maddr show dev %s does not list %s while the receivers are members", tp.IfA, mcastGroup)
	}
	r := tp.RunB(nil, 120*time.Second, python, "-c", mcastSender, mcastGroup, fmt.Sprint(mcastPort), tp.IfB, tp.AddrB, fmt.Sprint(mcastCount), "50000")
	if r.Err != nil {
		t.Fatalf("sender: %s", r)
	}
	t.Logf("sender: %s", strings.TrimSpace(string(r.Stdout)))
	waitLine(t, p, "left", 60*time.Second)
	time.Sleep(200 * time.Millisecond)
	if maddrHas(t, tp.NSA, tp.IfA, mcastGroup) {
		t.Errorf("ip maddr show dev %s still lists %s after every receiver left", tp.IfA, mcastGroup)
	}
	c := e.stats(t, p.Pid)
	res := p.Wait(10 * time.Second)
	k1 := snmp(t, tp.NSA)
	t.Logf("receiver:\n%s%s", res.Stdout, res.Stderr)
	if res.Code != 0 {
		t.Errorf("receiver exited %d: not every socket got every datagram in order", res.Code)
	}
	t.Logf("ustack: udp.in_datagrams %d udp.in_multicast %d udp.ignored_multi %d rcvbuf_errors %d shim.mcast_joins %d passed_to_kernel %d",
		c["udp.in_datagrams"], c["udp.in_multicast"], c["udp.ignored_multi"], c["udp.rcvbuf_errors"], c["shim.mcast_joins"], c["shim.passed_to_kernel"])
	if c["udp.in_datagrams"] != 3*mcastCount || c["udp.in_multicast"] != mcastCount {
		t.Errorf("ustack delivered %d datagrams (%d to the group), want %d (%d)", c["udp.in_datagrams"], c["udp.in_multicast"], 3*mcastCount, mcastCount)
	}
	if c["shim.mcast_joins"] != 3 || c["shim.passed_to_kernel"] != 0 {
		t.Errorf("shim.mcast_joins %d shim.passed_to_kernel %d, want 3 and 0", c["shim.mcast_joins"], c["shim.passed_to_kernel"])
	}
	if g := grew(k0, k1, "Udp.InDatagrams", "Udp.NoPorts", "Udp.InErrors"); g*100 >= mcastCount {
		t.Errorf("kernel Udp InDatagrams+NoPorts+InErrors in A grew by %d: the datagrams went through the kernel", g)
	} else {
		t.Logf("kernel Udp counters in A grew by %d", g)
	}
	time.Sleep(300 * time.Millisecond)
	joins, leaves := igmpRecords(sniff.Output(), net.ParseIP(mcastGroup))
	t.Logf("IGMP seen in B for %s: %d join records, %d leave records", mcastGroup, joins, leaves)
	if joins == 0 || leaves == 0 {
		t.Errorf("B saw %d IGMP joins and %d leaves of %s, want both", joins, leaves, mcastGroup)
	}
}

// A second process on the same group and port: the keeper steers the group's port to the first
// member process, which relays every frame to the other (shim/relay.go): every receiver of both
// processes gets all 100,000 datagrams in order through the user-space stacks, the kernel's Udp
// InDatagrams in A stays flat.
func TestMulticastTwoProcesses(t *testing.T) {
	e := setup(t, "gcc")
	tp := e.tp
	recv := filepath.Join(repoRoot(t), "build/tests/mcast_recv")
	if _, err := os.Stat(recv); err != nil {
		t.Skipf("SKIP: %s missing: run `make`", recv)
	}
	count, rate := mcastCount, 20000 // 50,000 a second overloads the 2-core machine with two receiving processes, the kernel too
	env := e.accel()
	if os.Getenv("MCAST_KERNEL") != "" {
		env = nil // the same on the kernel alone: a baseline
	}
	k0 := snmp(t, tp.NSA)
	defer func() {
		k1 := snmp(t, tp.NSA)
		t.Logf("kernel in A: Udp InDatagrams +%d RcvbufErrors +%d InErrors +%d", grew(k0, k1, "Udp.InDatagrams"),
			grew(k0, k1, "Udp.RcvbufErrors"), grew(k0, k1, "Udp.InErrors"))
	}()
	var procs []*topo.Proc
	for _, n := range []string{"3", "1"} {
		p, err := tp.Start(tp.NSA, env, recv, mcastGroup, fmt.Sprint(mcastPort), tp.IfA, tp.AddrA, n, fmt.Sprint(count))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		waitLine(t, p, "joined", serverWait)
		procs = append(procs, p)
	}
	r := tp.RunB(nil, 120*time.Second, python, "-c", mcastSender, mcastGroup, fmt.Sprint(mcastPort), tp.IfB, tp.AddrB, fmt.Sprint(count), fmt.Sprint(rate))
	if r.Err != nil {
		t.Fatalf("sender: %s", r)
	}
	for i, p := range procs {
		var c map[string]uint64
		if env != nil {
			c = e.stats(t, p.Pid)
		}
		res := p.Wait(30 * time.Second)
		t.Logf("process %d: udp.in_datagrams %d, shim.mcast_relayed %d relay_drops %d relay_in %d relay_refused %d:\n%s%s", i,
			c["udp.in_datagrams"], c["shim.mcast_relayed"], c["shim.mcast_relay_drops"], c["shim.mcast_relay_in"],
			c["shim.mcast_relay_refused"], res.Stdout, res.Stderr)
		if res.Code != 0 {
			t.Errorf("process %d: not every socket got every datagram in order (exit %d)", i, res.Code)
		}
		if env == nil {
			continue
		}
		socks := []uint64{3, 1}[i]
		if c["udp.in_datagrams"] != socks*uint64(count) {
			t.Errorf("process %d: the stack delivered %d datagrams, want %d", i, c["udp.in_datagrams"], socks*uint64(count))
		}
		if i == 0 && c["shim.mcast_relayed"] != uint64(count) || i == 1 && c["shim.mcast_relay_in"] != uint64(count) {
			t.Errorf("process %d: relayed %d, relayed in %d, want %d", i, c["shim.mcast_relayed"], c["shim.mcast_relay_in"], count)
		}
	}
	if env != nil {
		if g := grew(k0, snmp(t, tp.NSA), "Udp.InDatagrams", "Udp.NoPorts", "Udp.InErrors"); g*100 >= uint64(count) {
			t.Errorf("kernel Udp InDatagrams+NoPorts+InErrors in A grew by %d: the datagrams went through the kernel", g)
		}
	}
}

// mldSniffer prints the MLDv2 reports (ICMPv6 143, RFC 3810 5.2) IfB sees, behind their
// Hop-by-Hop header: "record TYPE GROUP" per multicast address record.
const mldSniffer = `
import socket, sys, ipaddress
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
while True:
    ip = s.recv(2048)[14:]
    if len(ip) < 48:
        continue
    nh, off = ip[6], 40
    if nh == 0:
        nh, off = ip[40], 40 + (ip[41] + 1) * 8
    if nh != 58 or len(ip) < off + 8 or ip[off] != 143:
        continue
    n, r = int.from_bytes(ip[off+6:off+8], "big"), off + 8
    for _ in range(n):
        typ, aux, ns = ip[r], ip[r+1], int.from_bytes(ip[r+2:r+4], "big")
        print("record", typ, ipaddress.IPv6Address(ip[r+4:r+20]), flush=True)
        r += 20 + 16*ns + 4*aux
`

// IPv6 multicast receivers: three sockets of one process and one of another on an IPv6 group,
// joined with IPV6_JOIN_GROUP: every receiver gets every one of 100,000 datagrams in order
// through the stacks (the second process through the first's relay), the kernel's Udp6 counters
// in A stay flat, and the kernel speaks MLD for them: B sees the join (RFC 3810 record 4,
// CHANGE_TO_EXCLUDE) and the leave (3, CHANGE_TO_INCLUDE), A's ip maddr lists the group while
// joined.
func TestMulticastIPv6(t *testing.T) {
	e := setup(t, "gcc")
	tp := e.tp
	recv := filepath.Join(repoRoot(t), "build/tests/mcast_recv")
	if _, err := os.Stat(recv); err != nil {
		t.Skipf("SKIP: %s missing: run `make`", recv)
	}
	const group = "ff15::77:1"
	count, rate := mcastCount, 20000 // as TestMulticastTwoProcesses: two receiving processes on 2 cores
	sniff, err := tp.Start(tp.NSB, nil, python, "-c", mldSniffer, tp.IfB)
	if err != nil {
		t.Fatal(err)
	}
	defer sniff.Stop()
	waitLine(t, sniff, "ready", 10*time.Second)
	k0 := snmp6(t, tp.NSA)
	var procs []*topo.Proc
	for _, n := range []string{"3", "1"} {
		p, err := tp.Start(tp.NSA, e.accel(), recv, group, fmt.Sprint(mcastPort), tp.IfA, "-", n, fmt.Sprint(count))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		waitLine(t, p, "joined", serverWait)
		procs = append(procs, p)
	}
	if !maddrHas(t, tp.NSA, tp.IfA, group) {
		t.Errorf("ip maddr show dev %s does not list %s while the receivers are members", tp.IfA, group)
	}
	r := tp.RunB(nil, 120*time.Second, python, "-c", mcastSender, group, fmt.Sprint(mcastPort), tp.IfB, "-", fmt.Sprint(count), fmt.Sprint(rate))
	if r.Err != nil {
		t.Fatalf("sender: %s", r)
	}
	for i, p := range procs {
		waitLine(t, p, "left", 60*time.Second)
		c := e.stats(t, p.Pid)
		res := p.Wait(30 * time.Second)
		t.Logf("process %d: udp.in_datagrams %d udp.in_multicast %d shim.mcast_joins %d mcast_relayed %d relay_in %d passed_to_kernel %d:\n%s%s",
			i, c["udp.in_datagrams"], c["udp.in_multicast"], c["shim.mcast_joins"], c["shim.mcast_relayed"], c["shim.mcast_relay_in"],
			c["shim.passed_to_kernel"], res.Stdout, res.Stderr)
		if res.Code != 0 {
			t.Errorf("process %d: not every socket got every datagram in order (exit %d)", i, res.Code)
		}
		socks := []uint64{3, 1}[i]
		if c["udp.in_datagrams"] != socks*uint64(count) || c["shim.mcast_joins"] != socks || c["shim.passed_to_kernel"] != 0 {
			t.Errorf("process %d: the stack delivered %d datagrams after %d joins (%d handed to the kernel), want %d, %d and 0",
				i, c["udp.in_datagrams"], c["shim.mcast_joins"], c["shim.passed_to_kernel"], socks*uint64(count), socks)
		}
		if i == 0 && c["shim.mcast_relayed"] != uint64(count) || i == 1 && c["shim.mcast_relay_in"] != uint64(count) {
			t.Errorf("process %d: relayed %d, relayed in %d, want %d", i, c["shim.mcast_relayed"], c["shim.mcast_relay_in"], count)
		}
	}
	k1 := snmp6(t, tp.NSA)
	if g := grew(k0, k1, "Udp6InDatagrams", "Udp6NoPorts", "Udp6InErrors"); g*100 >= uint64(count) {
		t.Errorf("kernel Udp6 InDatagrams+NoPorts+InErrors in A grew by %d: the datagrams went through the kernel", g)
	} else {
		t.Logf("kernel Udp6 counters in A grew by %d", g)
	}
	if maddrHas(t, tp.NSA, tp.IfA, group) {
		t.Errorf("ip maddr show dev %s still lists %s after every receiver left", tp.IfA, group)
	}
	time.Sleep(300 * time.Millisecond)
	var joins, leaves int
	for line := range strings.Lines(sniff.Output()) {
		switch strings.TrimSpace(line) {
		case "record 4 " + group:
			joins++
		case "record 3 " + group:
			leaves++
		}
	}
	t.Logf("MLD seen in B for %s: %d join records, %d leave records", group, joins, leaves)
	if joins == 0 || leaves == 0 {
		t.Errorf("B saw %d MLD joins and %d leaves of %s, want both", joins, leaves, group)
	}
}

// mcastLoopSender joins the group on a socket of its own (the local member), sends count
// numbered datagrams to the group from another socket, and counts what its member got back
// through IP_MULTICAST_LOOP: "looped N in order" or what went wrong.
const mcastLoopSender = `
import socket, struct, sys, time
group, port, ifaddr, count, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
m.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
m.bind(("", port))
m.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton(ifaddr))
m.setblocking(False)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 3)
pad = b"y" * 60
t0 = time.monotonic()
looped, bad, nxt = 0, 0, 0
def drain():
    global looped, bad, nxt
    while True:
        try:
            d = m.recv(2048)
        except BlockingIOError:
            return
        seq = struct.unpack(">I", d[:4])[0]
        if seq != nxt:
            bad += 1
        nxt = seq + 1
        looped += 1
for i in range(count):
    s.sendto(struct.pack(">I", i) + pad, (group, port))
    if i % 50 == 49:
        drain()
        due = t0 + (i + 1) / rate
        while time.monotonic() < due:
            time.sleep(0.0002)
time.sleep(0.2)
drain()
print("sent", count, "looped", looped, "out of order", bad, flush=True)
`

// mcastKernelRecv is a kernel receiver in B: it joins the group, prints "joined", and counts
// the numbered datagrams until none came for 3 s: "got N in order" or what went wrong; the
// TTL of the first is printed too.
const mcastKernelRecv = `
import socket, struct, sys
group, port, ifaddr, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
r.bind((group, port))
r.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton(ifaddr))
r.setsockopt(socket.IPPROTO_IP, 12, 1)  # IP_RECVTTL
r.settimeout(3)
print("joined", flush=True)
got, bad, nxt, ttl = 0, 0, 0, -1
while got < count:
    try:
        d, anc, _, src = r.recvmsg(2048, 64)
    except socket.timeout:
        break
    for lvl, typ, data in anc:
        if typ == 2 and ttl < 0:  # IP_TTL
            ttl = struct.unpack("i", data[:4])[0]
    seq = struct.unpack(">I", d[:4])[0]
    if seq != nxt:
        bad += 1
    nxt = seq + 1
    got += 1
print("got", got, "out of order", bad, "ttl", ttl, flush=True)
`

// A sender under ustack: its datagrams to the group leave through the stack (to the group's
// Ethernet address, with its IP_MULTICAST_TTL) and reach a kernel member in B, all and in
// order; a member socket in the sender's own process gets each one back (IP_MULTICAST_LOOP).
func TestMulticastSender(t *testing.T) {
	e := setup(t)
	tp := e.tp
	const count, rate = 20000, 20000
	rcv, err := tp.Start(tp.NSB, nil, python, "-c", mcastKernelRecv, mcastGroup, fmt.Sprint(mcastPort), tp.AddrB, fmt.Sprint(count))
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	waitLine(t, rcv, "joined", 10*time.Second)
	k0 := snmp(t, tp.NSA)
	snd, err := tp.Start(tp.NSA, e.accel(), python, "-c", mcastLoopSender, mcastGroup, fmt.Sprint(mcastPort), tp.AddrA, fmt.Sprint(count), fmt.Sprint(rate))
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Stop()
	waitLine(t, snd, fmt.Sprintf("sent %d looped %d out of order 0", count, count), 60*time.Second)
	c := e.stats(t, snd.Pid)
	k1 := snmp(t, tp.NSA)
	res := rcv.Wait(30 * time.Second)
	t.Logf("sender: %sB's receiver: %s%s", snd.Output(), res.Stdout, res.Stderr)
	if !strings.Contains(string(res.Stdout), fmt.Sprintf("got %d out of order 0 ttl 3", count)) {
		t.Errorf("B's kernel member did not get every datagram in order with TTL 3")
	}
	t.Logf("ustack: udp.out_datagrams %d udp.out_multicast %d udp.in_datagrams %d; kernel in A: Udp OutDatagrams +%d",
		c["udp.out_datagrams"], c["udp.out_multicast"], c["udp.in_datagrams"], grew(k0, k1, "Udp.OutDatagrams"))
	if c["udp.out_multicast"] != count || c["udp.in_datagrams"] != count {
		t.Errorf("ustack sent %d datagrams to the group and looped %d, want %d each", c["udp.out_multicast"], c["udp.in_datagrams"], count)
	}
	if g := grew(k0, k1, "Udp.OutDatagrams", "Udp.InDatagrams"); g*100 >= count {
		t.Errorf("kernel Udp OutDatagrams+InDatagrams in A grew by %d: the datagrams went through the kernel", g)
	}
}
