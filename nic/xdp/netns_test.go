package xdp

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"
)

// testNet is a pair of network namespaces joined by a veth pair:
// A (10.99.0.1, veth VethA) gets the XSK, B (10.99.0.2, veth VethB) is the
// kernel peer with checksum offload, TSO and GSO off.
type testNet struct {
	NsA, NsB     string
	VethA, VethB string
	hA, hB       netns.NsHandle
}

var (
	ipA = [4]byte{10, 99, 0, 1}
	ipB = [4]byte{10, 99, 0, 2}
)

var netSeq atomic.Int32

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, veth, XDP, AF_XDP)")
	}
}

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	needRoot(t)
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, netSeq.Add(1))
	n := &testNet{
		NsA: "ustkA" + id, NsB: "ustkB" + id,
		VethA: "uxa" + id, VethB: "uxb" + id,
	}
	t.Cleanup(func() {
		if n.hA.IsOpen() {
			n.hA.Close()
		}
		if n.hB.IsOpen() {
			n.hB.Close()
		}
		exec.Command("ip", "netns", "del", n.NsA).Run()
		exec.Command("ip", "netns", "del", n.NsB).Run()
	})
	run(t, "ip", "netns", "add", n.NsA)
	run(t, "ip", "netns", "add", n.NsB)
	run(t, "ip", "link", "add", n.VethA, "netns", n.NsA, "type", "veth", "peer", "name", n.VethB, "netns", n.NsB)
	run(t, "ip", "-n", n.NsA, "addr", "add", "10.99.0.1/24", "dev", n.VethA)
	run(t, "ip", "-n", n.NsB, "addr", "add", "10.99.0.2/24", "dev", n.VethB)
	run(t, "ip", "-n", n.NsA, "link", "set", "lo", "up")
	run(t, "ip", "-n", n.NsB, "link", "set", "lo", "up")
	run(t, "ip", "-n", n.NsA, "link", "set", n.VethA, "up")
	run(t, "ip", "-n", n.NsB, "link", "set", n.VethB, "up")
	run(t, "ip", "netns", "exec", n.NsB, "ethtool", "-K", n.VethB, "tx", "off", "tso", "off", "gso", "off")
	var err error
	if n.hA, err = netns.GetFromName(n.NsA); err != nil {
		t.Fatal(err)
	}
	if n.hB, err = netns.GetFromName(n.NsB); err != nil {
		t.Fatal(err)
	}
	return n
}

// in runs f on an OS thread that entered namespace h; the thread is thrown
// away afterwards.
func in[T any](t testing.TB, h netns.NsHandle, f func() (T, error)) (T, error) {
	t.Helper()
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(h); err != nil {
			var zero T
			ch <- res{zero, fmt.Errorf("entering netns: %w", err)}
			return
		}
		v, err := f()
		ch <- res{v, err}
	}()
	r := <-ch
	return r.v, r.err
}
