// End-to-end test of `onloadctl capture`: the frames of a server under ustack, which tcpdump on the
// interface cannot see (the XDP program takes them first), written as pcap that tcpdump and tshark
// read, whose TCP payload is the file served, and whose frame count is the connection's own.
package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"ustack/tests/topo"
)

// fetchToEOF, in python: GET PATH from ADDR:PORT over HTTP/1.0, read to the server's FIN, write
// the body to OUT, print the local port; close only then.
const fetchToEOF = `
import socket, sys
addr, port, path, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = socket.create_connection((addr, port))
c.sendall(("GET %s HTTP/1.0\r\n\r\n" % path).encode())
data = bytearray()
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    data += b
head, _, body = bytes(data).partition(b"\r\n\r\n")
assert head.startswith(b"HTTP/1.0 200"), head[:100]
open(out, "wb").write(body)
print(c.getsockname()[1])
c.close()
`

// flowCapture is what a pcap holds of one TCP connection.
type flowCapture struct {
	frames int
	// the server's byte stream, rebuilt from its segments by sequence number (retransmissions and
	// overlaps land on the same bytes)
	stream []byte
	holes  bool
}

// readFlow reads the frames of the connection server:sport <-> client:cport from a pcap file.
func readFlow(t *testing.T, path string, server string, sport int, client string, cport int) flowCapture {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("pcapgo: %v", err)
	}
	var fc flowCapture
	var isn uint32
	haveISN := false
	covered := map[uint32]int{} // offset -> length of the segments seen
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil {
			continue
		}
		fromServer := ip.SrcIP.String() == server && int(tcp.SrcPort) == sport && ip.DstIP.String() == client && int(tcp.DstPort) == cport
		toServer := ip.DstIP.String() == server && int(tcp.DstPort) == sport && ip.SrcIP.String() == client && int(tcp.SrcPort) == cport
		if !fromServer && !toServer {
			continue
		}
		fc.frames++
		if !fromServer {
			continue
		}
		if tcp.SYN {
			isn, haveISN = tcp.Seq, true
			continue
		}
		if !haveISN || len(tcp.Payload) == 0 {
			continue
		}
		off := tcp.Seq - isn - 1
		if end := int(off) + len(tcp.Payload); end > len(fc.stream) {
			fc.stream = append(fc.stream, make([]byte, end-len(fc.stream))...)
		}
		copy(fc.stream[off:], tcp.Payload)
		covered[off] = max(covered[off], len(tcp.Payload))
	}
	// every byte of the stream came in some segment
	next := 0
	for next < len(fc.stream) {
		best := -1
		for off, n := range covered {
			if int(off) <= next && int(off)+n > next {
				best = max(best, int(off)+n)
			}
		}
		if best < 0 {
			fc.holes = true
			break
		}
		next = best
	}
	return fc
}

