// End-to-end tests of onloadctl's observation commands on a real transfer under ustack:
// `onloadctl metrics` (Prometheus text format), scraped from the command line and over HTTP
// (--listen) while curl downloads, and `onloadctl stats --watch` during an iperf3 run.
package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ustack/tests/topo"
)

// waitCounter waits until the stats segment of pid shows counter name above 0.
func (e *env) waitCounter(t *testing.T, pid int, name string, p *topo.Proc) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err := exec.Command(e.onloadctl, "stats", "--json", "--pid", strconv.Itoa(pid), "--dir", e.statsDir).Output()
		var procs []struct {
			Counters map[string]uint64 `json:"counters"`
		}
		if err == nil && json.Unmarshal(out, &procs) == nil && len(procs) == 1 && procs[0].Counters[name] > 0 {
			return
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("%s of pid %d never grew: %v %s\n%s%s", name, pid, err, out, p.Output(), e.keeperTail())
		}
	}
}

// promParse parses an exposition with Prometheus's own parser, and checks that every family has
// its # HELP and # TYPE lines, once each.
func promParse(t *testing.T, what, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%s: the Prometheus parser refuses it: %v\n%s", what, err, text)
	}
	for name, mf := range fams {
		if strings.Count(text, "# HELP "+name+" ") != 1 || strings.Count(text, "# TYPE "+name+" ") != 1 || mf.GetHelp() == "" {
			t.Errorf("%s: family %s lacks its HELP or TYPE line, or has two", what, name)
		}
		if mf.GetType() != dto.MetricType_COUNTER && mf.GetType() != dto.MetricType_GAUGE {
			t.Errorf("%s: family %s is %v", what, name, mf.GetType())
		}
	}
	return fams
}

