package main

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"

	"ustack/shim/profile"
)

// runEnv returns the variables `onloadctl run` adds to the command's environment before
// LD_PRELOAD: the profile's settings (name, else $USTACK_PROFILE), a variable the user set
// keeping the user's value, and USTACK_STATS_DIR for --dir. An unknown profile is an error
// naming the valid ones.
func runEnv(name, dir string, getenv func(string) string) ([]string, error) {
	var env []string
	if name == "" {
		name = getenv("USTACK_PROFILE")
	}
	if name != "" {
		p, err := profile.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("--profile: %w", err)
		}
		// USTACK_PROFILE too, so that the library applies the same profile, not one the
		// environment names (it would only fill in what is still unset: nothing)
		env = append(env, "USTACK_PROFILE="+p.Name)
		env = append(env, p.Env(getenv)...)
	}
	if dir != "" {
		env = append(env, "USTACK_STATS_DIR="+dir)
	}
	return env, nil
}

// writeDryRun prints what `onloadctl run --dry-run` would do: the variables it sets, one
// KEY=VALUE a line, then the command, quoted for a POSIX shell where needed.
func writeDryRun(w io.Writer, env, argv []string) {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(w, "%s=%s\n", k, shellQuote(v))
	}
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = shellQuote(a)
	}
	fmt.Fprintln(w, strings.Join(words, " "))
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote returns s as one word of a POSIX shell: as it is if it needs no quoting, else in
// single quotes.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runUsage is `onloadctl run -h`: the flags, then the profiles and what each sets.
func runUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, "usage: onloadctl run [--profile P] [--dry-run] [--stats] [--dir D] -- cmd [args...]\n")
	fs.PrintDefaults()
	fmt.Fprint(w, "profiles (a variable already set keeps its value):\n")
	for _, p := range profile.All() {
		fmt.Fprintf(w, "  %-11s %s\n", p.Name, p.Doc)
		for _, s := range p.Settings {
			fmt.Fprintf(w, "  %-11s   %s=%s\n", "", s.Key, s.Value)
		}
	}
}
