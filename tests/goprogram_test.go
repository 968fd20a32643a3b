package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const goProgram = `package main

/*
#include <sys/socket.h>
#include <unistd.h>
static int viaLibc(void) { int s = socket(AF_INET, SOCK_STREAM, 0); if (s >= 0) close(s); return s; }
*/
import "C"

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

func main() {
	if C.viaLibc() < 0 {
		fmt.Println("libc socket failed")
		os.Exit(1)
	}
	c, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
	b, _ := io.ReadAll(c)
	fmt.Println("reply", strings.HasPrefix(string(b), "HTTP/1."))
}
`

// A Go executable (here one with cgo, so that it loads libc and with it libustack.so, and
// makes a socket through libc) gains nothing from ustack and must not share sockets between two
// Go runtimes: ustack recognises it (.go.buildinfo) and stays out of the way. It works, and no
// stack starts (no stats segment).
func TestGoProgramIsLeftAlone(t *testing.T) {
	e := setup(t)
	tp := e.tp
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(goProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module goprog\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "goprog")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("SKIP: cannot build a cgo Go program here: %v\n%s", err, out)
	}
	if _, err := tp.StartServer(tp.NSB, nil, 8000, serverWait, python, "-m", "http.server", "--bind", tp.AddrB, "--directory", dir, "8000"); err != nil {
		t.Fatal(err)
	}
	r := tp.RunA(e.accel(), 20*time.Second, bin, tp.AddrB+":8000")
	if r.Err != nil || strings.TrimSpace(string(r.Stdout)) != "reply true" {
		t.Fatalf("Go program under LD_PRELOAD: %s", r)
	}
	if _, err := os.Stat(filepath.Join(e.statsDir, "ustack-stats."+strconv.Itoa(r.Pid))); err == nil {
		t.Errorf("a stack started in the Go program (stats segment of pid %d exists)", r.Pid)
	}
}
