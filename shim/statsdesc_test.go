package shim

import (
	"strings"
	"testing"

	"ustack/shm"
)

// Every counter of the segment says what it counts, on one line (onloadctl metrics prints it as
// the metric's HELP), and the descriptions follow the segment's names.
func TestStatDescs(t *testing.T) {
	descs := StatDescs()
	names := shm.StatNames(statsStructs()...)
	if len(descs) != len(names) {
		t.Fatalf("%d descriptions for %d counters", len(descs), len(names))
	}
	seen := map[string]bool{}
	gauges := 0
	for i, d := range descs {
		if d.Name != names[i] {
			t.Errorf("description %d is of %q, the segment's counter %d is %q", i, d.Name, i, names[i])
		}
		if seen[d.Name] {
			t.Errorf("%s: described twice", d.Name)
		}
		seen[d.Name] = true
		if strings.TrimSpace(d.Help) == "" {
			t.Errorf("%s: no help tag", d.Name)
		}
		if strings.ContainsAny(d.Help, "\n\\") {
			t.Errorf("%s: help %q is not one plain line", d.Name, d.Help)
		}
		if d.Gauge {
			gauges++
		}
	}
	if !seen["tcp.curr_estab"] || gauges == 0 {
		t.Errorf("tcp.curr_estab missing or no gauges at all (%d)", gauges)
	}
	for _, d := range descs {
		if d.Name == "tcp.curr_estab" && !d.Gauge {
			t.Errorf("tcp.curr_estab is not marked a gauge")
		}
	}
}
