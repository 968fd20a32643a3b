package tests

// Many processes on one interface: every process under ustack on IfA is a member of the
// interface's group (shm/group.go, nic/xdp/keeper.go), with its own stack and socket over one
// shared UMEM, and the steering program sends each flow to its owner.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ustack/nic/xdp"
	"ustack/tests/topo"
)

// groupStatus reads `onloadctl group --json` in namespace A.
func (e *env) groupStatus(t *testing.T) (*xdp.GroupStatus, error) {
	t.Helper()
	r := topo.Run(e.tp.NSA, nil, 10*time.Second, e.onloadctl, "group", "--iface", e.tp.IfA, "--json")
	if r.Err != nil {
		return nil, fmt.Errorf("onloadctl group: %s", r)
	}
	var st xdp.GroupStatus
	if err := json.Unmarshal(r.Stdout, &st); err != nil {
		return nil, fmt.Errorf("onloadctl group: %v\n%s", err, r.Stdout)
	}
	return &st, nil
}

// memberOf returns pid's entry in the group, or nil.
func memberOf(st *xdp.GroupStatus, pid int) *xdp.MemberStatus {
	for i := range st.Members {
		if int(st.Members[i].Pid) == pid && st.Members[i].State == "live" {
			return &st.Members[i]
		}
	}
	return nil
}

// groupTraffic is one server under ustack in A and the client in B that loads it.
type groupTraffic struct {
	name   string
	port   int
	server []string
	client func(t *testing.T) (minSegs uint64, err error)
	proc   *topo.Proc
	conns  uint64 // connections the client makes at least
}

