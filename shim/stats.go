package shim

import (
	"fmt"
	"reflect"
	"unsafe"
)

// Stats are the shim's own counters, published next to the stack's and the NIC's.
type Stats struct {
	SocketsAccelerated uint64 `stat:"shim.sockets_accelerated"`
	PassedToKernel     uint64 `stat:"shim.passed_to_kernel"` // sockets handed over to the kernel
	KernelAccepts      uint64 `stat:"shim.kernel_accepts"`   // accepted through a listener's kernel shadow
	PollerWakeups      uint64 `stat:"shim.poller_wakeups"`
	PollerTimeouts     uint64 `stat:"shim.poller_timeouts"` // woke for a timer
	PollerKicks        uint64 `stat:"shim.poller_kicks"`    // woken early by an application thread
	Panics             uint64 `stat:"shim.panics"`
}

// statNames returns the `stat` tags of a struct made only of uint64 fields.
func statNames(v any) ([]string, error) {
	t := reflect.TypeOf(v)
	names := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("stat")
		if f.Type.Kind() != reflect.Uint64 || name == "" {
			return nil, fmt.Errorf("stats struct %s: field %s is not a tagged uint64", t.Name(), f.Name)
		}
		names = append(names, name)
	}
	return names, nil
}

// bindStats points a *T at values[off:], which must hold one uint64 per field of T.
func bindStats[T any](values []uint64, off int) (*T, int) {
	var zero T
	n := int(unsafe.Sizeof(zero) / 8)
	if off+n > len(values) {
		panic("shim: stats segment smaller than its structs")
	}
	return (*T)(unsafe.Pointer(&values[off])), off + n
}
