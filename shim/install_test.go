package shim

import (
	"os"
	"path/filepath"
	"testing"
)

// The keeper's onloadctl is found beside the library (a build directory), else in the bin
// directory of an installation, multiarch or not.
func TestOnloadctlNear(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) string {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	build := mk("build/onloadctl")
	local := mk("local/bin/onloadctl")
	os.MkdirAll(filepath.Join(root, "local/lib"), 0o755)
	usr := mk("usr/bin/onloadctl")
	os.MkdirAll(filepath.Join(root, "usr/lib/x86_64-linux-gnu"), 0o755)
	for dir, want := range map[string]string{
		"build":                    build,
		"local/lib":                local,
		"usr/lib/x86_64-linux-gnu": usr,
		"nowhere":                  filepath.Join(root, "nowhere/onloadctl"),
	} {
		got := onloadctlNear(filepath.Join(root, dir))
		if filepath.Clean(got) != filepath.Clean(want) {
			t.Errorf("library in %s: %s, want %s", dir, got, want)
		}
	}
}