// 2. redis-server, nginx, an iperf3 server and memcached under ustack at once on IfA, each
// loaded by its client from B at the same time: every transfer checked, every process in the
// group with its own slot, its counters showing its own connections and no frame that was
// not its own (drop.no_port: a frame to a port it does not use), and the kernel in A carrying
// nothing.
func TestGroupFourServers(t *testing.T) {
	e := setup(t, "redis-server", "redis-benchmark", "nginx", "wrk", "iperf3", "memcached")
	tp := e.tp
	dir, www := nginxSite(t)
	bigSum := randomFile(t, www, "big", nginxBigSize)
	randomFile(t, www, "small", nginxSmallSize)
	conf := filepath.Join(dir, "group.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, www, "group")), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, mc := appScript(t, "resp_check.py"), appScript(t, "memcache_check.py")
	out := dataDir(t)
	var iperfBytes uint64
	apps := []*groupTraffic{
		{name: "redis-server", port: redisPort, server: append([]string{"redis-server"}, redisServerArgs()...), conns: 20,
			client: func(t *testing.T) (uint64, error) {
				r := tp.RunB(nil, 120*time.Second, "redis-benchmark", "-h", tp.AddrA, "-p", fmt.Sprint(redisPort), "-t", "set,get", "-n", "20000", "-c", "20", "-q", "--csv")
				if r.Err != nil {
					return 0, fmt.Errorf("redis-benchmark: %s", r)
				}
				if d := respCheck(t, tp.RunB(nil, 60*time.Second, python, resp, tp.AddrA, fmt.Sprint(redisPort), fmt.Sprint(redisKeys)), "RESP client in B"); !d.OK {
					return 0, errors.New("RESP data check failed")
				}
				return 2 * 40000, nil
			}},
		{name: "nginx", port: nginxPort, server: []string{"nginx", "-p", dir + "/", "-c", conf, "-e", filepath.Join(dir, "group-error.log")}, conns: 16,
			client: func(t *testing.T) (uint64, error) {
				o := filepath.Join(out, "big")
				r := tp.RunB(nil, 60*time.Second, "curl", "-sS", "--fail", "-o", o, fmt.Sprintf("http://%s:%d/big", tp.AddrA, nginxPort))
				if r.Err != nil {
					return 0, fmt.Errorf("curl: %s", r)
				}
				if got := fileSHA(t, o); got != bigSum {
					return 0, fmt.Errorf("curl /big: sha256 %s, want %s", got, bigSum)
				}
				r = tp.RunB(nil, 60*time.Second, "wrk", "-t", "1", "-c", "16", "-d", "3s", fmt.Sprintf("http://%s:%d/small", tp.AddrA, nginxPort))
				w, err := parseWrk(r.Stdout)
				if r.Err != nil || err != nil || w.non2xx+w.connE+w.readE+w.writeE+w.tmoE != 0 || w.requests == 0 {
					return 0, fmt.Errorf("wrk: %v %+v %s", err, w, r)
				}
				return w.requests, nil
			}},
		{name: "iperf3", port: iperfPort, server: []string{"iperf3", "-s", "-4", "-p", fmt.Sprint(iperfPort)}, conns: 2,
			client: func(t *testing.T) (uint64, error) {
				r := tp.RunB(nil, 60*time.Second, "iperf3", "-4", "-c", tp.AddrA, "-p", fmt.Sprint(iperfPort), "-t", "3", "-J")
				var j iperfJSON
				if err := json.Unmarshal(r.Stdout, &j); err != nil || r.Err != nil || j.Error != "" || j.End.SumReceived.Bytes == 0 {
					return 0, fmt.Errorf("iperf3: %v %q %s", err, j.Error, r)
				}
				iperfBytes = j.End.SumReceived.Bytes
				return iperfBytes / maxSegPayload, nil
			}},
		{name: "memcached", port: memcachedPort, conns: memcachedConn,
			server: []string{"memcached", "-t", "2", "-U", "0", "-l", "0.0.0.0", "-p", fmt.Sprint(memcachedPort), "-u", "root", "-m", "64"},
			client: func(t *testing.T) (uint64, error) {
				r := tp.RunB(nil, 120*time.Second, python, mc, tp.AddrA, fmt.Sprint(memcachedPort), fmt.Sprint(memcachedKeys), fmt.Sprint(memcachedConn))
				var res memcacheResult
				if err := jsonLine(r.Stdout, &res); err != nil || r.Err != nil || !res.OK || res.Keys != memcachedKeys {
					return 0, fmt.Errorf("memcache check: %v %s", err, r)
				}
				return 2 * res.Bytes / maxSegPayload, nil
			}},
	}
	for _, a := range apps {
		a.proc = startServer(t, tp, tp.NSA, e.accel(), a.port, false, a.server[0], a.server[1:]...)
	}
	st, err := e.groupStatus(t)
	if err != nil {
		t.Fatal(err)
	}
	slots := map[uint32]string{}
	for _, a := range apps {
		m := memberOf(st, a.proc.Pid)
		if m == nil {
			t.Fatalf("%s (pid %d) is not in the group: %+v", a.name, a.proc.Pid, st)
		}
		slots[m.Slot] = a.name
	}
	if len(slots) != len(apps) {
		t.Fatalf("slots %v: want one each", slots)
	}
	k0 := snmpStart(t, tp.NSA)
	var wg sync.WaitGroup
	minSegs := make([]uint64, len(apps))
	errs := make([]error, len(apps))
	for i, a := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			minSegs[i], errs[i] = a.client(t)
		}()
	}
	wg.Wait()
	k1 := snmp(t, tp.NSA)
	for i, a := range apps {
		if errs[i] != nil {
			t.Errorf("%s: %v", a.name, errs[i])
		}
	}
	var segs uint64
	for i, a := range apps {
		diag := stopServer(t, a.proc)
		c := e.counters(t, a.name, a.proc.Pid)
		atLeast(t, a.name, c, "tcp.passive_opens", a.conns)
		// a segment for a connection it closed is its own (iperf3 closes its data connection
		// with segments still on their way); one to a port it does not use is not
		if c["drop.no_port"] != 0 {
			t.Errorf("%s: drop.no_port %d: it was given frames to ports that were not its own", a.name, c["drop.no_port"])
		}
		if a.name != "iperf3" && c["xsk.rx_bytes"] >= iperfBytes/4 {
			t.Errorf("%s: %d bytes received, iperf3 alone moved %d: it saw iperf3's frames", a.name, c["xsk.rx_bytes"], iperfBytes)
		}
		if c["tcp.segs_in"]+c["tcp.segs_out"] < minSegs[i] {
			t.Errorf("%s: %d TCP segments, want at least %d%s", a.name, c["tcp.segs_in"]+c["tcp.segs_out"], minSegs[i], diagSuffix(diag))
		}
		segs += c["tcp.segs_in"] + c["tcp.segs_out"]
	}
	if g := grew(k0, k1, "Tcp.InSegs", "Tcp.OutSegs"); g*100 >= segs {
		t.Errorf("kernel Tcp InSegs+OutSegs in A grew by %d, not < 1%% of the %d segments the four carried", g, segs)
	} else {
		t.Logf("kernel Tcp InSegs+OutSegs in A grew by %d against %d segments in user space", g, segs)
	}
}

