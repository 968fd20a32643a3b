// Soak (`make soak`, not part of `make test`): mixed
// transfers for SOAK_MINUTES (default 30) through the fault relay with 2 %
// loss in both directions, ustack on one side (namespace A), the kernel on the
// other:
//
//   - nginx under LD_PRELOAD in A (the one long-lived ustack process: ustack
//     runs one process per interface) serves files of 4 KiB, 64 KiB, 1 MiB
//     and 8 MiB, directly (ustack sends) and through location /p/, a proxy to
//     a kernel HTTP server in B (python3 -m http.server) holding the same
//     files: there nginx opens a connection per request and ustack receives
//     the file before sending it on;
//   - soakDownloaders concurrent curl loops in B download the sizes in turn,
//     alternating direct and proxied passes.
//
// Every transfer is checked by sha256 and bounded (curl --max-time, and the
// process killed a little later), so a hang fails the run instead of
// blocking it. Every SOAK_SAMPLE_SECONDS (default: a sixth of the run, at most 5
// minutes) nginx's VmRSS, open file descriptors and onloadctl counters
// (tcp.curr_estab, active/passive opens) are sampled and logged. After a
// warm-up round the baseline is taken idle; at the end, idle again, the test
// asserts:
//
//   - every transfer completed byte-identically;
//   - nginx's tcp.curr_estab and open descriptors are back at the baseline
//     exactly, and the kernel in B has no established connection left;
//   - nginx's VmRSS is at most baseline + max(16 MiB, 25 % of baseline)
//     (the tolerance covers the Go heap's and the allocator's retained,
//     reusable memory, not growth per connection: 30 minutes makes
//     thousands of connections).
//
// "Idle" is: no connection left, then SOAK_IDLE_SECONDS (default 130: past
// the Go runtime's 2-minute forced collection, after which its scavenger
// returns the pages a busy heap goal left mapped) without traffic.
// The baseline is taken idle after a warm-up under the same load (the first
// quarter of the run, at most 5 minutes), so that the working size of the Go
// heap and the UMEM is in it; the growth measured is that of the rest of the
// run. The first idle sample, before any load, is logged too.
//
// Gated by USTACK_SOAK=1.
package tests

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ustack/tests/faults"
	"ustack/tests/topo"
)

const (
	soakDownloaders = 4
	soakLoss        = 0.02
)

type soakSample struct {
	at                  time.Duration
	rssKiB              uint64
	fds                 int
	estab, active, pass uint64
	transfers           int64
	bytes               int64
}

func (s soakSample) String() string {
	return fmt.Sprintf("t=%-6v nginx VmRSS %6d KiB, fds %3d, tcp.curr_estab %2d, passive_opens %6d, active_opens %d; transfers %d, %d MiB",
		s.at.Round(time.Second), s.rssKiB, s.fds, s.estab, s.pass, s.active, s.transfers, s.bytes/mb)
}

