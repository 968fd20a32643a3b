package shim

// Stats are the shim's own counters, published next to the stack's and the NIC's.
type Stats struct {
	SocketsAccelerated uint64 `stat:"shim.sockets_accelerated"`
	PassedToKernel     uint64 `stat:"shim.passed_to_kernel"` // sockets handed over to the kernel
	KernelAccepts      uint64 `stat:"shim.kernel_accepts"`   // accepted through a listener's kernel shadow
	PollerWakeups      uint64 `stat:"shim.poller_wakeups"`
	PollerTimeouts     uint64 `stat:"shim.poller_timeouts"` // woke for a timer
	PollerKicks        uint64 `stat:"shim.poller_kicks"`    // woken early by an application thread
	Panics             uint64 `stat:"shim.panics"`
	NeighResolves      uint64 `stat:"shim.neigh_resolves"` // next hops resolved in the background
	NeighFailed        uint64 `stat:"shim.neigh_failed"`   // of which no neighbour answered
}
