// Interop under faults: unmodified socat under LD_PRELOAD in
// namespace A against the kernel in namespace B, through the fault relay of
// tests/faults, each case in both directions, byte-identical, and the same
// transfer kernel-to-kernel in the same topology for comparison. Goodput of
// both is printed as a table; the comparison is a measurement, not an
// assertion.
//
// Environment:
//
//	USTACK_INTEROP=full   the whole matrix (64 MB per direction);
//	                      default: a reduced matrix (the cases marked reduced)
//	                      at 8 MB that finishes in a few minutes;
//	                      USTACK_INTEROP=off (or -short) skips it.
//	USTACK_INTEROP_MB=N   size of each transfer in MiB (default 64 full, 8 reduced).
//	USTACK_INTEROP_CASES=a,b  run only these cases (names as in the table;
//	                      "-v6" names the IPv6 twin of a case).
//	USTACK_INTEROP_SEED=N seed of the relay (default: random, logged).
//	USTACK_INTEROP_PCAP=DIR  capture each transfer's headers on B's interface
//	                      (tcpdump) into DIR/<test name>.pcap.
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ustack/tests/faults"
	"ustack/tests/topo"
)

type interopCase struct {
	name    string
	opts    faults.Options
	reduced bool // also in the default (reduced) matrix
	alsoV6  bool // the case has an IPv6 twin, "<name>-v6"
	ipv6    bool // the transfers go between A's and B's IPv6 addresses
}

// Faults apply to both directions of the wire (data and ACKs), as on a real
// path; the delay case therefore has an RTT of about 100 ms. The loss, reorder
// and routed cases also run over IPv6 (their "-v6" twins, in the reduced matrix
// when the IPv4 case is).
func interopCases() []interopCase {
	sym := faults.Symmetric
	cases := []interopCase{
		{name: "loss1", opts: sym(faults.Fault{Loss: 0.01}), reduced: true, alsoV6: true},
		{name: "loss5", opts: sym(faults.Fault{Loss: 0.05}), alsoV6: true},
		{name: "loss20", opts: sym(faults.Fault{Loss: 0.20}), alsoV6: true},
		{name: "reorder25", opts: sym(faults.Fault{Reorder: 0.25}), reduced: true, alsoV6: true},
		{name: "dup5", opts: sym(faults.Fault{Duplicate: 0.05}), reduced: true},
		{name: "corrupt1", opts: sym(faults.Fault{Corrupt: 0.01}), reduced: true},
		{name: "delay50ms", opts: sym(faults.Fault{Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond}), reduced: true},
		{name: "10mbit", opts: faults.Options{RateKbit: 10000}},
		{name: "routed", opts: faults.Options{Routed: true}, reduced: true, alsoV6: true},
	}
	for _, c := range cases {
		if c.alsoV6 {
			c.name, c.ipv6 = c.name+"-v6", true
			cases = append(cases, c)
		}
	}
	return cases
}

// socatAddrs are socat's listening address on port and its connecting address to dst:port,
// IPv4 or IPv6 (TCP-LISTEN listens on IPv4 only).
func socatAddrs(ipv6 bool, dst string, port int) (listen, connect string) {
	if ipv6 {
		return fmt.Sprintf("TCP6-LISTEN:%d,reuseaddr", port), fmt.Sprintf("TCP6:[%s]:%d", dst, port)
	}
	return fmt.Sprintf("TCP-LISTEN:%d,reuseaddr", port), fmt.Sprintf("TCP:%s:%d", dst, port)
}

// dst is the address of the receiver of a transfer of the case: B's (aSends) or A's.
func (c interopCase) dst(tp *topo.Topo, aSends bool) string {
	switch {
	case aSends && c.ipv6:
		return tp.AddrB6
	case aSends:
		return tp.AddrB
	case c.ipv6:
		return tp.AddrA6
	}
	return tp.AddrA
}

