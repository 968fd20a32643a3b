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
