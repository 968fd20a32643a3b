// IPv6 end-to-end tests: unmodified programs under LD_PRELOAD=build/libustack.so in namespace A
// talk over IPv6 (A's and B's unique local addresses, tests/topo) to kernel peers in namespace
// B, and dual-stack servers in A (listening on "::") serve IPv4 and IPv6 clients at once. Each
// workload runs twice, as the application tests do (apps_test.go): on the kernel (no
// LD_PRELOAD; this run proves the test: the data checks must pass) and under ustack, where
// the same data checks must pass and the traffic must have taken the user-space path:
//   - ustack's counters (`onloadctl stats --json --pid N`) carried the bytes (xsk.*, tcp.*,
//     udp.*);
//   - the kernel in namespace A stayed out of it: its Tcp counters (/proc/net/snmp, which count
//     TCP over IPv4 and IPv6 alike: there is no Tcp6 MIB) and its Ip6 and Udp6 counters
//     (/proc/net/snmp6) grew by less than 1 % of what ustack carried;
//   - for the dual-stack servers, `onloadctl sockets` lists their IPv4 and their IPv6
//     connections on the user-space path while the clients run.
//
// The IPv6 semantics of the socket calls are in tests/c/sem_inet6.c (TestSemantics), the fault
// matrix over IPv6 in the "-v6" cases of TestInterop.
package tests

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"ustack/tests/topo"
)

// ipv6Size is what each bulk transfer moves.
const ipv6Size = 50 * mb

// url6 is the http URL of path on [ip]:port.
func url6(ip string, port int, path string) string {
	return fmt.Sprintf("http://%s/%s", netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)), path)
}

// eachStack runs fn as subtest "kernel" and then "ustack".
func eachStack(t *testing.T, e *env, fn func(t *testing.T, m stackMode)) {
	t.Helper()
	for _, m := range modes(e) {
		t.Run(m.name, func(t *testing.T) { fn(t, m) })
	}
}

// snmp6 returns the counters of /proc/net/snmp6 in namespace ns ("Ip6InReceives",
// "Udp6InDatagrams", ...).
func snmp6(t *testing.T, ns string) map[string]uint64 {
	t.Helper()
	r := topo.Run(ns, nil, 10*time.Second, "cat", "/proc/net/snmp6")
	if r.Err != nil {
		t.Fatalf("reading /proc/net/snmp6 in %s: %s", ns, r)
	}
	m := map[string]uint64{}
	for line := range strings.Lines(string(r.Stdout)) {
		if f := strings.Fields(line); len(f) == 2 {
			if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				m[f[0]] = v
			}
		}
	}
	if _, ok := m["Ip6InReceives"]; !ok {
		t.Fatalf("no Ip6InReceives in /proc/net/snmp6 of %s (IPv6 off?)", ns)
	}
	return m
}

// kernelCounters is a snapshot of the kernel's counters in a namespace: /proc/net/snmp (its
// Tcp counters cover TCP over IPv6 too) and /proc/net/snmp6.
type kernelCounters struct{ snmp, snmp6 map[string]uint64 }

// kernelStart is the snapshot at the start of a window (snmpStart: after the closing
// connections of the run before have gone).
func kernelStart(t *testing.T, ns string) kernelCounters {
	t.Helper()
	return kernelCounters{snmpStart(t, ns), snmp6(t, ns)}
}

func kernelNow(t *testing.T, ns string) kernelCounters {
	t.Helper()
	return kernelCounters{snmp(t, ns), snmp6(t, ns)}
}

