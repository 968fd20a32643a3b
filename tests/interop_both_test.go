// Interop under faults with ustack on both sides: socat
// under LD_PRELOAD in namespace A and in namespace B (each accelerated on its
// own veth), through the fault relay of tests/faults, each case in both
// directions, byte-identical (sha256). Both processes' onloadctl counters must
// show the bytes went through ustack (xsk tx on the sender, xsk rx on the
// receiver) and each namespace's kernel Tcp InSegs must stay below 1 % of the
// segments ustack counted there.
//
// The environment is TestInterop's (interop_test.go): USTACK_INTEROP=off (or
// -short) skips; the default is the reduced case list at 8 MiB per transfer
// (USTACK_INTEROP_MB), USTACK_INTEROP=full the whole matrix at 64 MiB,
// USTACK_INTEROP_CASES=a,b selects cases, USTACK_INTEROP_SEED seeds the relay.
package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ustack/tests/faults"
)

func TestInteropBothSides(t *testing.T) {
	cases, size, seed, stall := interopConfig(t)
	if err := faults.Available(); err != nil {
		t.Skipf("SKIP interop: %v", err)
	}
	in := filepath.Join(dataDir(t), "in")
	sum := randomFile(t, filepath.Dir(in), "in", size)
	t.Logf("interop, ustack on both sides: %d cases, %d MiB per transfer", len(cases), size/mb)
	type row struct {
		name, dir string
		res       *xferResult
	}
	var rows []*row
	port := 7600
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts
			o.Seed = seed
			e, ft := setupFaults(t, o)
			x := &interopXfer{e: e, ft: ft, c: c, in: in, sum: sum, size: size, stall: stall}
			for _, aSends := range []bool{true, false} {
				r := &row{name: c.name, dir: map[bool]string{true: "A sends", false: "A receives"}[aSends]}
				rows = append(rows, r)
				t.Run(strings.ReplaceAll(r.dir, " ", "_"), func(t *testing.T) {
					port++
					r.res = x.runBoth(t, aSends, port)
				})
			}
			if st, err := ft.Stats(); err == nil {
				t.Logf("relay counters over the two transfers:\n%s", st)
			}
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ustack on both sides: goodput MiB/s, %d MiB per transfer (segments retransmitted by the sender's ustack in brackets)\n", size/mb)
	fmt.Fprintf(&b, "%-12s %-11s %16s\n", "case", "direction", "ustack<->ustack")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-12s %-11s %16s\n", r.name, r.dir, withRetrans(r.res))
	}
	for _, r := range rows {
		if r.res != nil && !r.res.ok {
			fmt.Fprintf(&b, "%s %s: %s\n", r.name, r.dir, r.res.note)
		}
	}
	t.Logf("\n%s", b.String())
}

// accelOn is the environment of a program accelerated on ifname.
func (e *env) accelOn(ifname string) []string {
	return []string{
		"LD_PRELOAD=" + e.lib,
		"USTACK_IFACE=" + ifname,
		"USTACK_STATS_DIR=" + e.statsDir,
	}
}

