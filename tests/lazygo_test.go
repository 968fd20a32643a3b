package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The Go part starts only when a socket could use it (a process that opens none never
// starts it): a program that opens no AF_INET TCP/UDP socket under LD_PRELOAD has no
// libustack-go.so mapped and one thread; one that opens a UNIX socket neither; nor one that only
// sets a TCP socket up (bind, options, listen: a preforking server's master, whose workers take
// the listener, preload/cand.c); one whose TCP socket connects has it (and Go's threads).
func TestGoPartStartsOnlyForSockets(t *testing.T) {
	root := repoRoot(t)
	lib := filepath.Join(root, "build", "libustack.so")
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("SKIP: %s missing: run `make build`", lib)
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("SKIP: no python3")
	}
	const report = `
import os
maps = open('/proc/self/maps').read()
threads = len(os.listdir('/proc/self/task'))
print('go' if 'libustack-go.so' in maps else 'nogo', threads)
`
	for _, c := range []struct {
		name, pre string
		goWanted  bool
	}{
		{"no socket", "", false},
		{"a UNIX socket", "import socket; s = socket.socket(socket.AF_UNIX)\n", false},
		{"a TCP socket set up", "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 0)); s.listen(5); s.getsockname()\n", false},
		{"a TCP socket that connects", "import socket; s = socket.socket(); s.connect_ex(('127.0.0.1', 9))\n", true},
	} {
		cmd := exec.Command(py, "-c", c.pre+report)
		// an interface that does not exist: the Go part starts, the stack does not
		cmd.Env = append(os.Environ(), "LD_PRELOAD="+lib, "USTACK_IFACE=ustack-no-such-if", "USTACK_LOG=error")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		f := strings.Fields(string(out))
		if len(f) != 2 {
			t.Fatalf("%s: output %q", c.name, out)
		}
		if got := f[0] == "go"; got != c.goWanted {
			t.Errorf("%s: the Go part loaded: %v, want %v (threads %s)", c.name, got, c.goWanted, f[1])
		}
		if !c.goWanted && f[1] != "1" {
			t.Errorf("%s: %s threads, want 1 (no Go runtime)", c.name, f[1])
		}
	}
}