// checkIPv6TCPPath: the TCP transfer took the user-space path: ustack counted at least minSegs
// segments, and the kernel in A grew its Tcp InSegs+OutSegs and its Ip6InReceives+Ip6OutRequests
// by less than 1 % of them (k0, k1: A's counters around the run; a few neighbour discovery
// packets are the kernel's share, as ARP is for IPv4).
func checkIPv6TCPPath(t *testing.T, what string, c map[string]uint64, minSegs uint64, k0, k1 kernelCounters, diag string) {
	t.Helper()
	checkTCPPath(t, what, c, minSegs, k0.snmp, k1.snmp, diag)
	segs := c["tcp.segs_in"] + c["tcp.segs_out"]
	g := grew(k0.snmp6, k1.snmp6, "Ip6InReceives", "Ip6OutRequests")
	moved := 2 * movedSegs(c)
	if segs == 0 || g*100 >= segs+moved*100 {
		t.Errorf("%s: kernel Ip6InReceives+Ip6OutRequests in namespace A grew by %d, not < 1%% of the %d segments ustack carried (+ %d for what moved to the kernel): the IPv6 packets went through the kernel",
			what, g, segs, moved)
	} else {
		t.Logf("%s: kernel Ip6 packets in A grew by %d (%.3f%% of %d ustack segments)", what, g, 100*float64(g)/float64(segs), segs)
	}
}

// checkIPv6UDPPath: the same for UDP over IPv6: udp.in_datagrams+udp.out_datagrams of ustack
// (at least minDgrams) against the kernel's Udp6 InDatagrams+OutDatagrams+NoPorts+InErrors and
// Ip6InReceives+Ip6OutRequests in A.
func checkIPv6UDPPath(t *testing.T, what string, c map[string]uint64, minDgrams uint64, k0, k1 kernelCounters) {
	t.Helper()
	dg := c["udp.in_datagrams"] + c["udp.out_datagrams"]
	if dg == 0 || dg < minDgrams {
		t.Errorf("%s: ustack counted %d UDP datagrams (udp.in_datagrams+udp.out_datagrams), want at least %d", what, dg, max(minDgrams, 1))
	}
	for _, names := range [][]string{
		{"Udp6InDatagrams", "Udp6OutDatagrams", "Udp6NoPorts", "Udp6InErrors"},
		{"Ip6InReceives", "Ip6OutRequests"},
	} {
		g := grew(k0.snmp6, k1.snmp6, names...)
		if dg == 0 || g*100 >= dg {
			t.Errorf("%s: kernel %s in namespace A grew by %d, not < 1%% of the %d datagrams ustack carried", what, strings.Join(names, "+"), g, dg)
		} else {
			t.Logf("%s: kernel %s in A grew by %d (%.3f%% of %d ustack datagrams)", what, strings.Join(names, "+"), g, 100*float64(g)/float64(dg), dg)
		}
	}
}

// curl under ustack in A downloads 50 MB from a kernel python3 http.server on B's IPv6 address.
func TestIPv6CurlDownload(t *testing.T) {
	e := setup(t)
	tp := e.tp
	dir := dataDir(t)
	sum := randomFile(t, dir, "big", ipv6Size)
	startServer(t, tp, tp.NSB, nil, 8000, false, python, "-m", "http.server", "--bind", tp.AddrB6, "--directory", dir, "8000")
	eachStack(t, e, func(t *testing.T, m stackMode) {
		out := filepath.Join(dataDir(t), "out")
		k0 := kernelStart(t, tp.NSA)
		r := tp.RunA(m.env, 120*time.Second, "curl", "-sS", "--fail", "--max-time", "100", "-o", out, url6(tp.AddrB6, 8000, "big"))
		k1 := kernelNow(t, tp.NSA)
		if r.Err != nil {
			t.Fatalf("curl: %s", r)
		}
		t.Logf("curl over IPv6: 50 MB in %v", r.Elapsed.Round(time.Millisecond))
		if got := fileSHA(t, out); got != sum {
			t.Errorf("sha256 %s, want %s", got, sum)
		}
		if !m.accel {
			return
		}
		c := e.counters(t, "curl", r.Pid)
		atLeast(t, "curl", c, "xsk.rx_bytes", ipv6Size)
		atLeast(t, "curl", c, "tcp.active_opens", 1)
		checkIPv6TCPPath(t, "curl", c, ipv6Size/maxSegPayload, k0, k1, string(r.Stderr))
	})
}

