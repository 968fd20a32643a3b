// End-to-end tests: unmodified programs under LD_PRELOAD=build/libustack.so in
// namespace A, talking over a veth to the kernel stack in namespace B. Each
// Test checks one thing the project promises (1-6 below). They need root, `make build` and
// `make deps`, and skip (saying why) otherwise.
package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const bigSize = 50 * mb

// 1. curl under LD_PRELOAD in A downloads a 50 MB random file from a kernel
// python3 -m http.server in B: sha256 equal, ≥ 50 MB received on the XSK, and
// Tcp InSegs in A grows by < 1 % of the segments transferred.
func TestCurlDownloadThroughUstack(t *testing.T) {
	e := setup(t)
	tp := e.tp
	dir := dataDir(t)
	sum := randomFile(t, dir, "big", bigSize)
	if _, err := tp.StartServer(tp.NSB, nil, 8000, serverWait, python, "-m", "http.server", "--bind", tp.AddrB, "--directory", dir, "8000"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dataDir(t), "out")
	in0 := e.kernelInSegs(tp.NSA)
	r := tp.RunA(e.accel(), 120*time.Second, "curl", "-sS", "--fail", "--max-time", "100", "-o", out, fmt.Sprintf("http://%s:8000/big", tp.AddrB))
	in1 := e.kernelInSegs(tp.NSA)
	if r.Err != nil {
		t.Fatalf("curl: %s", r)
	}
	t.Logf("curl: 50 MB in %v (%.0f MB/s)", r.Elapsed.Round(time.Millisecond), bigSize/mb/r.Elapsed.Seconds())
	if got := fileSHA(t, out); got != sum {
		t.Errorf("sha256 %s, want %s", got, sum)
	}
	c := e.stats(t, r.Pid)
	e.logStats(t, "curl", c)
	if c["xsk.rx_bytes"] < bigSize {
		t.Errorf("xsk.rx_bytes %d < %d", c["xsk.rx_bytes"], bigSize)
	}
	if c["tcp.active_opens"] < 1 {
		t.Errorf("tcp.active_opens %d: the connection was not opened by ustack", c["tcp.active_opens"])
	}
	checkUserPath(t, c, bigSize, in0, in1)
}

// 2. python3 -m http.server under LD_PRELOAD in A serves the file to kernel
// curl in B: the same three checks.
func TestPythonServerThroughUstack(t *testing.T) {
	e := setup(t)
	tp := e.tp
	dir := dataDir(t)
	sum := randomFile(t, dir, "big", bigSize)
	srv, err := tp.StartServer(tp.NSA, e.accel(), 8000, serverWait, python, "-m", "http.server", "--bind", "0.0.0.0", "--directory", dir, "8000")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dataDir(t), "out")
	in0 := e.kernelInSegs(tp.NSA)
	r := tp.RunB(nil, 120*time.Second, "curl", "-sS", "--fail", "--max-time", "100", "-o", out, fmt.Sprintf("http://%s:8000/big", tp.AddrA))
	in1 := e.kernelInSegs(tp.NSA)
	if r.Err != nil {
		t.Fatalf("curl: %s\n%s", r, srv.Output())
	}
	t.Logf("curl from B: 50 MB in %v (%.0f MB/s)", r.Elapsed.Round(time.Millisecond), bigSize/mb/r.Elapsed.Seconds())
	if got := fileSHA(t, out); got != sum {
		t.Errorf("sha256 %s, want %s", got, sum)
	}
	c := e.stats(t, srv.Pid)
	e.logStats(t, "python http.server", c)
	if c["xsk.tx_bytes"] < bigSize {
		t.Errorf("xsk.tx_bytes %d < %d", c["xsk.tx_bytes"], bigSize)
	}
	if c["tcp.passive_opens"] < 1 {
		t.Errorf("tcp.passive_opens %d: the connection was not accepted by ustack", c["tcp.passive_opens"])
	}
	checkUserPath(t, c, bigSize, in0, in1)
	if res := srv.Stop(); res != nil && res.Code > 0 && res.Code != 143 {
		t.Logf("server exit %d", res.Code)
	}
}