// 3. A client and a server under ustack in the same namespace at once: nginx serves B's curl
// while curl in A downloads from a kernel web server in B; both files byte-identical, both
// processes in the group and both carrying their bytes in user space.
func TestGroupClientAndServer(t *testing.T) {
	e := setup(t, "nginx")
	tp := e.tp
	dir, www := nginxSite(t)
	sum := randomFile(t, www, "big", 50*mb)
	conf := filepath.Join(dir, "cs.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, www, "cs")), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, tp, tp.NSA, e.accel(), nginxPort, false, "nginx", "-p", dir+"/", "-c", conf, "-e", filepath.Join(dir, "cs-error.log"))
	web := startServer(t, tp, tp.NSB, nil, 8000, false, python, "-m", "http.server", "-d", www, "-b", tp.AddrB, "8000")
	out := dataDir(t)
	k0 := snmpStart(t, tp.NSA)
	var wg sync.WaitGroup
	var down, up *topo.Result
	var downPid int
	wg.Add(2)
	go func() {
		defer wg.Done()
		p, err := tp.Start(tp.NSA, e.accel(), "curl", "-sS", "--fail", "-o", filepath.Join(out, "a"), fmt.Sprintf("http://%s:8000/big", tp.AddrB))
		if err != nil {
			t.Error(err)
			return
		}
		downPid = p.Pid
		// while it runs, both are members
		if st, err := waitMembers(e, t, []int{p.Pid, srv.Pid}); err != nil {
			t.Errorf("group while both run: %v %+v", err, st)
		}
		down = p.Wait(120 * time.Second)
	}()
	go func() {
		defer wg.Done()
		up = tp.RunB(nil, 120*time.Second, "curl", "-sS", "--fail", "-o", filepath.Join(out, "b"), fmt.Sprintf("http://%s:%d/big", tp.AddrA, nginxPort))
	}()
	wg.Wait()
	k1 := snmp(t, tp.NSA)
	if down == nil || down.Err != nil || up.Err != nil {
		t.Fatalf("downloads: from A %v, from B %s", down, up)
	}
	for _, f := range []string{"a", "b"} {
		if got := fileSHA(t, filepath.Join(out, f)); got != sum {
			t.Errorf("download %s: sha256 %s, want %s", f, got, sum)
		}
	}
	stopServer(t, srv)
	web.Stop()
	cs, ss := e.counters(t, "curl", downPid), e.counters(t, "nginx", srv.Pid)
	atLeast(t, "curl", cs, "xsk.rx_bytes", 50*mb)
	atLeast(t, "nginx", ss, "xsk.tx_bytes", 50*mb)
	checkTCPPath(t, "curl and nginx", map[string]uint64{"tcp.segs_in": cs["tcp.segs_in"] + ss["tcp.segs_in"],
		"tcp.segs_out": cs["tcp.segs_out"] + ss["tcp.segs_out"]}, 2*50*mb/maxSegPayload, k0, k1, "")
}

// waitMembers waits (at most 5 s) until every pid is a live member of the group.
func waitMembers(e *env, t *testing.T, pids []int) (*xdp.GroupStatus, error) {
	var st *xdp.GroupStatus
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, err = e.groupStatus(t); err != nil {
			continue
		}
		all := true
		for _, p := range pids {
			all = all && memberOf(st, p) != nil
		}
		if all {
			return st, nil
		}
	}
	return st, fmt.Errorf("not every one of %v joined the group (%v)", pids, err)
}

