package shm

import "reflect"

// StatDesc describes one counter of a stats segment: its name in the segment, one line saying
// what it counts, and whether it is a gauge (a current value, which may go down) rather than a
// count that only grows.
type StatDesc struct {
	Name  string
	Help  string
	Gauge bool
}

// StatDescs returns the descriptions of the counters StatNames names, in the same order, from
// the fields' tags: `stat` (the name), `help` (the description, "" where there is none) and
// `kind:"gauge"`.
func StatDescs(ptrs ...any) []StatDesc {
	var descs []StatDesc
	for _, p := range ptrs {
		t := reflect.TypeOf(p)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Type.Kind() != reflect.Uint64 {
				continue
			}
			d := StatDesc{Name: f.Tag.Get("stat"), Help: f.Tag.Get("help"), Gauge: f.Tag.Get("kind") == "gauge"}
			if d.Name == "" {
				d.Name = f.Name
			}
			descs = append(descs, d)
		}
	}
	return descs
}
