package topo

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseLinkLocal(t *testing.T) {
	out := "2: usa1    inet6 fe80::1/64 scope link tentative \\       valid_lft forever preferred_lft forever\n" +
		"2: usa1    inet6 fe80::2/64 scope link \\       valid_lft forever preferred_lft forever\n"
	if a := parseLinkLocal(out); a != "fe80::2" {
		t.Fatalf("parseLinkLocal = %q, want fe80::2", a)
	}
	if a := parseLinkLocal("2: usa1    inet6 fd00::1/64 scope global \\\n"); a != "" {
		t.Fatalf("parseLinkLocal of a global address = %q", a)
	}
}

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
	// IPv6: the unique local addresses and the link-locals are usable at once, both ways, and
	// the link-local needs its scope (the interface) to be reached.
	for _, ns := range []string{tp.NSA, tp.NSB} {
		peer, ll, ifname := tp.AddrB6, tp.LinkLocalB, tp.IfA
		if ns == tp.NSB {
			peer, ll, ifname = tp.AddrA6, tp.LinkLocalA, tp.IfB
		}
		for _, dst := range []string{peer, ll + "%" + ifname} {
			if r := Run(ns, nil, 10*time.Second, "ping", "-6", "-c", "1", "-W", "2", dst); r.Err != nil {
				t.Errorf("ping %s from %s: %s", dst, ns, r)
			}
		}
	}
	if !strings.HasPrefix(tp.AddrA6, "fd") || !strings.HasSuffix(tp.AddrA6, "::1") || !strings.HasSuffix(tp.AddrB6, "::2") ||
		tp.Prefix6 != strings.TrimSuffix(tp.AddrA6, "1")+"/64" || tp.PrefixLen6 != 64 || tp.AddrA6 == tp2.AddrA6 {
		t.Errorf("IPv6 addresses: %s %s %s/%d (other topology %s)", tp.AddrA6, tp.AddrB6, tp.Prefix6, tp.PrefixLen6, tp2.AddrA6)
	}
	if !strings.HasPrefix(tp.LinkLocalA, "fe80::") || !strings.HasPrefix(tp.LinkLocalB, "fe80::") || tp.IndexA <= 0 || tp.IndexB <= 0 {
		t.Errorf("link-locals %s (index %d) %s (index %d)", tp.LinkLocalA, tp.IndexA, tp.LinkLocalB, tp.IndexB)
	}
	r = tp.RunA(nil, 5*time.Second, "cat", "/sys/class/net/"+tp.IfA+"/ifindex")
	if strings.TrimSpace(string(r.Stdout)) != strconv.Itoa(tp.IndexA) {
		t.Errorf("IndexA %d, sysfs says %s", tp.IndexA, r.Stdout)
	}
	// A kernel server on "::" takes IPv6 connections (WaitListen sees tcp6).
	srv6, err := tp.StartServer(tp.NSB, nil, 8006, 10*time.Second, "/usr/bin/python3", "-m", "http.server", "--bind", "::", "--directory", dir, "8006")
	if err != nil {
		t.Fatal(err)
	}
	r = tp.RunA(nil, 10*time.Second, "curl", "-sS", "--max-time", "5", "http://["+tp.AddrB6+"]:8006/hello")
	if r.Err != nil || string(r.Stdout) != "hello ustack\n" {
		t.Fatal(r)
	}
	srv6.Stop()
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
