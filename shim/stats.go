package shim

import "sync/atomic"

// Stats are the shim's own counters, published next to the stack's and the NIC's. Tags as in
// stackcore.Stats: `stat` names the counter, `help` says what it counts (`onloadctl metrics`),
// `kind:"gauge"` marks a current value.
type Stats struct {
	SocketsAccelerated uint64 `stat:"shim.sockets_accelerated" help:"sockets the user-space stack took"`
	SocketsAdopted     uint64 `stat:"shim.sockets_adopted" help:"accelerated sockets that were set up in the kernel before the stack took them (Adopt)"`
	AdoptDeclined      uint64 `stat:"shim.adopt_declined" help:"sockets set up in the kernel that the stack left there (Adopt says why)"`
	KernelConnsKept    uint64 `stat:"shim.kernel_conns_kept" help:"kernel connections on an adopted listener's port, kept on the kernel path"`
	PassedToKernel     uint64 `stat:"shim.passed_to_kernel" help:"sockets handed over to the kernel"`
	MovedToKernel      uint64 `stat:"shim.moved_to_kernel" help:"sockets handed over to the kernel with their state, for a fork child or at exit"`
	MoveFailed         uint64 `stat:"shim.move_failed" help:"moves of a socket to the kernel that failed (the socket stayed)"`
	ConnsRepaired      uint64 `stat:"shim.conns_repaired" help:"connections that went on in a kernel socket (TCP_REPAIR)"`
	BytesMoved         uint64 `stat:"shim.bytes_moved" help:"bytes in flight the kernel took over with moved connections (sent, unsent, unread)"`
	DgramsReinjected   uint64 `stat:"shim.dgrams_reinjected" help:"queued datagrams given to the kernel socket of a moved UDP socket"`
	KernelAccepts      uint64 `stat:"shim.kernel_accepts" help:"connections accepted through a listener's kernel shadow"`
	PollerWakeups      uint64 `stat:"shim.poller_wakeups" help:"wake-ups of the background poller"`
	PollerTimeouts     uint64 `stat:"shim.poller_timeouts" help:"poller wake-ups for a timer"`
	PollerKicks        uint64 `stat:"shim.poller_kicks" help:"poller wake-ups made early by an application thread"`
	TxKicksFront       uint64 `stat:"shim.tx_kicks_front" help:"TX kicks the interposer made after a call or at a batch's end"`
	TxKicksFrontBusy   uint64 `stat:"shim.tx_kicks_front_busy" help:"interposer TX kicks answered EAGAIN or EBUSY (frames were left for the next)"`
	TxKicksDeferred    uint64 `stat:"shim.tx_kicks_deferred" help:"calls whose TX kick waited for the end of the thread's batch"`
	TxKicksNotDeferred uint64 `stat:"shim.tx_kicks_not_deferred" help:"calls whose TX kick could not wait: the poller was not due soon enough"` // within pollerDeferTick
	Panics             uint64 `stat:"shim.panics" help:"panics inside ustack recovered (the call failed with EIO or the connection was reset)"`
	NeighResolves      uint64 `stat:"shim.neigh_resolves" help:"next hops resolved in the background"`
	NeighFailed        uint64 `stat:"shim.neigh_failed" help:"background next-hop resolutions that no neighbour answered"`
	McastJoins         uint64 `stat:"shim.mcast_joins" help:"multicast memberships of accelerated UDP sockets carried by the stack (IP_ADD_MEMBERSHIP)"`
	McastLeaves        uint64 `stat:"shim.mcast_leaves" help:"multicast group ports given back to the kernel when their last member here left"`
	McastRelayed       uint64 `stat:"shim.mcast_relayed" help:"multicast frames relayed to another member process of their group's port"`
	McastRelayDrops    uint64 `stat:"shim.mcast_relay_drops" help:"multicast frames not relayed to a member process (its relay socket full, or the process gone)"`
	McastRelayIn       uint64 `stat:"shim.mcast_relay_in" help:"multicast frames another member process relayed here"`
	McastRelayRefused  uint64 `stat:"shim.mcast_relay_refused" help:"relay connections refused: from a process of another uid"`
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
