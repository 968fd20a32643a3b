// End-to-end tests of `onloadctl sockets`: the connections of programs under ustack, listed from
// the socket tables in shared memory while the programs run and while they are stopped, held
// against the kernel peer's own listing (ss in B) and against the program's own getsockopt
// (TCP_INFO).
package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ustack/tests/topo"
)

// listedSocket is an entry of onloadctl sockets --json.
type listedSocket struct {
	Pid    int    `json:"pid"`
	Fd     int    `json:"fd"`
	Proto  string `json:"proto"`
	State  string `json:"state"`
	Local  string `json:"local"`
	Remote string `json:"remote"`
	Path   string `json:"path"`
	Reason string `json:"reason"`
	TCP    *struct {
		Cwnd          uint32 `json:"cwnd"`
		Ssthresh      uint32 `json:"ssthresh"`
		SRTTUs        uint32 `json:"srtt_us"`
		RTTVarUs      uint32 `json:"rttvar_us"`
		RTOUs         uint32 `json:"rto_us"`
		BytesAcked    uint64 `json:"bytes_acked"`
		BytesReceived uint64 `json:"bytes_received"`
		SegsIn        uint32 `json:"segs_in"`
		SegsOut       uint32 `json:"segs_out"`
		TotalRetrans  uint32 `json:"total_retrans"`
	} `json:"tcp"`
}

// sockets runs onloadctl sockets --json in A with args and returns its entries; it fails the
// test if the command takes more than limit.
func (e *env) sockets(t *testing.T, limit time.Duration, args ...string) []listedSocket {
	t.Helper()
	start := time.Now()
	argv := append([]string{"sockets", "--json", "--dir", e.statsDir}, args...)
	r := topo.Run(e.tp.NSA, nil, 30*time.Second, e.onloadctl, argv...)
	if r.Err != nil {
		t.Fatalf("onloadctl %s: %s", strings.Join(argv, " "), r)
	}
	if d := time.Since(start); d > limit {
		t.Errorf("onloadctl sockets took %v (more than %v)", d, limit)
	}
	var out []listedSocket
	if err := json.Unmarshal(r.Stdout, &out); err != nil {
		t.Fatalf("onloadctl sockets --json: %v\n%s", err, r.Stdout)
	}
	return out
}

// connsOf returns the established TCP connections of pid to port.
func connsOf(list []listedSocket, pid int, port int) []listedSocket {
	var out []listedSocket
	for _, s := range list {
		if s.Pid == pid && s.Proto == "tcp" && s.State == "ESTAB" && strings.HasSuffix(s.Remote, ":"+strconv.Itoa(port)) {
			out = append(out, s)
		}
	}
	return out
}

// waitStopped waits until pid is stopped (state T in /proc/PID/stat).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil {
			if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " T") {
				return
			}
		}
	}
	t.Fatalf("pid %d did not stop", pid)
}

// peerConns returns the established connections B's kernel has on port, as "local peer" pairs.
func peerConns(t *testing.T, tp *topo.Topo, port int) map[string]bool {
	t.Helper()
	r := tp.RunB(nil, 10*time.Second, "ss", "-Htn", "state", "established", fmt.Sprintf("( sport = :%d )", port))
	if r.Err != nil {
		t.Fatalf("ss in B: %s", r)
	}
	out := map[string]bool{}
	for line := range strings.Lines(string(r.Stdout)) {
		f := strings.Fields(line)
		if len(f) >= 4 {
			out[f[2]+" "+f[3]] = true
		}
	}
	return out
}

