package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ustack/tests/topo"
)

const (
	manyConns  = 4000
	manyNofile = 4096
	// manyFDSlack is the constant of "open fds <= connections + C": the server's own
	// fds (stdin, stdout, stderr, the listener, the epoll set: 5) and ustack's fixed
	// per-process ones (the AF_XDP socket, netlink, the poller's wake-up objects, the Go
	// runtime's netpoller, the log). 64 is far above those and far below the 4000 that
	// a single extra fd per connection would cost.
	manyFDSlack = 64
	manyPort    = 9500
	manyBatch   = 200
)

// TestManyConnections: with RLIMIT_NOFILE 4096, a server in
// namespace A (tests/c/many_server.c: non-blocking, level-triggered epoll) holds 4,000
// concurrent connections from a kernel client in namespace B (tests/c/many_client.c),
// each answered; while the client holds them all, the server's open fds (/proc/PID/fd)
// are at most connections + manyFDSlack. The kernel run proves the expectation; under
// ustack the connections must also be ustack's (tcp.passive_opens >= 4000). A second
// request on every connection, after the count, shows they all still work. The
// server's VmRSS at 4,000 connections is logged for both.
//
//	make build && go test -v -count=1 -run TestManyConnections ./tests/
func TestManyConnections(t *testing.T) {
	e := setup(t, "prlimit")
	root := repoRoot(t)
	srvBin := stressBinary(t, root, "many_server")
	cliBin := stressBinary(t, root, "many_client")
	for i, run := range []struct {
		name string
		env  []string
	}{{"kernel", nil}, {"ustack", e.accel()}} {
		t.Run(run.name, func(t *testing.T) {
			e.manyConnections(t, run.env, manyPort+i, srvBin, cliBin)
		})
	}
}

