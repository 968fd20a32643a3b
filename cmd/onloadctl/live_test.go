package main

import (
	"encoding/binary"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"ustack/shim"
	"ustack/shm"
)

// testSegment is a stats segment of this process with the counters of this build, in dir.
type testSegment struct {
	seg   *shm.StatsSegment
	index map[string]int
}

func newTestSegment(t *testing.T, dir, iface string) *testSegment {
	t.Helper()
	var names []string
	for _, d := range shim.StatDescs() {
		names = append(names, d.Name)
	}
	seg, err := shm.CreateStats(dir, names, shm.StatsInfo{Iface: iface, Mode: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Remove() })
	ts := &testSegment{seg: seg, index: map[string]int{}}
	for i, n := range names {
		ts.index[n] = i
	}
	return ts
}

func (s *testSegment) add(name string, n uint64) {
	atomic.AddUint64(&s.seg.Values()[s.index[name]], n)
}

// liveChild starts a process (sleep) and writes a segment for it in dir, as if it ran ustack,
// with the given counters; kill ends it (and reaps it).
func liveChild(t *testing.T, dir, iface string, names []string, values []uint64) (pid int, kill func()) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	done := false
	kill = func() {
		if !done {
			done = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(kill)
	pid = cmd.Process.Pid
	start, err := shm.ProcStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	seg, err := shm.CreateStats(t.TempDir(), names, shm.StatsInfo{Iface: iface, Mode: "test"})
	if err != nil {
		t.Fatal(err)
	}
	copy(seg.Values(), values)
	b, err := os.ReadFile(seg.Path())
	seg.Remove()
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(b[16:], uint64(pid))   // statsOffPid
	binary.LittleEndian.PutUint64(b[24:], uint64(start)) // statsOffStartTime
	if err := os.WriteFile(shm.StatsPath(dir, pid), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return pid, kill
}