// While curl downloads and redis-benchmark runs under ustack, onloadctl sockets lists each of
// their connections with its 4-tuple and state, as the kernel peer in B sees them (ss), with
// TCP fields that move with the transfer; with both programs stopped (SIGSTOP) it still lists
// them, at once, and the listing holds still.
func TestSocketsDuringTransfers(t *testing.T) {
	e := setup(t, "redis-server", "redis-benchmark")
	tp := e.tp
	dir := dataDir(t)
	src := randomFile(t, dir, "big", 40*mb)
	startServer(t, tp, tp.NSB, nil, 8000, false, python, "-m", "http.server", "--bind", "0.0.0.0", "--directory", dir, "8000")
	startServer(t, tp, tp.NSB, nil, redisPort, false, "redis-server", redisServerArgs()...)

	dst := filepath.Join(t.TempDir(), "out")
	// 4 MB/s: the download lasts about 10 s, longer than the listings
	curl, err := tp.Start(tp.NSA, e.accel(), "curl", "-sS", "--fail", "--limit-rate", "4M", "-o", dst,
		fmt.Sprintf("http://%s:8000/big", tp.AddrB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(curl.Pid, syscall.SIGCONT); curl.Stop() })
	bench, err := tp.Start(tp.NSA, e.accel(), "redis-benchmark", "-h", tp.AddrB, "-p", strconv.Itoa(redisPort),
		"-t", "set,get", "-n", "100000000", "-c", "4", "-q")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(bench.Pid, syscall.SIGCONT); bench.Stop() })
	e.waitCounter(t, curl.Pid, "eth.rx_frames", curl)
	e.waitCounter(t, bench.Pid, "eth.rx_frames", bench)

	// both programs' connections show up within a publication or two; curl's once its response
	// is coming (a publication between its request and the first bytes of the answer lists a
	// connection that has received nothing yet)
	var list []listedSocket
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		list = e.sockets(t, 5*time.Second)
		cc := connsOf(list, curl.Pid, 8000)
		if len(cc) == 1 && cc[0].TCP != nil && cc[0].TCP.BytesReceived > 0 && len(connsOf(list, bench.Pid, redisPort)) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl's connection and redis-benchmark's 4 not all listed: %+v", list)
		}
	}
	check := func(what string, list []listedSocket) (curlConn listedSocket) {
		t.Helper()
		for _, c := range []struct {
			pid, port, n int
		}{{curl.Pid, 8000, 1}, {bench.Pid, redisPort, 4}} {
			conns := connsOf(list, c.pid, c.port)
			if len(conns) != c.n {
				t.Fatalf("%s: pid %d has %d connections to port %d listed, want %d: %+v", what, c.pid, len(conns), c.port, c.n, list)
			}
			peer := peerConns(t, tp, c.port)
			for _, s := range conns {
				// B's kernel: local B:port, peer A:lport
				if !peer[s.Remote+" "+s.Local] {
					t.Errorf("%s: %s -> %s (pid %d) is not a connection B's kernel has: %v", what, s.Local, s.Remote, c.pid, peer)
				}
				if !strings.HasPrefix(s.Local, tp.AddrA+":") || s.Path != "ustack" || s.Fd < 0 || s.TCP == nil {
					t.Errorf("%s: %+v: want a local address of A, path ustack, an fd and tcp_info", what, s)
					continue
				}
				if s.TCP.Cwnd == 0 || s.TCP.SRTTUs == 0 || s.TCP.RTOUs == 0 || s.TCP.SegsIn == 0 || s.TCP.SegsOut == 0 ||
					s.TCP.BytesAcked == 0 || s.TCP.BytesReceived == 0 {
					t.Errorf("%s: %s -> %s: tcp_info incomplete: %+v", what, s.Local, s.Remote, *s.TCP)
				}
			}
			if c.pid == curl.Pid {
				curlConn = conns[0]
			}
		}
		return curlConn
	}
	c0 := check("running", list)
	// curl's rate limit reads in bursts: a few megabytes, then a pause of a second or two with the
	// receive buffer full
	var c1 listedSocket
	for deadline := time.Now().Add(6 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c1 = check("running, later", e.sockets(t, 5*time.Second))
		if c1.TCP.BytesReceived > c0.TCP.BytesReceived && c1.TCP.SegsIn > c0.TCP.SegsIn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl's connection did not move in 6 s: bytes_received %d -> %d, segs_in %d -> %d",
				c0.TCP.BytesReceived, c1.TCP.BytesReceived, c0.TCP.SegsIn, c1.TCP.SegsIn)
		}
	}
	if curl.Exited() {
		t.Fatalf("curl ended before the listings: they were not made during the transfer\n%s", curl.Output())
	}

	// stopped: the stacks cannot answer, the tables still can
	for _, p := range []*topo.Proc{curl, bench} {
		syscall.Kill(p.Pid, syscall.SIGSTOP)
		waitStopped(t, p.Pid)
	}
	time.Sleep(200 * time.Millisecond)
	s0 := e.sockets(t, 2*time.Second)
	check("stopped", s0)
	time.Sleep(500 * time.Millisecond)
	s1 := e.sockets(t, 2*time.Second)
	for _, pid := range []int{curl.Pid, bench.Pid} {
		a, b := fmt.Sprint(pick(s0, pid)), fmt.Sprint(pick(s1, pid))
		if a != b {
			t.Errorf("pid %d stopped, yet its listing changed:\n%s\n%s", pid, a, b)
		}
	}
	t.Logf("curl while stopped: %+v", *connsOf(s1, curl.Pid, 8000)[0].TCP)

	for _, p := range []*topo.Proc{curl, bench} {
		syscall.Kill(p.Pid, syscall.SIGCONT)
	}
	if r := curl.Wait(60 * time.Second); r.Err != nil {
		t.Fatalf("curl: %s", r)
	}
	if got, want := fileSHA(t, dst), src; got != want {
		t.Errorf("downloaded sha256 %s, want %s", got, want)
	}
	bench.Stop()
}