// runBoth sends the file from A to B (aSends) or from B to A with socat under
// ustack on both ends; it reports failures on t and returns the result.
func (x *interopXfer) runBoth(t *testing.T, aSends bool, port int) *xferResult {
	ec := *x.e
	ec.t = t
	e, tp := &ec, x.ft.Topo
	res := &xferResult{}
	fail := func(format string, args ...any) *xferResult {
		t.Helper()
		res.note = fmt.Sprintf(format, args...)
		t.Error(res.note)
		return res
	}
	recvNS, sendNS := tp.NSB, tp.NSA
	recvIf, sendIf := tp.IfB, tp.IfA
	if !aSends {
		recvNS, sendNS = tp.NSA, tp.NSB
		recvIf, sendIf = tp.IfA, tp.IfB
	}
	listen, addr := socatAddrs(x.c.ipv6, x.c.dst(tp, aSends), port)
	out := filepath.Join(dataDir(t), "out")
	rin0, sin0 := e.kernelInSegs(recvNS), e.kernelInSegs(sendNS)
	srv, err := tp.StartServer(recvNS, e.accelOn(recvIf), port, serverWait, "socat", "-u", listen, "OPEN:"+out+",creat,trunc")
	if err != nil {
		return fail("receiver: %v", err)
	}
	defer srv.Stop()
	start := time.Now()
	snd, err := tp.Start(sendNS, e.accelOn(sendIf), "socat", "-u", "OPEN:"+x.in, addr+interopCC)
	if err != nil {
		return fail("sender: %v", err)
	}
	defer snd.Stop()
	diag := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "receiver exited %v, sender exited %v\n", srv.Exited(), snd.Exited())
		for _, p := range []struct {
			what string
			pid  int
		}{{"receiver", srv.Pid}, {"sender", snd.Pid}} {
			c := e.stats(t, p.pid)
			fmt.Fprintf(&b, "%s ustack: xsk rx %d tx %d, segs in %d out %d, retrans %d (fast %d, timeouts %d), ooo queued %d dropped %d, bad checksum %d, curr_estab %d\n",
				p.what, c["xsk.rx_bytes"], c["xsk.tx_bytes"], c["tcp.segs_in"], c["tcp.segs_out"], c["tcp.retrans_segs"],
				c["tcp.fast_retrans"], c["tcp.timeouts"], c["tcp.ooo_queued"], c["tcp.ooo_dropped"], c["drop.bad_checksum"], c["tcp.curr_estab"])
		}
		if st, err := x.ft.Stats(); err == nil {
			b.WriteString(st.String())
		}
		fmt.Fprintf(&b, "%s\n%s", srv.Output(), snd.Output())
		return b.String()
	}
	if msg := x.waitReceiver(srv, out, start); msg != "" {
		return fail("%s; %s", msg, diag())
	}
	elapsed := time.Since(start)
	rr := srv.Wait(time.Second)
	sr := snd.Wait(30 * time.Second)
	rin1, sin1 := e.kernelInSegs(recvNS), e.kernelInSegs(sendNS)
	if rr.Err != nil {
		return fail("receiver: %v\n%s\n%s", rr.Err, srv.Output(), snd.Output())
	}
	if sr.Err != nil {
		return fail("sender: %v\n%s\n%s", sr.Err, srv.Output(), snd.Output())
	}
	if s := fileSHA(t, out); s != x.sum {
		fi, _ := os.Stat(out)
		return fail("received %d bytes with sha256 %s, want %d bytes %s; %s", fi.Size(), s, x.size, x.sum, diag())
	}
	res.mbps = float64(x.size) / mb / elapsed.Seconds()
	cs, cr := e.stats(t, snd.Pid), e.stats(t, srv.Pid)
	e.logStats(t, "sender ustack socat ("+sendNS+")", cs)
	e.logStats(t, "receiver ustack socat ("+recvNS+")", cr)
	res.retrans = cs["tcp.retrans_segs"]
	if cs["xsk.tx_bytes"]+cs["shim.bytes_moved"] < uint64(x.size) {
		return fail("sender xsk.tx_bytes %d + shim.bytes_moved %d < %d: the bytes did not leave through ustack (or its exit move)", cs["xsk.tx_bytes"], cs["shim.bytes_moved"], x.size)
	}
	if cr["xsk.rx_bytes"]+cr["shim.bytes_moved"] < uint64(x.size) {
		return fail("receiver xsk.rx_bytes %d + shim.bytes_moved %d < %d: the bytes did not arrive through ustack (or its exit move)", cr["xsk.rx_bytes"], cr["shim.bytes_moved"], x.size)
	}
	t.Log("sender side:")
	checkUserPath(t, cs, x.size, sin0, sin1)
	t.Log("receiver side:")
	checkUserPath(t, cr, x.size, rin0, rin1)
	if t.Failed() {
		res.note = "the transfer did not take the user-space path on both sides"
		return res
	}
	res.ok = true
	t.Logf("ustack<->ustack, A %s: %d MiB in %v: %.2f MiB/s, %d segments retransmitted", map[bool]string{true: "sends", false: "receives"}[aSends],
		x.size/mb, elapsed.Round(time.Millisecond), res.mbps, res.retrans)
	return res
}
