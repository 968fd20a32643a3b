package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/shm"
)

// tcpInfoBytes returns a struct tcp_info in the kernel's layout with a few fields set.
func tcpInfoBytes(state uint8, cwnd, rtt uint32, acked, received uint64) []byte {
	var i unix.TCPInfo
	i.State, i.Snd_cwnd, i.Rtt, i.Bytes_acked, i.Bytes_received = state, cwnd, rtt, acked, received
	i.Options = tcpiOptTimestamps | tcpiOptSACK
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&i)), 248)...)
}

// sockTable writes a table for this process in dir: a listener on 80, a connection on it, one in
// TIME-WAIT, a UDP socket and a connection handed to the kernel for a fork child.
func sockTable(t *testing.T, dir string) {
	tab, err := shm.CreateSockTable(dir, 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Remove() })
	a, b := [16]byte{10: 0xff, 11: 0xff, 12: 10, 15: 1}, [16]byte{10: 0xff, 11: 0xff, 12: 10, 15: 2}
	recs := []shm.SockRecord{
		{Proto: 6, State: 10, Flags: shm.SockFlagListen, LAddr: a, LPort: 80, Fd: 3, RecvQ: 1, SendQ: 511, Pending: 2},
		{Proto: 6, State: 1, LAddr: a, LPort: 80, RAddr: b, RPort: 40000, Fd: 4, RecvQ: 10, CC: "cubic",
			TCPInfo: tcpInfoBytes(1, 10, 250, 1000, 2000)},
		{Proto: 6, State: 6, Flags: shm.SockFlagOrphan, LAddr: a, LPort: 80, RAddr: b, RPort: 40001, Fd: -1, CC: "cubic",
			TCPInfo: tcpInfoBytes(6, 4, 300, 5, 6)},
		{Proto: 17, State: 7, LAddr: a, LPort: 53, Fd: 5, In: 7, Out: 8},
		{Proto: 6, State: 1, Flags: shm.SockFlagKernel, Reason: shm.SockReasonFork, LAddr: a, LPort: 81, RAddr: b,
			RPort: 40002, Fd: 6, TCPInfo: tcpInfoBytes(1, 20, 100, 1, 1)},
	}
	for i := range recs {
		recs[i].Written = time.Now().UnixNano()
		tab.Write(i, &recs[i])
	}
	tab.Published(len(recs), 0, time.Now())
}

func socketsJSON(t *testing.T, args ...string) []socketView {
	t.Helper()
	var out, errb bytes.Buffer
	if rc := run(append([]string{"sockets", "--json"}, args...), &out, &errb); rc != 0 {
		t.Fatalf("sockets %v: rc %d: %s", args, rc, errb.String())
	}
	var v []socketView
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatal(err, out.String())
	}
	return v
}

func TestSockets(t *testing.T) {
	dir := t.TempDir()
	sockTable(t, dir)
	all := socketsJSON(t, "--dir", dir)
	if len(all) != 5 {
		t.Fatalf("%d sockets, want 5: %+v", len(all), all)
	}
	c := all[1]
	if c.Proto != "tcp" || c.State != "ESTAB" || c.Local != "10.0.0.1:80" || c.Remote != "10.0.0.2:40000" ||
		c.Fd != 4 || c.RecvQ != 10 || c.Path != "ustack" || c.TCP == nil || c.TCP.Cwnd != 10 || c.TCP.SRTTUs != 250 ||
		c.TCP.BytesAcked != 1000 || c.TCP.BytesReceived != 2000 || c.TCP.CC != "cubic" ||
		strings.Join(c.TCP.Options, ",") != "ts,sack" {
		t.Errorf("connection: %+v %+v", c, c.TCP)
	}
	if l := all[0]; l.State != "LISTEN" || l.Remote != "*:*" || l.Pending != 2 || l.SendQ != 511 || l.TCP != nil {
		t.Errorf("listener: %+v", l)
	}
	if tw := all[2]; tw.State != "TIME-WAIT" || !tw.Orphan || tw.Fd != -1 {
		t.Errorf("TIME-WAIT: %+v", tw)
	}
	if u := all[3]; u.Proto != "udp" || u.State != "UNCONN" || u.UDP == nil || u.UDP.DatagramsIn != 7 || u.UDP.DatagramsOut != 8 {
		t.Errorf("UDP: %+v", u)
	}
	if k := all[4]; k.Path != "kernel" || k.Reason != "fork" || k.TCP == nil || k.TCP.Cwnd != 20 {
		t.Errorf("handed to the kernel: %+v", k)
	}

	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"-t"}, 4},
		{[]string{"-u"}, 1},
		{[]string{"-l"}, 1},
		{[]string{"state", "established"}, 2},
		{[]string{"state", "time-wait", "state", "listening"}, 2},
		{[]string{"state", "connected"}, 3},
		{[]string{"sport", "=", ":80"}, 3},
		{[]string{"dport", ":40001"}, 1},
		{[]string{"-t", "sport", "eq", ":80", "and", "state", "established"}, 1},
	} {
		if got := socketsJSON(t, append([]string{"--dir", dir}, c.args...)...); len(got) != c.want {
			t.Errorf("sockets %v: %d sockets, want %d", c.args, len(got), c.want)
		}
	}

	var out, errb bytes.Buffer
	if rc := run([]string{"sockets", "--dir", dir}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	for _, want := range []string{"Netid State", "tcp   ESTAB", "10.0.0.1:80", "10.0.0.2:40000", "kernel(fork)",
		"ts sack cubic", "rtt:0.25/", "cwnd:10", "bytes_acked:1000 bytes_received:2000", "orphan", "datagrams_in:7"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, out.String())
		}
	}
	for _, bad := range [][]string{{"state", "nonsense"}, {"sport"}, {"sport", "=", ":x"}, {"foo"}} {
		if rc := run(append([]string{"sockets", "--dir", dir}, bad...), &out, &errb); rc != 2 {
			t.Errorf("sockets %v: rc %d, want 2", bad, rc)
		}
	}
}

func TestCaptureFilterWords(t *testing.T) {
	f, err := parseCaptureFilter(strings.Fields("tcp and host 10.0.0.2 and port 8000"))
	if err != nil || f.Proto != unix.IPPROTO_TCP || !f.HasHost || f.Host != [16]byte{10: 0xff, 11: 0xff, 12: 10, 15: 2} || f.Port != 8000 {
		t.Fatalf("%+v %v", f, err)
	}
	if f, err := parseCaptureFilter(nil); err != nil || f != (shm.CaptureFilter{}) {
		t.Fatalf("empty filter: %+v %v", f, err)
	}
	if f, err := parseCaptureFilter(strings.Fields("host fd00::2")); err != nil || f.Host != [16]byte{0: 0xfd, 15: 2} {
		t.Fatalf("IPv6 host: %+v %v", f, err)
	}
	for _, bad := range []string{"host", "host fe80::1%eth0", "host 10.0.0", "port 0", "port x", "src port 80", "icmp"} {
		if _, err := parseCaptureFilter(strings.Fields(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	var out, errb bytes.Buffer
	if rc := run([]string{"capture", "--pid", "1"}, &out, &errb); rc != 2 || !strings.Contains(errb.String(), "-w") {
		t.Errorf("capture without -w: rc %d %q", rc, errb.String())
	}
}
