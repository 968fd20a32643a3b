package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"ustack/shm"
)

// When run as the child of `onloadctl run` in TestRunStats, the test binary
// plays an accelerated program: it creates a segment, counts, exits 7.
func TestMain(m *testing.M) {
	if dir := os.Getenv("ONLOADCTL_TEST_CHILD"); dir != "" {
		seg, err := shm.CreateStats(dir, []string{"xsk.rx_bytes", "tcp.segs_in"}, shm.StatsInfo{Iface: "vethX", Mode: "test"})
		if err != nil {
			os.Exit(99)
		}
		atomic.AddUint64(&seg.Values()[0], 1234)
		seg.Close()
		os.Exit(7)
	}
	os.Exit(m.Run())
}

// deadSegment writes a segment that claims a pid that has exited.
func deadSegment(t *testing.T, dir string) int {
	seg, err := shm.CreateStats(t.TempDir(), []string{"tcp.segs_in"}, shm.StatsInfo{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(seg.Path())
	seg.Remove()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	binary.LittleEndian.PutUint64(b[16:], uint64(pid)) // statsOffPid
	if err := os.WriteFile(shm.StatsPath(dir, pid), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestStats(t *testing.T) {
	dir := t.TempDir()
	seg, err := shm.CreateStats(dir, []string{"xsk.rx_bytes", "xsk.tx_bytes", "tcp.segs_in", "shim.passed_to_kernel"}, shm.StatsInfo{Iface: "veth0", Mode: "native/copy"})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Remove()
	atomic.StoreUint64(&seg.Values()[0], 52428800)
	dead := deadSegment(t, dir)

	var out, errb bytes.Buffer
	if rc := run([]string{"stats", "--dir", dir}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	text := out.String()
	for _, want := range []string{"(alive)", "iface veth0  mode native/copy", "  xsk:\n", "rx_bytes", "52428800", "tx_bytes", "  shim:\n", "passed_to_kernel"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "(exited)") {
		t.Errorf("dead process listed:\n%s", text)
	}
	if _, err := os.Stat(shm.StatsPath(dir, dead)); !os.IsNotExist(err) {
		t.Errorf("dead segment not removed: %v", err)
	}

	dead = deadSegment(t, dir)
	out.Reset()
	if rc := run([]string{"stats", "--all", "--json", "--dir", dir}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	var procs []jsonProcess
	if err := json.Unmarshal(out.Bytes(), &procs); err != nil {
		t.Fatal(err, out.String())
	}
	if len(procs) != 2 {
		t.Fatalf("--all: %d processes:\n%s", len(procs), out.String())
	}
	if _, err := os.Stat(shm.StatsPath(dir, dead)); err != nil {
		t.Errorf("--all removed a segment: %v", err)
	}

	out.Reset()
	if rc := run([]string{"stats", "--json", "--pid", itoa(dead), "--dir", dir}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	procs = nil
	if err := json.Unmarshal(out.Bytes(), &procs); err != nil || len(procs) != 1 || procs[0].Pid != dead || procs[0].Alive {
		t.Fatalf("--pid dead: %v %s", err, out.String())
	}
	if _, ok := procs[0].Counters["tcp.segs_in"]; !ok {
		t.Fatalf("zero counter missing: %s", out.String())
	}
	if rc := run([]string{"stats", "--pid", "999999999", "--dir", dir}, &out, &errb); rc == 0 {
		t.Fatal("missing pid: rc 0")
	}
}

func TestRunStats(t *testing.T) {
	if _, err := exec.LookPath("true"); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A library that does not load: ld.so warns and goes on.
	t.Setenv("USTACK_LIB", "/dev/null")
	t.Setenv("ONLOADCTL_TEST_CHILD", dir)
	var out, errb bytes.Buffer
	rc := run([]string{"run", "--stats", "--dir", dir, "--", exe}, &out, &errb)
	if rc != 7 {
		t.Fatalf("rc %d, want 7: %s", rc, errb.String())
	}
	for _, want := range []string{"(exited)", "iface vethX", "rx_bytes", "1234"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	paths, _ := shm.ListStats(dir)
	if len(paths) != 0 {
		t.Errorf("segment left behind: %v", paths)
	}
	t.Setenv("ONLOADCTL_TEST_CHILD", "")
	errb.Reset()
	if rc := run([]string{"run", "--", "sh", "-c", "exit 5"}, &out, &errb); rc != 5 {
		t.Errorf("exit 5: rc %d %s", rc, errb.String())
	}
	if rc := run([]string{"run", "--", "sh", "-c", "kill -TERM $$"}, &out, &errb); rc != 128+15 {
		t.Errorf("killed: rc %d", rc)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// Processes that share an interface get a total, counter by counter; a process alone on its
// interface does not.
func TestStatsTotalPerInterface(t *testing.T) {
	snaps := []*shm.StatsSnapshot{
		{Pid: 1, Iface: "eth0", Names: []string{"tcp.segs_in", "xsk.rx_bytes"}, Values: []uint64{10, 1000}},
		{Pid: 2, Iface: "eth1", Names: []string{"tcp.segs_in"}, Values: []uint64{7}},
		{Pid: 3, Iface: "eth0", Names: []string{"xsk.rx_bytes", "tcp.segs_in"}, Values: []uint64{500, 5}},
	}
	out := withTotals(snaps)
	if len(out) != 4 {
		t.Fatalf("%d snapshots, want the 3 and one total", len(out))
	}
	tot := out[3]
	if tot.Pid != 0 || tot.Iface != "eth0" || !strings.Contains(tot.Cmdline, "2 processes") {
		t.Fatalf("total %+v", tot)
	}
	for name, want := range map[string]uint64{"tcp.segs_in": 15, "xsk.rx_bytes": 1500} {
		if got, _ := tot.Get(name); got != want {
			t.Errorf("total %s = %d, want %d", name, got, want)
		}
	}
}
