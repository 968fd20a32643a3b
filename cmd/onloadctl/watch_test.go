package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func decodeLines(t *testing.T, b []byte) []watchLine {
	t.Helper()
	var lines []watchLine
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var l watchLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("%v in\n%s", err, b)
		}
		lines = append(lines, l)
	}
	if n := bytes.Count(b, []byte("\n")); n != len(lines) {
		t.Fatalf("%d lines for %d objects:\n%s", n, len(lines), b)
	}
	return lines
}

// over returns the count a rate stands for over its interval.
func over(l watchLine, key string) float64 { return math.Round(l.Rates[key] * l.Interval) }

// Rates are the growth over the interval; a process that appears is counted from its segment's
// creation, one that ends is shown once more, marked, then no more; processes on one interface
// get a total.
func TestWatchRates(t *testing.T) {
	dir := t.TempDir()
	me := newTestSegment(t, dir, "veth0")
	me.add("xsk.rx_packets", 500) // before the first reading: not in any rate
	var out, errb bytes.Buffer
	w := &watcher{dir: dir, asJSON: true, out: &out, err: &errb}
	if err := w.reset(); err != nil {
		t.Fatal(err)
	}

	me.add("xsk.rx_packets", 1000)
	me.add("xsk.tx_packets", 400)
	me.add("xsk.rx_bytes", 1500000)
	me.add("tcp.segs_in", 990)
	me.add("tcp.retrans_segs", 2)
	me.add("drop.malformed", 5)
	me.add("drop.no_socket", 3)
	me.add("drop.no_port", 3) // part of no_socket
	me.add("xsk.kernel_rx_dropped", 1)
	child, kill := liveChild(t, dir, "veth0", []string{"xsk.rx_packets", "xsk.tx_packets"}, []uint64{70, 30})
	time.Sleep(50 * time.Millisecond)
	if err := w.step(); err != nil {
		t.Fatal(err)
	}
	lines := decodeLines(t, out.Bytes())
	if len(lines) != 3 {
		t.Fatalf("%d lines, want me, the child and their total:\n%s", len(lines), out.String())
	}
	mine, kid, total := lines[0], lines[1], lines[2]
	if mine.Pid != os.Getpid() || kid.Pid != child || !total.Total || total.Processes != 2 || total.Iface != "veth0" || total.Pid != 0 {
		t.Fatalf("lines:\n%s", out.String())
	}
	if mine.Interval < 0.04 || mine.Interval > 5 {
		t.Errorf("interval %v s", mine.Interval)
	}
	for key, want := range map[string]float64{"rx_frames": 1000, "tx_frames": 400, "rx_bytes": 1500000, "tx_bytes": 0,
		"tcp_segs_in": 990, "tcp_segs_out": 0, "tcp_retrans_segs": 2, "drops": 9} {
		if got := over(mine, key); math.Abs(got-want) > max(0.5, want*1e-5) {
			t.Errorf("%s: %v/s over %v s is %v, want %v", key, mine.Rates[key], mine.Interval, got, want)
		}
	}
	if got := over(kid, "rx_frames"); got != 70 || kid.Comm != "sleep" || kid.Exited {
		t.Errorf("new process: %+v (rx %v)", kid, got)
	}
	if got, want := total.Rates["rx_frames"], mine.Rates["rx_frames"]+kid.Rates["rx_frames"]; math.Abs(got-want) > 0.01 {
		t.Errorf("total rx %v, want %v", got, want)
	}

	// the child ends: one more line, marked exited, then none
	kill()
	for _, wantChild := range []bool{true, false} {
		out.Reset()
		time.Sleep(5 * time.Millisecond)
		if err := w.step(); err != nil {
			t.Fatal(err)
		}
		lines = decodeLines(t, out.Bytes())
		found := false
		for _, l := range lines {
			if l.Pid == child {
				found = true
				if !l.Exited || over(l, "rx_frames") != 0 {
					t.Errorf("ended child: %+v", l)
				}
			}
		}
		if found != wantChild {
			t.Errorf("child shown %v, want %v:\n%s", found, wantChild, out.String())
		}
	}
	if len(lines) != 1 || lines[0].Pid != os.Getpid() || lines[0].Rates["rx_frames"] != 0 {
		t.Errorf("after the child:\n%s", out.String())
	}
}

