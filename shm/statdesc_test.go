package shm

import (
	"reflect"
	"testing"
)

func TestStatDescs(t *testing.T) {
	type a struct {
		X uint64 `stat:"a.x" help:"x things"`
		Y uint64 `stat:"a.y" help:"y now" kind:"gauge"`
	}
	type b struct {
		Z    uint64
		skip int32
	}
	got := StatDescs(&a{}, b{})
	want := []StatDesc{{"a.x", "x things", false}, {"a.y", "y now", true}, {"Z", "", false}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("StatDescs = %+v, want %+v", got, want)
	}
	names := StatNames(&a{}, b{})
	for i, d := range got {
		if d.Name != names[i] {
			t.Errorf("desc %d is %q, StatNames says %q", i, d.Name, names[i])
		}
	}
}
