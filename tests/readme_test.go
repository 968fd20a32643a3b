package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ustack/tests/topo"
)

// readmeMarker precedes the fenced block of README.md's quick start that this test runs.
const readmeMarker = "<!-- tests/readme_test.go (TestReadmeQuickStart) runs every line of the next block"

// TestReadmeQuickStart runs the commands of README.md's quick start as written, in order, in
// one bash in the repository's directory (as a user would type them), and asserts that each
// exits 0, that the downloaded file is the one served (the two sha256s printed), and that the
// counters `onloadctl run --stats` printed show the download went through ustack.
func TestReadmeQuickStart(t *testing.T) {
	if err := topo.Available(); err != nil {
		t.Skipf("SKIP end-to-end: %v", err)
	}
	for _, p := range []string{"bash", "curl", "python3", "make", "sha256sum"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("SKIP end-to-end: %s not installed: run `make deps`", p)
		}
	}
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := quickStart(readme)
	if err != nil {
		t.Fatal(err)
	}

	// Each command as written, then its exit status to the status file; stop at the first that
	// fails.
	status := filepath.Join(t.TempDir(), "status")
	var script strings.Builder
	for i, c := range cmds {
		fmt.Fprintf(&script, "%s\n__rc=$?; echo \"%d $__rc\" >>%q; [ $__rc = 0 ] || exit $__rc\n", c, i, status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = root
	cmd.Env = topo.CleanEnv("TMPDIR=" + dataDir(t)) // mktemp's files go with the test's
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// scripts/topo.sh names its namespaces after the shell's pid: whatever a failed run left
	// (its namespaces, the server in B) goes with them.
	t.Cleanup(func() {
		ents, _ := os.ReadDir("/run/netns")
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), fmt.Sprintf("%s%d-", topo.NSPrefix, cmd.Process.Pid)) {
				if err := topo.DeleteNS(e.Name()); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}
		}
	})
	err = cmd.Wait()
	log := out.String()
	st, _ := os.ReadFile(status)
	done := strings.Count(string(st), "\n")
	for _, l := range strings.Split(strings.TrimSpace(string(st)), "\n") {
		var i, rc int
		if _, err := fmt.Sscan(l, &i, &rc); err == nil && rc != 0 {
			t.Errorf("README quick start: `%s` exited %d", cmds[i], rc)
		}
	}
	if err != nil || done != len(cmds) {
		t.Fatalf("README quick start: %d of %d commands ran (%v)\noutput:\n%s", done, len(cmds), err, tail(log, 6000))
	}

	// the two sha256s sha256sum printed
	sums := regexp.MustCompile(`(?m)^([0-9a-f]{64})  \S+`).FindAllStringSubmatch(log, -1)
	if len(sums) != 2 || sums[0][1] != sums[1][1] {
		t.Errorf("want two equal sha256s in the output, have %v\n%s", sums, tail(log, 6000))
	}
	// the counters onloadctl run --stats printed
	c := textCounters(log)
	size := uint64(1 * mb)
	for _, cmd := range cmds {
		if m := regexp.MustCompile(`head -c (\d+)M`).FindStringSubmatch(cmd); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			size = n * mb
		}
	}
	t.Logf("README quick start: %d commands; curl's counters: xsk.rx_bytes %d, tcp.active_opens %d, tcp.segs_in %d",
		len(cmds), c["xsk.rx_bytes"], c["tcp.active_opens"], c["tcp.segs_in"])
	if c["xsk.rx_bytes"] < size {
		t.Errorf("xsk.rx_bytes %d < %d: the download did not go through ustack\n%s", c["xsk.rx_bytes"], size, tail(log, 6000))
	}
	if c["tcp.active_opens"] < 1 {
		t.Errorf("tcp.active_opens %d: the connection was not opened by ustack", c["tcp.active_opens"])
	}
	// onloadctl sockets listed the second download's connection, onloadctl capture wrote 20
	// frames, and tcpdump read them
	if !regexp.MustCompile(`(?m)^tcp +ESTAB .*:8000 .*"curl".* ustack`).MatchString(log) {
		t.Errorf("onloadctl sockets did not list curl's connection on the user-space path:\n%s", tail(log, 6000))
	}
	if !strings.Contains(log, "\n20 packets written\n") ||
		len(regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d+ IP .*\.8000[ :]`).FindAllString(log, -1)) != 5 {
		t.Errorf("onloadctl capture -c 20 and tcpdump -r: want 20 packets written and 5 lines read:\n%s", tail(log, 6000))
	}
}

// quickStart returns the commands of the fenced block after readmeMarker: one a line, lines
// ending in a backslash joined with the next, blank lines and comment lines left out.
func quickStart(readme []byte) ([]string, error) {
	_, rest, ok := bytes.Cut(readme, []byte(readmeMarker))
	if !ok {
		return nil, fmt.Errorf("README.md has no quick start marker %q", readmeMarker)
	}
	sc := bufio.NewScanner(bytes.NewReader(rest))
	sc.Scan() // the rest of the marker's line
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "```") {
		return nil, fmt.Errorf("README.md: no fenced block right after the quick start marker")
	}
	var cmds []string
	cont := ""
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "```") {
			if len(cmds) == 0 {
				return nil, fmt.Errorf("README.md: the quick start block is empty")
			}
			return cmds, nil
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cont += s
			continue
		}
		l, cont = cont+l, ""
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		cmds = append(cmds, l)
	}
	return nil, fmt.Errorf("README.md: the quick start block does not end")
}

// textCounters reads the counters of `onloadctl stats` in text form ("  group:" lines, then
// "    name   value" lines) into "group.name" -> value; the last process printed wins.
func textCounters(s string) map[string]uint64 {
	c := map[string]uint64{}
	group := ""
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "    ") && len(f) == 1 && strings.HasSuffix(f[0], ":"):
			group = strings.TrimSuffix(f[0], ":")
		case strings.HasPrefix(l, "    ") && len(f) == 2 && group != "":
			if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				c[group+"."+f[0]] = v
			}
		}
	}
	return c
}