// 4. Crash: while two processes under ustack transfer (curl in A downloading from B, an
// echo server in A serving B), a third one, a server busy with B's traffic, is killed with
// SIGKILL over and over and started again on its port at once. The others' transfers complete
// byte-identical; within 1 s of each kill the keeper has taken back its frames and steering
// entries (read from `onloadctl group`); the port listens again at once.
func TestGroupKill(t *testing.T) {
	kills := 100
	if testing.Short() {
		kills = 10
	}
	e := setup(t)
	tp := e.tp
	dir := dataDir(t)
	size := int64(100 * mb)
	sum := randomFile(t, dir, "big", size)
	web := startServer(t, tp, tp.NSB, nil, 8000, false, python, "-m", "http.server", "-d", dir, "-b", tp.AddrB, "8000")
	defer web.Stop()
	echo, client := appScript(t, "echo_server.py"), appScript(t, "echo_client.py")
	survivor := startServer(t, tp, tp.NSA, e.accel(), echoPort, false, python, echo, fmt.Sprint(echoPort))
	out := dataDir(t)
	down, err := tp.Start(tp.NSA, e.accel(), "curl", "-sS", "--fail", "--limit-rate", "2M", "-o", filepath.Join(out, "big"),
		fmt.Sprintf("http://%s:8000/big", tp.AddrB))
	if err != nil {
		t.Fatal(err)
	}
	// the survivors' load from B runs through the kills
	stop := make(chan struct{})
	var echoRounds int
	var echoErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := tp.RunB(nil, 60*time.Second, python, client, tp.AddrA, fmt.Sprint(echoPort), "20", fmt.Sprint(64<<10))
			var res echoResult
			if err := jsonLine(r.Stdout, &res); err != nil || r.Err != nil || !res.OK || res.Identical != 20 {
				echoErr = fmt.Errorf("echo round %d: %v %s", echoRounds, err, r)
				return
			}
			echoRounds++
		}
	}()
	const victimPort = 9400
	victimSrv := `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
while True:
    c, _ = s.accept()
    while True:
        b = c.recv(65536)
        if not b: break
        c.sendall(b)
    c.close()
`
	victimLoad := `
import socket, sys, time
end = time.time() + 60
while time.time() < end:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
        while True:
            c.sendall(b"x" * 65536); c.recv(65536)
    except OSError:
        time.sleep(0.01)
`
	load, err := tp.Start(tp.NSB, nil, python, "-c", victimLoad, tp.AddrA, fmt.Sprint(victimPort))
	if err != nil {
		t.Fatal(err)
	}
	defer load.Stop()
	var worst time.Duration
	v := startServer(t, tp, tp.NSA, e.accel(), victimPort, false, python, "-c", victimSrv, fmt.Sprint(victimPort))
	for k := range kills {
		st, err := waitMembers(e, t, []int{v.Pid})
		if err != nil {
			t.Fatalf("kill %d: the server did not join: %v", k, err)
		}
		slot := memberOf(st, v.Pid).Slot
		// let B's load reach it: it holds frames when it dies
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if c := e.stats(t, v.Pid); c["xsk.rx_packets"] > 20 {
				break
			}
		}
		syscall.Kill(v.Pid, syscall.SIGKILL)
		killed := time.Now()
		v.Wait(5 * time.Second)
		dead := v.Pid
		// its port serves again at once (startServer fails the test if it does not listen)
		v = startServer(t, tp, tp.NSA, e.accel(), victimPort, false, python, "-c", victimSrv, fmt.Sprint(victimPort))
		var back bool
		for time.Since(killed) < time.Second {
			st, err = e.groupStatus(t)
			if err == nil && slotReclaimed(st, slot, dead) {
				back = true
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if d := time.Since(killed); d > worst {
			worst = d
		}
		if !back {
			t.Fatalf("kill %d: 1 s after the kill the group still holds pid %d's frames or entries (slot %d): %+v%s", k, dead, slot, st, e.keeperTail())
		}
		if echoErr != nil {
			break
		}
	}
	v.Stop()
	close(stop)
	wg.Wait()
	if echoErr != nil {
		t.Fatalf("the survivor's echo: %v", echoErr)
	}
	r := down.Wait(5 * time.Minute)
	if r.Err != nil {
		t.Fatalf("the survivor's download: %s", r)
	}
	if got := fileSHA(t, filepath.Join(out, "big")); got != sum {
		t.Fatalf("download: sha256 %s, want %s", got, sum)
	}
	t.Logf("%d kills; frames and entries back within %v at worst; %d echo rounds of 20 clients meanwhile", kills, worst.Round(time.Millisecond), echoRounds)
	st, err := e.groupStatus(t)
	if err != nil {
		t.Fatal(err)
	}
	if memberOf(st, survivor.Pid) == nil {
		t.Fatalf("the echo server left the group: %+v", st)
	}
	stopServer(t, survivor)
	c := e.counters(t, "curl", down.Pid)
	atLeast(t, "curl", c, "xsk.rx_bytes", uint64(size))
}