// The text form: a header first and again after 20 lines, one line per process, the columns
// the header names.
func TestWatchText(t *testing.T) {
	dir := t.TempDir()
	me := newTestSegment(t, dir, "veth0")
	var out, errb bytes.Buffer
	w := &watcher{dir: dir, out: &out, err: &errb}
	if err := w.reset(); err != nil {
		t.Fatal(err)
	}
	for range 25 {
		me.add("xsk.rx_packets", 10)
		me.add("xsk.tx_bytes", 2048)
		time.Sleep(2 * time.Millisecond)
		if err := w.step(); err != nil {
			t.Fatal(err)
		}
	}
	rows := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(rows) != 27 || !strings.HasPrefix(rows[0], "time ") || !strings.HasPrefix(rows[21], "time ") {
		t.Fatalf("want a header, 20 lines, a header, 5 lines:\n%s", out.String())
	}
	head := strings.Fields(rows[0])
	wantHead := []string{"time", "pid", "comm", "iface", "rxpck/s", "txpck/s", "rxkB/s", "txkB/s", "iseg/s", "oseg/s", "retrans/s", "drop/s"}
	if strings.Join(head, " ") != strings.Join(wantHead, " ") {
		t.Errorf("header %q", head)
	}
	f := strings.Fields(rows[1])
	if len(f) != len(wantHead) || f[1] != itoa(os.Getpid()) || f[3] != "veth0" || f[4] == "0.0" || f[5] != "0.0" || f[7] == "0.0" {
		t.Errorf("line %q", rows[1])
	}
}

// Flags: --watch alone, --watch N and --watch=N, --count, a bad interval; no process: a note on
// stderr, no line.
func TestWatchFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"stats", "--watch", "0.02", "--count", "2", "--dir", dir},
		{"stats", "--dir", dir, "--watch=0.02", "--count", "1", "--json"},
		{"stats", "--count", "1", "--dir", dir, "-watch"},
	} {
		var out, errb bytes.Buffer
		start := time.Now()
		if rc := run(args, &out, &errb); rc != 0 || out.Len() != 0 || !strings.Contains(errb.String(), "no ustack processes") {
			t.Errorf("%q: rc %d, stdout %q, stderr %q", args, rc, out.String(), errb.String())
		}
		if args[len(args)-1] == "-watch" && time.Since(start) < 900*time.Millisecond {
			t.Errorf("--watch alone: an interval of %v, want 1 s", time.Since(start))
		}
	}
	for _, args := range [][]string{
		{"stats", "--watch", "0", "--count", "1", "--dir", dir},
		{"stats", "--watch=soon", "--dir", dir},
		{"stats", "--watch", "1", "2", "--dir", dir},
		{"stats", "--watch", "--count", "-1", "--dir", dir},
	} {
		var out, errb bytes.Buffer
		if rc := run(args, &out, &errb); rc != 2 {
			t.Errorf("%q: rc %d, want 2 (stderr %q)", args, rc, errb.String())
		}
	}
	if !watchRequested([]string{"--json", "--watch=3"}) || watchRequested([]string{"--json"}) || watchRequested([]string{"--", "--watch"}) {
		t.Errorf("watchRequested")
	}
}

// SIGTERM ends the watch (exit 0) without --count.
func TestWatchSignal(t *testing.T) {
	dir := t.TempDir()
	newTestSegment(t, dir, "veth0")
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"stats", "--watch", "0.02", "--dir", dir}, &out, &errb) }()
	// a line printed: the watch has its signal handler (else SIGTERM would end the test)
	for deadline := time.Now().Add(10 * time.Second); out.Len() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no line printed: %s", errb.String())
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case rc := <-done:
		if rc != 0 {
			t.Errorf("rc %d: %s", rc, errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not stop the watch")
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