// python3 -m http.server under ustack in A, on "::" (dual-stack), serves 50 MB to kernel curl
// in B over IPv6.
func TestIPv6PythonServer(t *testing.T) {
	e := setup(t)
	tp := e.tp
	dir := dataDir(t)
	sum := randomFile(t, dir, "big", ipv6Size)
	eachStack(t, e, func(t *testing.T, m stackMode) {
		srv := startServer(t, tp, tp.NSA, m.env, 8000, false, python, "-m", "http.server", "--bind", "::", "--directory", dir, "8000")
		out := filepath.Join(dataDir(t), "out")
		k0 := kernelStart(t, tp.NSA)
		r := tp.RunB(nil, 120*time.Second, "curl", "-sS", "--fail", "--max-time", "100", "-o", out, url6(tp.AddrA6, 8000, "big"))
		k1 := kernelNow(t, tp.NSA)
		diag := stopServer(t, srv)
		if r.Err != nil {
			t.Fatalf("curl from B: %s\n%s", r, diag)
		}
		t.Logf("curl from B over IPv6: 50 MB in %v", r.Elapsed.Round(time.Millisecond))
		if got := fileSHA(t, out); got != sum {
			t.Errorf("sha256 %s, want %s", got, sum)
		}
		if !m.accel {
			return
		}
		c := e.counters(t, "python http.server", srv.Pid)
		atLeast(t, "python http.server", c, "xsk.tx_bytes", ipv6Size)
		atLeast(t, "python http.server", c, "tcp.passive_opens", 1)
		checkIPv6TCPPath(t, "python http.server", c, ipv6Size/maxSegPayload, k0, k1, diag)
	})
}

// socat under ustack in A, as server (TCP6-LISTEN) and as client (TCP6:[B]), echoes 50 MB
// over IPv6 with a kernel socat in B, byte-identical.
func TestIPv6SocatEcho(t *testing.T) {
	e := setup(t, "socat")
	tp := e.tp
	dir := dataDir(t)
	sum := randomFile(t, dir, "in", ipv6Size)
	data, err := os.ReadFile(filepath.Join(dir, "in"))
	if err != nil {
		t.Fatal(err)
	}
	client := []string{"-t", "60", "-T", "60", "-b", "65536"} // as TestSocatEcho
	echo := []string{"-b", "65536"}
	check := func(t *testing.T, r *topo.Result) {
		t.Helper()
		if len(r.Stdout) != ipv6Size || bytesSHA(r.Stdout) != sum {
			t.Errorf("echo: %d bytes, sha256 %s; want %d, %s", len(r.Stdout), bytesSHA(r.Stdout), ipv6Size, sum)
		}
	}
	port := 7000
	eachStack(t, e, func(t *testing.T, m stackMode) {
		t.Run("A_server", func(t *testing.T) {
			port++
			srv := startServer(t, tp, tp.NSA, m.env, port, false, "socat", append(echo, fmt.Sprintf("TCP6-LISTEN:%d,reuseaddr", port), "EXEC:cat")...)
			k0 := kernelStart(t, tp.NSA)
			r := tp.RunStdinB(strings.NewReader(string(data)), 120*time.Second, "socat", append(client, fmt.Sprintf("TCP6:[%s]:%d", tp.AddrA6, port), "STDIO")...)
			res := srv.Wait(10 * time.Second) // one connection, then socat exits
			k1 := kernelNow(t, tp.NSA)
			if r.Err != nil {
				t.Fatalf("kernel socat client in B: %s\n%s", r, srv.Output())
			}
			check(t, r)
			if res.TimedOut {
				t.Errorf("socat server did not exit after the connection")
			}
			if m.accel {
				c := e.counters(t, "socat server", srv.Pid)
				atLeast(t, "socat server", c, "xsk.rx_bytes", ipv6Size)
				atLeast(t, "socat server", c, "xsk.tx_bytes", ipv6Size)
				atLeast(t, "socat server", c, "tcp.passive_opens", 1)
				checkIPv6TCPPath(t, "socat server", c, 2*ipv6Size/maxSegPayload, k0, k1, string(res.Stderr))
			}
		})
		t.Run("A_client", func(t *testing.T) {
			port++
			startServer(t, tp, tp.NSB, nil, port, false, "socat", append(echo, fmt.Sprintf("TCP6-LISTEN:%d,reuseaddr", port), "EXEC:cat")...)
			k0 := kernelStart(t, tp.NSA)
			r := tp.RunStdinA(m.env, strings.NewReader(string(data)), 120*time.Second, "socat", append(client, fmt.Sprintf("TCP6:[%s]:%d", tp.AddrB6, port), "STDIO")...)
			k1 := kernelNow(t, tp.NSA)
			if r.Err != nil {
				t.Fatalf("socat client in A: %s", r)
			}
			check(t, r)
			if m.accel {
				c := e.counters(t, "socat client", r.Pid)
				atLeast(t, "socat client", c, "xsk.rx_bytes", ipv6Size)
				atLeast(t, "socat client", c, "xsk.tx_bytes", ipv6Size)
				atLeast(t, "socat client", c, "tcp.active_opens", 1)
				checkIPv6TCPPath(t, "socat client", c, 2*ipv6Size/maxSegPayload, k0, k1, string(r.Stderr))
			}
		})
	})
}

