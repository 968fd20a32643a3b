// The semantic test suite: each C program
// tests/c/sem_*.c checks a group of socket semantics against the peer
// tests/c/sem_peer.c (a kernel program in namespace B) and prints one line
// per check, "ok NAME" or "FAIL NAME: detail". Every program runs twice in
// namespace A: on the kernel, where every check must pass (that proves the
// expectation), and under LD_PRELOAD=libustack.so, where it must print the
// same lines, with onloadctl's counters showing that its sockets were
// accelerated.
//
//	make build && go test -tags semantics -v -run TestSemantics ./tests/ -count=1
//	go test -tags semantics -v -run 'TestSemantics/sem_epoll/' ./tests/ -count=1  # one program
//
// By hand: build/tests/sem_peer 9000 in one namespace, and
// build/tests/sem_xxx PEER_IP 9000 LOCAL_IP [CHECK] in the other. Every program gets the IPv6
// side of the topology in its environment (SEM_PEER6, SEM_LOCAL6, SEM_PEER_LL, SEM_IFACE;
// sem_inet6 needs them).
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	semPeerPort = 9000 // semPeerPort+1 must stay without a listener: "connection refused"
	semTimeout  = 3 * time.Minute
)

// semBinary returns build/tests/<name>, compiling it (with the Makefile's
// flags) when it is missing or older than its source or sem.h, which the
// Makefile's rule does not know about.
func semBinary(t *testing.T, root, name string) string {
	t.Helper()
	src := filepath.Join(root, "tests", "c", name+".c")
	bin := filepath.Join(root, "build", "tests", name)
	bst, err := os.Stat(bin)
	stale := err != nil
	for _, dep := range []string{src, filepath.Join(root, "tests", "c", "sem.h")} {
		if st, err := os.Stat(dep); err == nil && bst != nil && st.ModTime().After(bst.ModTime()) {
			stale = true
		}
	}
	if stale {
		if _, err := exec.LookPath("gcc"); err != nil {
			t.Skipf("SKIP: %s missing or stale and no gcc: run `make deps build`", bin)
		}
		os.MkdirAll(filepath.Dir(bin), 0o755)
		if out, err := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-o", bin, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc %s: %v\n%s", src, err, out)
		}
		t.Logf("built %s", bin)
	}
	return bin
}

// semLine is one check's line.
type semLine struct {
	name, line string
}

// semParse returns the check lines of a run in order (other output ignored).
func semParse(out []byte) []semLine {
	var ls []semLine
	for l := range strings.Lines(string(out)) {
		l = strings.TrimRight(l, "\n")
		switch {
		case strings.HasPrefix(l, "ok "):
			ls = append(ls, semLine{strings.TrimPrefix(l, "ok "), l})
		case strings.HasPrefix(l, "FAIL "):
			name, _, _ := strings.Cut(strings.TrimPrefix(l, "FAIL "), ":")
			ls = append(ls, semLine{name, l})
		}
	}
	return ls
}

