package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ustack/tests/topo"
)

// TestDebPackage builds the package (make deb), installs it on this machine, downloads a file
// with the installed `onloadctl run -- curl` in namespace A from a kernel http.server in B (the
// installed files only: no USTACK_LIB or USTACK_GO_LIB, run from outside the repository), then
// removes the package and checks that nothing it installed is left. It skips where the package
// is installed already (someone's installation is not the test's to remove).
func TestDebPackage(t *testing.T) {
	const size = 8 * mb
	for _, b := range []string{"dpkg", "dpkg-deb", "dpkg-query", "ldconfig", "make"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("SKIP: %s not installed: run `make deps`", b)
		}
	}
	e := setup(t)
	tp := e.tp
	root := repoRoot(t)

	// One test at a time installs the package on this machine.
	lock, err := os.OpenFile("/run/lock/ustack-deb-test.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if st := debStatus(); st != "not-installed" {
		t.Skipf("SKIP: package ustack is %s on this machine; the test installs and removes its own", st)
	}

	out, err := runCmd(root, 10*time.Minute, "make", "--no-print-directory", "deb")
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, tail(out, 3000))
	}
	debs, _ := filepath.Glob(filepath.Join(root, "build", "ustack_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb: want one build/ustack_*.deb, have %v", debs)
	}
	deb := debs[0]
	t.Logf("package %s", filepath.Base(deb))

	t.Cleanup(func() {
		if debStatus() != "not-installed" {
			if out, err := dpkg("--purge", "ustack"); err != nil {
				t.Errorf("cleanup: dpkg --purge ustack: %v\n%s", err, out)
			}
		}
	})
	if out, err := dpkg("-i", deb); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	out, err = runCmd("/", time.Minute, "dpkg", "-L", "ustack")
	if err != nil {
		t.Fatalf("dpkg -L ustack: %v\n%s", err, out)
	}
	files := strings.Fields(out)
	t.Logf("dpkg -L ustack: %s", strings.Join(files, " "))
	has := func(prefix, suffix string) bool {
		for _, f := range files {
			if strings.HasPrefix(f, prefix) && strings.HasSuffix(f, suffix) {
				return true
			}
		}
		return false
	}
	for _, f := range [][2]string{
		{"/usr/lib/", "/libustack.so"}, // in the multiarch directory
		{"/usr/lib/", "/libustack-go.so"},
		{"/usr/bin/onloadctl", ""},
		{"/usr/share/man/man8/onloadctl.8.gz", ""},
		{"/usr/share/man/man7/ustack.7.gz", ""},
	} {
		if !has(f[0], f[1]) {
			t.Errorf("the package lacks %s", f[0]+f[1])
		}
	}
	if n := ldconfigCount(t); n < 2 {
		t.Errorf("installed: ldconfig -p lists %d libustack libraries, want libustack.so and libustack-go.so", n)
	}

	// The download, through the installed files only.
	dir := dataDir(t)
	sum := randomFile(t, dir, "big", size)
	if _, err := tp.StartServer(tp.NSB, nil, 8000, serverWait, python, "-m", "http.server", "--bind", tp.AddrB, "--directory", dir, "8000"); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(dataDir(t), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// topo.Command's environment has no LD_PRELOAD and no USTACK_* but these
	cmd := topo.Command(ctx, tp.NSA, []string{"USTACK_IFACE=" + tp.IfA, "USTACK_STATS_DIR=" + e.statsDir, "USTACK_KEEPER_LOG=" + e.keeperLog()},
		"/usr/bin/onloadctl", "run", "--", "curl", "-sS", "--fail", "--max-time", "100", "-o", outFile, fmt.Sprintf("http://%s:8000/big", tp.AddrB))
	cmd.Dir = t.TempDir() // not the repository
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("installed onloadctl run -- curl: %v\n%s%s", err, b, e.keeperTail())
	}
	if got := fileSHA(t, outFile); got != sum {
		t.Errorf("sha256 %s, want %s", got, sum)
	}
	// the installed onloadctl reads curl's segment
	b, err = exec.Command("/usr/bin/onloadctl", "stats", "--all", "--json", "--dir", e.statsDir).CombinedOutput()
	if err != nil {
		t.Fatalf("onloadctl stats: %v\n%s", err, b)
	}
	var procs []struct {
		Pid      int               `json:"pid"`
		Cmdline  string            `json:"cmdline"`
		Total    bool              `json:"total"`
		Counters map[string]uint64 `json:"counters"`
	}
	if err := json.Unmarshal(b, &procs); err != nil {
		t.Fatalf("onloadctl stats --json: %v\n%s", err, b)
	}
	var curl map[string]uint64
	for _, p := range procs {
		if !p.Total && strings.HasPrefix(p.Cmdline, "curl ") {
			curl = p.Counters
		}
	}
	if curl == nil {
		t.Fatalf("no stats segment of curl: ustack did not run from the installed files\n%s%s", b, e.keeperTail())
	}
	e.logStats(t, "installed: curl", curl)
	if curl["xsk.rx_bytes"] < size {
		t.Errorf("xsk.rx_bytes %d < %d: the download did not go through ustack", curl["xsk.rx_bytes"], size)
	}
	if curl["tcp.active_opens"] < 1 {
		t.Errorf("tcp.active_opens %d: the connection was not opened by ustack", curl["tcp.active_opens"])
	}

	// Removal leaves nothing behind but directories other packages share; the purge forgets the
	// package (it has no configuration files, only its postrm).
	if out, err := dpkg("-r", "ustack"); err != nil {
		t.Fatalf("dpkg -r ustack: %v\n%s", err, out)
	}
	if st := debStatus(); st != "config-files" && st != "not-installed" {
		t.Errorf("dpkg -r: ustack is %s", st)
	}
	for _, f := range files {
		st, err := os.Lstat(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if !st.IsDir() {
			t.Errorf("%s is left after dpkg -r", f)
			continue
		}
		if _, err := runCmd("/", time.Minute, "dpkg-query", "-S", f); err != nil && f != "/." {
			t.Errorf("directory %s is left after dpkg -r and no other package has it", f)
		}
	}
	if n := ldconfigCount(t); n != 0 {
		t.Errorf("removed: ldconfig -p still lists %d libustack libraries", n)
	}
	if out, err := dpkg("--purge", "ustack"); err != nil {
		t.Fatalf("dpkg --purge ustack: %v\n%s", err, out)
	}
	if st := debStatus(); st != "not-installed" {
		t.Errorf("dpkg --purge: ustack is %s", st)
	}
}

// debStatus returns the state of package ustack as dpkg knows it: installed, config-files
// (removed; its postrm stays for a purge), not-installed, or another (half-installed, ...).
func debStatus() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "ustack").Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) != 3 {
		return "not-installed"
	}
	return f[2]
}

// ldconfigCount returns how many libustack libraries the loader's cache lists.
func ldconfigCount(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("ldconfig", "-p").Output()
	if err != nil {
		t.Fatalf("ldconfig -p: %v", err)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "libustack") {
			n++
		}
	}
	return n
}

// dpkg runs dpkg, waiting while another dpkg or apt holds its lock (the machine is shared).
func dpkg(args ...string) (string, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := runCmd("/", 2*time.Minute, "dpkg", args...)
		if err == nil || !strings.Contains(out, "was locked by another process") || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(2 * time.Second)
	}
}

// runCmd runs a command in dir with the test's environment less LD_PRELOAD and USTACK_*, and
// returns its combined output.
func runCmd(dir string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = topo.CleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}
