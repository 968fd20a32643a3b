package topo

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseSNMP(t *testing.T) {
	b := []byte("Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin ActiveOpens InSegs OutSegs\nTcp: 1 200 3 1234 5678\nUdp: InDatagrams\nUdp: 1\n")
	in, out, err := parseSNMP(b)
	if err != nil || in != 1234 || out != 5678 {
		t.Fatalf("parseSNMP = %d %d %v", in, out, err)
	}
	if _, _, err := parseSNMP([]byte("Ip: x\nIp: 1\n")); err == nil {
		t.Fatal("no error without Tcp")
	}
}

func TestTopology(t *testing.T) {
	tp := New(t)
	tp2 := New(t)
	if tp.NSA == tp2.NSA || tp.IfA == tp2.IfA || len(tp.IfA) > 15 || len(tp.IfB) > 15 {
		t.Fatalf("names collide or too long: %+v %+v", tp, tp2)
	}
	// The pid of Run is the program's pid (ip netns exec and env exec).
	r := tp.RunA([]string{"FOO=bar"}, 5*time.Second, "sh", "-c", `echo $$ $FOO; cat /proc/net/dev`)
	if r.Err != nil {
		t.Fatal(r)
	}
	fs := strings.Fields(string(r.Stdout))
	if len(fs) < 2 || fs[0] != strconv.Itoa(r.Pid) || fs[1] != "bar" {
		t.Fatalf("pid/env not preserved: %s", r)
	}
	if !strings.Contains(string(r.Stdout), tp.IfA+":") || strings.Contains(string(r.Stdout), tp.IfB+":") {
		t.Fatalf("wrong namespace:\n%s", r.Stdout)
	}
	// Offloads are off on the kernel-side veth.
	r = tp.RunB(nil, 5*time.Second, "ethtool", "-k", tp.IfB)
	for _, want := range []string{"tx-checksumming: off", "tcp-segmentation-offload: off", "generic-segmentation-offload: off", "generic-receive-offload: off"} {
		if !strings.Contains(string(r.Stdout), want) {
			t.Errorf("ethtool -k %s lacks %q", tp.IfB, want)
		}
	}
	// Kernel TCP across the veth, and the snmp counters move.
	in0, _, err := TCPSegs(tp.NSA)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(dir+"/hello", []byte("hello ustack\n"), 0o644)
	srv, err := tp.StartServer(tp.NSB, nil, 8000, 10*time.Second, "/usr/bin/python3", "-m", "http.server", "--bind", tp.AddrB, "--directory", dir, "8000")
	if err != nil {
		t.Fatal(err)
	}
	r = tp.RunA(nil, 10*time.Second, "curl", "-sS", "--max-time", "5", "http://"+tp.AddrB+":8000/hello")
	if r.Err != nil || string(r.Stdout) != "hello ustack\n" {
		t.Fatal(r)
	}
	in1, _, err := TCPSegs(tp.NSA)
	if err != nil || in1 <= in0 {
		t.Fatalf("InSegs %d -> %d, %v", in0, in1, err)
	}
	// Run bounds its wait.
	r = tp.RunA(nil, 300*time.Millisecond, "sleep", "10")
	if !r.TimedOut || r.Elapsed > 5*time.Second {
		t.Fatalf("timeout not enforced: %s", r)
	}
	res := srv.Stop()
	if res == nil || !srv.Exited() {
		t.Fatal("server not stopped")
	}
	// Teardown removes namespaces and is idempotent.
	if err := tp2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + tp2.NSA); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("namespace %s left: %v", tp2.NSA, err)
	}
}