func (e *env) manyConnections(t *testing.T, env []string, port int, srvBin, cliBin string) {
	tp := e.tp
	start := time.Now()
	nofile := fmt.Sprintf("--nofile=%d:%d", manyNofile, manyNofile)
	srv, err := tp.StartServer(tp.NSA, env, port, serverWait, "prlimit", nofile, "--", srvBin, strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", srv.Pid)); err != nil {
		t.Fatal(err)
	} else if !regexp.MustCompile(`Max open files\s+4096\s+4096\s`).Match(lim) {
		t.Fatalf("the server's RLIMIT_NOFILE is not 4096:\n%s", lim)
	}

	// The client, with a pipe on its stdin: it holds its connections until EOF.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli := topo.Command(ctx, tp.NSB, nil, cliBin, tp.AddrA, strconv.Itoa(port), strconv.Itoa(manyConns),
		strconv.Itoa(manyBatch), "60")
	stdin, err := cli.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cli.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cli.Stderr = &stderr
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	// next returns the client's lines until one starts with prefix; false at EOF or timeout.
	next := func(prefix string, timeout time.Duration) bool {
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return false
				}
				out = append(out, l)
				if strings.HasPrefix(l, prefix) {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	cliDone := make(chan error, 1)
	waited := false
	waitClient := func() error {
		if !waited {
			waited = true
			go func() { cliDone <- cli.Wait() }()
		}
		select {
		case err := <-cliDone:
			return err
		case <-time.After(30 * time.Second):
			cancel()
			return fmt.Errorf("the client did not exit within 30 s after its stdin closed: %v", <-cliDone)
		}
	}
	defer func() {
		stdin.Close()
		cancel()
		if !waited {
			cli.Wait()
		}
	}()

	holding := next("holding", 60*time.Second)
	opened := time.Since(start)
	all := slices.Contains(out, fmt.Sprintf("all %d answered", manyConns))
	if !holding || !all {
		t.Errorf("the client did not get %d answers (holding %v after %v):\n%s\nclient stderr:\n%s\nserver: %s",
			manyConns, holding, opened.Round(time.Millisecond), strings.Join(out, "\n"), clipBytes(stderr.Bytes(), 3000), srv.Output())
	} else {
		t.Logf("%s (%v since the server started)", out[len(out)-3], opened.Round(time.Millisecond))
	}

	// Everything is open now (or as far as it got): count the server's fds.
	fds, kinds := openFDs(t, srv.Pid)
	rss := procStatusField(srv.Pid, "VmRSS")
	st, err := manyServerStatus(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server at %d connections: %d open fds (%s), VmRSS %s; %s", st["conns"], fds, kinds, rss, st)
	if st["conns"] != manyConns || st["emfile"] != 0 {
		t.Errorf("the server holds %d connections (accepted %d, accept EMFILE/ENFILE %d times), want %d",
			st["conns"], st["accepted"], st["emfile"], manyConns)
	}
	if limit := int(st["conns"]) + manyFDSlack; fds > limit {
		per := 0.0
		if st["conns"] > 0 {
			per = float64(fds-5) / float64(st["conns"])
		}
		t.Errorf("the server has %d open fds with %d connections: more than connections + %d (~%.2f fds per connection)",
			fds, st["conns"], manyFDSlack, per)
	}
	if env != nil {
		c := e.stats(t, srv.Pid)
		e.logStats(t, "many_server", c)
		if c["tcp.passive_opens"] < manyConns {
			t.Errorf("tcp.passive_opens %d, want >= %d (every connection ustack's)", c["tcp.passive_opens"], manyConns)
		}
	}

	// Release the client: it asks again on every connection, then closes them.
	stdin.Close()
	next("closed", 40*time.Second)
	err = waitClient()
	for l := range lines { // the rest, if any
		out = append(out, l)
	}
	if again := fmt.Sprintf("all %d answered again", manyConns); err != nil || !slices.Contains(out, again) {
		t.Errorf("second round: want %q and exit 0; client: %v\n%s\nstderr:\n%s", again, err,
			strings.Join(out, "\n"), clipBytes(stderr.Bytes(), 3000))
	}
	r := srv.Stop()
	t.Logf("run took %v", time.Since(start).Round(time.Millisecond))
	if r != nil && (r.Code != 0 || len(bytes.TrimSpace(r.Stderr)) > 0) {
		t.Logf("server: %s", r)
	}
}

// openFDs counts /proc/PID/fd and sums them up by kind ("socket", "anon_inode:[eventfd]", ...).
func openFDs(t *testing.T, pid int) (int, string) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	kinds := map[string]int{}
	for _, ent := range ents {
		l, err := os.Readlink(filepath.Join(dir, ent.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if k, _, ok := strings.Cut(l, ":["); ok && k != "anon_inode" {
			l = k // socket:[123], pipe:[456]
		}
		kinds[l]++
	}
	var s []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		s = append(s, fmt.Sprintf("%s %d", k, kinds[k]))
	}
	return len(ents), strings.Join(s, ", ")
}

// procStatusField returns a field of /proc/PID/status, e.g. "VmRSS" -> "12345 kB".
func procStatusField(pid int, name string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

type manyStatus map[string]int64

func (s manyStatus) String() string {
	var b []string
	for _, k := range []string{"conns", "accepted", "answered", "closed", "emfile", "maxfd"} {
		b = append(b, fmt.Sprintf("%s %d", k, s[k]))
	}
	return strings.Join(b, " ")
}

// manyServerStatus sends SIGUSR1 to many_server and parses the status line it prints.
func manyServerStatus(srv *topo.Proc) (manyStatus, error) {
	count := func() int { return strings.Count(srv.Output(), "\nstatus conns ") }
	before := count()
	if err := syscall.Kill(srv.Pid, syscall.SIGUSR1); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(5 * time.Second); count() == before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) || srv.Exited() {
			return nil, fmt.Errorf("no status line from the server within 5 s of SIGUSR1: %s", srv.Output())
		}
	}
	o := srv.Output()
	i := strings.LastIndex(o, "\nstatus conns ")
	line, _, _ := strings.Cut(o[i+1:], "\n")
	f := strings.Fields(line)
	st := manyStatus{}
	for k := 1; k+1 < len(f); k += 2 {
		v, err := strconv.ParseInt(f[k+1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad status line %q", line)
		}
		st[f[k]] = v
	}
	return st, nil
}