// 3. socat under LD_PRELOAD, as client and as server, echoes 10 MB both ways
// byte-identically.
func TestSocatEcho(t *testing.T) {
	const size = 10 * mb
	e := setup(t, "socat")
	tp := e.tp
	dir := dataDir(t)
	sum := randomFile(t, dir, "in", size)
	data, err := os.ReadFile(filepath.Join(dir, "in"))
	if err != nil {
		t.Fatal(err)
	}
	// -t: after our side's EOF, wait this long for the echo to finish.
	client := []string{"-t", "60", "-T", "60", "-b", "65536"}
	// The echo is EXEC:cat, not PIPE: socat with PIPE writes a whole -b block into its own pipe
	// after a short read and then blocks on it forever, with the kernel stack as well, whenever
	// reads come back shorter than the block (seen with both stacks as the server).

	t.Run("server", func(t *testing.T) {
		srv, err := tp.StartServer(tp.NSA, e.accel(), 7000, serverWait, "socat", "-b", "65536", "TCP-LISTEN:7000,reuseaddr", "EXEC:cat")
		if err != nil {
			t.Fatal(err)
		}
		// Stop it even on failure: a process still attached to IfA would keep
		// the next subtest's socat from attaching its XDP program.
		defer srv.Stop()
		r := tp.RunStdinB(bytes.NewReader(data), 90*time.Second, "socat", append(client, fmt.Sprintf("TCP:%s:7000", tp.AddrA), "STDIO")...)
		if r.Err != nil {
			t.Fatalf("kernel socat client: %s\n%s", r, srv.Output())
		}
		if len(r.Stdout) != size || bytesSHA(r.Stdout) != sum {
			t.Errorf("echo: %d bytes, sha256 %s; want %d, %s", len(r.Stdout), bytesSHA(r.Stdout), size, sum)
		}
		res := srv.Wait(10 * time.Second) // one connection, then socat exits
		if res.TimedOut {
			t.Errorf("socat server did not exit after the connection")
		}
		c := e.stats(t, srv.Pid)
		e.logStats(t, "socat server", c)
		if c["xsk.rx_bytes"] < size || c["xsk.tx_bytes"] < size || c["tcp.passive_opens"] < 1 {
			t.Errorf("socat server: the echo did not go through ustack")
		}
	})

	t.Run("client", func(t *testing.T) {
		srv, err := tp.StartServer(tp.NSB, nil, 7001, serverWait, "socat", "-b", "65536", "TCP-LISTEN:7001,reuseaddr", "EXEC:cat")
		if err != nil {
			t.Fatal(err)
		}
		r := tp.RunStdinA(e.accel(), bytes.NewReader(data), 90*time.Second, "socat", append(client, fmt.Sprintf("TCP:%s:7001", tp.AddrB), "STDIO")...)
		if r.Err != nil {
			t.Fatalf("socat client under ustack: %s\n%s", r, srv.Output())
		}
		if len(r.Stdout) != size || bytesSHA(r.Stdout) != sum {
			t.Errorf("echo: %d bytes, sha256 %s; want %d, %s", len(r.Stdout), bytesSHA(r.Stdout), size, sum)
		}
		c := e.stats(t, r.Pid)
		e.logStats(t, "socat client", c)
		if c["xsk.rx_bytes"] < size || c["xsk.tx_bytes"] < size || c["tcp.active_opens"] < 1 {
			t.Errorf("socat client: the echo did not go through ustack; its stderr:\n%s", r.Stderr)
		}
	})
}

