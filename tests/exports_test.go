package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// localWrappers wrap calls of the Go runtime inside the library only, and must stay local.
var localWrappers = map[string]bool{"pthread_create": true}

// libustack.so exports exactly the libc entry points it interposes (preload/libustack.map):
// every non-static function the C files define outside the ustack_ namespace is an interposer
// and must be exported, or it would silently not interpose; nothing of Go's or cgo's may leak.
func TestExportsAreTheInterposers(t *testing.T) {
	root := repoRoot(t)
	lib := filepath.Join(root, "build", "libustack.so")
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("SKIP: %s missing: run `make build`", lib)
	}
	out, err := exec.Command("nm", "-D", "--defined-only", lib).Output()
	if err != nil {
		t.Skipf("SKIP: nm: %v", err)
	}
	var exported []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			exported = append(exported, f[2])
		}
	}
	defRe := regexp.MustCompile(`(?m)^[a-zA-Z][a-zA-Z0-9_ \t\*]*?\b([a-z_][a-z0-9_]*)\(`)
	files, _ := filepath.Glob(filepath.Join(root, "preload", "*.c"))
	var defined []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range defRe.FindAllSubmatch(src, -1) {
			line := string(m[0])
			name := string(m[1])
			if strings.HasPrefix(line, "static") || strings.HasPrefix(name, "ustack_") || localWrappers[name] {
				continue
			}
			defined = append(defined, name)
		}
	}
	slices.Sort(exported)
	slices.Sort(defined)
	defined = slices.Compact(defined)
	if len(defined) < 30 {
		t.Fatalf("found only %d interposers in preload/*.c: the pattern is broken", len(defined))
	}
	if !slices.Equal(exported, defined) {
		t.Errorf("exported %v\ninterposers %v", exported, defined)
	}
	for name := range localWrappers {
		if slices.Contains(exported, name) {
			t.Errorf("%s is exported: it would wrap the whole program's threads", name)
		}
	}
}

// libustack-go.so, the Go part the front loads on demand, exports only its entry points (the
// front finds them with dlsym): the runtime's and cgo's symbols, and its pthread_create
// wrapper, stay local.
func TestGoPartExportsOnlyItsEntryPoints(t *testing.T) {
	lib := filepath.Join(repoRoot(t), "build", "libustack-go.so")
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("SKIP: %s missing: run `make build`", lib)
	}
	out, err := exec.Command("nm", "-D", "--defined-only", lib).Output()
	if err != nil {
		t.Skipf("SKIP: nm: %v", err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		if !strings.HasPrefix(f[2], "ustack_") {
			t.Errorf("libustack-go.so exports %s", f[2])
		}
		n++
	}
	if n < 20 {
		t.Errorf("libustack-go.so exports %d entry points, want the ~25 of preload/goapi.h", n)
	}
}

// vfork returns twice from one stack frame: a wrapper that keeps a frame of its own across the
// call would have the child's return pop it and the parent resume on a clobbered stack. So
// libustack.so's vfork may only jump (a tail call) to glibc's vfork or to fork, never call, push
// or move the stack pointer.
func TestVforkIsATailCall(t *testing.T) {
	lib := filepath.Join(repoRoot(t), libRel)
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("SKIP: %s missing: run `make build`", lib)
	}
	out, err := exec.Command("objdump", "-d", "--no-show-raw-insn", lib).Output()
	if err != nil {
		t.Skipf("SKIP: objdump: %v", err)
	}
	text := string(out)
	i := strings.Index(text, "<vfork>:\n")
	if i < 0 {
		t.Fatal("no vfork in libustack.so")
	}
	body := text[i:]
	if j := strings.Index(body, "\n\n"); j >= 0 {
		body = body[:j]
	}
	if regexp.MustCompile(`\s(call|push|sub\s+\$0x[0-9a-f]+,%rsp|ret)\b`).MatchString(body) {
		t.Fatalf("vfork keeps a frame or returns itself:\n%s", body)
	}
	if !strings.Contains(body, "jmp") || !strings.Contains(body, "__vfork") {
		t.Fatalf("vfork does not jump to glibc's __vfork:\n%s", body)
	}
}
