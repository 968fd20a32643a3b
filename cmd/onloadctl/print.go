package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"ustack/shm"
)

// jsonProcess is one element of `onloadctl stats --json`.
type jsonProcess struct {
	Pid       int               `json:"pid"`
	StartTime uint64            `json:"start_time"`
	Alive     bool              `json:"alive"`
	Cmdline   string            `json:"cmdline"`
	Iface     string            `json:"iface"`
	Mode      string            `json:"mode"`
	Path      string            `json:"path"`
	Total     bool              `json:"total,omitempty"` // the sum of an interface's processes
	Counters  map[string]uint64 `json:"counters"`
}

func writeJSON(w io.Writer, snaps []*shm.StatsSnapshot) error {
	out := make([]jsonProcess, 0, len(snaps))
	for _, s := range snaps {
		c := make(map[string]uint64, len(s.Names))
		for i, n := range s.Names {
			c[n] = s.Values[i]
		}
		out = append(out, jsonProcess{
			Pid: s.Pid, StartTime: s.StartTime, Alive: s.Alive, Cmdline: s.Cmdline,
			Iface: s.Iface, Mode: s.Mode, Path: s.Path, Total: s.Pid == 0, Counters: c,
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("writing json: %w", err)
	}
	return nil
}

// writeText prints one process: a heading, then every counter (zeros too)
// grouped by the prefix before the dot, groups in segment order.
func writeText(w io.Writer, s *shm.StatsSnapshot) {
	state := "alive"
	if !s.Alive {
		state = "exited"
	}
	if s.Pid == 0 {
		fmt.Fprintf(w, "%s\n", s.Cmdline)
	} else {
		fmt.Fprintf(w, "pid %d (%s): %s\n", s.Pid, state, s.Cmdline)
	}
	fmt.Fprintf(w, "  iface %s  mode %s\n", orDash(s.Iface), orDash(s.Mode))
	var order []string
	groups := map[string][]int{}
	width := 0
	for i, n := range s.Names {
		g, _, ok := strings.Cut(n, ".")
		if !ok {
			g = "other"
		}
		if _, seen := groups[g]; !seen {
			order = append(order, g)
		}
		groups[g] = append(groups[g], i)
		width = max(width, len(n)-len(g)-1)
	}
	for _, g := range order {
		fmt.Fprintf(w, "  %s:\n", g)
		for _, i := range groups[g] {
			name := strings.TrimPrefix(s.Names[i], g+".")
			fmt.Fprintf(w, "    %-*s %20d\n", width, name, s.Values[i])
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// withTotals appends, for every interface that more than one of snaps runs on, a snapshot with
// pid 0 whose counters are the sums of theirs (the interface's group as a whole).
func withTotals(snaps []*shm.StatsSnapshot) []*shm.StatsSnapshot {
	var ifaces []string
	by := map[string][]*shm.StatsSnapshot{}
	for _, s := range snaps {
		if _, ok := by[s.Iface]; !ok {
			ifaces = append(ifaces, s.Iface)
		}
		by[s.Iface] = append(by[s.Iface], s)
	}
	out := snaps
	for _, ifc := range ifaces {
		group := by[ifc]
		if len(group) < 2 {
			continue
		}
		t := &shm.StatsSnapshot{Iface: ifc, Mode: group[0].Mode, Alive: true,
			Cmdline: fmt.Sprintf("total for %s (%d processes)", orDash(ifc), len(group))}
		at := map[string]int{}
		for _, s := range group {
			for i, n := range s.Names {
				j, ok := at[n]
				if !ok {
					j = len(t.Names)
					at[n] = j
					t.Names = append(t.Names, n)
					t.Values = append(t.Values, 0)
				}
				t.Values[j] += s.Values[i]
			}
		}
		out = append(out, t)
	}
	return out
}