// interopConfig reads the environment (see the file comment).
func interopConfig(t *testing.T) (cases []interopCase, size int64, seed uint64, stall time.Duration) {
	mode := os.Getenv("USTACK_INTEROP")
	if mode == "off" || mode == "0" {
		t.Skip("USTACK_INTEROP=off")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	full := mode == "full"
	sizeMB, stall := 8, 15*time.Second
	if full {
		sizeMB, stall = 64, 60*time.Second
	}
	if s := os.Getenv("USTACK_INTEROP_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("USTACK_INTEROP_MB=%q: want a positive number of MiB", s)
		}
		sizeMB = n
	}
	if s := os.Getenv("USTACK_INTEROP_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("USTACK_INTEROP_SEED=%q: %v", s, err)
		}
		seed = n
	}
	var only []string
	if s := os.Getenv("USTACK_INTEROP_CASES"); s != "" {
		only = strings.Split(s, ",")
	}
	for _, c := range interopCases() {
		if only != nil {
			if slices.Contains(only, c.name) {
				cases = append(cases, c)
			}
		} else if full || c.reduced {
			cases = append(cases, c)
		}
	}
	if len(cases) == 0 {
		t.Fatalf("USTACK_INTEROP_CASES=%q matches no case", os.Getenv("USTACK_INTEROP_CASES"))
	}
	return cases, int64(sizeMB) * mb, seed, stall
}

// setupFaults is setup (helpers_test.go) over a fault topology.
func setupFaults(t *testing.T, o faults.Options) (*env, *faults.Topo) {
	t.Helper()
	if err := faults.Available(); err != nil {
		t.Skipf("SKIP interop: %v", err)
	}
	root := repoRoot(t)
	e := &env{t: t, lib: filepath.Join(root, libRel), onloadctl: filepath.Join(root, onloadctlRel)}
	if l := os.Getenv("USTACK_LIB"); l != "" {
		e.lib = l
	}
	for _, p := range []string{e.lib, e.onloadctl} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("SKIP interop: %s missing: run `make build` first", p)
		}
	}
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("SKIP interop: socat not installed: run `make deps`")
	}
	dir, err := os.MkdirTemp("/dev/shm", "ustack-test-stats-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.statsDir = dir
	// the kernel in A carries on the connections ustack moves to it at exit, and the
	// relay forwards its frames only without TSO and partial checksums
	o.OffloadsOffA = true
	ft := faults.New(t, o)
	e.tp = ft.Topo
	return e, ft
}

// xferResult is one transfer's outcome, for the table.
type xferResult struct {
	ok      bool
	mbps    float64 // goodput, MiB/s
	retrans uint64  // segments the data sender retransmitted
	note    string  // why it failed
}

func (r *xferResult) cell() string {
	if r == nil {
		return "-"
	}
	if !r.ok {
		return "FAIL"
	}
	return fmt.Sprintf("%.2f", r.mbps)
}

type interopRow struct {
	name, dir      string
	ustack, kernel *xferResult
}

