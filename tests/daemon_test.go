package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redis-server --daemonize yes under ustack forks before it opens its
// sockets; its child starts the Go part itself (the parent never did) and serves redis-benchmark
// with the traffic on the user-space path, the kernel's Tcp counters in A flat.
func TestRedisDaemonizeIsAccelerated(t *testing.T) {
	e := setup(t, "redis-server", "redis-benchmark", "redis-cli")
	tp := e.tp
	const port = 6390
	dir := t.TempDir()
	pidfile, logfile := filepath.Join(dir, "redis.pid"), filepath.Join(dir, "redis.log")
	r := tp.RunA(e.accel(), 30*time.Second, "redis-server", "--port", fmt.Sprint(port), "--bind", "0.0.0.0",
		"--daemonize", "yes", "--pidfile", pidfile, "--logfile", logfile, "--save", "", "--appendonly", "no",
		"--protected-mode", "no")
	if r.Err != nil {
		t.Fatalf("redis-server --daemonize yes: %s", r)
	}
	pid := 0
	for deadline := time.Now().Add(10 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(pidfile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	if pid <= 0 {
		log, _ := os.ReadFile(logfile)
		t.Fatalf("the daemon wrote no pid file in 10 s; its log:\n%s", log)
	}
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGTERM)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if syscall.Kill(pid, 0) != nil {
				return
			}
		}
		syscall.Kill(pid, syscall.SIGKILL)
	})
	if pid == r.Pid {
		t.Fatalf("the pid file names the parent %d: redis did not daemonize", pid)
	}
	up := false
	for deadline := time.Now().Add(10 * time.Second); !up && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		p := tp.RunB(nil, 5*time.Second, "redis-cli", "-h", tp.AddrA, "-p", fmt.Sprint(port), "PING")
		up = p.Err == nil && strings.Contains(string(p.Stdout), "PONG")
	}
	if !up {
		log, _ := os.ReadFile(logfile)
		t.Fatalf("the daemon does not answer PING from B; its log:\n%s", log)
	}
	const requests, clients = 20000, 20
	k0 := snmpStart(t, tp.NSA)
	b := tp.RunB(nil, 120*time.Second, "redis-benchmark", "-h", tp.AddrA, "-p", fmt.Sprint(port), "-t", "set,get",
		"-n", fmt.Sprint(requests), "-c", fmt.Sprint(clients), "-q", "--csv")
	if b.Err != nil {
		t.Fatalf("redis-benchmark from B: %s", b)
	}
	resp := appScript(t, "resp_check.py")
	d := respCheck(t, tp.RunB(nil, 60*time.Second, python, resp, tp.AddrA, fmt.Sprint(port), fmt.Sprint(redisKeys)), "RESP client in B")
	k1 := snmp(t, tp.NSA)
	c := e.counters(t, "redis-server (daemon)", pid)
	atLeast(t, "redis-server (daemon)", c, "tcp.passive_opens", clients)
	atLeast(t, "redis-server (daemon)", c, "xsk.rx_bytes", 2*d.Bytes)
	checkTCPPath(t, "redis-server (daemon)", c, 2*2*requests, k0, k1, "")
}