// vmRSS returns VmRSS of pid in KiB.
func vmRSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// rssBreakdown is RssAnon, RssFile and RssShmem of pid.
func rssBreakdown(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	var parts []string
	for l := range strings.Lines(string(b)) {
		if strings.HasPrefix(l, "Rss") {
			parts = append(parts, strings.Join(strings.Fields(l), " "))
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// nginxErrors returns the first max lines of an nginx error log at level
// error or worse, and ustack's panic reports (the log also holds the Go
// runtime's gctrace lines).
func nginxErrors(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for l := range strings.Lines(string(b)) {
		for _, lvl := range []string{"[error]", "[crit]", "[alert]", "[emerg]", "panic"} {
			if strings.Contains(l, lvl) && len(lines) < max {
				lines = append(lines, strings.TrimSpace(l))
				break
			}
		}
	}
	return strings.Join(lines, "\n")
}

func numFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// kernelEstab counts the established TCP connections in namespace ns.
func kernelEstab(t *testing.T, ns string) int {
	r := topo.Run(ns, nil, 10*time.Second, "ss", "-tnH", "state", "established")
	if r.Err != nil {
		t.Errorf("ss in %s: %s", ns, r)
		return -1
	}
	n := 0
	for l := range strings.Lines(string(r.Stdout)) {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

func soakConfig(t *testing.T) (dur, every, idle time.Duration) {
	if os.Getenv("USTACK_SOAK") != "1" {
		t.Skip("soak: set USTACK_SOAK=1 (make soak)")
	}
	minutes := 30.0
	if s := os.Getenv("SOAK_MINUTES"); s != "" {
		m, err := strconv.ParseFloat(s, 64)
		if err != nil || m <= 0 {
			t.Fatalf("SOAK_MINUTES=%q: want a positive number", s)
		}
		minutes = m
	}
	dur = time.Duration(minutes * float64(time.Minute))
	idle = 130 * time.Second
	if s := os.Getenv("SOAK_IDLE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			t.Fatalf("SOAK_IDLE_SECONDS=%q: want a number of seconds", s)
		}
		idle = time.Duration(n) * time.Second
	}
	every = min(5*time.Minute, dur/6)
	if s := os.Getenv("SOAK_SAMPLE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("SOAK_SAMPLE_SECONDS=%q: want a positive number", s)
		}
		every = time.Duration(n) * time.Second
	}
	return dur, max(every, 5*time.Second), idle
}

func TestSoak(t *testing.T) {
	dur, every, idle := soakConfig(t)
	for _, p := range []string{"nginx", "curl", "ss"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("SKIP soak: %s not installed: run `make deps`", p)
		}
	}
	var seed uint64
	if s := os.Getenv("USTACK_INTEROP_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	o := faults.Symmetric(faults.Fault{Loss: soakLoss})
	o.Seed = seed
	e, ft := setupFaults(t, o)
	tp := ft.Topo

	// Files: served by nginx and by the upstream in B.
	www := dataDir(t)
	dlSizes := []int64{4 << 10, 64 << 10, 1 * mb, 8 * mb}
	dlSums := map[string]string{}
	var dlNames []string
	for _, s := range dlSizes {
		name := fmt.Sprintf("f%d", s)
		dlSums[name] = randomFile(t, www, name, s)
		dlNames = append(dlNames, name)
	}
	// The upstream of nginx's /p/ location: a kernel HTTP server in B
	// serving the same files.
	up := startServer(t, tp, tp.NSB, nil, soakUpstreamPort, false, python, "-m", "http.server", "--bind", tp.AddrB, "--directory", www, strconv.Itoa(soakUpstreamPort))
	_ = up

	ndir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ndir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(soakNginxConf(ndir, www, tp.AddrB)), 0o644); err != nil {
		t.Fatal(err)
	}
	// gctrace: the Go runtime inside nginx (ustack) prints its heap after
	// every collection on stderr, which tells a live-heap leak from memory
	// the runtime merely retains (logged, not asserted).
	srv := startServer(t, tp, tp.NSA, e.accel("GODEBUG=gctrace=1"), nginxPort, false, "nginx", "-p", ndir+"/", "-c", conf, "-e", filepath.Join(ndir, "error.log"))
	pid := srv.Pid
	gcLog := filepath.Join(ndir, "soak-error.log") // nginx's stderr goes to its error log

	var transfers, bytes, failures atomic.Int64
	var failMu sync.Mutex
	var failNotes []string
	failed := func(format string, args ...any) {
		failures.Add(1)
		failMu.Lock()
		defer failMu.Unlock()
		if len(failNotes) < 20 {
			failNotes = append(failNotes, fmt.Sprintf(format, args...))
		}
	}
	// bound is the time limit of one transfer: generous for 2 % loss, but
	// finite: a transfer that exceeds it has hung.
	bound := func(size int64) time.Duration { return 30*time.Second + time.Duration(size/interopMinRate)*time.Second }

	// download fetches name from nginx in A, directly (nginx sends the
	// file from disk) or through its proxy (nginx receives it from the
	// upstream in B over a connection it opens, and sends it on).
	download := func(out, name string, proxied bool) {
		size := dlSizesByName(name)
		lim := bound(size)
		url := fmt.Sprintf("http://%s:%d/%s", tp.AddrA, nginxPort, name)
		if proxied {
			url = fmt.Sprintf("http://%s:%d/p/%s", tp.AddrA, nginxPort, name)
			lim *= 2
		}
		r := topo.Run(tp.NSB, nil, lim+10*time.Second, "curl", "-sS", "--fail", "--max-time", strconv.Itoa(int(lim.Seconds())), "-o", out, url)
		if r.Err != nil {
			failed("curl %s: %s", url, r)
			return
		}
		if s := soakSHA(out); s != dlSums[name] {
			failed("curl %s: got sha256 %s, want %d bytes %s", url, s, size, dlSums[name])
			return
		}
		transfers.Add(1)
		bytes.Add(size)
	}
	// Warm-up: each kind of transfer once, then the idle baseline.
	wdir := dataDir(t)
	for _, n := range dlNames {
		download(filepath.Join(wdir, "w"), n, false)
		download(filepath.Join(wdir, "w"), n, true)
	}
	if failures.Load() > 0 {
		t.Fatalf("warm-up transfers failed:\n%s", strings.Join(failNotes, "\n"))
	}
	start := time.Now()
	sample := func() soakSample {
		s := soakSample{at: time.Since(start), fds: numFDs(pid), transfers: transfers.Load(), bytes: bytes.Load()}
		var err error
		if s.rssKiB, err = vmRSS(pid); err != nil {
			t.Errorf("nginx: %v (exited? %v)\n%s", err, srv.Exited(), srv.Output())
		}
		c := e.stats(t, pid)
		s.estab, s.active, s.pass = c["tcp.curr_estab"], c["tcp.active_opens"], c["tcp.passive_opens"]
		return s
	}
	settle := func() soakSample {
		// Idle: wait (bounded) for the connections to finish closing.
		var s soakSample
		for deadline := time.Now().Add(60 * time.Second); ; {
			s = sample()
			if (s.estab == 0 && kernelEstab(t, tp.NSB) == 0) || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		// Then stay idle past the Go runtime's forced collection (every
		// 2 minutes) so that its scavenger can return what the load's heap
		// goal left mapped, as it would for the baseline.
		time.Sleep(idle)
		s = sample()
		s.at = time.Since(start)
		return s
	}
	// runLoad runs the concurrent downloaders for d, sampling every
	// `every` when samples is not nil; every transfer is bounded, so the
	// workers end within the longest bound after d.
	runLoad := func(d time.Duration, samples *[]soakSample) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range soakDownloaders {
			wg.Go(func() {
				out := filepath.Join(dataDir(t), "dl")
				for i := w; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					// Sizes in turn; every other pass of a worker through
					// the sizes goes through the proxy.
					download(out, dlNames[i%len(dlNames)], (i/len(dlNames))%2 == w%2)
				}
			})
		}
		tick := time.NewTicker(every)
		end := time.After(d)
	loop:
		for {
			select {
			case <-tick.C:
				if samples == nil {
					continue
				}
				s := sample()
				*samples = append(*samples, s)
				t.Logf("sample: %s (failures so far %d); Go heap: %s", s, failures.Load(), lastGC(gcLog))
				if srv.Exited() {
					t.Errorf("nginx exited during the soak:\n%s", srv.Output())
					break loop
				}
			case <-end:
				break loop
			}
		}
		tick.Stop()
		close(stop)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		limit := 2*bound(8*mb) + 30*time.Second
		select {
		case <-done:
		case <-time.After(limit):
			t.Fatalf("workers did not stop within %v: a transfer hung past its own bound", limit)
		}
	}

	// Warm-up under load (the first quarter of the run, at most 5 minutes):
	// the Go heap, the allocator and the UMEM reach their working size;
	// then the idle baseline.
	warm := min(dur/4, 5*time.Minute)
	t.Logf("soak: %v of transfers (%v warm-up, then measured) under %.0f%% loss both ways, %d concurrent curl downloaders (direct and proxied), sampling every %v",
		dur, warm, 100*soakLoss, soakDownloaders, every)
	t.Logf("before warm-up (idle): %s %s", sample(), rssBreakdown(pid))
	runLoad(warm, nil)
	base := settle()
	t.Logf("baseline (after warm-up, idle): %s %s; Go heap: %s", base, rssBreakdown(pid), lastGC(gcLog))
	samples := []soakSample{base}
	start = time.Now()
	runLoad(dur-warm, &samples)
	elapsed := time.Since(start)
	final := settle()
	samples = append(samples, final)
	var peak uint64
	for _, s := range samples {
		peak = max(peak, s.rssKiB)
	}
	kb := kernelEstab(t, tp.NSB)
	t.Logf("final (idle): %s %s; kernel ESTABLISHED in B: %d; Go heap: %s", final, rssBreakdown(pid), kb, lastGC(gcLog))
	t.Logf("soak: %d transfers, %d MiB in total; measured part: %d transfers, %d MiB in %v (%.2f MiB/s aggregate); %d failed; nginx VmRSS baseline %d KiB, peak %d KiB, final %d KiB",
		transfers.Load(), bytes.Load()/mb, transfers.Load()-base.transfers, (bytes.Load()-base.bytes)/mb, elapsed.Round(time.Second),
		float64(bytes.Load()-base.bytes)/mb/elapsed.Seconds(), failures.Load(),
		base.rssKiB, peak, final.rssKiB)
	c := e.stats(t, pid)
	e.logStats(t, "nginx", c)
	t.Logf("nginx ustack: retrans %d (fast %d, timeouts %d), rsts sent %d recv %d, listen drops %d",
		c["tcp.retrans_segs"], c["tcp.fast_retrans"], c["tcp.timeouts"], c["tcp.rsts_sent"], c["tcp.rsts_recv"], c["tcp.listen_drops"])
	if st, err := ft.Stats(); err == nil {
		t.Logf("relay counters:\n%s", st)
	}

	if c["shim.panics"] != 0 {
		t.Errorf("shim.panics %d: calls failed with EIO after a panic in ustack; nginx's errors:\n%s", c["shim.panics"],
			nginxErrors(gcLog, 20))
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d transfers failed; the first ones:\n%s\nnginx's errors:\n%s", n, n+transfers.Load(),
			strings.Join(failNotes, "\n"), nginxErrors(gcLog, 20))
	}
	if transfers.Load() == 0 {
		t.Error("no transfer completed")
	}
	if final.estab != base.estab {
		t.Errorf("nginx tcp.curr_estab %d at the end, %d at the baseline: connections leaked", final.estab, base.estab)
	}
	if final.fds != base.fds {
		t.Errorf("nginx has %d open descriptors at the end, %d at the baseline: descriptors leaked", final.fds, base.fds)
	}
	if kb != 0 {
		t.Errorf("the kernel in B still has %d established connections", kb)
	}
	if tol := max(16<<10, base.rssKiB/4); final.rssKiB > base.rssKiB+tol {
		t.Errorf("nginx VmRSS %d KiB at the end > baseline %d KiB + tolerance %d KiB: memory leaked", final.rssKiB, base.rssKiB, tol)
	}
}

