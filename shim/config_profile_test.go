package shim

import (
	"errors"
	"strings"
	"testing"

	"ustack/shim/profile"
)

func envMap(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestConfigProfile(t *testing.T) {
	base, err := ConfigFromEnv(envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ConfigFromEnv(envMap(map[string]string{"USTACK_PROFILE": "latency"}))
	if err != nil || c.SpinUs != 50 || c.Profile != "latency" {
		t.Errorf("latency: SpinUs %d, Profile %q, %v", c.SpinUs, c.Profile, err)
	}
	// an explicit variable wins over the profile
	c, err = ConfigFromEnv(envMap(map[string]string{"USTACK_PROFILE": "latency", "USTACK_SPIN_US": "7"}))
	if err != nil || c.SpinUs != 7 {
		t.Errorf("latency with USTACK_SPIN_US=7: SpinUs %d, %v", c.SpinUs, err)
	}
	c, err = ConfigFromEnv(envMap(map[string]string{"USTACK_PROFILE": "throughput", "USTACK_SNDBUF_MAX": "65536"}))
	if err != nil || c.RecvBuf != 1<<20 || c.SendBuf != 1<<20 || c.RecvBufMax != 16<<20 || c.SendBufMax != 65536 || c.SpinUs != 0 {
		t.Errorf("throughput: %+v, %v", c, err)
	}
	c, err = ConfigFromEnv(envMap(map[string]string{"USTACK_PROFILE": "default"}))
	c.Profile = ""
	if err != nil || c != base {
		t.Errorf("default: %+v, %v; want %+v", c, err, base)
	}
	// an unknown profile is refused like an unparsable value (the library then stays on the
	// kernel, saying why)
	_, err = ConfigFromEnv(envMap(map[string]string{"USTACK_PROFILE": "fast"}))
	if !errors.Is(err, profile.ErrUnknown) || !strings.Contains(err.Error(), "USTACK_PROFILE") ||
		!strings.Contains(err.Error(), "default, latency or throughput") {
		t.Errorf("unknown profile: %v", err)
	}
	// a profile's value that the user overrides with garbage is the user's error, named
	_, err = ConfigFromEnv(envMap(map[string]string{"USTACK_PROFILE": "latency", "USTACK_SPIN_US": "lots"}))
	if err == nil || !strings.Contains(err.Error(), "USTACK_SPIN_US") {
		t.Errorf("USTACK_SPIN_US=lots: %v", err)
	}
}

// Every setting of every profile is a variable ConfigFromEnv reads, with a value it accepts and
// that changes the configuration: a profile cannot carry a misspelt name or a no-op.
func TestProfilesSetRealVariables(t *testing.T) {
	base, _ := ConfigFromEnv(envMap(nil))
	for _, p := range profile.All() {
		for _, s := range p.Settings {
			read := false
			c, err := ConfigFromEnv(func(k string) string {
				if k == s.Key {
					read = true
					return s.Value
				}
				return ""
			})
			if err != nil || !read || c == base {
				t.Errorf("profile %s: %s=%s: read %v, config changed %v, %v", p.Name, s.Key, s.Value, read, c != base, err)
			}
		}
	}
}