// 4. While (1) runs, a kernel TCP connection on another port and ping on the
// same interface work. The download is rate-limited so that it surely
// overlaps the kernel traffic.
func TestKernelTrafficDuringDownload(t *testing.T) {
	e := setup(t, "ping")
	tp := e.tp
	dir := dataDir(t)
	sum := randomFile(t, dir, "big", bigSize)
	randomFile(t, dir, "small", 256<<10)
	if _, err := tp.StartServer(tp.NSB, nil, 8000, serverWait, python, "-m", "http.server", "--bind", tp.AddrB, "--directory", dir, "8000"); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.StartServer(tp.NSB, nil, 8001, serverWait, python, "-m", "http.server", "--bind", tp.AddrB, "--directory", dir, "8001"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dataDir(t), "out")
	dl, err := tp.Start(tp.NSA, e.accel(), "curl", "-sS", "--fail", "--max-time", "100", "--limit-rate", "10M", "-o", out, fmt.Sprintf("http://%s:8000/big", tp.AddrB))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the download is under way (bytes arriving).
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, err := os.Stat(out); err == nil && st.Size() > 0 {
			break
		}
		if dl.Exited() || time.Now().After(deadline) {
			t.Fatalf("download did not start: %s", dl.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A kernel TCP connection (no LD_PRELOAD) on another port, three times,
	// and ping, from A over the same veth.
	for i := range 3 {
		r := tp.RunA(nil, 20*time.Second, "curl", "-sS", "--fail", "--max-time", "15", "-o", "/dev/null", "-w", "%{size_download}", fmt.Sprintf("http://%s:8001/small", tp.AddrB))
		if r.Err != nil || string(r.Stdout) != fmt.Sprint(256<<10) {
			t.Errorf("kernel curl %d during the download: %s", i, r)
		}
	}
	r := tp.RunA(nil, 20*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "2", tp.AddrB)
	if r.Err != nil {
		t.Errorf("ping during the download: %s", r)
	}
	if dl.Exited() {
		t.Errorf("the download ended before the kernel traffic did: overlap not shown")
	}
	res := dl.Wait(100 * time.Second)
	if res.Err != nil {
		t.Fatalf("download: %s", res)
	}
	if got := fileSHA(t, out); got != sum {
		t.Errorf("sha256 %s, want %s", got, sum)
	}
	c := e.stats(t, dl.Pid)
	e.logStats(t, "rate-limited curl", c)
	if c["xsk.rx_bytes"] < bigSize {
		t.Errorf("xsk.rx_bytes %d < %d: the download did not go through ustack", c["xsk.rx_bytes"], bigSize)
	}
}

// 5. LD_PRELOAD into true, python3 -c pass, bash -c 'curl -s file://...', and
// a C program that forks without exec and uses a kernel socket in the child:
// each finishes under `timeout 5`.
func TestPreloadIntoOrdinaryPrograms(t *testing.T) {
	e := setup(t)
	tp := e.tp
	forkchild := filepath.Join(repoRoot(t), forkchildRel)
	if _, err := os.Stat(forkchild); err != nil {
		t.Skipf("SKIP: %s missing: run `make build`", forkchild)
	}
	dir := dataDir(t)
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("file contents\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.StartServer(tp.NSB, nil, 8000, serverWait, python, "-m", "http.server", "--bind", tp.AddrB, "--directory", dir, "8000"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		argv   []string
		stdout string
	}{
		{"true", []string{"true"}, ""},
		{"python3 -c pass", []string{python, "-c", "pass"}, ""},
		{"bash -c curl file://", []string{"bash", "-c", "curl -s file://" + filepath.Join(dir, "f")}, "file contents\n"},
		// the child's copy of the parent's accelerated socket works as on the kernel: it moved
		// there with its state
		{"fork without exec", []string{forkchild, tp.AddrB, "8000"},
			"inherited socket: write ok, poll POLLOUT, close 0\nforkchild ok\n"},
	}
	// The same fork program on the kernel alone: what differs is only the inherited socket.
	if r := tp.RunA(nil, 15*time.Second, "timeout", "5", forkchild, tp.AddrB, "8000"); r.Err != nil ||
		string(r.Stdout) != "inherited socket: write ok, poll POLLOUT, close 0\nforkchild ok\n" {
		t.Errorf("forkchild without ustack: %s", r)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tp.RunA(e.accel(), 15*time.Second, "timeout", append([]string{"5"}, c.argv...)...)
			if r.Code == 124 {
				t.Fatalf("did not finish within timeout 5: %s", r)
			}
			if r.Err != nil {
				t.Fatalf("%s", r)
			}
			if string(r.Stdout) != c.stdout {
				t.Errorf("stdout %q, want %q", r.Stdout, c.stdout)
			}
			t.Logf("%s: %v", c.name, r.Elapsed.Round(time.Millisecond))
		})
	}
}

// 6. A bad USTACK_IFACE: exactly one warning line on stderr, and curl still
// downloads, through the kernel.
func TestBadIfaceFallsBackToKernel(t *testing.T) {
	const size = 5 * mb
	e := setup(t)
	tp := e.tp
	dir := dataDir(t)
	sum := randomFile(t, dir, "f", size)
	if _, err := tp.StartServer(tp.NSB, nil, 8000, serverWait, python, "-m", "http.server", "--bind", tp.AddrB, "--directory", dir, "8000"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dataDir(t), "out")
	in0 := e.kernelInSegs(tp.NSA)
	env := e.accel("USTACK_IFACE=nosuchif0")
	r := tp.RunA(env, 60*time.Second, "curl", "-sS", "--fail", "--max-time", "50", "-o", out, fmt.Sprintf("http://%s:8000/f", tp.AddrB))
	in1 := e.kernelInSegs(tp.NSA)
	if r.Err != nil {
		t.Fatalf("curl: %s", r)
	}
	if got := fileSHA(t, out); got != sum {
		t.Errorf("sha256 %s, want %s", got, sum)
	}
	var lines []string
	if len(r.Stderr) > 0 {
		lines = strings.Split(strings.TrimRight(string(r.Stderr), "\n"), "\n")
	}
	if len(lines) != 1 {
		t.Errorf("stderr has %d lines, want exactly one warning:\n%s", len(lines), r.Stderr)
	} else {
		t.Logf("warning: %s", lines[0])
	}
	if min := uint64(size / maxSegPayload); in1-in0 < min {
		t.Errorf("kernel Tcp InSegs in A grew by %d < %d: the download did not go through the kernel", in1-in0, min)
	}
}