// udp6Result is udp6_echo.py's client line.
type udp6Result struct {
	Sent, Echoed, Resent int
	ShaSent              string `json:"sha_sent"`
	ShaEchoed            string `json:"sha_echoed"`
}

// python3 over UDP and IPv6 (tests/apps/udp6_echo.py), under ustack in A as the echo server
// (an AF_INET6 socket on "::") and as the client: 5000 datagrams of 1200 bytes each way, one
// at a time, every echo byte-identical.
func TestIPv6UDPEcho(t *testing.T) {
	const count, size = 5000, 1200
	e := setup(t)
	tp := e.tp
	script := appScript(t, "udp6_echo.py")
	run := func(t *testing.T, m stackMode, srvNS string, srvEnv []string, cliNS string, cliEnv []string, dst string, port int) (srv *topo.Proc, cli *topo.Result, k0, k1 kernelCounters) {
		t.Helper()
		srv = startServer(t, tp, srvNS, srvEnv, port, true, python, script, "server", strconv.Itoa(port))
		k0 = kernelStart(t, tp.NSA)
		cli = topo.Run(cliNS, cliEnv, 120*time.Second, python, script, "client", dst, strconv.Itoa(port), strconv.Itoa(count), strconv.Itoa(size))
		k1 = kernelNow(t, tp.NSA)
		var res udp6Result
		if err := jsonLine(cli.Stdout, &res); cli.Err != nil || err != nil {
			t.Fatalf("udp6_echo client: %v %s\n%s", err, cli, srv.Output())
		}
		t.Logf("%d datagrams echoed of %d, %d resent", res.Echoed, res.Sent, res.Resent)
		if res.Echoed != count || res.ShaSent != res.ShaEchoed {
			t.Errorf("echoed %d of %d, sha256 sent %s echoed %s", res.Echoed, count, res.ShaSent, res.ShaEchoed)
		}
		return srv, cli, k0, k1
	}
	port := 7100
	eachStack(t, e, func(t *testing.T, m stackMode) {
		t.Run("A_server", func(t *testing.T) {
			port++
			srv, _, k0, k1 := run(t, m, tp.NSA, m.env, tp.NSB, nil, tp.AddrA6, port)
			stopServer(t, srv)
			if m.accel {
				c := e.counters(t, "udp6 echo server", srv.Pid)
				atLeast(t, "udp6 echo server", c, "udp.in_datagrams", count)
				atLeast(t, "udp6 echo server", c, "udp.out_datagrams", count)
				checkIPv6UDPPath(t, "udp6 echo server", c, 2*count, k0, k1)
			}
		})
		t.Run("A_client", func(t *testing.T) {
			port++
			_, cli, k0, k1 := run(t, m, tp.NSB, nil, tp.NSA, m.env, tp.AddrB6, port)
			if m.accel {
				c := e.counters(t, "udp6 echo client", cli.Pid)
				atLeast(t, "udp6 echo client", c, "udp.in_datagrams", count)
				atLeast(t, "udp6 echo client", c, "udp.out_datagrams", count)
				checkIPv6UDPPath(t, "udp6 echo client", c, 2*count, k0, k1)
			}
		})
	})
}

