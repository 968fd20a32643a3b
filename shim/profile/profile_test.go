package profile

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLookup(t *testing.T) {
	if got := Names(); !reflect.DeepEqual(got, []string{"default", "latency", "throughput"}) {
		t.Errorf("Names() = %q", got)
	}
	for _, n := range Names() {
		p, err := Lookup(n)
		if err != nil || p.Name != n || p.Doc == "" {
			t.Errorf("Lookup(%q) = %+v, %v", n, p, err)
		}
	}
	if p, _ := Lookup("default"); len(p.Settings) != 0 {
		t.Errorf("default has settings: %v", p.Settings)
	}
	_, err := Lookup("fast")
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Lookup(fast): %v, want ErrUnknown", err)
	}
	if want := `unknown profile "fast" (want default, latency or throughput)`; err.Error() != want {
		t.Errorf("Lookup(fast): %q, want %q", err, want)
	}
}

// A variable the user set wins; an unset or empty one takes the profile's value; variables the
// profile does not set pass through.
func TestPrecedence(t *testing.T) {
	p, err := Lookup("throughput")
	if err != nil {
		t.Fatal(err)
	}
	user := envOf(map[string]string{"USTACK_RCVBUF": "4096", "USTACK_SNDBUF": "", "USTACK_IFACE": "veth9"})
	g := p.Getenv(user)
	for k, want := range map[string]string{
		"USTACK_RCVBUF":     "4096",     // explicit
		"USTACK_SNDBUF":     "1048576",  // empty: the profile's
		"USTACK_RCVBUF_MAX": "16777216", // unset: the profile's
		"USTACK_IFACE":      "veth9",    // not the profile's business
		"USTACK_LOG":        "",
	} {
		if got := g(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	env := p.Env(user)
	want := []string{"USTACK_RCVBUF=4096", "USTACK_SNDBUF=1048576", "USTACK_RCVBUF_MAX=16777216", "USTACK_SNDBUF_MAX=16777216"}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("Env = %q, want %q", env, want)
	}
}

// All hands out copies: a caller cannot change the list.
func TestAllCopies(t *testing.T) {
	all := All()
	for i := range all {
		for j := range all[i].Settings {
			all[i].Settings[j].Value = "x"
		}
	}
	p, _ := Lookup("latency")
	if strings.Contains(p.Env(envOf(nil))[0], "=x") {
		t.Errorf("All let the list be changed: %v", p.Settings)
	}
}
