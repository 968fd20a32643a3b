package shim

import "sync/atomic"

// Stats are the shim's own counters, published next to the stack's and the NIC's.
type Stats struct {
	SocketsAccelerated uint64 `stat:"shim.sockets_accelerated"`
	SocketsAdopted     uint64 `stat:"shim.sockets_adopted"`   // of which set up in the kernel before the stack took them (Adopt)
	AdoptDeclined      uint64 `stat:"shim.adopt_declined"`    // sockets set up in the kernel the stack left there (Adopt says why)
	KernelConnsKept    uint64 `stat:"shim.kernel_conns_kept"` // kernel connections on an adopted listener's port, kept on the kernel path
	PassedToKernel     uint64 `stat:"shim.passed_to_kernel"`  // sockets handed over to the kernel
	MovedToKernel      uint64 `stat:"shim.moved_to_kernel"`   // of which with their state, for a fork child or at exit
	MoveFailed         uint64 `stat:"shim.move_failed"`       // a move to the kernel that failed (the socket stayed)
	ConnsRepaired      uint64 `stat:"shim.conns_repaired"`    // connections that went on in a kernel socket (TCP_REPAIR)
	BytesMoved         uint64 `stat:"shim.bytes_moved"`       // bytes in flight the kernel took over with them (sent, unsent, unread)
	DgramsReinjected   uint64 `stat:"shim.dgrams_reinjected"` // queued datagrams given to the kernel socket
	KernelAccepts      uint64 `stat:"shim.kernel_accepts"`    // accepted through a listener's kernel shadow
	PollerWakeups      uint64 `stat:"shim.poller_wakeups"`
	PollerTimeouts     uint64 `stat:"shim.poller_timeouts"`       // woke for a timer
	PollerKicks        uint64 `stat:"shim.poller_kicks"`          // woken early by an application thread
	TxKicksFront       uint64 `stat:"shim.tx_kicks_front"`        // TX kicks the interposer made after a call or at a batch's end
	TxKicksFrontBusy   uint64 `stat:"shim.tx_kicks_front_busy"`   // ... answered EAGAIN or EBUSY: frames were left for the next
	TxKicksDeferred    uint64 `stat:"shim.tx_kicks_deferred"`     // calls whose kick waited for the end of the thread's batch
	TxKicksNotDeferred uint64 `stat:"shim.tx_kicks_not_deferred"` // ... that could not: the poller was not due within pollerDeferTick
	Panics             uint64 `stat:"shim.panics"`
	NeighResolves      uint64 `stat:"shim.neigh_resolves"` // next hops resolved in the background
	NeighFailed        uint64 `stat:"shim.neigh_failed"`   // of which no neighbour answered
}

// mirrorKickStats copies the interposer's TX kick counters (TxKick) into the stack's.
func (st *stack) mirrorKickStats() {
	k := st.txk
	refused := atomic.LoadUint64(&k.Refused)
	atomic.StoreUint64(&st.stats.TxKicksFront, atomic.LoadUint64(&k.Kicks))
	atomic.StoreUint64(&st.stats.TxKicksFrontBusy, atomic.LoadUint64(&k.Busy))
	atomic.StoreUint64(&st.stats.TxKicksDeferred, atomic.LoadUint64(&k.Batched)-refused)
	atomic.StoreUint64(&st.stats.TxKicksNotDeferred, refused)
}
