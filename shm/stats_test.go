package shm

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

type testStatsA struct {
	RxFrames uint64 `stat:"eth.rx_frames"`
	SegsIn   uint64 `stat:"tcp.segs_in"`
}

type testStatsB struct {
	RxBytes uint64 `stat:"xsk.rx_bytes"`
}

func TestStatsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	names := StatNames(&testStatsA{}, testStatsB{})
	want := []string{"eth.rx_frames", "tcp.segs_in", "xsk.rx_bytes"}
	if len(names) != len(want) {
		t.Fatalf("StatNames = %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("StatNames = %v, want %v", names, want)
		}
	}
	seg, err := CreateStats(dir, names, StatsInfo{Iface: "veth0", Mode: "native/copy"})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if seg.Path() != StatsPath(dir, os.Getpid()) {
		t.Fatalf("path %s", seg.Path())
	}
	a, rest := BindStats[testStatsA](seg.Values())
	b, rest := BindStats[testStatsB](rest)
	if len(rest) != 0 {
		t.Fatalf("%d values left", len(rest))
	}
	atomic.AddUint64(&a.RxFrames, 3)
	atomic.AddUint64(&a.SegsIn, 5)
	atomic.AddUint64(&b.RxBytes, 1<<40)

	snap, err := ReadStats(seg.Path())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Pid != os.Getpid() || !snap.Alive || snap.Gone {
		t.Fatalf("pid %d alive %v gone %v", snap.Pid, snap.Alive, snap.Gone)
	}
	if snap.Iface != "veth0" || snap.Mode != "native/copy" || snap.Cmdline == "" {
		t.Fatalf("info %q %q %q", snap.Iface, snap.Mode, snap.Cmdline)
	}
	st, _ := ProcStartTime(os.Getpid())
	if snap.StartTime != st || st == 0 {
		t.Fatalf("start time %d, want %d", snap.StartTime, st)
	}
	for name, v := range map[string]uint64{"eth.rx_frames": 3, "tcp.segs_in": 5, "xsk.rx_bytes": 1 << 40} {
		if got, ok := snap.Get(name); !ok || got != v {
			t.Errorf("%s = %d, %v; want %d", name, got, ok, v)
		}
	}
	paths, err := ListStats(dir)
	if err != nil || len(paths) != 1 || paths[0] != seg.Path() {
		t.Fatalf("ListStats = %v, %v", paths, err)
	}
	if err := seg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := seg.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	// The file outlives the mapping.
	if _, err := ReadStats(StatsPath(dir, os.Getpid())); err != nil {
		t.Fatal(err)
	}
}

func TestStatsNoCounters(t *testing.T) {
	seg, err := CreateStats(t.TempDir(), nil, StatsInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Remove()
	if len(seg.Values()) != 0 {
		t.Fatal("values")
	}
	snap, err := ReadStats(seg.Path())
	if err != nil || len(snap.Names) != 0 {
		t.Fatal(snap, err)
	}
}

func TestStatsBadNames(t *testing.T) {
	long := string(make([]byte, statsNameSlot))
	for _, n := range []string{"", long, "a\x00b"} {
		if _, err := CreateStats(t.TempDir(), []string{n}, StatsInfo{}); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
}

func TestStatsTruncatedInfo(t *testing.T) {
	iface := "abcdefghijklmnopqrstuvwxyz0123456789"
	seg, err := CreateStats(t.TempDir(), []string{"x.y"}, StatsInfo{Iface: iface})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Remove()
	snap, err := ReadStats(seg.Path())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Iface != iface[:statsIfaceLen-1] {
		t.Fatalf("iface %q", snap.Iface)
	}
}

func TestReadStatsRejects(t *testing.T) {
	dir := t.TempDir()
	seg, err := CreateStats(dir, []string{"a.b", "c.d"}, StatsInfo{})
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(seg.Path())
	seg.Remove()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"magic", func(b []byte) []byte { b[0] ^= 1; return b }, ErrStatsMagic},
		{"version", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[statsOffVersion:], 99); return b }, ErrStatsVersion},
		{"short", func(b []byte) []byte { return b[:len(b)-8] }, ErrStatsSize},
		{"tiny", func(b []byte) []byte { return b[:100] }, ErrStatsSize},
		{"count", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[statsOffCount:], 1000); return b }, ErrStatsSize},
		{"valuesoff", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[statsOffValuesOff:], 8); return b }, ErrStatsSize},
	}
	for _, c := range cases {
		p := filepath.Join(dir, StatsFilePrefix+"1")
		b := c.mutate(append([]byte(nil), good...))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadStats(p); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

func TestListStatsIgnoresOthers(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"ustack-stats.12", "ustack-stats.3", "ustack-stats.x", ".ustack-stats-tmp-1", "other"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	paths, err := ListStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || filepath.Base(paths[0]) != "ustack-stats.3" || filepath.Base(paths[1]) != "ustack-stats.12" {
		t.Fatalf("ListStats = %v", paths)
	}
}

// A segment whose process has exited reads as not alive and gone.
func TestStatsDeadProcess(t *testing.T) {
	dir := t.TempDir()
	seg, err := CreateStats(dir, []string{"a.b"}, StatsInfo{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(seg.Path())
	seg.Remove()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	binary.LittleEndian.PutUint64(b[statsOffPid:], uint64(dead))
	p := StatsPath(dir, dead)
	os.WriteFile(p, b, 0o644)
	snap, err := ReadStats(p)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Alive || !snap.Gone {
		t.Fatalf("pid %d alive %v gone %v", dead, snap.Alive, snap.Gone)
	}
	// Our own pid with a different start time: reused pid.
	binary.LittleEndian.PutUint64(b[statsOffPid:], uint64(os.Getpid()))
	binary.LittleEndian.PutUint64(b[statsOffStartTime:], 1)
	os.WriteFile(p, b, 0o644)
	if snap, err = ReadStats(p); err != nil || snap.Alive || !snap.Gone {
		t.Fatalf("reused pid: %+v %v", snap, err)
	}
}

// A writer goroutine bumps counters while a reader maps and reads the
// segment: run with -race; values read must be monotonic.
func TestStatsConcurrentReader(t *testing.T) {
	names := make([]string, 40)
	for i := range names {
		names[i] = "g.c" + strconv.Itoa(i)
	}
	seg, err := CreateStats(t.TempDir(), names, StatsInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Remove()
	vals := seg.Values()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			for i := range vals {
				atomic.AddUint64(&vals[i], uint64(i+1))
			}
		}
	})
	last := make([]uint64, len(names))
	for range 200 {
		snap, err := ReadStats(seg.Path())
		if err != nil {
			stop.Store(true)
			t.Fatal(err)
		}
		for i, v := range snap.Values {
			if v < last[i] || v%uint64(i+1) != 0 {
				t.Errorf("counter %d: %d after %d", i, v, last[i])
			}
			last[i] = v
		}
	}
	stop.Store(true)
	wg.Wait()
	if last[0] == 0 {
		t.Log("writer made no progress before the reads ended")
	}
}

func TestStatsSetMode(t *testing.T) {
	dir := t.TempDir()
	seg, err := CreateStats(dir, []string{"a.b"}, StatsInfo{Iface: "veth0"})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Remove()
	seg.SetMode("native/copy")
	snap, err := ReadStats(seg.Path())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Mode != "native/copy" {
		t.Fatalf("mode %q after SetMode", snap.Mode)
	}
	seg.SetMode("gen")
	if snap, _ = ReadStats(seg.Path()); snap.Mode != "gen" {
		t.Fatalf("mode %q: a shorter mode must not keep the old tail", snap.Mode)
	}
}