// slotReclaimed reports whether the group holds nothing more for the dead pid that had slot:
// no member is pid, and the slot is either taken by a newcomer or free with no receive frame,
// every transmit frame free or on its way back and no steering entry; no entry is left without
// a member.
func slotReclaimed(st *xdp.GroupStatus, slot uint32, pid int) bool {
	for _, m := range st.Members {
		if int(m.Pid) == pid && m.State != "free" {
			return false
		}
		if m.Slot == slot && m.State == "free" &&
			(m.RxHeld != 0 || m.TxFree+m.TxInflight != st.TxPerSlot || m.Steer+m.Flows+m.Shared != 0) {
			return false
		}
	}
	return st.Unassigned.Steer+st.Unassigned.Flows+st.Unassigned.Shared == 0
}

// 5. A program exec'd by a program under ustack, and a daemon forked before its first socket,
// are accelerated while their parent holds the interface: they join its group.
func TestGroupExecAndDaemon(t *testing.T) {
	e := setup(t, "redis-server", "redis-cli")
	tp := e.tp
	web := startServer(t, tp, tp.NSB, nil, 8000, false, python, "-m", "http.server", "-b", tp.AddrB, "8000")
	defer web.Stop()
	// the parent connects (it holds the interface), then runs curl, which connects too
	parent := fmt.Sprintf(`
import os, socket, subprocess, sys
s = socket.create_connection((%q, 8000))
r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%%{http_code}", "http://%s:8000/"], capture_output=True, text=True)
print("curl", r.returncode, r.stdout, flush=True)
s.close()
`, tp.AddrB, tp.AddrB)
	statsDir := e.statsDir
	before, _ := filepath.Glob(filepath.Join(statsDir, "ustack-stats.*"))
	r := tp.RunA(e.accel(), 60*time.Second, python, "-c", parent)
	if r.Err != nil || !strings.Contains(string(r.Stdout), "curl 0 200") {
		t.Fatalf("parent and exec'd curl: %s", r)
	}
	if strings.Contains(string(r.Stderr), "acceleration off") {
		t.Errorf("a process fell back to the kernel:\n%s", r.Stderr)
	}
	after, _ := filepath.Glob(filepath.Join(statsDir, "ustack-stats.*"))
	var curlOpens uint64
	for _, p := range after {
		if slices.Contains(before, p) {
			continue
		}
		var pid int
		fmt.Sscanf(filepath.Base(p), "ustack-stats.%d", &pid)
		if pid == r.Pid {
			continue
		}
		c := e.stats(t, pid)
		curlOpens += c["tcp.active_opens"]
	}
	if curlOpens == 0 {
		t.Errorf("the exec'd curl made no connection through ustack")
	}
	// a daemon forked before its first socket, while another process holds the interface
	holder := startServer(t, tp, tp.NSA, e.accel(), 9500, false, python, "-c",
		`import socket; s = socket.socket(); s.bind(("0.0.0.0", 9500)); s.listen(); s.accept()`)
	defer holder.Stop()
	pidFile := filepath.Join(dataDir(t), "redis.pid")
	d := tp.RunA(e.accel(), 30*time.Second, "redis-server", "--port", "6390", "--daemonize", "yes", "--pidfile", pidFile, "--save", "", "--appendonly", "no", "--protected-mode", "no")
	if d.Err != nil {
		t.Fatalf("redis-server --daemonize: %s", d)
	}
	var dpid int
	for deadline := time.Now().Add(5 * time.Second); dpid == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil {
			fmt.Sscanf(string(b), "%d", &dpid)
		}
	}
	if dpid == 0 {
		t.Fatal("the daemon wrote no pid file")
	}
	defer syscall.Kill(dpid, syscall.SIGKILL)
	if out := tp.RunB(nil, 10*time.Second, "redis-cli", "-h", tp.AddrA, "-p", "6390", "SET", "k", "v"); out.Err != nil || !strings.Contains(string(out.Stdout), "OK") {
		t.Fatalf("redis-cli SET to the daemon: %s", out)
	}
	if _, err := waitMembers(e, t, []int{holder.Pid, dpid}); err != nil {
		t.Fatalf("holder and daemon: %v", err)
	}
	c := e.counters(t, "redis daemon", dpid)
	atLeast(t, "redis daemon", c, "tcp.passive_opens", 1)
}

