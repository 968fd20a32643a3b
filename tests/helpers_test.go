package tests

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"ustack/tests/topo"
)

// Paths of the built artefacts, relative to the repository root.
const (
	libRel       = "build/libustack.so"
	onloadctlRel = "build/onloadctl"
	forkchildRel = "build/tests/forkchild"
	python       = "/usr/bin/python3" // Debian's, whatever PATH says
)

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found")
		}
		dir = parent
	}
}

// env is what an end-to-end test needs: a topology and the built artefacts.
type env struct {
	t         *testing.T
	tp        *topo.Topo
	lib       string
	onloadctl string
	statsDir  string
}

// setup skips the test, saying why, when it cannot run here (not root, no
// build/libustack.so, a missing program), and builds a fresh topology.
func setup(t *testing.T, programs ...string) *env {
	t.Helper()
	if err := topo.Available(); err != nil {
		t.Skipf("SKIP end-to-end: %v", err)
	}
	root := repoRoot(t)
	e := &env{t: t, lib: filepath.Join(root, libRel), onloadctl: filepath.Join(root, onloadctlRel)}
	if l := os.Getenv("USTACK_LIB"); l != "" { // as for onloadctl run
		e.lib = l
	}
	for _, p := range []string{e.lib, e.onloadctl} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("SKIP end-to-end: %s missing: run `make build` first", p)
		}
	}
	for _, p := range append([]string{python, "curl"}, programs...) {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("SKIP end-to-end: %s not installed: run `make deps`", p)
		}
	}
	dir, err := os.MkdirTemp("/dev/shm", "ustack-test-stats-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.statsDir = dir
	e.tp = topo.New(t)
	return e
}

// accel is the environment of a program accelerated on IfA.
func (e *env) accel(extra ...string) []string {
	return append([]string{
		"LD_PRELOAD=" + e.lib,
		"USTACK_IFACE=" + e.tp.IfA,
		"USTACK_STATS_DIR=" + e.statsDir,
		"USTACK_KEEPER_LOG=" + e.keeperLog(),
	}, extra...)
}

// keeperLog is where the keepers of the test's groups log (keeperTail shows it on failure).
func (e *env) keeperLog() string { return filepath.Join(e.statsDir, "keeper.log") }

func (e *env) keeperTail() string {
	b, _ := os.ReadFile(e.keeperLog())
	return "\nkeeper log (tail):\n" + tail(string(b), 3000)
}

// stats runs `onloadctl stats --json --pid N` and returns the counters; on
// failure (no segment: the program did not run ustack) it reports an error
// and returns an empty map.
func (e *env) stats(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	out, err := exec.Command(e.onloadctl, "stats", "--json", "--pid", fmt.Sprint(pid), "--dir", e.statsDir).CombinedOutput()
	if err != nil {
		t.Errorf("onloadctl stats --pid %d: %v\n%s", pid, err, out)
		return map[string]uint64{}
	}
	var procs []struct {
		Pid      int               `json:"pid"`
		Counters map[string]uint64 `json:"counters"`
	}
	if err := json.Unmarshal(out, &procs); err != nil || len(procs) != 1 {
		t.Fatalf("onloadctl stats --json: %v\n%s", err, out)
	}
	return procs[0].Counters
}

// logStats prints the interesting counters of pid.
func (e *env) logStats(t *testing.T, what string, c map[string]uint64) {
	t.Logf("%s: xsk rx %d B tx %d B; tcp segs in %d out %d; active %d passive %d; passed_to_kernel %d; moved_to_kernel %d (repaired connections %d)",
		what, c["xsk.rx_bytes"], c["xsk.tx_bytes"], c["tcp.segs_in"], c["tcp.segs_out"],
		c["tcp.active_opens"], c["tcp.passive_opens"], c["shim.passed_to_kernel"], c["shim.moved_to_kernel"], c["shim.conns_repaired"])
}

// kernelInSegs returns Tcp InSegs in namespace ns.
func (e *env) kernelInSegs(ns string) uint64 {
	e.t.Helper()
	in, _, err := topo.TCPSegs(ns)
	if err != nil {
		e.t.Fatal(err)
	}
	return in
}

// randomFile writes size random bytes to dir/name and returns the sha256.
func randomFile(t testing.TB, dir, name string, size int64) string {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileSHA(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func bytesSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// dataDir is a world-readable temporary directory for files served and
// downloaded by the programs under test.
func dataDir(t testing.TB) string {
	d := t.TempDir()
	os.Chmod(d, 0o755)
	return d
}

const (
	mb = 1 << 20
	// Typical MSS on the veth; used only to bound how few segments a
	// transfer can take.
	maxSegPayload = 1460
)

// checkUserPath asserts that a transfer took the user-space path: its
// segments were counted by ustack, and the kernel's Tcp InSegs in the
// accelerated namespace grew by less than 1 % of them.
func checkUserPath(t *testing.T, c map[string]uint64, size int64, kernelIn0, kernelIn1 uint64) {
	t.Helper()
	segs := c["tcp.segs_in"] + c["tcp.segs_out"]
	// what moved to the kernel at exit was not carried here
	carried := uint64(size) - min(uint64(size), c["shim.bytes_moved"])
	if need := carried / maxSegPayload; segs < need {
		t.Errorf("ustack counted %d TCP segments; the %d bytes of a %d-byte transfer it carried (%d moved to the kernel at exit) need at least %d",
			segs, carried, size, c["shim.bytes_moved"], need)
	}
	grew := kernelIn1 - kernelIn0
	moved := movedSegs(c)
	if grew*100 >= segs+moved*100 || segs == 0 {
		t.Errorf("kernel Tcp InSegs in namespace A grew by %d, not < 1%% of the %d segments ustack transferred (+ %d for what moved to the kernel at exit)", grew, segs, moved)
	} else {
		t.Logf("kernel Tcp InSegs in A grew by %d (%.3f%% of %d ustack segments; %d allowed for %d bytes moved to the kernel at exit)",
			grew, 100*float64(grew)/float64(segs), segs, moved, c["shim.bytes_moved"])
	}
}

// movedSegs bounds the segments the kernel in A may carry for what ustack moved to it (at
// exit, connections still delivering go on in kernel sockets, and so does what a fork child
// used): an ACK or a data segment per 512 bytes moved (the smallest MSS the kernel uses), and a
// handshake's worth more per connection (window probe, FIN and its ACK, a retransmission).
func movedSegs(c map[string]uint64) uint64 {
	return c["shim.bytes_moved"]/512 + 8*c["shim.conns_repaired"]
}

const serverWait = 15 * time.Second