// dualStackFiles are the files a dual-stack server test serves: a 10 MB one for curl and a
// 4 KB one for wrk.
type dualStackFiles struct {
	dir, bigSum string
}

func newDualStackFiles(t *testing.T, dir string) dualStackFiles {
	s := randomFile(t, dir, "big", nginxBigSize)
	randomFile(t, dir, "small", nginxSmallSize)
	return dualStackFiles{dir: dir, bigSum: s}
}

// ipv6WrkSecs is how long each wrk of the dual-stack tests runs (USTACK_APPS_SECONDS sets it).
var ipv6WrkSecs = appSeconds(5)

// dualStackLoad runs, from B, against a dual-stack HTTP server in A on port (pid srvPid):
// wrk -c 32 over IPv4 and wrk -c 32 over IPv6 on /small, and curl of /big over each, all at
// once (the curls at 4 MB/s, so that they last). It checks every answer (wrk: no error and no
// non-2xx; curl: sha256) and, under ustack, polls `onloadctl sockets` while the clients run:
// the server's IPv4 and IPv6 connections must both be listed on the user-space path. It
// returns the requests wrk made.
func (e *env) dualStackLoad(t *testing.T, m stackMode, srvPid, port int, f dualStackFiles) uint64 {
	t.Helper()
	tp := e.tp
	const conns = 32
	out := dataDir(t)
	type client struct {
		name string
		p    *topo.Proc
	}
	var cls []client
	start := func(name string, args ...string) {
		p, err := tp.Start(tp.NSB, nil, args[0], args[1:]...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cls = append(cls, client{name, p})
	}
	for _, v := range []struct{ fam, ip string }{{"IPv4", tp.AddrA}, {"IPv6", tp.AddrA6}} {
		start("wrk over "+v.fam, "wrk", "-t", "1", "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", ipv6WrkSecs), url6(v.ip, port, "small"))
		start("curl over "+v.fam, "curl", "-sS", "--fail", "--max-time", "60", "--limit-rate", "4M", "-o", filepath.Join(out, v.fam), url6(v.ip, port, "big"))
	}
	var seen4, seen6 bool
	b4, b6 := netip.MustParseAddr(tp.AddrB), netip.MustParseAddr(tp.AddrB6)
	for {
		running := false
		for _, c := range cls {
			running = running || !c.p.Exited()
		}
		if !running {
			break
		}
		if m.accel && !(seen4 && seen6) {
			for _, s := range e.sockets(t, 5*time.Second) {
				ap, err := netip.ParseAddrPort(s.Remote)
				if err != nil || s.Pid != srvPid || s.Proto != "tcp" || s.Path != "ustack" {
					continue
				}
				seen4 = seen4 || ap.Addr().Unmap() == b4
				seen6 = seen6 || ap.Addr() == b6
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	var requests uint64
	for _, c := range cls {
		r := c.p.Wait(time.Duration(ipv6WrkSecs+90) * time.Second)
		if r.Err != nil {
			t.Errorf("%s: %s", c.name, r)
			continue
		}
		if strings.HasPrefix(c.name, "curl") {
			fam := strings.TrimPrefix(c.name, "curl over ")
			if got := fileSHA(t, filepath.Join(out, fam)); got != f.bigSum {
				t.Errorf("%s: /big sha256 %s, want %s", c.name, got, f.bigSum)
			}
			continue
		}
		w, err := parseWrk(r.Stdout)
		if err != nil || w.requests == 0 || w.non2xx != 0 || w.connE+w.readE+w.writeE+w.tmoE != 0 {
			t.Errorf("%s: %v: %d requests, non-2xx %d, socket errors connect %d read %d write %d timeout %d; want > 0 requests and no errors\n%s",
				c.name, err, w.requests, w.non2xx, w.connE, w.readE, w.writeE, w.tmoE, r.Stdout)
			continue
		}
		t.Logf("%s: %d requests, %.0f req/s", c.name, w.requests, w.rps)
		requests += w.requests
	}
	if m.accel {
		if !seen4 {
			t.Errorf("onloadctl sockets never listed a connection of the server (pid %d) from B's IPv4 address %s on the user-space path", srvPid, tp.AddrB)
		}
		if !seen6 {
			t.Errorf("onloadctl sockets never listed a connection of the server (pid %d) from B's IPv6 address %s on the user-space path", srvPid, tp.AddrB6)
		}
	}
	return requests
}

// checkDualStackServer is what a dual-stack server's ustack run must show: every connection
// (2 × 32 of wrk, 2 curls) accepted by ustack, the bytes sent through the XSK, the kernel in A
// out of it.
func (e *env) checkDualStackServer(t *testing.T, what string, pid int, requests uint64, k0, k1 kernelCounters, diag string) {
	t.Helper()
	c := e.counters(t, what, pid)
	atLeast(t, what, c, "tcp.passive_opens", 2*32+2)
	atLeast(t, what, c, "xsk.tx_bytes", 2*nginxBigSize+requests*nginxSmallSize)
	checkIPv6TCPPath(t, what, c, 2*nginxBigSize/maxSegPayload+requests, k0, k1, diag)
}

// A node.js HTTP server (require('http').createServer(...).listen(PORT): "::", dual-stack)
// under ustack serves wrk and curl over IPv4 and over IPv6 at once, accelerated both ways.
func TestIPv6NodeDualStack(t *testing.T) {
	e := setup(t, "node", "wrk")
	tp := e.tp
	f := newDualStackFiles(t, dataDir(t))
	script := filepath.Join(repoRoot(t), "tests", "apps", "dualstack_server.js")
	eachStack(t, e, func(t *testing.T, m stackMode) {
		srv := startServer(t, tp, tp.NSA, m.env, nginxPort, false, "node", script, strconv.Itoa(nginxPort), f.dir)
		if !dualStackListener(t, srv.Pid, nginxPort) {
			t.Fatalf("node does not listen on [::]:%d (dual-stack)", nginxPort)
		}
		k0 := kernelStart(t, tp.NSA)
		requests := e.dualStackLoad(t, m, srv.Pid, nginxPort, f)
		k1 := kernelNow(t, tp.NSA)
		diag := stopServer(t, srv)
		if m.accel {
			e.checkDualStackServer(t, "node", srv.Pid, requests, k0, k1, diag)
		}
	})
}

// dualStackListener reports whether a TCP listener on [::]:port is in pid's namespace
// (/proc/PID/net/tcp6: an all-zero address).
func dualStackListener(t *testing.T, pid, port int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp6", pid))
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(fmt.Sprintf(`(?m)^\s*\d+: 0{32}:%04X 0{32}:0000 0A `, port)).Match(b)
}

// nginx under ustack with `listen [::]:8080 ipv6only=off;` serves IPv4 and IPv6 clients at
// once, accelerated both ways; its error log stays clean.
func TestIPv6NginxDualStack(t *testing.T) {
	e := setup(t, "nginx", "wrk")
	tp := e.tp
	dir, www := nginxSite(t)
	f := newDualStackFiles(t, www)
	eachStack(t, e, func(t *testing.T, m stackMode) {
		conf := filepath.Join(dir, m.name+".conf")
		c := nginxConf(dir, www, m.name)
		listen := fmt.Sprintf("listen 0.0.0.0:%d;", nginxPort)
		if !strings.Contains(c, listen) {
			t.Fatalf("nginxConf has no %q", listen)
		}
		c = strings.Replace(c, listen, fmt.Sprintf("listen [::]:%d ipv6only=off;", nginxPort), 1)
		if err := os.WriteFile(conf, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		errLog := filepath.Join(dir, m.name+"-error.log")
		srv := startServer(t, tp, tp.NSA, m.env, nginxPort, false, "nginx", "-p", dir+"/", "-c", conf, "-e", errLog)
		if !dualStackListener(t, srv.Pid, nginxPort) {
			t.Fatalf("nginx does not listen on [::]:%d", nginxPort)
		}
		k0 := kernelStart(t, tp.NSA)
		requests := e.dualStackLoad(t, m, srv.Pid, nginxPort, f)
		k1 := kernelNow(t, tp.NSA)
		diag := stopServer(t, srv)
		if log, err := os.ReadFile(errLog); err == nil {
			if bad := regexp.MustCompile(`(?m)^.*\[(error|crit|alert|emerg)\].*$`).FindAllString(string(log), 10); len(bad) > 0 {
				t.Errorf("nginx error log has errors:\n%s", strings.Join(bad, "\n"))
			}
			diag += "\nerror log (tail):\n" + tail(string(log), 2000)
		}
		if m.accel {
			e.checkDualStackServer(t, "nginx", srv.Pid, requests, k0, k1, diag)
		}
	})
}

// exitSender6 under ustack in A: accepts one connection on [::]:PORT, writes SIZE bytes of the
// file, closes it and exits at once, printing "exiting" first; the kernel must carry what is
// still unsent.
const exitSender6 = `
import socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port))
s.listen()
s.setblocking(False)
try:
    s.accept()  # the first call that waits for data takes the listener into the stack
except BlockingIOError:
    pass
s.setblocking(True)
print("listening", flush=True)
c, _ = s.accept()
c.sendall(open(path, "rb").read())
c.close()
print("exiting", flush=True)
`

// slowReader in B reads from HOST:PORT to EOF at about 3 MB/s through a 256 KiB receive buffer
// (so that the sender's data waits on its side) and prints the byte count and the sha256.
const slowReader = `
import hashlib, socket, sys, time
c = socket.socket(socket.AF_INET6)
c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
c.connect((sys.argv[1], int(sys.argv[2])))
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b); n += len(b)
    time.sleep(0.02)
print(n, h.hexdigest(), flush=True)
`

// A program that closes an IPv6 connection with megabytes still unsent and exits: exit hands the
// connection to the kernel with its state (TCP_REPAIR into an AF_INET6 socket), so the process
// is gone at once and the kernel sends the rest, which the peer gets all of (as TestForkExit
// over IPv4).
func TestIPv6ExitMovesConnection(t *testing.T) {
	e := setup(t)
	tp := e.tp
	dir := dataDir(t)
	const size = 12 << 20
	sum := randomFile(t, dir, "exit", size)
	const port = 9510
	k0 := snmpStart(t, tp.NSA)
	p, err := tp.Start(tp.NSA, e.accel(), python, "-c", exitSender6, fmt.Sprint(port), filepath.Join(dir, "exit"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	waitLine(t, p, "listening", serverWait)
	done := make(chan *topo.Result, 1)
	go func() { done <- tp.RunB(nil, 120*time.Second, python, "-c", slowReader, tp.AddrA6, fmt.Sprint(port)) }()
	waitLine(t, p, "exiting", 60*time.Second)
	exiting := time.Now()
	pr := p.Wait(30 * time.Second)
	gone := time.Since(exiting)
	r := <-done
	k1 := snmp(t, tp.NSA)
	if r.Err != nil {
		t.Fatalf("reader: %s", r)
	}
	if got := strings.TrimSpace(string(r.Stdout)); got != fmt.Sprintf("%d %s", size, sum) {
		t.Errorf("the reader got %q, want %d bytes of sha256 %s", got, size, sum)
	}
	if pr.Code != 0 || strings.Contains(string(pr.Stderr), "moving a connection to the kernel") {
		t.Errorf("the sender: exit %d, stderr:\n%s", pr.Code, pr.Stderr)
	}
	t.Logf("the sender was gone %v after it closed; the kernel in A sent %d segments after it", gone.Round(time.Millisecond),
		grew(k0, k1, "Tcp.OutSegs"))
	if gone > forkExitMaxGone {
		t.Errorf("the sender was gone %v after its close, want <= %v: exit waited instead of handing the connection to the kernel",
			gone.Round(time.Millisecond), forkExitMaxGone)
	}
	// the reader is slow: the close leaves the stack's send buffer (256 KiB, not grown for a
	// slow peer) nearly full, about 180 segments, which the kernel sends after the exit; the
	// rest of the transfer left through ustack before it
	if g, all := grew(k0, k1, "Tcp.OutSegs"), uint64(size/maxSegPayload); g < 50 || g > all/2 {
		t.Errorf("the kernel in A sent %d segments of the transfer's %d: want the rest after the exit only (50 to %d)", g, all, all/2)
	}
}
