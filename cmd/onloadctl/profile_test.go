package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ustack/shim/profile"
)

// fakeLib points USTACK_LIB at an empty file: ld.so warns that it cannot preload it and goes on.
func fakeLib(t *testing.T) string {
	lib := filepath.Join(t.TempDir(), "libustack.so")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("USTACK_LIB", lib)
	t.Setenv("LD_PRELOAD", "")
	return lib
}

func TestRunDryRun(t *testing.T) {
	lib := fakeLib(t)
	t.Setenv("USTACK_PROFILE", "")
	t.Setenv("USTACK_SNDBUF", "65536") // explicit: wins over the profile
	var out, errb bytes.Buffer
	rc := run([]string{"run", "--profile", "throughput", "--dry-run", "--dir", "/tmp/s", "--", "iperf3", "-c", "10.0.0.2", "it's"}, &out, &errb)
	if rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	want := "USTACK_PROFILE=throughput\n" +
		"USTACK_RCVBUF=1048576\n" +
		"USTACK_SNDBUF=65536\n" +
		"USTACK_RCVBUF_MAX=16777216\n" +
		"USTACK_SNDBUF_MAX=16777216\n" +
		"USTACK_STATS_DIR=/tmp/s\n" +
		"LD_PRELOAD=" + lib + "\n" +
		`iperf3 -c 10.0.0.2 'it'\''s'` + "\n"
	if out.String() != want {
		t.Errorf("dry run printed\n%s\nwant\n%s", out.String(), want)
	}

	// without --profile, the environment's USTACK_PROFILE; no profile at all: LD_PRELOAD alone
	t.Setenv("USTACK_PROFILE", "latency")
	out.Reset()
	if rc := run([]string{"run", "--dry-run", "--", "true"}, &out, &errb); rc != 0 ||
		out.String() != "USTACK_PROFILE=latency\nUSTACK_SPIN_US=50\nLD_PRELOAD="+lib+"\ntrue\n" {
		t.Errorf("USTACK_PROFILE=latency: rc %d\n%s", rc, out.String())
	}
	// --profile wins over the environment's USTACK_PROFILE, and the child is told so
	out.Reset()
	if rc := run([]string{"run", "--profile", "default", "--dry-run", "--", "true"}, &out, &errb); rc != 0 ||
		out.String() != "USTACK_PROFILE=default\nLD_PRELOAD="+lib+"\ntrue\n" {
		t.Errorf("--profile default: rc %d\n%s", rc, out.String())
	}
	t.Setenv("USTACK_PROFILE", "")
	out.Reset()
	if rc := run([]string{"run", "--dry-run", "--", "true"}, &out, &errb); rc != 0 || out.String() != "LD_PRELOAD="+lib+"\ntrue\n" {
		t.Errorf("no profile: rc %d\n%s", rc, out.String())
	}
}

func TestRunProfileUnknown(t *testing.T) {
	fakeLib(t)
	for _, args := range [][]string{
		{"run", "--profile", "fast", "--", "true"},
		{"run", "--profile", "fast", "--dry-run", "--", "true"},
	} {
		var out, errb bytes.Buffer
		rc := run(args, &out, &errb)
		if rc != 2 || !strings.Contains(errb.String(), `unknown profile "fast" (want default, latency or throughput)`) || out.Len() != 0 {
			t.Errorf("%q: rc %d, stdout %q, stderr %q", args, rc, out.String(), errb.String())
		}
	}
	t.Setenv("USTACK_PROFILE", "fast")
	var out, errb bytes.Buffer
	if rc := run([]string{"run", "--", "true"}, &out, &errb); rc != 2 || !strings.Contains(errb.String(), "unknown profile") {
		t.Errorf("USTACK_PROFILE=fast: rc %d, stderr %q", rc, errb.String())
	}
}

// The command really runs with the profile's variables, the user's explicit ones winning.
func TestRunProfileEnv(t *testing.T) {
	fakeLib(t)
	t.Setenv("USTACK_PROFILE", "")
	t.Setenv("USTACK_RCVBUF_MAX", "")
	t.Setenv("USTACK_RCVBUF", "8192")
	var out, errb bytes.Buffer
	script := `test "$USTACK_PROFILE/$USTACK_RCVBUF/$USTACK_RCVBUF_MAX/$USTACK_SPIN_US" = "throughput/8192/16777216/"`
	if rc := run([]string{"run", "--profile", "throughput", "--", "sh", "-c", script}, &out, &errb); rc != 0 {
		t.Errorf("the command saw other variables: rc %d", rc)
	}
}

// The usage names every profile; run -h shows what each sets.
func TestRunUsageProfiles(t *testing.T) {
	var out, errb bytes.Buffer
	run([]string{"run", "-h"}, &out, &errb)
	for _, p := range profile.All() {
		if !strings.Contains(usage, p.Name) {
			t.Errorf("usage does not name profile %s", p.Name)
		}
		if !strings.Contains(errb.String(), "  "+p.Name+" ") {
			t.Errorf("run -h does not list profile %s:\n%s", p.Name, errb.String())
		}
		for _, s := range p.Settings {
			if !strings.Contains(errb.String(), s.Key+"="+s.Value) {
				t.Errorf("run -h does not show %s=%s", s.Key, s.Value)
			}
		}
	}
}