// Each case in both directions, ustack against the kernel and then
// kernel-to-kernel, through the fault relay.
func TestInterop(t *testing.T) {
	cases, size, seed, stall := interopConfig(t)
	if err := faults.Available(); err != nil {
		t.Skipf("SKIP interop: %v", err)
	}
	in := filepath.Join(dataDir(t), "in")
	sum := randomFile(t, filepath.Dir(in), "in", size)
	t.Logf("interop: %d cases, %d MiB per transfer", len(cases), size/mb)
	var rows []*interopRow
	port := 7200
	for _, c := range cases {
		up, down := &interopRow{name: c.name, dir: "A sends"}, &interopRow{name: c.name, dir: "A receives"}
		rows = append(rows, up, down)
		t.Run(c.name, func(t *testing.T) {
			o := c.opts
			o.Seed = seed
			e, ft := setupFaults(t, o)
			x := &interopXfer{e: e, ft: ft, c: c, in: in, sum: sum, size: size, stall: stall}
			for _, s := range []struct {
				row    *interopRow
				aSends bool
			}{{up, true}, {down, false}} {
				t.Run("ustack/"+strings.ReplaceAll(s.row.dir, " ", "_"), func(t *testing.T) {
					port++
					s.row.ustack = x.run(t, s.aSends, true, port)
				})
			}
			for _, s := range []struct {
				row    *interopRow
				aSends bool
			}{{up, true}, {down, false}} {
				t.Run("kernel/"+strings.ReplaceAll(s.row.dir, " ", "_"), func(t *testing.T) {
					port++
					s.row.kernel = x.run(t, s.aSends, false, port)
				})
			}
			if st, err := ft.Stats(); err == nil {
				t.Logf("relay counters over the four transfers:\n%s", st)
			}
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "goodput MiB/s, %d MiB per transfer (retransmitted segments of the data sender in brackets)\n", size/mb)
	fmt.Fprintf(&b, "%-12s %-11s %16s %16s %7s\n", "case", "direction", "ustack", "kernel", "ratio")
	for _, r := range rows {
		ratio := "-"
		if r.ustack != nil && r.kernel != nil && r.ustack.ok && r.kernel.ok && r.kernel.mbps > 0 {
			ratio = fmt.Sprintf("%.2f", r.ustack.mbps/r.kernel.mbps)
		}
		fmt.Fprintf(&b, "%-12s %-11s %16s %16s %7s\n", r.name, r.dir, withRetrans(r.ustack), withRetrans(r.kernel), ratio)
	}
	for _, r := range rows {
		if r.ustack != nil && !r.ustack.ok {
			fmt.Fprintf(&b, "ustack %s %s: %s\n", r.name, r.dir, r.ustack.note)
		}
		if r.kernel != nil && !r.kernel.ok {
			fmt.Fprintf(&b, "kernel %s %s: %s\n", r.name, r.dir, r.kernel.note)
		}
	}
	t.Logf("\n%s", b.String())
}

func withRetrans(r *xferResult) string {
	if r == nil || !r.ok {
		return r.cell()
	}
	return fmt.Sprintf("%s (%d)", r.cell(), r.retrans)
}

// interopXfer runs the transfers of one case.
type interopXfer struct {
	e    *env
	ft   *faults.Topo
	c    interopCase
	in   string // the file sent
	sum  string // its sha256
	size int64
	// A transfer that makes no progress for this long has hung: 15 s in
	// the reduced matrix (at most 1 % loss: the kernel never backs off
	// that far), 60 s in the full one (20 % loss both ways).
	stall time.Duration
}

// interopCC makes the sender in A, kernel or ustack, use CUBIC
// (TCP_CONGESTION = 13 at level IPPROTO_TCP = 6): ustack's default and
// Debian's. The machine's default may differ (this VM's is BBR, which does
// not back off on loss), and a namespace may not choose another one; a
// socket of a privileged process may. The comparison is then of stacks.
// The kernel peer in B keeps the machine's default, the same in both runs.
const interopCC = ",setsockopt-string=6:13:cubic"

// Below this goodput (plus 30 s) a transfer is given up, which bounds the
// run; the kernel moves 8 MiB in well under a second in every case but the
// 10 Mbit/s bottleneck.
const interopMinRate = 64 << 10 // bytes per second

// run sends the file from A to B (aSends) or from B to A with socat, with
// ustack in A when accel, else the kernel on both sides; it reports failures
// on t and returns the result for the table.
func (x *interopXfer) run(t *testing.T, aSends, accel bool, port int) *xferResult {
	ec := *x.e
	ec.t = t // e's helpers fail the test running them
	e, tp := &ec, x.ft.Topo
	res := &xferResult{}
	fail := func(format string, args ...any) *xferResult {
		t.Helper()
		res.note = fmt.Sprintf(format, args...)
		if accel {
			t.Error(res.note)
		} else {
			// The kernel is the reference, not under test: its failure
			// (CUBIC under 20 % loss both ways cannot keep the pace) is
			// a figure in the table.
			t.Log("kernel baseline: " + res.note)
		}
		return res
	}
	recvNS, sendNS := tp.NSB, tp.NSA
	if !aSends {
		recvNS, sendNS = tp.NSA, tp.NSB
	}
	listen, addr := socatAddrs(x.c.ipv6, x.c.dst(tp, aSends), port)
	var recvEnv, sendEnv []string
	if accel {
		if aSends {
			sendEnv = e.accel()
		} else {
			recvEnv = e.accel()
		}
	}
	out := filepath.Join(dataDir(t), "out")
	retrans0 := snmpTCP(t, sendNS, "RetransSegs")
	kin0 := e.kernelInSegs(tp.NSA)
	if dir := os.Getenv("USTACK_INTEROP_PCAP"); dir != "" {
		stop, err := capture(tp, dir, t.Name(), port)
		if err != nil {
			t.Logf("no capture: %v", err)
		} else {
			defer stop()
		}
	}
	srv, err := tp.StartServer(recvNS, recvEnv, port, serverWait, "socat", "-u", listen, "OPEN:"+out+",creat,trunc")
	if err != nil {
		return fail("receiver: %v", err)
	}
	defer srv.Stop()
	start := time.Now()
	if aSends {
		addr += interopCC
	}
	snd, err := tp.Start(sendNS, sendEnv, "socat", "-u", "OPEN:"+x.in, addr)
	if err != nil {
		return fail("sender: %v", err)
	}
	defer snd.Stop()
	// Wait for the receiver to see EOF, bounded by progress and by a floor
	// on the goodput.
	if msg := x.waitReceiver(srv, out, start); msg != "" {
		return fail("%s; %s", msg, x.diagnose(t, srv, snd, aSends, accel))
	}
	elapsed := time.Since(start)
	rr := srv.Wait(time.Second)
	sr := snd.Wait(30 * time.Second)
	kin1 := e.kernelInSegs(tp.NSA)
	if rr.Err != nil {
		return fail("receiver: %v\n%s\n%s", rr.Err, srv.Output(), snd.Output())
	}
	if sr.Err != nil {
		return fail("sender: %v\n%s\n%s", sr.Err, srv.Output(), snd.Output())
	}
	if s := fileSHA(t, out); s != x.sum {
		fi, _ := os.Stat(out)
		if fi.Size() < x.size {
			return fail("receiver got EOF after %d of %d bytes (sha256 %s): the sender's FIN came without the data before it; %s",
				fi.Size(), x.size, s, x.diagnose(t, srv, snd, aSends, accel))
		}
		return fail("received %d bytes with sha256 %s, want %d bytes %s", fi.Size(), s, x.size, x.sum)
	}
	res.mbps = float64(x.size) / mb / elapsed.Seconds()
	res.retrans = snmpTCP(t, sendNS, "RetransSegs") - retrans0
	stack := "kernel"
	if accel {
		stack = "ustack"
		pid := srv.Pid
		if aSends {
			pid = snd.Pid
		}
		c := e.stats(t, pid)
		e.logStats(t, "ustack socat", c)
		t.Logf("ustack: retrans %d (fast %d, timeouts %d), ooo queued %d dropped %d, bad checksum %d, challenge acks %d",
			c["tcp.retrans_segs"], c["tcp.fast_retrans"], c["tcp.timeouts"], c["tcp.ooo_queued"], c["tcp.ooo_dropped"],
			c["drop.bad_checksum"], c["tcp.challenge_acks"])
		if aSends {
			res.retrans = c["tcp.retrans_segs"]
			if c["xsk.tx_bytes"]+c["shim.bytes_moved"] < uint64(x.size) {
				return fail("xsk.tx_bytes %d + shim.bytes_moved %d < %d: the bytes did not leave through ustack (or its exit move)", c["xsk.tx_bytes"], c["shim.bytes_moved"], x.size)
			}
		} else if c["xsk.rx_bytes"]+c["shim.bytes_moved"] < uint64(x.size) {
			return fail("xsk.rx_bytes %d + shim.bytes_moved %d < %d: the bytes did not arrive through ustack (or its exit move)", c["xsk.rx_bytes"], c["shim.bytes_moved"], x.size)
		}
		checkUserPath(t, c, x.size, kin0, kin1)
		if t.Failed() {
			res.note = "the transfer did not take the user-space path"
			return res
		}
	}
	res.ok = true
	t.Logf("%s, A %s: %d MiB in %v: %.2f MiB/s, %d segments retransmitted", stack,
		map[bool]string{true: "sends", false: "receives"}[aSends], x.size/mb, elapsed.Round(time.Millisecond), res.mbps, res.retrans)
	return res
}

// capture starts tcpdump on B's interface for the transfer on port and
// returns the function that stops it.
func capture(tp *topo.Topo, dir, name string, port int) (stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "-", " ", "_").Replace(name)+".pcap")
	p, err := tp.Start(tp.NSB, nil, "tcpdump", "-i", tp.IfB, "-s", "128", "-U", "-w", path, "tcp", "port", strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(string(p.Stderr()), "listening on"); {
		if p.Exited() || time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("tcpdump did not start: %s", p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() { p.Stop() }, nil
}

// diagnose describes a transfer that hangs: who still runs, the kernel's
// view of the connection, ustack's counters, the relay's counters.
func (x *interopXfer) diagnose(t *testing.T, srv, snd *topo.Proc, aSends, accel bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "receiver exited %v, sender exited %v\n", srv.Exited(), snd.Exited())
	kernNS := x.ft.NSB
	if !accel {
		kernNS = x.ft.NSA
	}
	if r := topo.Run(kernNS, nil, 5*time.Second, "ss", "-tinoH"); r.Err == nil {
		fmt.Fprintf(&b, "ss -tino in %s:\n%s", kernNS, r.Stdout)
	}
	if accel {
		pid := srv.Pid
		if aSends {
			pid = snd.Pid
		}
		out, _ := exec.Command(x.e.onloadctl, "stats", "--pid", strconv.Itoa(pid), "--dir", x.e.statsDir).CombinedOutput()
		fmt.Fprintf(&b, "onloadctl stats --pid %d:\n%s\n", pid, out)
	}
	if st, err := x.ft.Stats(); err == nil {
		b.WriteString(st.String())
	}
	fmt.Fprintf(&b, "%s\n%s", srv.Output(), snd.Output())
	return b.String()
}

// snmpTCP returns one Tcp counter of /proc/net/snmp in namespace ns.
func snmpTCP(t *testing.T, ns, field string) uint64 {
	t.Helper()
	r := topo.Run(ns, nil, 10*time.Second, "cat", "/proc/net/snmp")
	if r.Err != nil {
		t.Fatalf("reading snmp in %s: %s", ns, r)
	}
	var header []string
	for line := range strings.Lines(string(r.Stdout)) {
		fs := strings.Fields(line)
		if len(fs) == 0 || fs[0] != "Tcp:" {
			continue
		}
		if header == nil {
			header = fs
			continue
		}
		if i := slices.Index(header, field); i > 0 && i < len(fs) {
			v, _ := strconv.ParseUint(fs[i], 10, 64)
			return v
		}
	}
	t.Fatalf("no Tcp %s in /proc/net/snmp of %s", field, ns)
	return 0
}

// waitReceiver waits for the receiving socat to exit (EOF), bounded by progress (x.stall
// without the output file growing) and by a floor on the goodput; it says why it gave up, or
// "" when the receiver exited.
func (x *interopXfer) waitReceiver(srv *topo.Proc, out string, start time.Time) string {
	limit := 30*time.Second + time.Duration(x.size/interopMinRate)*time.Second
	var got int64
	lastGrowth := start
	for !srv.Exited() {
		time.Sleep(20 * time.Millisecond)
		if fi, err := os.Stat(out); err == nil && fi.Size() != got {
			got, lastGrowth = fi.Size(), time.Now()
		}
		if since := time.Since(lastGrowth); since > x.stall {
			return fmt.Sprintf("stalled: no progress for %v at %d of %d bytes", since.Round(time.Second), got, x.size)
		}
		if time.Since(start) > limit {
			return fmt.Sprintf("too slow: %d of %d bytes after %v", got, x.size, limit)
		}
	}
	return ""
}
