// Application tests (1-6 below, each with its figures):
// unmodified Debian programs under LD_PRELOAD=build/libustack.so in namespace
// A, against kernel peers in namespace B. Each Test runs its workload twice,
// on the kernel (no LD_PRELOAD; this run must pass, it proves the test) and
// under ustack, and checks:
//   - the data (sha256 of downloads, values read back, echoes byte for byte,
//     every request answered);
//   - ustack's counters (`onloadctl stats --json --pid N`), and the kernel's
//     Tcp/Udp counters of /proc/net/snmp in namespace A, which must grow by
//     less than 1 % of what ustack carried: the traffic took the user-space
//     path.
//
// Each prints "FIGURE <what>: kernel X, ustack Y (ratio)" lines (t.Logf):
// requests/s, throughput or latency of the same workload on
// both stacks, from one run. No thresholds on speed.
//
//	make deps build && go test -tags apps -v -run TestApp ./tests/ -count=1 -timeout 30m
//	USTACK_APPS_SECONDS=10 go test -tags apps ...  # 10 s per iperf3/sockperf/wrk run
//
// Programs listen on 0.0.0.0 (or connect to an IPv4 literal) because ustack
// accelerates AF_INET only; iperf3 gets -4 since it otherwise opens an AF_INET6
// socket, which stays on the kernel. Helper scripts (python3, standard library
// only) are in tests/apps/.
package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ustack/tests/topo"
)

