package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ustack/shm"
)

// watchCol is one rate `onloadctl stats --watch` shows: the per-second growth of the sum of
// some counters.
type watchCol struct {
	head  string // text column, after sar -n DEV / -n TCP / -n ETCP
	key   string // JSON key
	scale float64
	sum   func(s *shm.StatsSnapshot) uint64
}

// counter sums the named counters.
func counter(names ...string) func(*shm.StatsSnapshot) uint64 {
	return func(s *shm.StatsSnapshot) uint64 {
		var n uint64
		for _, name := range names {
			v, _ := s.Get(name)
			n += v
		}
		return n
	}
}

// drops is every frame or segment the process dropped: the stack's drop.* counters (but
// drop.no_port, a part of drop.no_socket), and the frames lost on the AF_XDP socket: those the
// kernel dropped for it and those that found its TX ring full.
func drops(s *shm.StatsSnapshot) uint64 {
	var n uint64
	for i, name := range s.Names {
		if strings.HasPrefix(name, "drop.") && name != "drop.no_port" {
			n += s.Values[i]
		}
	}
	return n + counter("xsk.kernel_rx_dropped", "xsk.tx_ring_full")(s)
}

var watchCols = []watchCol{
	{"rxpck/s", "rx_frames", 1, counter("xsk.rx_packets")},
	{"txpck/s", "tx_frames", 1, counter("xsk.tx_packets")},
	{"rxkB/s", "rx_bytes", 1.0 / 1024, counter("xsk.rx_bytes")},
	{"txkB/s", "tx_bytes", 1.0 / 1024, counter("xsk.tx_bytes")},
	{"iseg/s", "tcp_segs_in", 1, counter("tcp.segs_in")},
	{"oseg/s", "tcp_segs_out", 1, counter("tcp.segs_out")},
	{"retrans/s", "tcp_retrans_segs", 1, counter("tcp.retrans_segs")},
	{"drop/s", "drops", 1, drops},
}

// watchHeaderEvery is how many lines go by before the header is printed again (at the start of
// an interval), as vmstat repeats its own.
const watchHeaderEvery = 20

// procKey tells processes apart across readings: a pid and the start time that goes with it.
type procKey struct {
	pid   int
	start uint64
}

// watchLine is one process's rates over one interval (or an interface's total).
type watchLine struct {
	Time      string             `json:"time"`
	Interval  float64            `json:"interval"` // seconds the rates are over
	Pid       int                `json:"pid"`      // 0 in a total
	Comm      string             `json:"comm"`
	Iface     string             `json:"iface"`
	Total     bool               `json:"total,omitempty"`     // the sum of an interface's processes
	Processes int                `json:"processes,omitempty"` // in a total, how many
	Exited    bool               `json:"exited,omitempty"`    // the process ended during the interval
	Rates     map[string]float64 `json:"rates"`               // per second, by watchCol.key
	at        time.Time
}

// watcher prints the rates of the processes of a stats directory, interval after interval.
type watcher struct {
	dir      string
	pid      int // 0: every process
	asJSON   bool
	out, err io.Writer

	prev    map[procKey]*shm.StatsSnapshot
	prevAt  map[procKey]time.Time
	lines   int // since the last header
	headers int
	idle    bool // the last interval had no process to show
}

// read takes a reading of the segments of the live processes, and of those that were alive at
// the last reading (so that a process that ended is shown once more, with its last counters).
func (w *watcher) read() ([]*shm.StatsSnapshot, []time.Time, error) {
	var ats []time.Time
	snaps, err := readSegments(w.dir, w.pid, w.err, func(s *shm.StatsSnapshot) bool {
		if !s.Alive && w.prev[procKey{s.Pid, s.StartTime}] == nil {
			return false
		}
		ats = append(ats, time.Now())
		return true
	})
	return snaps, ats, err
}

// reset takes the first reading, the base of the first interval's rates.
func (w *watcher) reset() error {
	w.prev, w.prevAt = map[procKey]*shm.StatsSnapshot{}, map[procKey]time.Time{}
	snaps, ats, err := w.read()
	if err != nil {
		return err
	}
	w.keep(snaps, ats)
	return nil
}

// keep makes snaps the base of the next interval; processes that ended are dropped.
func (w *watcher) keep(snaps []*shm.StatsSnapshot, ats []time.Time) {
	clear(w.prev)
	clear(w.prevAt)
	for i, s := range snaps {
		if s.Alive {
			k := procKey{s.Pid, s.StartTime}
			w.prev[k], w.prevAt[k] = s, ats[i]
		}
	}
}

// step takes a reading and prints the interval since the last one.
func (w *watcher) step() error {
	snaps, ats, err := w.read()
	if err != nil {
		return err
	}
	lines := w.rates(snaps, ats)
	w.keep(snaps, ats)
	return w.print(lines)
}

