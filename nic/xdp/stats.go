package xdp

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Stats counts what an AF_XDP socket did. Fields are updated with
// sync/atomic so another process can read them from shared memory without
// locks. The kernel_* fields are copies of the kernel's XDP_STATISTICS,
// refreshed by Socket.RefreshKernelStats.
type Stats struct {
	RxPackets   uint64 `stat:"xsk.rx_packets"`    // frames handed out by Receive
	RxBytes     uint64 `stat:"xsk.rx_bytes"`      // their bytes
	TxPackets   uint64 `stat:"xsk.tx_packets"`    // frames put on the TX ring
	TxBytes     uint64 `stat:"xsk.tx_bytes"`      // their bytes
	TxRingFull  uint64 `stat:"xsk.tx_ring_full"`  // frames dropped because the TX ring was full
	TxNoFrame   uint64 `stat:"xsk.tx_no_frame"`   // AllocTx calls that found no free frame
	TxKicks     uint64 `stat:"xsk.tx_kicks"`      // sendto wake-ups of the TX ring
	TxKicksBusy uint64 `stat:"xsk.tx_kicks_busy"` // ... answered EAGAIN or EBUSY: frames were left for the next
	TxBudget    uint64 `stat:"xsk.tx_budget"`     // descriptors one copy-mode kick may send (the kernel's default: 32)
	RxWakeups   uint64 `stat:"xsk.rx_wakeups"`    // recvfrom wake-ups of the fill ring
	TxCompleted uint64 `stat:"xsk.tx_completed"`  // frames returned by the completion ring

	FillEmpty     uint64 `stat:"xsk.fill_empty"`           // kernel: rx_fill_ring_empty_descs
	KernelRxDrop  uint64 `stat:"xsk.kernel_rx_dropped"`    // kernel: rx_dropped
	RxInvalid     uint64 `stat:"xsk.rx_invalid"`           // kernel: rx_invalid_descs
	TxInvalid     uint64 `stat:"xsk.tx_invalid"`           // kernel: tx_invalid_descs
	KernelRxFull  uint64 `stat:"xsk.kernel_rx_ring_full"`  // kernel: rx_ring_full
	KernelTxEmpty uint64 `stat:"xsk.kernel_tx_ring_empty"` // kernel: tx_ring_empty_descs
}

// RefreshKernelStats copies the kernel's XDP_STATISTICS of the socket into
// the Stats.
func (s *Socket) RefreshKernelStats() error {
	if s == nil || s.fd < 0 {
		return ErrClosed
	}
	var ks unix.XDPStatistics
	l := uint32(unsafe.Sizeof(ks))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&ks)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return s.errorf("reading statistics: %w", e)
	}
	st := s.stats
	atomic.StoreUint64(&st.KernelRxDrop, ks.Rx_dropped)
	atomic.StoreUint64(&st.RxInvalid, ks.Rx_invalid_descs)
	atomic.StoreUint64(&st.TxInvalid, ks.Tx_invalid_descs)
	atomic.StoreUint64(&st.KernelRxFull, ks.Rx_ring_full)
	atomic.StoreUint64(&st.FillEmpty, ks.Rx_fill_ring_empty_descs)
	atomic.StoreUint64(&st.KernelTxEmpty, ks.Tx_ring_empty_descs)
	return nil
}