// pick returns pid's entries with their TCP fields, for comparison.
func pick(list []listedSocket, pid int) []string {
	var out []string
	for _, s := range list {
		if s.Pid == pid {
			line := fmt.Sprintf("%s %s %s %s %d", s.Proto, s.State, s.Local, s.Remote, s.Fd)
			if s.TCP != nil {
				line += fmt.Sprintf(" %+v", *s.TCP)
			}
			out = append(out, line)
		}
	}
	return out
}

// A program that reads its connection's getsockopt(TCP_INFO) and then stops itself: onloadctl
// sockets shows the connection with the same cwnd, ssthresh, srtt, rttvar, rto, bytes and
// segments as the program read from the stack (tests/c/tcpinfo_stop.c).
func TestSocketsAgreeWithTCPInfo(t *testing.T) {
	e := setup(t, "socat")
	tp := e.tp
	bin := filepath.Join(repoRoot(t), "build", "tests", "tcpinfo_stop")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("SKIP: %s missing: run `make build`", bin)
	}
	startServer(t, tp, tp.NSB, nil, 9000, false, "socat", "TCP-LISTEN:9000,reuseaddr,fork", "EXEC:cat")
	p, err := tp.Start(tp.NSA, e.accel(), bin, tp.AddrB, "9000", strconv.Itoa(4*mb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(p.Pid, syscall.SIGCONT); p.Stop() })
	var line string
	for deadline := time.Now().Add(30 * time.Second); line == ""; time.Sleep(20 * time.Millisecond) {
		for l := range strings.Lines(p.Output()) {
			if strings.HasPrefix(l, "tcpinfo ") {
				line = strings.TrimSpace(l)
			}
		}
		if line == "" && (p.Exited() || time.Now().After(deadline)) {
			t.Fatalf("tcpinfo_stop printed no tcpinfo line:\n%s", p.Output())
		}
	}
	waitStopped(t, p.Pid)
	own := map[string]uint64{}
	for _, kv := range strings.Fields(line)[1:] {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("tcpinfo line %q: %v", line, err)
		}
		own[k] = n
	}
	var conn *listedSocket
	list := e.sockets(t, 2*time.Second, "--pid", strconv.Itoa(p.Pid), "sport", "=", fmt.Sprintf(":%d", own["lport"]))
	for i := range list {
		if list[i].Remote == fmt.Sprintf("%s:9000", tp.AddrB) {
			conn = &list[i]
		}
	}
	if conn == nil || conn.TCP == nil {
		t.Fatalf("the stopped program's connection (port %d) is not listed: %+v", own["lport"], list)
	}
	got := map[string]uint64{
		"cwnd": uint64(conn.TCP.Cwnd), "ssthresh": uint64(conn.TCP.Ssthresh), "rtt": uint64(conn.TCP.SRTTUs),
		"rttvar": uint64(conn.TCP.RTTVarUs), "rto": uint64(conn.TCP.RTOUs), "bytes_acked": conn.TCP.BytesAcked,
		"bytes_received": conn.TCP.BytesReceived, "segs_in": uint64(conn.TCP.SegsIn),
		"segs_out": uint64(conn.TCP.SegsOut), "total_retrans": uint64(conn.TCP.TotalRetrans),
	}
	for k, v := range got {
		if own[k] != v {
			t.Errorf("%s: onloadctl sockets says %d, the program's TCP_INFO said %d", k, v, own[k])
		}
	}
	if conn.State != "ESTAB" || own["state"] != 1 || own["bytes_acked"] < uint64(4*mb) || own["bytes_received"] != uint64(4*mb) {
		t.Errorf("state %s (TCP_INFO %d), bytes_acked %d, bytes_received %d: want ESTAB, all 4 MiB each way",
			conn.State, own["state"], own["bytes_acked"], own["bytes_received"])
	}
	t.Logf("TCP_INFO: %s", line)
	syscall.Kill(p.Pid, syscall.SIGCONT)
	if r := p.Wait(20 * time.Second); r.Err != nil || !strings.Contains(string(r.Stdout), "tcpinfo_stop ok") {
		t.Fatalf("tcpinfo_stop: %s", r)
	}
	// the stack carried it: its counters saw the 4 MiB each way
	c := e.stats(t, p.Pid)
	atLeast(t, "tcpinfo_stop", c, "xsk.rx_bytes", uint64(4*mb))
	atLeast(t, "tcpinfo_stop", c, "xsk.tx_bytes", uint64(4*mb))
}