// promValues returns the samples of pid: family name -> value, and the family's type.
func promValues(fams map[string]*dto.MetricFamily, pid int) map[string]float64 {
	v := map[string]float64{}
	for name, mf := range fams {
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "pid" && l.GetValue() == strconv.Itoa(pid) {
					if mf.GetType() == dto.MetricType_GAUGE {
						v[name] = m.GetGauge().GetValue()
					} else {
						v[name] = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return v
}

// onloadctl metrics, once from the command line and once over HTTP (--listen), scraped in turn
// during a download by curl under ustack: the Prometheus parser accepts every scrape, every
// family has HELP and TYPE, the counters of curl never go down from one scrape to the next, and
// its received frames grow.
func TestMetricsDuringTransfer(t *testing.T) {
	e := setup(t)
	tp := e.tp
	dir := dataDir(t)
	randomFile(t, dir, "big", 40*mb)
	startServer(t, tp, tp.NSB, nil, 8000, false, python, "-m", "http.server", "--bind", "0.0.0.0", "--directory", dir, "8000")
	// 4 MiB/s: the download lasts about 10 s, longer than the scrapes
	curl, err := tp.Start(tp.NSA, e.accel(), "curl", "-sS", "--fail", "--limit-rate", "4M", "-o", "/dev/null",
		fmt.Sprintf("http://%s:8000/big", tp.AddrB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { curl.Stop() })

	// the HTTP exporter: on the host's loopback (it reads the stats directory, no network of A)
	srv := exec.Command(e.onloadctl, "metrics", "--listen", "127.0.0.1:0", "--dir", e.statsDir)
	stderr, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan error, 1)
	t.Cleanup(func() {
		srv.Process.Kill()
		<-srvDone
	})
	first, err := bufio.NewReader(stderr).ReadString('\n')
	go func() {
		io.Copy(io.Discard, stderr)
		srvDone <- srv.Wait()
	}()
	_, url, ok := strings.Cut(strings.TrimSpace(first), "serving metrics on ")
	if err != nil || !ok {
		t.Fatalf("onloadctl metrics --listen said %q (%v)", first, err)
	}

	e.waitCounter(t, curl.Pid, "eth.rx_frames", curl)
	cli := func() string {
		out, err := exec.Command(e.onloadctl, "metrics", "--dir", e.statsDir).Output()
		if err != nil {
			t.Fatalf("onloadctl metrics: %v", err)
		}
		return string(out)
	}
	web := func() string {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
			t.Fatalf("GET %s: %s %q %v", url, resp.Status, resp.Header.Get("Content-Type"), err)
		}
		return string(b)
	}
	var scrapes []map[string]float64
	var types map[string]*dto.MetricFamily
	for i, scrape := range []func() string{cli, web, cli, web} {
		if i > 0 {
			time.Sleep(700 * time.Millisecond)
		}
		what := [...]string{"onloadctl metrics", "GET /metrics"}[i%2]
		fams := promParse(t, what, scrape())
		v := promValues(fams, curl.Pid)
		if len(v) == 0 {
			t.Fatalf("%s: no sample of curl (pid %d)", what, curl.Pid)
		}
		scrapes, types = append(scrapes, v), fams
	}
	if curl.Exited() {
		t.Fatalf("curl ended before the last scrape: the scrapes were not all during the transfer\n%s", curl.Output())
	}
	for i := 1; i < len(scrapes); i++ {
		for name, before := range scrapes[i-1] {
			if types[name].GetType() != dto.MetricType_COUNTER {
				continue
			}
			if after, ok := scrapes[i][name]; !ok || after < before {
				t.Errorf("scrape %d: %s went from %v to %v (present %v)", i+1, name, before, after, ok)
			}
		}
	}
	for _, name := range []string{"ustack_eth_rx_frames_total", "ustack_xsk_rx_packets_total", "ustack_tcp_segs_in_total"} {
		if a, b := scrapes[0][name], scrapes[len(scrapes)-1][name]; !(b > a) {
			t.Errorf("%s did not grow during the transfer: %v -> %v", name, a, b)
		}
	}
	t.Logf("curl (pid %d): ustack_eth_rx_frames_total %v -> %v over %d scrapes", curl.Pid,
		scrapes[0]["ustack_eth_rx_frames_total"], scrapes[len(scrapes)-1]["ustack_eth_rx_frames_total"], len(scrapes))

	// SIGTERM stops the exporter cleanly
	srv.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-srvDone:
		srvDone <- err
		if err != nil {
			t.Errorf("onloadctl metrics --listen after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("onloadctl metrics --listen did not stop at SIGTERM")
	}
}

// onloadctl stats --watch 1, run for 3.5 s while iperf3 under ustack in A sends to a kernel
// iperf3 server in B: at least three lines of rates for iperf3, each with frames received (the
// ACKs) and sent.
func TestStatsWatchDuringIperf(t *testing.T) {
	e := setup(t, "iperf3")
	tp := e.tp
	port := strconv.Itoa(iperfPort)
	startServer(t, tp, tp.NSB, nil, iperfPort, false, "iperf3", "-s", "-1", "-4", "-p", port)
	cl, err := tp.Start(tp.NSA, e.accel(), "iperf3", "-4", "-c", tp.AddrB, "-p", port, "-t", "10")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Stop() })
	e.waitCounter(t, cl.Pid, "xsk.tx_packets", cl)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := exec.CommandContext(ctx, e.onloadctl, "stats", "--watch", "1", "--dir", e.statsDir)
	var out, errb strings.Builder
	watch.Stdout, watch.Stderr = &out, &errb
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3500 * time.Millisecond)
	watch.Process.Signal(syscall.SIGINT)
	if err := watch.Wait(); err != nil {
		t.Errorf("onloadctl stats --watch after SIGINT: %v\n%s", err, errb.String())
	}
	if cl.Exited() {
		t.Errorf("iperf3 ended during the watch:\n%s", cl.Output())
	}
	t.Logf("onloadctl stats --watch 1:\n%s", out.String())

	rows := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(rows) == 0 || !strings.HasPrefix(rows[0], "time ") {
		t.Fatalf("no header:\n%s\n%s", out.String(), errb.String())
	}
	head := strings.Fields(rows[0])
	col := func(name string) int {
		for i, h := range head {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %s in %q", name, head)
		return 0
	}
	rx, tx, pidCol := col("rxpck/s"), col("txpck/s"), col("pid")
	good := 0
	for _, row := range rows[1:] {
		f := strings.Fields(row)
		if len(f) < len(head) || f[pidCol] != strconv.Itoa(cl.Pid) {
			continue
		}
		r, err1 := strconv.ParseFloat(f[rx], 64)
		s, err2 := strconv.ParseFloat(f[tx], 64)
		if err1 != nil || err2 != nil || r <= 0 || s <= 0 {
			t.Errorf("iperf3's line without frames both ways: %q", row)
			continue
		}
		good++
	}
	if good < 3 {
		t.Errorf("%d lines of rates for iperf3 (pid %d), want at least 3:\n%s\n%s", good, cl.Pid, out.String(), errb.String())
	}
}
