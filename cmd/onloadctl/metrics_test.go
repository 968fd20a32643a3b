package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ustack/shim"
)

// parseMetrics parses an exposition with Prometheus's own parser and checks what the parser
// lets pass: every family has one # HELP and one # TYPE line, before its samples.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("prometheus parser: %v\n%s", err, text)
	}
	help, typ := map[string]int{}, map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "#" && f[1] == "HELP":
			help[f[2]]++
		case len(f) >= 3 && f[0] == "#" && f[1] == "TYPE":
			typ[f[2]]++
		case len(f) > 0 && f[0] != "#":
			name, _, _ := strings.Cut(f[0], "{")
			if help[name] != 1 || typ[name] != 1 {
				t.Errorf("sample of %s before its HELP and TYPE: %q", name, line)
			}
		}
	}
	for name, mf := range fams {
		if help[name] != 1 || typ[name] != 1 || mf.Help == nil || *mf.Help == "" || mf.Type == nil {
			t.Errorf("%s: %d HELP and %d TYPE lines, help %q", name, help[name], typ[name], mf.GetHelp())
		}
	}
	return fams
}

// sample returns the value of family name for pid.
func sample(fams map[string]*dto.MetricFamily, name string, pid int) (float64, bool) {
	mf := fams[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.Metric {
		for _, l := range m.Label {
			if l.GetName() == "pid" && l.GetValue() == strconv.Itoa(pid) {
				if mf.GetType() == dto.MetricType_GAUGE {
					return m.GetGauge().GetValue(), true
				}
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	me := newTestSegment(t, dir, "veth0")
	me.add("xsk.rx_packets", 1000)
	me.add("tcp.curr_estab", 3)
	// another live process, of another build: one counter this onloadctl does not know, with
	// characters a metric name cannot hold
	child, _ := liveChild(t, dir, `ve"th\1`, []string{"eth.rx_frames", "odd-counter.x y"}, []uint64{7, 9})
	dead := deadSegment(t, dir) // exited: not shown

	var out, errb bytes.Buffer
	if rc := run([]string{"metrics", "--dir", dir}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	text := out.String()
	fams := parseMetrics(t, text)
	for _, d := range shim.StatDescs() {
		name := metricName(d.Name, d.Gauge)
		mf := fams[name]
		if mf == nil {
			t.Errorf("no family %s for %s", name, d.Name)
			continue
		}
		want := dto.MetricType_COUNTER
		if d.Gauge {
			want = dto.MetricType_GAUGE
		}
		if mf.GetType() != want || mf.GetHelp() != d.Help {
			t.Errorf("%s: type %v help %q, want %v %q", name, mf.GetType(), mf.GetHelp(), want, d.Help)
		}
		if d.Gauge == strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a %v named so", name, mf.GetType())
		}
	}
	me2 := os.Getpid()
	for _, c := range []struct {
		name string
		pid  int
		want float64
	}{
		{"ustack_xsk_rx_packets_total", me2, 1000},
		{"ustack_tcp_curr_estab", me2, 3},
		{"ustack_eth_rx_frames_total", me2, 0},
		{"ustack_eth_rx_frames_total", child, 7},
		{"ustack_odd_counter_x_y_total", child, 9},
	} {
		if v, ok := sample(fams, c.name, c.pid); !ok || v != c.want {
			t.Errorf("%s{pid=%d} = %v (%v), want %v", c.name, c.pid, v, ok, c.want)
		}
	}
	if _, ok := sample(fams, "ustack_xsk_rx_packets_total", child); ok {
		t.Errorf("a sample for a counter the child's segment does not have")
	}
	if strings.Contains(text, fmt.Sprintf(`pid="%d"`, dead)) {
		t.Errorf("exited process %d exported", dead)
	}
	if mf := fams["ustack_odd_counter_x_y_total"]; !strings.Contains(mf.GetHelp(), "odd-counter.x y") {
		t.Errorf("help of an unknown counter: %q", mf.GetHelp())
	}
	for _, m := range fams["ustack_eth_rx_frames_total"].Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		want := map[string]string{"pid": strconv.Itoa(me2), "comm": mustComm(t, me2), "iface": "veth0"}
		if labels["pid"] == strconv.Itoa(child) {
			want = map[string]string{"pid": strconv.Itoa(child), "comm": "sleep", "iface": `ve"th\1`}
		}
		if fmt.Sprint(labels) != fmt.Sprint(want) {
			t.Errorf("labels %v, want %v", labels, want)
		}
	}

	// a second scrape: counters did not go down, the one that grew shows it
	me.add("xsk.rx_packets", 5)
	out.Reset()
	if rc := run([]string{"metrics", "--dir", dir}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	checkMonotonic(t, fams, parseMetrics(t, out.String()))
	if v, _ := sample(parseMetrics(t, out.String()), "ustack_xsk_rx_packets_total", me2); v != 1005 {
		t.Errorf("second scrape: rx packets %v, want 1005", v)
	}
}

func mustComm(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// checkMonotonic asserts that no counter of a went down in b (gauges may).
func checkMonotonic(t *testing.T, a, b map[string]*dto.MetricFamily) {
	t.Helper()
	for name, mf := range a {
		if mf.GetType() != dto.MetricType_COUNTER {
			continue
		}
		for _, m := range mf.Metric {
			pid := 0
			for _, l := range m.Label {
				if l.GetName() == "pid" {
					pid, _ = strconv.Atoi(l.GetValue())
				}
			}
			if v, ok := sample(b, name, pid); ok && v < m.GetCounter().GetValue() {
				t.Errorf("%s{pid=%d} went down: %v -> %v", name, pid, m.GetCounter().GetValue(), v)
			}
		}
	}
}

func TestMetricNames(t *testing.T) {
	for in, want := range map[string]string{
		"tcp.segs_in":     "ustack_tcp_segs_in_total",
		"a-b.c d:e":       "ustack_a_b_c_d:e_total",
		"x.already_total": "ustack_x_already_total",
	} {
		if got := metricName(in, false); got != want {
			t.Errorf("metricName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := metricName("tcp.curr_estab", true); got != "ustack_tcp_curr_estab" {
		t.Errorf("gauge: %q", got)
	}
}

// --listen: GET /metrics answers the exposition, with its content type; other methods and paths
// do not; the server stops when told.
func TestMetricsListen(t *testing.T) {
	dir := t.TempDir()
	me := newTestSegment(t, dir, "veth0")
	me.add("eth.rx_frames", 42)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	m := &metricsSource{dir: dir, descs: shim.StatDescs(), stderr: io.Discard}
	go func() { done <- m.serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()

	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("GET /metrics: %s, %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	fams := parseMetrics(t, string(body))
	if v, ok := sample(fams, "ustack_eth_rx_frames_total", os.Getpid()); !ok || v != 42 {
		t.Errorf("eth rx frames %v %v", v, ok)
	}
	for _, c := range []struct {
		method, path string
		code         int
	}{{"POST", "/metrics", 405}, {"GET", "/other", 404}, {"GET", "/", 200}} {
		req, _ := http.NewRequest(c.method, url+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: %s, want %d", c.method, c.path, resp.Status, c.code)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}