// onloadctl capture of a python http.server under ustack while curl in B downloads 5 MB from it:
// tcpdump and tshark read the file without complaint, the server's TCP payload rebuilt from the
// capture is the HTTP response with the file's sha256, and the connection's frames in the capture
// are as many as the segments its stack says it received and sent (onloadctl sockets, in
// TIME-WAIT: python closes first). Then a capture to a pipe (-w -) that tcpdump -r - reads.
func TestCaptureDownload(t *testing.T) {
	e := setup(t, "tcpdump", "tshark")
	tp := e.tp
	dir := dataDir(t)
	sum := randomFile(t, dir, "f5", 5*mb)
	srv := startServer(t, tp, tp.NSA, e.accel(), 8000, false, python, "-m", "http.server", "--bind", "0.0.0.0",
		"--directory", dir, "8000")
	startCapture := func(args ...string) *topo.Proc {
		t.Helper()
		argv := append([]string{"capture", "--dir", e.statsDir, "--pid", strconv.Itoa(srv.Pid)}, args...)
		p, err := tp.Start(tp.NSA, nil, e.onloadctl, argv...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop() })
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Output(), "capturing process"); time.Sleep(20 * time.Millisecond) {
			if p.Exited() || time.Now().After(deadline) {
				t.Fatalf("onloadctl %v did not start:\n%s", argv, p.Output())
			}
		}
		return p
	}
	pcap := filepath.Join(t.TempDir(), "f.pcap")
	capt := startCapture("-w", pcap, "tcp", "and", "port", "8000")
	out := filepath.Join(t.TempDir(), "out")
	// A client that reads to the server's FIN before it closes (curl may close first, on
	// Content-Length): python's server closes first, so its connection waits in TIME-WAIT with
	// its final counts for onloadctl sockets.
	r := tp.RunB(nil, 60*time.Second, python, "-c", fetchToEOF, tp.AddrA, "8000", "/f5", out)
	if r.Err != nil {
		t.Fatalf("HTTP client in B: %s\n%s", r, srv.Output())
	}
	if got := fileSHA(t, out); got != sum {
		t.Fatalf("downloaded sha256 %s, want %s", got, sum)
	}
	cport, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
	if err != nil {
		t.Fatalf("the client's local port: %q", r.Stdout)
	}

	// the connection as the stack has it: finished on python's side (TIME-WAIT, kept by the stack)
	var conn *listedSocket
	var listed []listedSocket
	for deadline := time.Now().Add(5 * time.Second); conn == nil; time.Sleep(50 * time.Millisecond) {
		listed = e.sockets(t, 5*time.Second, "--pid", strconv.Itoa(srv.Pid))
		for _, s := range listed {
			if s.Remote == fmt.Sprintf("%s:%d", tp.AddrB, cport) && s.State == "TIME-WAIT" && s.TCP != nil {
				conn = &s
			}
		}
		if conn == nil && time.Now().After(deadline) {
			t.Fatalf("the server's connection from port %d is not listed in TIME-WAIT: %+v", cport, listed)
		}
	}
	// the stack publishes at most every 100 ms: the capture ends after the last segment it counts
	time.Sleep(300 * time.Millisecond)
	syscall.Kill(capt.Pid, syscall.SIGINT)
	cr := capt.Wait(10 * time.Second)
	if cr.Err != nil {
		t.Fatalf("onloadctl capture: %s", cr)
	}
	m := regexp.MustCompile(`(\d+) packets captured\n(\d+) packets written\n(\d+) packets dropped`).FindStringSubmatch(string(cr.Stderr))
	if m == nil || m[1] != m[2] || m[3] != "0" {
		t.Fatalf("onloadctl capture's summary: %q", cr.Stderr)
	}

	td := topo.Run(tp.NSA, nil, 30*time.Second, "tcpdump", "-nr", pcap)
	if td.Err != nil || strings.Contains(strings.ToLower(string(td.Stderr)), "warning") ||
		strings.Contains(string(td.Stdout), "truncated") {
		t.Fatalf("tcpdump -r: %s", td)
	}
	ts := topo.Run(tp.NSA, nil, 60*time.Second, "tshark", "-n", "-r", pcap)
	var tsErr []string
	for l := range strings.Lines(string(ts.Stderr)) {
		if !strings.Contains(l, "Running as user \"root\"") {
			tsErr = append(tsErr, l)
		}
	}
	if ts.Err != nil || len(tsErr) > 0 || strings.Contains(string(ts.Stdout), "Malformed") {
		t.Fatalf("tshark -r: %s\nstderr: %q", ts, tsErr)
	}

	fc := readFlow(t, pcap, tp.AddrA, 8000, tp.AddrB, cport)
	_, body, ok := bytes.Cut(fc.stream, []byte("\r\n\r\n"))
	h := sha256.Sum256(body)
	if !ok || fc.holes || hex.EncodeToString(h[:]) != sum {
		t.Errorf("the server's payload rebuilt from the capture: %d bytes, holes %v, body sha256 %x, want the file's %s",
			len(fc.stream), fc.holes, h, sum)
	}
	if want := int(conn.TCP.SegsIn) + int(conn.TCP.SegsOut); fc.frames != want {
		t.Errorf("the connection has %d frames in the capture, its stack counts %d in + %d out",
			fc.frames, conn.TCP.SegsIn, conn.TCP.SegsOut)
	}
	t.Logf("capture: %s frames; the connection's %d (segs_in %d, segs_out %d), %d bytes of stream; tcpdump: %d lines",
		m[1], fc.frames, conn.TCP.SegsIn, conn.TCP.SegsOut, len(fc.stream), strings.Count(string(td.Stdout), "\n"))
	c := e.stats(t, srv.Pid)
	atLeast(t, "http.server", c, "xsk.tx_bytes", uint64(5*mb))

	// -w - into tcpdump -r -: six frames of the next download
	pipe, err := tp.Start(tp.NSA, nil, "sh", "-c", fmt.Sprintf("%s capture --dir %s --pid %d -c 6 -w - tcp and port 8000 | tcpdump -nr -",
		e.onloadctl, e.statsDir, srv.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(pipe.Output(), "capturing process"); time.Sleep(20 * time.Millisecond) {
		if pipe.Exited() || time.Now().After(deadline) {
			t.Fatalf("onloadctl capture -w - did not start:\n%s", pipe.Output())
		}
	}
	if r := tp.RunB(nil, 60*time.Second, "curl", "-sS", "--fail", "-o", "/dev/null", fmt.Sprintf("http://%s:8000/f5", tp.AddrA)); r.Err != nil {
		t.Fatalf("second curl: %s", r)
	}
	pr := pipe.Wait(20 * time.Second)
	if pr.Err != nil || strings.Count(string(pr.Stdout), " IP ") != 6 {
		t.Fatalf("onloadctl capture -c 6 -w - | tcpdump -nr -: %s", pr)
	}
	if left, _ := filepath.Glob(filepath.Join(e.statsDir, "ustack-capture.*")); len(left) > 0 {
		t.Errorf("capture rings left behind: %v", left)
	}

	// A second capture replaces the first, which says so and ends; the second runs its course.
	first := startCapture("-G", "30", "-w", filepath.Join(t.TempDir(), "first.pcap"))
	second := startCapture("-G", "3", "-w", filepath.Join(t.TempDir(), "second.pcap"))
	if r := tp.RunB(nil, 60*time.Second, "curl", "-sS", "--fail", "-o", "/dev/null", fmt.Sprintf("http://%s:8000/f5", tp.AddrA)); r.Err != nil {
		t.Fatalf("third curl: %s", r)
	}
	if r := first.Wait(5 * time.Second); r.Err != nil || !strings.Contains(string(r.Stderr), "another capture replaced this one") {
		t.Errorf("the replaced capture: %s", r)
	}
	if r := second.Wait(10 * time.Second); r.Err != nil || r.Elapsed < 3*time.Second ||
		!regexp.MustCompile(`[1-9]\d* packets written`).Match(r.Stderr) {
		t.Errorf("the capture that replaced it: %s (ran %v)", r, r.Elapsed)
	}

	// A capture killed by a signal it cannot catch: the stack notices its reader is gone, stops
	// copying and removes the ring once frames come.
	killed := startCapture("-w", filepath.Join(t.TempDir(), "killed.pcap"))
	syscall.Kill(killed.Pid, syscall.SIGKILL)
	killed.Wait(5 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r := tp.RunB(nil, 60*time.Second, "curl", "-sS", "--fail", "-o", "/dev/null", fmt.Sprintf("http://%s:8000/f5", tp.AddrA)); r.Err != nil {
			t.Fatalf("curl after the killed capture: %s", r)
		}
		left, _ := filepath.Glob(filepath.Join(e.statsDir, "ustack-capture.*"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ring of a killed capture is still there 10 s later: %v", left)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