func TestSemantics(t *testing.T) {
	e := setup(t)
	tp := e.tp
	root := repoRoot(t)
	srcs, err := filepath.Glob(filepath.Join(root, "tests", "c", "sem_*.c"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no tests/c/sem_*.c: %v", err)
	}
	peerBin := semBinary(t, root, "sem_peer")
	var progs []string
	for _, s := range srcs {
		if name := strings.TrimSuffix(filepath.Base(s), ".c"); name != "sem_peer" {
			progs = append(progs, name)
		}
	}
	slices.Sort(progs)
	bins := map[string]string{}
	for _, p := range progs {
		bins[p] = semBinary(t, root, p)
	}
	peer, err := tp.StartServer(tp.NSB, nil, semPeerPort, serverWait, peerBin, fmt.Sprint(semPeerPort))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{tp.AddrB, fmt.Sprint(semPeerPort), tp.AddrA}
	env6 := []string{"SEM_PEER6=" + tp.AddrB6, "SEM_LOCAL6=" + tp.AddrA6, "SEM_PEER_LL=" + tp.LinkLocalB, "SEM_IFACE=" + tp.IfA}

	for _, prog := range progs {
		t.Run(prog, func(t *testing.T) {
			if peer.Exited() {
				t.Fatalf("the peer exited: %s", peer.Output())
			}
			bin := bins[prog]
			kr := tp.RunA(env6, semTimeout, bin, args...)
			kl := semParse(kr.Stdout)
			if kr.Err != nil || len(kl) == 0 {
				t.Errorf("kernel run failed, so an expectation is wrong (the kernel defines it): %s", kr)
			}
			for _, l := range kl {
				if !strings.HasPrefix(l.line, "ok ") {
					t.Errorf("kernel: %s", l.line)
				}
			}

			ur := tp.RunA(e.accel(env6...), semTimeout, bin, args...)
			ul := semParse(ur.Stdout)
			got := map[string]string{}
			alone := map[string]bool{}
			for _, l := range ul {
				got[l.name] = l.line
			}
			if ur.Code != 0 && ur.Code != 1 || ur.TimedOut {
				t.Logf("ustack run ended abnormally (code %d, timed out %v): %s", ur.Code, ur.TimedOut, ur)
			}
			// A check that hung ends the program: run each check it did
			// not reach on its own, so that every check has a result.
			for _, l := range kl {
				if _, ok := got[l.name]; ok {
					continue
				}
				r := tp.RunA(e.accel(env6...), semTimeout, bin, append(args, l.name)...)
				one := semParse(r.Stdout)
				if len(one) == 1 && one[0].name == l.name {
					got[l.name], alone[l.name] = one[0].line, true
				} else {
					got[l.name] = fmt.Sprintf("FAIL %s: no result, run alone: %s", l.name, r)
				}
			}
			for _, l := range ul {
				if !slices.ContainsFunc(kl, func(k semLine) bool { return k.name == l.name }) {
					t.Errorf("ustack printed a check the kernel run did not: %s", l.line)
				}
			}
			for _, l := range kl {
				t.Run(l.name, func(t *testing.T) {
					how := ""
					if alone[l.name] {
						how = " (run alone: the full ustack run ended before it)"
					}
					if u := got[l.name]; u != l.line {
						t.Errorf("kernel: %s\n        ustack%s: %s", l.line, how, u)
					} else if how != "" {
						t.Logf("ustack%s: %s", how, u)
					}
				})
			}
			if t.Failed() && len(ur.Stderr) > 0 {
				t.Logf("ustack run's stderr:\n%s", clipBytes(ur.Stderr, 3000))
			}

			c := e.stats(t, ur.Pid)
			e.logStats(t, prog, c)
			if c["shim.sockets_accelerated"] == 0 {
				t.Errorf("shim.sockets_accelerated is 0: the ustack run did not accelerate its sockets")
			}
			if c["tcp.active_opens"]+c["tcp.passive_opens"] == 0 {
				t.Errorf("tcp.active_opens and tcp.passive_opens are 0: no connection went through ustack")
			}
			for name, min := range semMinCounters[prog] {
				if c[name] < min {
					t.Errorf("%s is %d, want at least %d: %s", name, c[name], min, semMinWhy[prog])
				}
			}
		})
	}
	if peer.Exited() {
		t.Errorf("the peer exited during the run: %s", peer.Output())
	}
}

// semMinCounters are counters a program's ustack run must reach beyond the ones every program
// must: where a program's small IPv4 traffic (its command connections to the peer) would show
// an accelerated socket anyway, what its other sockets carry.
var semMinCounters = map[string]map[string]uint64{
	"sem_inet6": {"xsk.rx_bytes": 3 * mb, "xsk.tx_bytes": 3 * mb, "udp.in_datagrams": 6, "udp.out_datagrams": 6},
}

var semMinWhy = map[string]string{
	"sem_inet6": "its AF_INET6 sockets carry 1 MiB each way three times (to the peer's IPv6, IPv4-mapped and link-local addresses) and 6 UDP echoes, its IPv4 command connections a few KiB: the AF_INET6 sockets did not take the user-space path",
}

func clipBytes(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n/2]) + "\n...\n" + string(b[len(b)-n/2:])
}
