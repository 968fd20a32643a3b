package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestManEnvironment: every USTACK_ variable named in shim/config.go (the configuration), and
// every one the library and onloadctl read with getenv (preload, shim, nic, cmd; tests' own
// variables excluded), appears in man/ustack.7.
func TestManEnvironment(t *testing.T) {
	root := repoRoot(t)
	page, err := os.ReadFile(filepath.Join(root, "man", "ustack.7"))
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`USTACK_[A-Z0-9_]*[A-Z0-9]`)
	read := regexp.MustCompile(`[gG]etenv\("(USTACK_[A-Z0-9_]+)"\)`)
	want := map[string]string{} // variable -> a file that names it
	config := filepath.Join(root, "shim", "config.go")
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range name.FindAllString(string(b), -1) {
		want[n] = "shim/config.go"
	}
	for _, dir := range []string{"preload", "preload/golib", "shim", "nic", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") ||
				!(strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".c") || strings.HasSuffix(p, ".h")) {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range read.FindAllStringSubmatch(string(b), -1) {
				if _, ok := want[m[1]]; !ok {
					want[m[1]], _ = filepath.Rel(root, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(want) < 10 {
		t.Fatalf("found only %d USTACK_ variables in the sources: %v", len(want), want)
	}
	documented := map[string]bool{}
	for _, n := range name.FindAllString(string(page), -1) {
		documented[n] = true
	}
	var missing []string
	for n, where := range want {
		if !documented[n] {
			missing = append(missing, n+" ("+where+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("man/ustack.7 does not document %d variables: %s", len(missing), strings.Join(missing, ", "))
	}
	t.Logf("%d variables, all in man/ustack.7", len(want))
}