// decisionsScript, under ustack with USTACK_LOG=debug: a connection to B (accelerated), an
// AF_INET6 socket (accelerated too), a raw socket (never the stack's), a listener bound to
// loopback and a connection to it (handed to the kernel: address, route); it prints "ready" and
// waits for stdin to close.
const decisionsScript = `
import socket, sys
b = socket.create_connection((sys.argv[1], 9000))
b.sendall(b"x" * 1000)
six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
lo = socket.socket()
lo.bind(("127.0.0.1", 0))
lo.listen()
c = socket.create_connection(lo.getsockname())
print("ready", lo.getsockname()[1], flush=True)
sys.stdin.read()
`

// USTACK_LOG=debug says, per socket, what ustack decided and why; onloadctl sockets shows the
// sockets handed to the kernel with the reason.
func TestDebugDecisions(t *testing.T) {
	e := setup(t, "socat")
	tp := e.tp
	startServer(t, tp, tp.NSB, nil, 9000, false, "socat", "TCP-LISTEN:9000,reuseaddr,fork", "EXEC:cat")
	script := filepath.Join(t.TempDir(), "decisions.py")
	if err := os.WriteFile(script, []byte(decisionsScript), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := tp.Start(tp.NSA, e.accel("USTACK_LOG=debug"), "sh", "-c",
		fmt.Sprintf("sleep 30 | exec %s %s %s", python, script, tp.AddrB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	var port string
	for deadline := time.Now().Add(20 * time.Second); port == ""; time.Sleep(20 * time.Millisecond) {
		if f := strings.Fields(p.Output()); len(f) > 0 {
			for i, w := range f {
				if w == "ready" && i+1 < len(f) {
					port = f[i+1]
				}
			}
		}
		if port == "" && (p.Exited() || time.Now().After(deadline)) {
			t.Fatalf("the script did not get ready:\n%s", p.Output())
		}
	}
	var reasons map[string]string
	pid := 0 // python's, behind sh's pipe
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		reasons = map[string]string{}
		for _, s := range e.sockets(t, 5*time.Second) {
			if s.Path == "kernel" && strings.HasPrefix(s.Local, "127.0.0.1:") {
				reasons[s.State] = s.Reason
				pid = s.Pid
			}
		}
		if reasons["LISTEN"] == "address" && reasons["ESTAB"] == "route" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("onloadctl sockets: the kernel's listener and connection on loopback with their reasons: %v", reasons)
		}
	}
	log := string(p.Stderr())
	for _, want := range []string{
		"socket set up in the kernel taken into the stack",
		`why="neither TCP nor UDP"`,
		"ipv6=true",
		"socket handed to the kernel",
		"reason=address",
		"reason=route",
		"socket accelerated",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("USTACK_LOG=debug does not say %q:\n%s", want, log)
		}
	}
	c := e.stats(t, pid)
	atLeast(t, "decisions.py", c, "shim.passed_to_kernel", 2)
	atLeast(t, "decisions.py", c, "xsk.tx_bytes", 1000)
}