// appSeconds is the duration of the timed runs (iperf3, sockperf, wrk):
// USTACK_APPS_SECONDS, else def.
func appSeconds(def int) int {
	if s := os.Getenv("USTACK_APPS_SECONDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return def
}

// Default durations: wrk runs 10 s; iperf3 and sockperf (16 and 8 runs) 3 s to keep the
// suite short. USTACK_APPS_SECONDS sets all three.
var (
	iperfSecs    = appSeconds(3)
	sockperfSecs = appSeconds(3)
	wrkSecs      = appSeconds(10)
)

func appScript(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(repoRoot(t), "tests", "apps", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// stackMode is one of the two runs of a workload.
type stackMode struct {
	name  string   // "kernel" or "ustack"
	env   []string // environment of the program(s) in A
	accel bool
}

func modes(e *env) []stackMode {
	return []stackMode{{"kernel", nil, false}, {"ustack", e.accel(), true}}
}

// bothStacks runs fn as subtest "kernel" and then "ustack", and logs the
// figures each returned (name -> value, in unit) side by side.
func bothStacks(t *testing.T, e *env, unit string, fn func(t *testing.T, m stackMode) map[string]float64) {
	t.Helper()
	res := map[string]map[string]float64{}
	for _, m := range modes(e) {
		t.Run(m.name, func(t *testing.T) {
			res[m.name] = fn(t, m)
		})
	}
	var names []string
	for _, r := range res {
		for n := range r {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	for _, n := range names {
		k, kok := res["kernel"][n]
		u, uok := res["ustack"][n]
		ks, us, ratio := "failed", "failed", ""
		if kok {
			ks = strings.TrimSpace(fmt.Sprintf("%.*f %s", prec(k), k, unit))
		}
		if uok {
			us = strings.TrimSpace(fmt.Sprintf("%.*f %s", prec(u), u, unit))
		}
		if kok && uok && k != 0 {
			ratio = fmt.Sprintf(" (ustack/kernel %.2fx)", u/k)
		}
		t.Logf("FIGURE %s %s: kernel %s, ustack %s%s", t.Name(), n, ks, us, ratio)
	}
}

func prec(v float64) int {
	switch a := math.Abs(v); {
	case a >= 100:
		return 0
	case a >= 1:
		return 2
	default:
		return 4
	}
}

// snmpStart is snmp at the start of a window that counts the kernel's share of the traffic in
// ns: it first waits (at most 3 s) until the kernel has no connection in ns that is closing. A
// program under ustack hands its closing connections to the kernel as it exits, and their last
// segments belong to that program's window, not to the next one's.
func snmpStart(t *testing.T, ns string) map[string]uint64 {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		r := topo.Run(ns, nil, 10*time.Second, "ss", "-Htan", "state", "fin-wait-1", "state", "fin-wait-2",
			"state", "closing", "state", "last-ack")
		if r.Err != nil {
			t.Fatalf("ss in %s: %s", ns, r)
		}
		if len(bytes.TrimSpace(r.Stdout)) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return snmp(t, ns)
}

// snmp returns the counters of /proc/net/snmp in namespace ns, as
// "Tcp.InSegs", "Udp.InDatagrams", ...
func snmp(t *testing.T, ns string) map[string]uint64 {
	t.Helper()
	r := topo.Run(ns, nil, 10*time.Second, "cat", "/proc/net/snmp")
	if r.Err != nil {
		t.Fatalf("reading /proc/net/snmp in %s: %s", ns, r)
	}
	m := map[string]uint64{}
	var header []string
	for line := range strings.Lines(string(r.Stdout)) {
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		if header == nil || header[0] != fs[0] {
			header = fs
			continue
		}
		for i := 1; i < len(fs) && i < len(header); i++ {
			if v, err := strconv.ParseUint(fs[i], 10, 64); err == nil {
				m[strings.TrimSuffix(fs[0], ":")+"."+header[i]] = v
			}
		}
		header = nil
	}
	if _, ok := m["Tcp.InSegs"]; !ok {
		t.Fatalf("no Tcp InSegs in /proc/net/snmp of %s", ns)
	}
	return m
}

func grew(k0, k1 map[string]uint64, names ...string) uint64 {
	var n uint64
	for _, s := range names {
		n += k1[s] - k0[s]
	}
	return n
}

// checkTCPPath: ustack counted at least minSegs TCP segments, and the kernel's
// Tcp InSegs+OutSegs in A grew by less than 1 % of the segments ustack carried
// (k0, k1: snapshots of A's snmp before and after the run). diag is added to
// failure messages (the program's stderr).
func checkTCPPath(t *testing.T, what string, c map[string]uint64, minSegs uint64, k0, k1 map[string]uint64, diag string) {
	t.Helper()
	segs := c["tcp.segs_in"] + c["tcp.segs_out"]
	if segs == 0 || segs < minSegs {
		t.Errorf("%s: ustack counted %d TCP segments (tcp.segs_in+tcp.segs_out), want at least %d%s", what, segs, max(minSegs, 1), diagSuffix(diag))
	}
	g := grew(k0, k1, "Tcp.InSegs", "Tcp.OutSegs")
	moved := 2 * movedSegs(c) // in and out
	if segs == 0 || g*100 >= segs+moved*100 {
		t.Errorf("%s: kernel Tcp InSegs+OutSegs in namespace A grew by %d, not < 1%% of the %d segments ustack carried (+ %d for what moved to the kernel)", what, g, segs, moved)
	} else {
		t.Logf("%s: kernel Tcp InSegs+OutSegs in A grew by %d (%.3f%% of %d ustack segments)", what, g, 100*float64(g)/float64(segs), segs)
	}
}

// checkUDPPath: the same for UDP: udp.in_datagrams+udp.out_datagrams of
// ustack against the kernel's Udp InDatagrams+OutDatagrams+NoPorts+InErrors.
func checkUDPPath(t *testing.T, what string, c map[string]uint64, minDgrams uint64, k0, k1 map[string]uint64, diag string) {
	t.Helper()
	dg := c["udp.in_datagrams"] + c["udp.out_datagrams"]
	if dg == 0 || dg < minDgrams {
		t.Errorf("%s: ustack counted %d UDP datagrams (udp.in_datagrams+udp.out_datagrams), want at least %d%s", what, dg, max(minDgrams, 1), diagSuffix(diag))
	}
	g := grew(k0, k1, "Udp.InDatagrams", "Udp.OutDatagrams", "Udp.NoPorts", "Udp.InErrors")
	if dg == 0 || g*100 >= dg {
		t.Errorf("%s: kernel Udp InDatagrams+OutDatagrams+NoPorts+InErrors in namespace A grew by %d, not < 1%% of the %d datagrams ustack carried", what, g, dg)
	} else {
		t.Logf("%s: kernel Udp counters in A grew by %d (%.3f%% of %d ustack datagrams)", what, g, 100*float64(g)/float64(dg), dg)
	}
}

func diagSuffix(diag string) string {
	diag = strings.TrimSpace(diag)
	if diag == "" {
		return ""
	}
	if len(diag) > 3000 {
		diag = diag[:1500] + "\n...\n" + diag[len(diag)-1500:]
	}
	return "\nprogram stderr:\n" + diag
}

// counters returns ustack's counters of pid and logs the usual ones.
func (e *env) counters(t *testing.T, what string, pid int) map[string]uint64 {
	t.Helper()
	c := e.stats(t, pid)
	e.logStats(t, what, c)
	if c["udp.in_datagrams"]+c["udp.out_datagrams"] > 0 {
		t.Logf("%s: udp in %d out %d datagrams", what, c["udp.in_datagrams"], c["udp.out_datagrams"])
	}
	// Losses, retransmissions, resets and drops, for the failure analysis.
	var odd []string
	for name, v := range c {
		if v != 0 && (strings.HasPrefix(name, "drop.") || strings.HasPrefix(name, "tcp.retrans") ||
			strings.HasPrefix(name, "tcp.fast_retrans") || strings.HasPrefix(name, "tcp.timeouts") ||
			strings.HasPrefix(name, "tcp.rsts") || strings.HasPrefix(name, "tcp.ooo") ||
			strings.HasPrefix(name, "tcp.listen_drops") || strings.Contains(name, "error") ||
			name == "shim.panics" || name == "shim.kernel_accepts") {
			odd = append(odd, fmt.Sprintf("%s %d", name, v))
		}
	}
	if len(odd) > 0 {
		slices.Sort(odd)
		t.Logf("%s: %s", what, strings.Join(odd, ", "))
	}
	return c
}

// failDiag logs, before a ustack run fails, the counters of the ustack
// process pid (what it did before failing).
func (e *env) failDiag(t *testing.T, m stackMode, what string, pid int) {
	t.Helper()
	if m.accel && pid > 0 {
		e.counters(t, what+" (failed run)", pid)
	}
}

// atLeast reports counter name < min as an error.
func atLeast(t *testing.T, what string, c map[string]uint64, name string, min uint64) {
	t.Helper()
	if c[name] < min {
		t.Errorf("%s: %s = %d, want >= %d", what, name, c[name], min)
	}
}

// startServer starts a server in ns, waits until it listens on TCP port
// (udp: until a UDP socket is bound to port), and stops it when the test ends.
func startServer(t *testing.T, tp *topo.Topo, ns string, env []string, port int, udp bool, name string, args ...string) *topo.Proc {
	t.Helper()
	var p *topo.Proc
	var err error
	if udp {
		p, err = tp.Start(ns, env, name, args...)
		if err == nil {
			t.Cleanup(func() { p.Stop() })
			err = waitUDPBound(p, port, serverWait)
			topo.WaitSteered(ns, env, "udp", port, 3*time.Second)
		}
	} else {
		p, err = tp.StartServer(ns, env, port, serverWait, name, args...)
		if err == nil {
			t.Cleanup(func() { p.Stop() })
		}
	}
	if err != nil {
		if p != nil {
			t.Fatalf("%s: %v\n%s", name, err, p.Output())
		}
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

func waitUDPBound(p *topo.Proc, port int, timeout time.Duration) error {
	want := fmt.Sprintf(":%04X", port)
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited before binding UDP port %d", p.Name, port)
		}
		for _, table := range []string{"udp", "udp6"} {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", p.Pid, table)); err == nil {
				sc := bufio.NewScanner(strings.NewReader(string(b)))
				for sc.Scan() {
					if fs := strings.Fields(sc.Text()); len(fs) > 1 && strings.HasSuffix(fs[1], want) {
						return nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no UDP socket on port %d after %v", p.Name, port, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopServer checks that the server is still running (it did not crash under
// the workload), stops it and returns its stderr.
func stopServer(t *testing.T, p *topo.Proc) string {
	t.Helper()
	if p.Exited() {
		t.Errorf("%s exited during the workload:\n%s", p.Name, p.Output())
	}
	p.Stop()
	return string(p.Stderr())
}

// jsonLine decodes the last line of out that is a JSON object into v.
func jsonLine(out []byte, v any) error {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.HasPrefix(l, "{") {
			return json.Unmarshal([]byte(l), v)
		}
	}
	return fmt.Errorf("no JSON line in output")
}

// ---------------------------------------------------------------------------
// 1. redis

const (
	redisPort     = 6379
	redisRequests = 200000
	redisClients  = 50
	redisKeys     = 1000
)

var redisTests = []string{"SET", "GET", "LPUSH", "INCR"}

func redisServerArgs() []string {
	return []string{"--port", fmt.Sprint(redisPort), "--bind", "0.0.0.0", "--daemonize", "no",
		"--save", "", "--appendonly", "no", "--protected-mode", "no"}
}

func redisBenchArgs(host string) []string {
	return []string{"-h", host, "-p", fmt.Sprint(redisPort), "-t", "set,get,lpush,incr",
		"-n", fmt.Sprint(redisRequests), "-c", fmt.Sprint(redisClients), "-q", "--csv"}
}

// parseRedisCSV returns requests/s per test of redis-benchmark --csv.
func parseRedisCSV(t *testing.T, out []byte) map[string]float64 {
	t.Helper()
	rps := map[string]float64{}
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 2 {
			continue
		}
		name := strings.Trim(f[0], `"`)
		if v, err := strconv.ParseFloat(strings.Trim(f[1], `"`), 64); err == nil {
			rps[name+" req/s"] = v
		}
	}
	for _, n := range redisTests {
		if _, ok := rps[n+" req/s"]; !ok {
			t.Errorf("redis-benchmark: no result for %s in:\n%s", n, out)
		}
	}
	return rps
}

// checkRedisCalls: INFO commandstats of the server shows exactly
// redisRequests calls of each benchmarked command, and no failed or
// rejected call of any command (every request succeeded).
func checkRedisCalls(t *testing.T, r *topo.Result) {
	t.Helper()
	if r.Err != nil {
		t.Errorf("redis-cli INFO commandstats: %s", r)
		return
	}
	re := regexp.MustCompile(`(?m)^cmdstat_([a-z|]+):calls=(\d+),.*rejected_calls=(\d+),failed_calls=(\d+)`)
	calls := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(string(r.Stdout), -1) {
		c, _ := strconv.Atoi(m[2])
		calls[m[1]] = c
		if m[3] != "0" || m[4] != "0" {
			t.Errorf("redis %s: rejected_calls %s failed_calls %s, want 0", m[1], m[3], m[4])
		}
	}
	for _, n := range redisTests {
		if got := calls[strings.ToLower(n)]; got != redisRequests {
			t.Errorf("redis INFO commandstats: %s calls=%d, want %d\n%s", n, got, redisRequests, r.Stdout)
		}
	}
}

type respResult struct {
	OK      bool    `json:"ok"`
	Keys    int     `json:"keys"`
	Bytes   uint64  `json:"bytes"`
	SetOpsS float64 `json:"set_ops_s"`
	GetOpsS float64 `json:"get_ops_s"`
}

// respCheck runs tests/apps/resp_check.py: SET redisKeys random values, GET
// them back.
func respCheck(t *testing.T, r *topo.Result, what string) respResult {
	t.Helper()
	var res respResult
	if err := jsonLine(r.Stdout, &res); err != nil || r.Err != nil || !res.OK || res.Keys != redisKeys {
		t.Errorf("%s: RESP data check (SET/GET %d random values) failed: %v\n%s", what, redisKeys, err, r)
	} else {
		t.Logf("%s: %d keys (%d bytes) set and read back identical", what, res.Keys, res.Bytes)
	}
	return res
}

// 1. redis-server under LD_PRELOAD in A, redis-benchmark from B; then
// redis-benchmark under LD_PRELOAD in A against a kernel redis-server in B.
// Every request succeeds (benchmark exit 0, INFO commandstats: exactly n
// calls per command, none failed or rejected), and 1000 random values SET
// through a raw RESP client read back identical.
func TestAppRedis(t *testing.T) {
	e := setup(t, "redis-server", "redis-benchmark", "redis-cli")
	tp := e.tp
	resp := appScript(t, "resp_check.py")
	benchTimeout := 300 * time.Second

	t.Run("server", func(t *testing.T) {
		bothStacks(t, e, "", func(t *testing.T, m stackMode) map[string]float64 {
			srv := startServer(t, tp, tp.NSA, m.env, redisPort, false, "redis-server", redisServerArgs()...)
			k0 := snmpStart(t, tp.NSA)
			r := tp.RunB(nil, benchTimeout, "redis-benchmark", redisBenchArgs(tp.AddrA)...)
			if r.Err != nil {
				srv.Stop()
				e.failDiag(t, m, "redis-server", srv.Pid)
				t.Fatalf("redis-benchmark from B against %s redis-server: %s\n%s", m.name, r, srv.Output())
			}
			rps := parseRedisCSV(t, r.Stdout)
			checkRedisCalls(t, tp.RunB(nil, 30*time.Second, "redis-cli", "-h", tp.AddrA, "-p", fmt.Sprint(redisPort), "INFO", "commandstats"))
			d := respCheck(t, tp.RunB(nil, 60*time.Second, python, resp, tp.AddrA, fmt.Sprint(redisPort), fmt.Sprint(redisKeys)), "RESP client in B")
			k1 := snmp(t, tp.NSA)
			diag := stopServer(t, srv)
			if m.accel {
				c := e.counters(t, "redis-server", srv.Pid)
				atLeast(t, "redis-server", c, "tcp.passive_opens", redisClients)
				// No pipelining: every request arrives in a segment of its own.
				atLeast(t, "redis-server", c, "tcp.segs_in", uint64(len(redisTests)*redisRequests))
				atLeast(t, "redis-server", c, "xsk.rx_bytes", 2*d.Bytes)
				checkTCPPath(t, "redis-server", c, uint64(2*len(redisTests)*redisRequests), k0, k1, diag)
			}
			if d.SetOpsS > 0 {
				rps["resp-client pipelined SET ops/s"] = d.SetOpsS
				rps["resp-client pipelined GET ops/s"] = d.GetOpsS
			}
			return rps
		})
	})

	t.Run("client", func(t *testing.T) {
		bothStacks(t, e, "", func(t *testing.T, m stackMode) map[string]float64 {
			srv := startServer(t, tp, tp.NSB, nil, redisPort, false, "redis-server", redisServerArgs()...)
			k0 := snmpStart(t, tp.NSA)
			r := tp.RunA(m.env, benchTimeout, "redis-benchmark", redisBenchArgs(tp.AddrB)...)
			k1 := snmp(t, tp.NSA)
			if r.Err != nil {
				e.failDiag(t, m, "redis-benchmark", r.Pid)
				t.Fatalf("%s redis-benchmark in A against kernel redis-server in B: %s\n%s", m.name, r, srv.Output())
			}
			rps := parseRedisCSV(t, r.Stdout)
			checkRedisCalls(t, tp.RunB(nil, 30*time.Second, "redis-cli", "-p", fmt.Sprint(redisPort), "INFO", "commandstats"))
			if m.accel {
				c := e.counters(t, "redis-benchmark", r.Pid)
				atLeast(t, "redis-benchmark", c, "tcp.active_opens", redisClients)
				atLeast(t, "redis-benchmark", c, "tcp.segs_out", uint64(len(redisTests)*redisRequests))
				checkTCPPath(t, "redis-benchmark", c, uint64(2*len(redisTests)*redisRequests), k0, k1, string(r.Stderr))
			}
			// The data check from A, through the same stack.
			k0 = snmpStart(t, tp.NSA)
			dr := tp.RunA(m.env, 60*time.Second, python, resp, tp.AddrB, fmt.Sprint(redisPort), fmt.Sprint(redisKeys))
			k1 = snmp(t, tp.NSA)
			d := respCheck(t, dr, "RESP client in A")
			if m.accel {
				c := e.counters(t, "resp_check.py", dr.Pid)
				atLeast(t, "resp_check.py", c, "tcp.active_opens", 1)
				atLeast(t, "resp_check.py", c, "xsk.tx_bytes", d.Bytes)
				atLeast(t, "resp_check.py", c, "xsk.rx_bytes", d.Bytes)
				checkTCPPath(t, "resp_check.py", c, 2*d.Bytes/maxSegPayload, k0, k1, string(dr.Stderr))
			}
			if d.SetOpsS > 0 {
				rps["resp-client pipelined SET ops/s"] = d.SetOpsS
				rps["resp-client pipelined GET ops/s"] = d.GetOpsS
			}
			stopServer(t, srv)
			return rps
		})
	})
}

// ---------------------------------------------------------------------------
// 2. nginx

const (
	nginxPort      = 8080
	nginxBigSize   = 10 * mb
	nginxSmallSize = 4096
	wrkConns       = 64
)

// nginxSite makes a directory for nginx (its temp directories under tmp/) and its document
// root www inside it.
func nginxSite(t *testing.T) (dir, www string) {
	t.Helper()
	dir = dataDir(t)
	www = filepath.Join(dir, "www")
	for _, d := range []string{www, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, www
}

// nginxConf is nginx's configuration for one run in dir. master_process is
// off (one process that accepts and serves itself, all of it accelerated;
// tests/fork_test.go runs nginx with its master and workers). sendfile is on,
// as in Debian's own nginx.conf.
func nginxConf(dir, www, name string) string {
	return fmt.Sprintf(`master_process off;
daemon off;
worker_processes 1;
pid %[1]s/%[3]s.pid;
error_log %[1]s/%[3]s-error.log info;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    server {
        listen 0.0.0.0:%[4]d;
        root %[2]s;
    }
}
`, dir, www, name, nginxPort)
}

type wrkResult struct {
	requests                           uint64
	rps                                float64
	non2xx, connE, readE, writeE, tmoE uint64
}

func parseWrk(out []byte) (wrkResult, error) {
	var w wrkResult
	s := string(out)
	m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(s)
	r := regexp.MustCompile(`Requests/sec:\s+([\d.]+)`).FindStringSubmatch(s)
	if m == nil || r == nil {
		return w, fmt.Errorf("no request count or Requests/sec in wrk's output")
	}
	w.requests, _ = strconv.ParseUint(m[1], 10, 64)
	w.rps, _ = strconv.ParseFloat(r[1], 64)
	if m := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindStringSubmatch(s); m != nil {
		w.non2xx, _ = strconv.ParseUint(m[1], 10, 64)
	}
	if m := regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`).FindStringSubmatch(s); m != nil {
		w.connE, _ = strconv.ParseUint(m[1], 10, 64)
		w.readE, _ = strconv.ParseUint(m[2], 10, 64)
		w.writeE, _ = strconv.ParseUint(m[3], 10, 64)
		w.tmoE, _ = strconv.ParseUint(m[4], 10, 64)
	}
	return w, nil
}

// 2. nginx under LD_PRELOAD in A serving a 10 MB and a 4 KB static file:
// curl from B (sha256 of both), then wrk -c 64 on the small file (no non-2xx
// response, no socket error), then curl of the large file again.
func TestAppNginx(t *testing.T) {
	e := setup(t, "nginx", "wrk")
	tp := e.tp
	dir, www := nginxSite(t)
	bigSum := randomFile(t, www, "big", nginxBigSize)
	smallSum := randomFile(t, www, "small", nginxSmallSize)
	out := dataDir(t)

	bothStacks(t, e, "", func(t *testing.T, m stackMode) map[string]float64 {
		conf := filepath.Join(dir, m.name+".conf")
		if err := os.WriteFile(conf, []byte(nginxConf(dir, www, m.name)), 0o644); err != nil {
			t.Fatal(err)
		}
		errLog := filepath.Join(dir, m.name+"-error.log")
		srv := startServer(t, tp, tp.NSA, m.env, nginxPort, false, "nginx", "-p", dir+"/", "-c", conf, "-e", errLog)
		k0 := snmpStart(t, tp.NSA)
		curl := func(name, want string, size int64) {
			t.Helper()
			o := filepath.Join(out, m.name+"-"+name)
			r := tp.RunB(nil, 60*time.Second, "curl", "-sS", "--fail", "--max-time", "50", "-o", o, fmt.Sprintf("http://%s:%d/%s", tp.AddrA, nginxPort, name))
			if r.Err != nil {
				t.Errorf("curl /%s from B: %s", name, r)
				return
			}
			if got := fileSHA(t, o); got != want {
				st, _ := os.Stat(o)
				t.Errorf("curl /%s: sha256 %s, want %s (%d bytes, want %d)", name, got, want, st.Size(), size)
			} else {
				t.Logf("curl /%s: %d bytes, sha256 ok, %v", name, size, r.Elapsed.Round(time.Millisecond))
			}
		}
		curl("big", bigSum, nginxBigSize)
		curl("small", smallSum, nginxSmallSize)
		r := tp.RunB(nil, time.Duration(wrkSecs+60)*time.Second, "wrk", "-t", "2", "-c", fmt.Sprint(wrkConns),
			"-d", fmt.Sprintf("%ds", wrkSecs), fmt.Sprintf("http://%s:%d/small", tp.AddrA, nginxPort))
		curl("big", bigSum, nginxBigSize)
		k1 := snmp(t, tp.NSA)
		diag := stopServer(t, srv)
		if log, err := os.ReadFile(errLog); err == nil {
			if bad := regexp.MustCompile(`(?m)^.*\[(error|crit|alert|emerg)\].*$`).FindAllString(string(log), 10); len(bad) > 0 {
				t.Errorf("nginx error log has errors:\n%s", strings.Join(bad, "\n"))
			}
			diag += "\nerror log (tail):\n" + tail(string(log), 2000)
		}
		figs := map[string]float64{}
		w, err := parseWrk(r.Stdout)
		if r.Err != nil || err != nil {
			t.Errorf("wrk -c %d from B: %v %s", wrkConns, err, r)
		} else {
			t.Logf("wrk: %d requests, %.0f req/s; non-2xx %d; socket errors connect %d read %d write %d timeout %d",
				w.requests, w.rps, w.non2xx, w.connE, w.readE, w.writeE, w.tmoE)
			if w.requests == 0 || w.non2xx != 0 || w.connE+w.readE+w.writeE+w.tmoE != 0 {
				t.Errorf("wrk: %d requests, non-2xx responses %d, socket errors connect %d read %d write %d timeout %d; want > 0 requests and no errors\n%s",
					w.requests, w.non2xx, w.connE, w.readE, w.writeE, w.tmoE, r.Stdout)
			} else {
				figs[fmt.Sprintf("wrk -c %d /small req/s", wrkConns)] = w.rps
			}
		}
		if m.accel {
			c := e.counters(t, "nginx", srv.Pid)
			atLeast(t, "nginx", c, "tcp.passive_opens", wrkConns+3)
			atLeast(t, "nginx", c, "xsk.tx_bytes", 2*nginxBigSize+w.requests*nginxSmallSize)
			checkTCPPath(t, "nginx", c, 2*nginxBigSize/maxSegPayload+w.requests, k0, k1, diag)
		}
		return figs
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// ---------------------------------------------------------------------------
// 3. iperf3

const iperfPort = 5201

type iperfSum struct {
	Bytes         uint64  `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	LostPercent   float64 `json:"lost_percent"`
	LostPackets   int64   `json:"lost_packets"`
	Packets       int64   `json:"packets"`
}

type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		Sum         *iperfSum `json:"sum"` // UDP
		SumSent     iperfSum  `json:"sum_sent"`
		SumReceived iperfSum  `json:"sum_received"`
	} `json:"end"`
}

// 3. iperf3 under LD_PRELOAD as server (client in B) and as client (server in
// B), TCP and UDP, both directions (-R), USTACK_APPS_SECONDS (default 3) each.
// From iperf3's JSON: bytes received > 0, no error; for UDP the loss is
// logged. ustack's counters show the data (and the TCP control connection)
// in user space; for UDP the udp.* counters.
func TestAppIperf3(t *testing.T) {
	e := setup(t, "iperf3")
	secs := iperfSecs
	for _, role := range []string{"server", "client"} {
		for _, proto := range []string{"tcp", "udp"} {
			for _, rev := range []bool{false, true} {
				name := role + "/" + proto
				if rev {
					name += "-R"
				}
				t.Run(name, func(t *testing.T) {
					bothStacks(t, e, "Gbit/s", func(t *testing.T, m stackMode) map[string]float64 {
						return iperfRun(t, e, m, role, proto, rev, secs)
					})
				})
			}
		}
	}
}

func iperfRun(t *testing.T, e *env, m stackMode, role, proto string, rev bool, secs int) map[string]float64 {
	tp := e.tp
	// -4: iperf3 opens an AF_INET6 socket otherwise, which ustack leaves to the kernel.
	srvArgs := []string{"-s", "-1", "-4", "--forceflush", "-p", fmt.Sprint(iperfPort)} // forceflush: its messages survive a kill
	cliArgs := []string{"-4", "-p", fmt.Sprint(iperfPort), "-t", fmt.Sprint(secs), "-J"}
	if proto == "udp" {
		cliArgs = append(cliArgs, "-u", "-b", "1G")
	}
	if rev {
		cliArgs = append(cliArgs, "-R")
	}
	timeout := time.Duration(secs+60) * time.Second
	var srv *topo.Proc
	var r *topo.Result
	var k0, k1 map[string]uint64
	if role == "server" {
		srv = startServer(t, tp, tp.NSA, m.env, iperfPort, false, "iperf3", srvArgs...)
		k0 = snmpStart(t, tp.NSA)
		r = tp.RunB(nil, timeout, "iperf3", append([]string{"-c", tp.AddrA}, cliArgs...)...)
		k1 = snmp(t, tp.NSA)
	} else {
		srv = startServer(t, tp, tp.NSB, nil, iperfPort, false, "iperf3", srvArgs...)
		k0 = snmpStart(t, tp.NSA)
		r = tp.RunA(m.env, timeout, "iperf3", append([]string{"-c", tp.AddrB}, cliArgs...)...)
		k1 = snmp(t, tp.NSA)
	}
	sres := srv.Wait(15 * time.Second) // -1: the server exits after one test
	var j iperfJSON
	jerr := json.Unmarshal(r.Stdout, &j)
	if r.Err != nil || jerr != nil || j.Error != "" {
		if role == "server" {
			e.failDiag(t, m, "iperf3 server", srv.Pid)
		} else {
			e.failDiag(t, m, "iperf3 client", r.Pid)
		}
		t.Fatalf("%s iperf3 client (%s %s): json %v, error %q: %s\nserver: %s", m.name, role, proto, jerr, j.Error, r, srv.Output())
	}
	if sres.TimedOut {
		t.Errorf("iperf3 -s -1 did not exit after the test:\n%s", srv.Output())
	}
	recv := j.End.SumReceived
	t.Logf("%s: sent %d B, received %d B, %.3f Gbit/s", m.name, j.End.SumSent.Bytes, recv.Bytes, recv.BitsPerSecond/1e9)
	if recv.Bytes == 0 {
		t.Errorf("iperf3: 0 bytes received")
	}
	figs := map[string]float64{"throughput": recv.BitsPerSecond / 1e9}
	if proto == "udp" {
		if j.End.Sum == nil {
			t.Errorf("iperf3 -u: no end.sum (lost_percent) in the JSON")
		} else {
			t.Logf("%s: UDP %d packets, %d lost (%.2f%%)", m.name, j.End.Sum.Packets, j.End.Sum.LostPackets, j.End.Sum.LostPercent)
		}
	}
	if m.accel {
		pid, diag := r.Pid, string(r.Stderr)
		if role == "server" {
			pid, diag = srv.Pid, string(srv.Stderr())
		}
		what := "iperf3 " + role
		c := e.counters(t, what, pid)
		opens := uint64(1) // the control connection
		if proto == "tcp" {
			opens = 2 // control + data
		}
		if role == "server" {
			atLeast(t, what, c, "tcp.passive_opens", opens)
		} else {
			atLeast(t, what, c, "tcp.active_opens", opens)
		}
		if proto == "tcp" {
			checkTCPPath(t, what, c, recv.Bytes/maxSegPayload, k0, k1, diag)
		} else {
			// iperf3 sizes its datagrams to the MTU (at most MTU-28 bytes of payload): one packet each.
			checkUDPPath(t, what, c, recv.Bytes/1472, k0, k1, diag)
			checkTCPPath(t, what+" (control connection)", c, 1, k0, k1, diag)
		}
	}
	return figs
}

// ---------------------------------------------------------------------------
// 4. sockperf

const sockperfPort = 11111

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;]*m`)

type sockperfResult struct {
	sent, received uint64
	runtime, avgUs float64
	dropped        int64
}

func parseSockperf(out []byte) (sockperfResult, error) {
	s := ansiRE.ReplaceAllString(string(out), "")
	var r sockperfResult
	m := regexp.MustCompile(`\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)`).FindStringSubmatch(s)
	a := regexp.MustCompile(`avg-latency=\s*([\d.]+)`).FindStringSubmatch(s)
	d := regexp.MustCompile(`# dropped messages = (\d+)`).FindStringSubmatch(s)
	if m == nil || a == nil || d == nil {
		return r, fmt.Errorf("no [Valid Duration], avg-latency or dropped messages in sockperf's output")
	}
	r.runtime, _ = strconv.ParseFloat(m[1], 64)
	r.sent, _ = strconv.ParseUint(m[2], 10, 64)
	r.received, _ = strconv.ParseUint(m[3], 10, 64)
	r.avgUs, _ = strconv.ParseFloat(a[1], 64)
	r.dropped, _ = strconv.ParseInt(d[1], 10, 64)
	return r, nil
}

// 4. sockperf server under LD_PRELOAD in A with sockperf ping-pong from B, and
// the reverse (server in B on the kernel, client under LD_PRELOAD in A), TCP
// and UDP, 64-byte messages: every message answered (SentMessages ==
// ReceivedMessages, no dropped message), average latency as the figure.
func TestAppSockperf(t *testing.T) {
	e := setup(t, "sockperf")
	for _, role := range []string{"server", "client"} {
		for _, proto := range []string{"tcp", "udp"} {
			t.Run(role+"/"+proto, func(t *testing.T) {
				bothStacks(t, e, "", func(t *testing.T, m stackMode) map[string]float64 {
					return sockperfRun(t, e, m, role, proto)
				})
			})
		}
	}
}

func sockperfRun(t *testing.T, e *env, m stackMode, role, proto string) map[string]float64 {
	tp := e.tp
	var flags []string
	if proto == "tcp" {
		flags = []string{"--tcp"}
	}
	port := fmt.Sprint(sockperfPort)
	cli := func(host string) []string {
		return append([]string{"ping-pong", "-i", host, "-p", port, "-m", "64", "-t", fmt.Sprint(sockperfSecs)}, flags...)
	}
	timeout := time.Duration(sockperfSecs+60) * time.Second
	var srv *topo.Proc
	var r *topo.Result
	var k0, k1 map[string]uint64
	if role == "server" {
		srv = startServer(t, tp, tp.NSA, m.env, sockperfPort, proto == "udp", "sockperf", append([]string{"server", "-i", "0.0.0.0", "-p", port}, flags...)...)
		k0 = snmpStart(t, tp.NSA)
		r = tp.RunB(nil, timeout, "sockperf", cli(tp.AddrA)...)
		k1 = snmp(t, tp.NSA)
	} else {
		srv = startServer(t, tp, tp.NSB, nil, sockperfPort, proto == "udp", "sockperf", append([]string{"server", "-i", tp.AddrB, "-p", port}, flags...)...)
		k0 = snmpStart(t, tp.NSA)
		r = tp.RunA(m.env, timeout, "sockperf", cli(tp.AddrB)...)
		k1 = snmp(t, tp.NSA)
	}
	diag := stopServer(t, srv)
	if role == "client" {
		diag = string(r.Stderr)
	}
	sp, err := parseSockperf(r.Stdout)
	if r.Err != nil || err != nil {
		if role == "server" {
			e.failDiag(t, m, "sockperf server", srv.Pid)
		} else {
			e.failDiag(t, m, "sockperf client", r.Pid)
		}
		t.Fatalf("%s sockperf ping-pong %s (%s in A): %v %s\nserver: %s", m.name, proto, role, err, r, srv.Output())
	}
	t.Logf("%s: sent %d received %d in %.3f s, dropped %d, avg latency %.3f us", m.name, sp.sent, sp.received, sp.runtime, sp.dropped, sp.avgUs)
	if sp.sent == 0 || sp.sent != sp.received || sp.dropped != 0 {
		t.Errorf("sockperf: SentMessages %d, ReceivedMessages %d, dropped %d: not every message was answered", sp.sent, sp.received, sp.dropped)
	}
	if m.accel {
		pid, what := r.Pid, "sockperf client"
		if role == "server" {
			pid, what = srv.Pid, "sockperf server"
		}
		c := e.counters(t, what, pid)
		if proto == "tcp" {
			if role == "server" {
				atLeast(t, what, c, "tcp.passive_opens", 1)
			} else {
				atLeast(t, what, c, "tcp.active_opens", 1)
			}
			checkTCPPath(t, what, c, 2*sp.received, k0, k1, diag)
		} else {
			checkUDPPath(t, what, c, 2*sp.received, k0, k1, diag)
		}
	}
	figs := map[string]float64{"avg latency us": sp.avgUs}
	if sp.runtime > 0 {
		figs["round trips/s"] = float64(sp.received) / sp.runtime
	}
	return figs
}

// ---------------------------------------------------------------------------
// 5. memcached

const (
	memcachedPort = 11211
	memcachedKeys = 10000
	memcachedConn = 8
)

type memcacheResult struct {
	OK      bool    `json:"ok"`
	Keys    int     `json:"keys"`
	Bytes   uint64  `json:"bytes"`
	SetOpsS float64 `json:"set_ops_s"`
	GetOpsS float64 `json:"get_ops_s"`
}

// 5. memcached under LD_PRELOAD in A (4 worker threads, libevent, TCP only:
// -U 0), a python3 raw-socket client in B with 8 connections (spread over the
// worker threads) sets 10 000 keys with random binary values and flags, then
// gets them back with multi-key gets: every value and flag identical.
func TestAppMemcached(t *testing.T) {
	e := setup(t, "memcached")
	tp := e.tp
	script := appScript(t, "memcache_check.py")
	bothStacks(t, e, "ops/s", func(t *testing.T, m stackMode) map[string]float64 {
		srv := startServer(t, tp, tp.NSA, m.env, memcachedPort, false, "memcached",
			"-t", "4", "-U", "0", "-l", "0.0.0.0", "-p", fmt.Sprint(memcachedPort), "-u", "root", "-m", "256", "-c", "1024")
		k0 := snmpStart(t, tp.NSA)
		r := tp.RunB(nil, 120*time.Second, python, script, tp.AddrA, fmt.Sprint(memcachedPort), fmt.Sprint(memcachedKeys), fmt.Sprint(memcachedConn))
		k1 := snmp(t, tp.NSA)
		diag := stopServer(t, srv)
		var res memcacheResult
		if err := jsonLine(r.Stdout, &res); err != nil || r.Err != nil || !res.OK || res.Keys != memcachedKeys {
			e.failDiag(t, m, "memcached", srv.Pid)
			t.Fatalf("%s memcached: set/get of %d keys from B failed: %v %s\nserver: %s", m.name, memcachedKeys, err, r, srv.Output())
		}
		t.Logf("%s: %d keys, %d value bytes set and read back identical; set %.0f ops/s, get %.0f ops/s", m.name, res.Keys, res.Bytes, res.SetOpsS, res.GetOpsS)
		if m.accel {
			c := e.counters(t, "memcached", srv.Pid)
			atLeast(t, "memcached", c, "tcp.passive_opens", memcachedConn)
			atLeast(t, "memcached", c, "xsk.rx_bytes", res.Bytes)
			atLeast(t, "memcached", c, "xsk.tx_bytes", res.Bytes)
			checkTCPPath(t, "memcached", c, 2*res.Bytes/maxSegPayload, k0, k1, diag)
		}
		return map[string]float64{"set": res.SetOpsS, "get": res.GetOpsS}
	})
}

// ---------------------------------------------------------------------------
// 6. python3 asyncio

const (
	echoPort    = 7007
	echoClients = 200
	echoSize    = 64 << 10
)

type echoResult struct {
	OK        bool    `json:"ok"`
	Clients   int     `json:"clients"`
	Identical int     `json:"identical"`
	ElapsedS  float64 `json:"elapsed_s"`
	MBs       float64 `json:"mb_s"`
}

// 6. A python3 asyncio echo server under LD_PRELOAD in A, 200 concurrent
// asyncio clients in B each sending 64 KB of random data and reading the echo
// to EOF: every echo byte-identical. (A SIGINT to a blocked python3 recv is
// TestSIGINTInterruptsPythonRecv.)
func TestAppPythonAsyncioEcho(t *testing.T) {
	e := setup(t)
	tp := e.tp
	server, client := appScript(t, "echo_server.py"), appScript(t, "echo_client.py")
	total := uint64(echoClients * echoSize)
	bothStacks(t, e, "MB/s", func(t *testing.T, m stackMode) map[string]float64 {
		srv := startServer(t, tp, tp.NSA, m.env, echoPort, false, python, server, fmt.Sprint(echoPort))
		k0 := snmpStart(t, tp.NSA)
		r := tp.RunB(nil, 120*time.Second, python, client, tp.AddrA, fmt.Sprint(echoPort), fmt.Sprint(echoClients), fmt.Sprint(echoSize), "90")
		k1 := snmp(t, tp.NSA)
		diag := stopServer(t, srv)
		var res echoResult
		if err := jsonLine(r.Stdout, &res); err != nil || r.Err != nil || !res.OK || res.Identical != echoClients {
			e.failDiag(t, m, "asyncio echo server", srv.Pid)
			t.Fatalf("%s asyncio echo: %d concurrent clients of %d bytes: %v %s\nserver: %s", m.name, echoClients, echoSize, err, r, srv.Output())
		}
		t.Logf("%s: %d clients x %d bytes echoed identical in %.3f s (%.1f MB/s both ways)", m.name, res.Identical, echoSize, res.ElapsedS, res.MBs)
		if m.accel {
			c := e.counters(t, "asyncio echo server", srv.Pid)
			atLeast(t, "asyncio echo server", c, "tcp.passive_opens", echoClients)
			atLeast(t, "asyncio echo server", c, "xsk.rx_bytes", total)
			atLeast(t, "asyncio echo server", c, "xsk.tx_bytes", total)
			checkTCPPath(t, "asyncio echo server", c, 2*total/maxSegPayload, k0, k1, diag)
		}
		return map[string]float64{"echo both ways": res.MBs}
	})
}
