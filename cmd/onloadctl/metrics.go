package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ustack/shim"
	"ustack/shm"
)

// metricsContentType is the Prometheus text exposition format, version 0.0.4.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// cmdMetrics is `onloadctl metrics [--listen ADDR] [--dir D]`: the counters of the live
// processes in Prometheus's text format, once on stdout, or at GET /metrics until SIGINT or
// SIGTERM.
func cmdMetrics(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("metrics", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "serve GET /metrics on this address (host:port) until killed")
	dirFlag := fs.String("dir", "", "stats directory (default $USTACK_STATS_DIR or /dev/shm)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "onloadctl metrics: unexpected arguments %q\n", fs.Args())
		return 2
	}
	m := &metricsSource{dir: statsDir(*dirFlag), descs: shim.StatDescs(), stderr: stderr}
	if *listen == "" {
		if err := m.write(stdout); err != nil {
			fmt.Fprintf(stderr, "onloadctl: %v\n", err)
			return 1
		}
		return 0
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "onloadctl: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stderr, "onloadctl: serving metrics on http://%s/metrics\n", ln.Addr())
	if err := m.serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "onloadctl: %v\n", err)
		return 1
	}
	return 0
}

// metricsSource renders the segments of a stats directory as metrics.
type metricsSource struct {
	dir    string
	descs  []shm.StatDesc // what this build knows of the counters: help and type
	stderr io.Writer
}

// write reads the live processes' segments and writes their counters.
func (m *metricsSource) write(w io.Writer) error {
	snaps, err := readSegments(m.dir, 0, m.stderr, alive)
	if err != nil {
		return err
	}
	return writeMetrics(w, snaps, m.descs)
}

// serve answers GET /metrics on ln until ctx ends.
func (m *metricsSource) serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var b strings.Builder
		if err := m.write(&b); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", metricsContentType)
		io.WriteString(w, b.String())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ustack metrics: /metrics\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serving metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("stopping metrics server: %w", err)
	}
	return nil
}

// metricFamily is one counter of the segments as a Prometheus metric family.
type metricFamily struct {
	name    string // ustack_<counter>, sanitized, _total for a counter
	help    string
	gauge   bool
	samples []string // lines
}

// writeMetrics writes the counters of snaps in the Prometheus text format 0.0.4: for every
// counter one family ustack_<name> (dots and other characters a metric name cannot hold become
// '_'; counters end in _total, gauges do not), its # HELP and # TYPE lines once, then one sample
// per process, labelled pid, comm and iface. Families follow descs' order; a counter descs does
// not know (a segment of another build) is typed a counter, with a help line saying so.
func writeMetrics(w io.Writer, snaps []*shm.StatsSnapshot, descs []shm.StatDesc) error {
	known := make(map[string]shm.StatDesc, len(descs))
	var order []string
	for _, d := range descs {
		if _, dup := known[d.Name]; !dup {
			known[d.Name] = d
			order = append(order, d.Name)
		}
	}
	byStat := map[string]*metricFamily{} // nil: a counter whose metric name another one has
	taken := map[string]bool{}
	family := func(stat string) *metricFamily {
		if f, ok := byStat[stat]; ok {
			return f
		}
		d, ok := known[stat]
		if !ok {
			d = shm.StatDesc{Name: stat, Help: "ustack counter " + stat + " (not described by this onloadctl)"}
			order = append(order, stat)
		}
		var f *metricFamily
		if name := metricName(stat, d.Gauge); !taken[name] {
			taken[name] = true
			f = &metricFamily{name: name, help: d.Help, gauge: d.Gauge}
		}
		byStat[stat] = f
		return f
	}
	for _, d := range descs {
		family(d.Name)
	}
	for _, s := range snaps {
		labels := fmt.Sprintf(`{pid="%d",comm="%s",iface="%s"}`, s.Pid, labelValue(comm(s)), labelValue(s.Iface))
		seen := map[string]bool{}
		for i, n := range s.Names {
			f := family(n)
			if f == nil || seen[n] {
				continue
			}
			seen[n] = true
			f.samples = append(f.samples, f.name+labels+" "+strconv.FormatUint(s.Values[i], 10))
		}
	}
	var b strings.Builder
	for _, stat := range order {
		f := byStat[stat]
		if f == nil || len(f.samples) == 0 {
			continue
		}
		typ := "counter"
		if f.gauge {
			typ = "gauge"
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, helpText(f.help), f.name, typ)
		for _, l := range f.samples {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing metrics: %w", err)
	}
	return nil
}

// metricName is the Prometheus name of a counter: ustack_ and the counter's name with every
// character outside [a-zA-Z0-9_:] made '_', and _total after a counter's.
func metricName(stat string, gauge bool) string {
	b := []byte("ustack_" + stat)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':') {
			b[i] = '_'
		}
	}
	name := string(b)
	if !gauge && !strings.HasSuffix(name, "_total") {
		name += "_total"
	}
	return name
}

// helpText escapes a HELP line's text as the format wants: backslash and newline.
func helpText(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// labelValue escapes a label value: backslash, double quote and newline.
func labelValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