func dlSizesByName(name string) int64 {
	n, _ := strconv.ParseInt(strings.TrimPrefix(name, "f"), 10, 64)
	return n
}

// soakSHA is fileSHA for the workers' goroutines (no t.Fatal there).
func soakSHA(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return bytesSHA(b)
}

const soakUpstreamPort = 8081

// soakNginxConf is nginxConf (apps_test.go) plus location /p/, proxied to
// the kernel HTTP server in B (a new upstream connection per request).
func soakNginxConf(dir, www, upstream string) string {
	c := nginxConf(dir, www, "soak")
	loc := fmt.Sprintf("        location /p/ { proxy_pass http://%s:%d/; }\n    }\n}\n", upstream, soakUpstreamPort)
	i := strings.LastIndex(c, "    }\n}")
	return c[:i] + loc
}

// lastGC is the heap figures of the last gctrace line in the file:
// "before->after->live MB, goal MB goal" and the number of collections.
func lastGC(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if !strings.HasPrefix(l, "gc ") {
			continue
		}
		n := strings.Fields(l)[1]
		if j := strings.Index(l, "ms cpu, "); j >= 0 {
			rest := l[j+len("ms cpu, "):]
			if k := strings.Index(rest, " goal"); k >= 0 {
				return "gc #" + n + ": " + rest[:k] + " goal"
			}
		}
		return l
	}
	return "no gctrace line"
}
