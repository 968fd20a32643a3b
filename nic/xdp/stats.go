package xdp

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Stats counts what an AF_XDP socket did. Fields are updated with
// sync/atomic so another process can read them from shared memory without
// locks. The fields the help tags mark "kernel:" are copies of the kernel's
// XDP_STATISTICS, refreshed by Socket.RefreshKernelStats. Tags as in
// stackcore.Stats: `stat` names the counter, `help` says what it counts,
// `kind:"gauge"` marks a current value.
type Stats struct {
	RxPackets   uint64 `stat:"xsk.rx_packets" help:"frames received on the AF_XDP socket (handed out by Receive)"`
	RxBytes     uint64 `stat:"xsk.rx_bytes" help:"bytes of the frames received on the AF_XDP socket"`
	TxPackets   uint64 `stat:"xsk.tx_packets" help:"frames put on the AF_XDP socket's TX ring"`
	TxBytes     uint64 `stat:"xsk.tx_bytes" help:"bytes of the frames put on the TX ring"`
	TxRingFull  uint64 `stat:"xsk.tx_ring_full" help:"frames dropped because the TX ring was full"`
	TxNoFrame   uint64 `stat:"xsk.tx_no_frame" help:"transmit buffer requests (AllocTx) that found no free frame"`
	TxKicks     uint64 `stat:"xsk.tx_kicks" help:"sendto wake-ups of the TX ring"`
	TxKicksBusy uint64 `stat:"xsk.tx_kicks_busy" help:"TX ring wake-ups answered EAGAIN or EBUSY (frames were left for the next)"`
	TxBudget    uint64 `stat:"xsk.tx_budget" help:"descriptors one copy-mode TX wake-up may send (the kernel's default: 32)" kind:"gauge"`
	RxWakeups   uint64 `stat:"xsk.rx_wakeups" help:"recvfrom wake-ups of the fill ring"`
	TxCompleted uint64 `stat:"xsk.tx_completed" help:"sent frames returned by the completion ring"`

	FillEmpty     uint64 `stat:"xsk.fill_empty" help:"times the kernel found the fill ring empty (kernel: rx_fill_ring_empty_descs)"`
	KernelRxDrop  uint64 `stat:"xsk.kernel_rx_dropped" help:"received frames the kernel dropped for the socket (kernel: rx_dropped)"`
	RxInvalid     uint64 `stat:"xsk.rx_invalid" help:"received frames the kernel dropped for an invalid descriptor (kernel: rx_invalid_descs)"`
	TxInvalid     uint64 `stat:"xsk.tx_invalid" help:"TX descriptors the kernel rejected as invalid (kernel: tx_invalid_descs)"`
	KernelRxFull  uint64 `stat:"xsk.kernel_rx_ring_full" help:"received frames dropped because the RX ring was full (kernel: rx_ring_full)"`
	KernelTxEmpty uint64 `stat:"xsk.kernel_tx_ring_empty" help:"times the kernel found the TX ring empty when woken (kernel: tx_ring_empty_descs)"`
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