// 6. Two users on one interface: a server under ustack as root, then a client under ustack as
// nobody. The keeper refuses the second user: it prints one line, maps nothing of the group
// (its /proc/PID/maps has no UMEM or group state), and its traffic is correct on the kernel.
func TestGroupTwoUsers(t *testing.T) {
	e := setup(t, "setpriv")
	tp := e.tp
	srv := startServer(t, tp, tp.NSA, e.accel(), echoPort, false, python, appScript(t, "echo_server.py"), fmt.Sprint(echoPort))
	peer := startServer(t, tp, tp.NSB, nil, 9600, false, python, "-c",
		`import socket; s = socket.socket(); s.bind(("0.0.0.0", 9600)); s.listen()
while True:
    c, _ = s.accept(); b = c.recv(100); c.sendall(b); c.close()`)
	defer peer.Stop()
	// nobody must be able to read the library (the checkout may be private: a copy of it in a
	// directory everyone can read) and to write its stats
	os.Chmod(e.statsDir, 0o1777)
	libDir, err := os.MkdirTemp("/dev/shm", "ustack-test-lib-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(libDir) })
	os.Chmod(libDir, 0o755)
	for _, name := range []string{filepath.Base(e.lib), "libustack-go.so"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(e.lib), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(libDir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nobodyEnv := append(e.accel(), "LD_PRELOAD="+filepath.Join(libDir, filepath.Base(e.lib)))
	for _, p := range []string{filepath.Join(libDir, "libustack-go.so"), e.statsDir} {
		if err := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "test", "-r", p).Run(); err != nil {
			t.Fatalf("nobody cannot read %s: %v", p, err)
		}
	}
	client := fmt.Sprintf(`
import socket, time, sys
s = socket.create_connection((%q, 9600)); s.sendall(b"as nobody"); assert s.recv(100) == b"as nobody"
maps = open("/proc/self/maps").read()
print("maps-umem", "ustack-umem" in maps, "maps-group", "ustack-group" in maps, "lib", %q in maps, flush=True)
`, tp.AddrB, libDir)
	r := tp.RunA(nobodyEnv, 30*time.Second, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", python, "-c", client)
	if r.Err != nil || !strings.Contains(string(r.Stdout), "maps-umem False maps-group False lib True") {
		t.Fatalf("client as nobody: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(string(r.Stderr)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "another user") {
		t.Errorf("client as nobody: want one line saying another user holds the interface, got:\n%s", r.Stderr)
	}
	t.Logf("nobody was told: %s", lines[0])
	// and the group's state is the root server's alone
	st, err := e.groupStatus(t)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 1 || int(st.Members[0].Pid) != srv.Pid {
		t.Errorf("group members %+v, want only the server (pid %d)", st.Members, srv.Pid)
	}
	fi, err := os.Stat(filepath.Join(e.statsDir, fmt.Sprintf("ustack-stats.%d", srv.Pid)))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("the server's stats segment has mode %v: want owner-only", fi.Mode().Perm())
	}
	stopServer(t, srv)
}

// Processes listening on one port with SO_REUSEPORT share its new connections (the steering
// program spreads them by flow hash over the processes, as the kernel spreads them over an
// SO_REUSEPORT group), and a connection stays with the process it was born in when another
// process joins the port or one leaves it; a killed sharer's part of the port goes to the others.
func TestGroupReusePortProcesses(t *testing.T) {
	e := setup(t)
	tp := e.tp
	const port = 9700
	srv := `
import os, socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("0.0.0.0", 9700)); s.listen(128)
def serve(c):
    while True:
        b = c.recv(100)
        if not b: break
        c.sendall(b"%d\n" % os.getpid())
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
`
	start := func() *topo.Proc {
		p, err := tp.Start(tp.NSA, e.accel(), python, "-c", srv)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop() })
		// the namespace's listening sockets do not tell one sharer from the other: wait until
		// the keeper counts it among the port's sharers
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if st, err := e.groupStatus(t); err == nil {
				if m := memberOf(st, p.Pid); m != nil && slices.Contains(m.Ports, fmt.Sprintf("tcp/%d (shared)", port)) {
					return p
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d does not share port %d: %s", p.Pid, port, p.Output())
			}
		}
	}
	first, second := start(), start()
	flag := filepath.Join(dataDir(t), "go")
	// 40 connections kept open; each asks who serves it, then again after a third process
	// joined the port
	client := fmt.Sprintf(`
import os, socket, time
conns = [socket.create_connection((%q, %d), timeout=5) for _ in range(40)]
def ask(c):
    c.sendall(b"?"); return c.recv(100).decode().strip()
print("before", " ".join(ask(c) for c in conns), flush=True)
end = time.time() + 20
while not os.path.exists(%q) and time.time() < end: time.sleep(0.02)
print("after", " ".join(ask(c) for c in conns), flush=True)
`, tp.AddrA, port, flag)
	cl, err := tp.Start(tp.NSB, nil, python, "-c", client)
	if err != nil {
		t.Fatal(err)
	}
	var before []string
	for deadline := time.Now().Add(10 * time.Second); before == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(cl.Output(), "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "before" {
				before = f[1:]
			}
		}
	}
	third := start()
	os.WriteFile(flag, nil, 0o644)
	r := cl.Wait(30 * time.Second)
	var after []string
	for _, l := range strings.Split(string(r.Stdout), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "after" {
			after = f[1:]
		}
	}
	if r.Err != nil || len(before) != 40 || len(after) != 40 {
		t.Fatalf("client: %s", r)
	}
	count := func(pids []string) map[string]int {
		m := map[string]int{}
		for _, p := range pids {
			m[p]++
		}
		return m
	}
	t.Logf("40 connections over two sharers: %v", count(before))
	if c := count(before); c[fmt.Sprint(first.Pid)] == 0 || c[fmt.Sprint(second.Pid)] == 0 || len(c) != 2 {
		t.Errorf("40 connections served by %v, want both sharers (pids %d, %d)", c, first.Pid, second.Pid)
	}
	if !slices.Equal(before, after) {
		t.Errorf("a third sharer joined and connections changed hands:\nbefore %v\nafter  %v", before, after)
	}
	ask := func(n int) map[string]int {
		t.Helper()
		r := tp.RunB(nil, 30*time.Second, python, "-c", fmt.Sprintf(`
import socket
for i in range(%d):
    c = socket.create_connection((%q, %d), timeout=5); c.sendall(b"?"); print(c.recv(100).decode().strip()); c.close()
`, n, tp.AddrA, port))
		if r.Err != nil {
			t.Fatalf("connections from B: %s", r)
		}
		return count(strings.Fields(string(r.Stdout)))
	}
	by := ask(60)
	t.Logf("60 new connections over three sharers: %v", by)
	if len(by) != 3 {
		t.Errorf("60 new connections served by %v, want all three sharers", by)
	}
	syscall.Kill(first.Pid, syscall.SIGKILL)
	first.Wait(5 * time.Second)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, err := e.groupStatus(t); err == nil && memberOf(st, first.Pid) == nil {
			break
		}
	}
	by = ask(40)
	if by[fmt.Sprint(first.Pid)] != 0 || by[fmt.Sprint(second.Pid)]+by[fmt.Sprint(third.Pid)] != 40 {
		t.Errorf("after the first was killed, 40 connections served by %v, want the second and third (pids %d, %d)", by, second.Pid, third.Pid)
	}
	st, err := e.groupStatus(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		// the port is shared for each address of the interface (IPv4 and IPv6): tcp/N and tcp6/N
		if want := []string{fmt.Sprintf("tcp/%d (shared)", port), fmt.Sprintf("tcp6/%d (shared)", port)}; m.State == "live" &&
			!slices.Equal(m.Ports, want) {
			t.Errorf("member %+v: want one shared port, %v", m, want)
		}
	}
}
