// Package profile holds ustack's named profiles: sets of USTACK_* settings for a kind of
// workload. A profile is applied by `onloadctl run --profile NAME` (as environment variables of
// the command) and by the library itself when USTACK_PROFILE=NAME (as defaults in
// shim.ConfigFromEnv). Either way a variable the user set explicitly wins over the profile.
//
// This package is the one list of profiles; it imports nothing of ustack, so onloadctl can use
// it without the stack.
package profile

import (
	"errors"
	"fmt"
	"strings"
)

// Setting is one USTACK_* variable and the value a profile gives it.
type Setting struct {
	Key, Value string
}

// Profile is a named set of settings.
type Profile struct {
	Name     string
	Doc      string // one line, for usage texts
	Settings []Setting
}

// ErrUnknown is the error of Lookup for a name that is not a profile.
var ErrUnknown = errors.New("unknown profile")

// profiles is the list, in the order usage texts show it. The values are starting points for
// the workload the name says, each chosen for the reason beside it; measure before you tune
// further (make bench).
var profiles = []Profile{
	{
		Name: "default",
		Doc:  "no settings: ustack's defaults",
	},
	{
		Name: "latency",
		Doc:  "busy-poll before sleeping: lower round-trip times for a core's worth of CPU",
		Settings: []Setting{
			// A blocking call, poll, select or epoll_wait keeps asking the stack for 50 us before
			// it sleeps. Waking a sleeping thread from another CPU costs 25-35 us here
			// (DESIGN.md), so a reply that arrives within 50 us is taken without that cost; 50 is
			// also the value the kernel documents as its recommended net.core.busy_read (and the
			// one `make bench` compares with the kernel's busy polling). Longer spins burn CPU
			// for replies slow enough that a wake-up no longer matters.
			{"USTACK_SPIN_US", "50"},
		},
	},
	{
		Name: "throughput",
		Doc:  "bigger TCP buffers to start with and to autotune to: bulk transfers over a large bandwidth-delay product",
		Settings: []Setting{
			// Start each connection's buffers at 1 MiB instead of 256 KiB: a bulk transfer
			// is not window-limited while autotuning doubles them over its first round trips.
			// It costs 2 MiB per connection up front: a profile for a few bulk flows, not for
			// a server holding thousands of connections.
			{"USTACK_RCVBUF", "1048576"},
			{"USTACK_SNDBUF", "1048576"},
			// Let autotuning grow them to 16 MiB instead of 4 MiB: the bandwidth-delay product
			// of 10 Gbit/s at a 13 ms round trip (Linux stops at 6 MiB by default; tuning guides
			// for 10 Gbit/s paths raise net.core.rmem_max/wmem_max to 16 MiB and more).
			{"USTACK_RCVBUF_MAX", "16777216"},
			{"USTACK_SNDBUF_MAX", "16777216"},
		},
	},
}

// Names returns the names of the profiles.
func Names() []string {
	names := make([]string, len(profiles))
	for i, p := range profiles {
		names[i] = p.Name
	}
	return names
}

// All returns the profiles, in the order of Names.
func All() []Profile {
	out := make([]Profile, len(profiles))
	for i, p := range profiles {
		out[i] = p
		out[i].Settings = append([]Setting(nil), p.Settings...)
	}
	return out
}

// Lookup returns the profile called name; for another name, an error (ErrUnknown) that lists
// the valid ones.
func Lookup(name string) (Profile, error) {
	for _, p := range All() {
		if p.Name == name {
			return p, nil
		}
	}
	return Profile{}, fmt.Errorf("%w %q (want %s)", ErrUnknown, name, oneOf(Names()))
}

// oneOf joins names as "a, b or c".
func oneOf(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Getenv returns getenv with p's settings as defaults: for a variable of p that getenv gives
// no value ("", which ustack's configuration treats as unset), the profile's value.
func (p Profile) Getenv(getenv func(string) string) func(string) string {
	return func(key string) string {
		if v := getenv(key); v != "" {
			return v
		}
		for _, s := range p.Settings {
			if s.Key == key {
				return s.Value
			}
		}
		return ""
	}
}

// Env returns the KEY=VALUE assignments that apply p to a program whose environment getenv
// reads: one for each setting of p, with the user's value where getenv gives one (an explicit
// setting wins) and the profile's otherwise, in the profile's order.
func (p Profile) Env(getenv func(string) string) []string {
	g := p.Getenv(getenv)
	env := make([]string, len(p.Settings))
	for i, s := range p.Settings {
		env[i] = s.Key + "=" + g(s.Key)
	}
	return env
}