// rates computes a line per process of snaps from its last reading, or, for a process that
// appeared since, from the creation of its segment (when all its counters were 0).
func (w *watcher) rates(snaps []*shm.StatsSnapshot, ats []time.Time) []watchLine {
	now := time.Now()
	var lines []watchLine
	for i, s := range snaps {
		k := procKey{s.Pid, s.StartTime}
		base, since := w.prev[k], w.prevAt[k]
		if base == nil {
			since = s.Created
		}
		secs := ats[i].Sub(since).Seconds()
		if secs < 0.001 {
			continue // born this instant: next interval
		}
		l := watchLine{at: now, Time: now.Format(time.RFC3339), Interval: math.Round(secs*1e6) / 1e6, Pid: s.Pid, Comm: comm(s),
			Iface: s.Iface, Exited: !s.Alive, Rates: map[string]float64{}}
		for _, c := range watchCols {
			v := c.sum(s)
			var b uint64
			if base != nil {
				b = c.sum(base)
			}
			r := 0.0
			if v > b {
				r = float64(v-b) / secs
			}
			l.Rates[c.key] = round3(r)
		}
		lines = append(lines, l)
	}
	return withLineTotals(lines)
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// withLineTotals appends, for every interface that more than one line is on, a line whose rates
// are the sums of theirs.
func withLineTotals(lines []watchLine) []watchLine {
	var ifaces []string
	by := map[string][]int{}
	for i, l := range lines {
		if _, ok := by[l.Iface]; !ok {
			ifaces = append(ifaces, l.Iface)
		}
		by[l.Iface] = append(by[l.Iface], i)
	}
	for _, ifc := range ifaces {
		group := by[ifc]
		if len(group) < 2 {
			continue
		}
		t := watchLine{at: lines[group[0]].at, Time: lines[group[0]].Time, Interval: lines[group[0]].Interval, Comm: "-", Iface: ifc,
			Total: true, Processes: len(group), Rates: map[string]float64{}}
		for _, i := range group {
			for k, v := range lines[i].Rates {
				t.Rates[k] = round3(t.Rates[k] + v)
			}
		}
		lines = append(lines, t)
	}
	return lines
}

func (w *watcher) print(lines []watchLine) error {
	if len(lines) == 0 && !w.idle {
		fmt.Fprintf(w.err, "onloadctl: no ustack processes (stats directory %s)\n", w.dir)
	}
	w.idle = len(lines) == 0
	var b strings.Builder
	if w.asJSON {
		for _, l := range lines {
			j, err := json.Marshal(l)
			if err != nil {
				return fmt.Errorf("writing json: %w", err)
			}
			b.Write(j)
			b.WriteByte('\n')
		}
	} else {
		if len(lines) > 0 && (w.headers == 0 || w.lines >= watchHeaderEvery) {
			fmt.Fprintf(&b, "%-8s %7s %-15s %-10s", "time", "pid", "comm", "iface")
			for _, c := range watchCols {
				fmt.Fprintf(&b, " %10s", c.head)
			}
			b.WriteByte('\n')
			w.headers++
			w.lines = 0
		}
		for _, l := range lines {
			pid := strconv.Itoa(l.Pid)
			name := l.Comm
			if l.Total {
				pid, name = "total", strconv.Itoa(l.Processes)+" processes"
			}
			fmt.Fprintf(&b, "%-8s %7s %-15s %-10s", l.at.Format("15:04:05"), pid, name, orDash(l.Iface))
			for _, c := range watchCols {
				fmt.Fprintf(&b, " %10.1f", l.Rates[c.key]*c.scale)
			}
			if l.Exited {
				b.WriteString("  exited")
			}
			b.WriteByte('\n')
			w.lines++
		}
	}
	if _, err := io.WriteString(w.out, b.String()); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}

// run prints count intervals (0: until ctx ends) of every seconds.
func (w *watcher) run(ctx context.Context, every time.Duration, count int) error {
	if err := w.reset(); err != nil {
		return err
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 0; count == 0 || n < count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := w.step(); err != nil {
			return err
		}
	}
	return nil
}

// watchFlag is --watch [SECONDS]: a flag that may stand alone (1 second) or take a value,
// either --watch=2 or, cmdStatsWatch sees to it, --watch 2.
type watchFlag struct {
	set    bool
	valued bool
	secs   float64
}

func (f *watchFlag) IsBoolFlag() bool { return true }
func (f *watchFlag) String() string   { return "" }
func (f *watchFlag) Set(s string) error {
	f.set = true
	if s == "true" {
		f.secs = 1
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0.01) || v > 86400 {
		return fmt.Errorf("want a number of seconds from 0.01 to 86400")
	}
	f.secs, f.valued = v, true
	return nil
}

// watchRequested reports whether the arguments of `onloadctl stats` ask for --watch.
func watchRequested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "watch" {
			return true
		}
	}
	return false
}

// cmdStatsWatch is `onloadctl stats --watch [SECONDS] [--count N] [--json] [--pid N] [--dir D]`.
func cmdStatsWatch(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stats --watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var every watchFlag
	fs.Var(&every, "watch", "print rates every `SECONDS` (default 1)")
	count := fs.Int("count", 0, "stop after this many intervals (default: at SIGINT or SIGTERM)")
	asJSON := fs.Bool("json", false, "print one JSON object a line: a process (or a total) in an interval")
	pid := fs.Int("pid", 0, "watch only this process")
	dirFlag := fs.String("dir", "", "stats directory (default $USTACK_STATS_DIR or /dev/shm)")
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		// --watch 2: the flag package left the seconds as an argument
		if every.set && !every.valued && rest[0] != "--" {
			if err := every.Set(rest[0]); err == nil {
				rest = rest[1:]
				continue
			}
		}
		fmt.Fprintf(stderr, "onloadctl stats: unexpected arguments %q\n", rest)
		return 2
	}
	if *count < 0 {
		fmt.Fprintf(stderr, "onloadctl stats: --count %d: want 0 or more\n", *count)
		return 2
	}
	w := &watcher{dir: statsDir(*dirFlag), pid: *pid, asJSON: *asJSON, out: stdout, err: stderr}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := w.run(ctx, time.Duration(every.secs*float64(time.Second)), *count); err != nil {
		fmt.Fprintf(stderr, "onloadctl: %v\n", err)
		return 1
	}
	return 0
}
