package stackcore

import "encoding/binary"

// TCPInfo is Linux's struct tcp_info (include/uapi/linux/tcp.h) computed
// from the connection, field for field and in Linux's units: times in
// microseconds (RTO, ATO, RTT, RTTVar, RcvRTT, MinRTT) except the Last*
// fields (milliseconds ago); windows and MSS in bytes; SndCwnd and
// SndSsthresh in segments. Fields ustack does not track are zero.
type TCPInfo struct {
	State       uint8 // Linux TCP_ESTABLISHED (1) ... TCP_CLOSING (11)
	CAState     uint8 // TCP_CA_Open (0), Disorder (1), CWR (2), Recovery (3), Loss (4)
	Retransmits uint8 // consecutive timeouts of the current segment
	Probes      uint8 // unanswered zero-window or keepalive probes
	Backoff     uint8 // RTO backoff exponent
	Options     uint8 // TCPI_OPT_* bits
	SndWscale   uint8
	RcvWscale   uint8

	DeliveryRateAppLimited bool
	FastopenClientFail     uint8

	RTO    uint32
	ATO    uint32
	SndMSS uint32
	RcvMSS uint32

	Unacked uint32 // segments sent and not acknowledged
	Sacked  uint32
	Lost    uint32
	Retrans uint32
	Fackets uint32

	LastDataSent uint32
	LastAckSent  uint32
	LastDataRecv uint32
	LastAckRecv  uint32

	PMTU        uint32
	RcvSsthresh uint32
	RTT         uint32
	RTTVar      uint32
	SndSsthresh uint32
	SndCwnd     uint32
	AdvMSS      uint32
	Reordering  uint32

	RcvRTT   uint32
	RcvSpace uint32

	TotalRetrans uint32

	PacingRate    uint64
	MaxPacingRate uint64
	BytesAcked    uint64
	BytesReceived uint64
	SegsOut       uint32
	SegsIn        uint32

	NotsentBytes uint32
	MinRTT       uint32
	DataSegsIn   uint32
	DataSegsOut  uint32

	DeliveryRate uint64

	BusyTime      uint64
	RwndLimited   uint64
	SndbufLimited uint64

	Delivered   uint32
	DeliveredCE uint32

	BytesSent    uint64
	BytesRetrans uint64
	DSACKDups    uint32
	ReordSeen    uint32

	RcvOOOPack uint32

	SndWnd uint32
	RcvWnd uint32

	Rehash uint32

	TotalRTO           uint16
	TotalRTORecoveries uint16
	TotalRTOTime       uint32
}

// TCPInfoLen is the length of the binary struct tcp_info AppendTCPInfo
// writes (Linux 6.7 and later: up to tcpi_total_rto_time). The kernel copies
// min(optlen, its size); so should the host.
const TCPInfoLen = 248

// Option bits of TCPInfo.Options (TCPI_OPT_*).
const (
	TCPIOptTimestamps = 1
	TCPIOptSACK       = 2
	TCPIOptWscale     = 4
)

// Linux CA states (enum tcp_ca_state).
const (
	CAOpen     = 0
	CADisorder = 1
	CACWR      = 2
	CARecovery = 3
	CALoss     = 4
)

// linuxState maps our states to Linux's TCP_* numbering.
var linuxState = [...]uint8{
	StateClosed:      7,
	StateListen:      10,
	StateSynSent:     2,
	StateSynReceived: 3,
	StateEstablished: 1,
	StateFinWait1:    4,
	StateFinWait2:    5,
	StateCloseWait:   8,
	StateClosing:     11,
	StateLastAck:     9,
	StateTimeWait:    6,
}

func sat32(v int64) uint32 {
	if v < 0 {
		return 0
	}
	if v > 0xffffffff {
		return 0xffffffff
	}
	return uint32(v)
}

func msAgo(now, t Time) uint32 {
	if t == 0 {
		return sat32(int64(now / Millisecond))
	}
	return sat32(int64((now - t) / Millisecond))
}

// TCPInfo returns the connection's struct tcp_info at time now (TCP_INFO).
func (c *TCPConn) TCPInfo(now Time) TCPInfo {
	mss := max(c.mss, 1)
	var i TCPInfo
	i.State = linuxState[c.state]
	switch {
	case c.lossRec:
		i.CAState = CALoss
	case c.recovery:
		i.CAState = CARecovery
	case c.dupAcks > 0:
		i.CAState = CADisorder
	}
	i.Retransmits = uint8(min(c.retries, 255))
	i.Backoff = i.Retransmits
	i.Probes = uint8(min(c.kaProbes, 255))
	if c.tsOK {
		i.Options |= TCPIOptTimestamps
	}
	if c.sackOK {
		i.Options |= TCPIOptSACK
	}
	if c.wsOK {
		i.Options |= TCPIOptWscale
		i.SndWscale, i.RcvWscale = c.sndSh, c.rcvSh
	}
	i.RTO = sat32(int64(c.rto))
	i.ATO = sat32(int64(max(c.ato, atoMin)))
	i.SndMSS = uint32(mss)
	i.RcvMSS = uint32(max(c.rcvMss, min(defaultPeerMSS, c.advMSS())))
	if c.state.synchronized() || c.state == StateSynReceived || c.state == StateSynSent {
		i.Unacked = uint32((max(c.sndMax.sub(c.sndUna), 0) + mss - 1) / mss)
	}
	// Linux counts these in segments of its retransmission queue; ours
	// are the records of the transmission log (rack.go).
	i.Sacked = uint32(c.tx.sacked)
	i.Lost = uint32(c.tx.lost)
	i.Retrans = uint32(c.tx.lostRtx)
	i.LastDataSent = msAgo(now, c.lsndAt)
	i.LastDataRecv = msAgo(now, c.lrcvAt)
	i.LastAckRecv = msAgo(now, c.lastRcvAt)
	i.PMTU = uint32(c.s.cfg.MTU)
	i.RcvSsthresh = uint32(c.rcvBuf.Cap())
	i.RTT = sat32(int64(c.srtt))
	i.RTTVar = sat32(int64(c.rttvar))
	if c.ssthresh >= ssthreshInitial {
		i.SndSsthresh = 0x7fffffff // TCP_INFINITE_SSTHRESH
	} else {
		i.SndSsthresh = c.ssthresh / uint32(mss)
	}
	i.SndCwnd = c.cwnd / uint32(mss)
	i.AdvMSS = uint32(c.advMSS())
	i.Reordering = 3 // tcp_reordering default
	i.RcvSpace = uint32(c.rcvBuf.Cap())
	i.TotalRetrans = c.totalRetrans
	i.BytesAcked = c.bytesAcked
	i.BytesReceived = c.bytesRcvd
	i.SegsOut, i.SegsIn = c.segsOut, c.segsIn
	if c.state.synchronized() {
		i.NotsentBytes = uint32(max(c.finSeq().sub(c.sndNxt), 0))
		i.RcvWnd = uint32(max(c.rcvAdv.sub(c.rcvNxt), 0))
	}
	i.MinRTT = sat32(int64(c.minRTT))
	if !c.hasRTT {
		i.MinRTT = 0xffffffff // Linux's "no sample" (~0U)
	}
	i.DataSegsIn, i.DataSegsOut = c.dataSegsIn, c.dataSegsOut
	i.Delivered = c.delivered
	i.BytesSent, i.BytesRetrans = c.bytesSent, c.bytesRetrans
	i.RcvOOOPack = c.oooPkts
	i.SndWnd = c.sndWnd
	i.TotalRTO = c.totalRTO
	return i
}

// AppendTCPInfo appends the connection's struct tcp_info at time now in the
// kernel's binary layout (little-endian as on x86-64 and arm64; TCPInfoLen
// bytes), for getsockopt(TCP_INFO).
func (c *TCPConn) AppendTCPInfo(b []byte, now Time) []byte {
	i := c.TCPInfo(now)
	return i.Append(b)
}

// Append appends i in the kernel's binary layout (TCPInfoLen bytes).
func (i *TCPInfo) Append(b []byte) []byte {
	le := binary.LittleEndian
	var f7 uint8
	if i.DeliveryRateAppLimited {
		f7 = 1
	}
	f7 |= (i.FastopenClientFail & 3) << 1
	b = append(b, i.State, i.CAState, i.Retransmits, i.Probes, i.Backoff, i.Options,
		i.SndWscale&0xf|i.RcvWscale<<4, f7)
	for _, v := range [...]uint32{i.RTO, i.ATO, i.SndMSS, i.RcvMSS, i.Unacked, i.Sacked, i.Lost, i.Retrans,
		i.Fackets, i.LastDataSent, i.LastAckSent, i.LastDataRecv, i.LastAckRecv, i.PMTU, i.RcvSsthresh, i.RTT,
		i.RTTVar, i.SndSsthresh, i.SndCwnd, i.AdvMSS, i.Reordering, i.RcvRTT, i.RcvSpace, i.TotalRetrans} {
		b = le.AppendUint32(b, v)
	}
	for _, v := range [...]uint64{i.PacingRate, i.MaxPacingRate, i.BytesAcked, i.BytesReceived} {
		b = le.AppendUint64(b, v)
	}
	for _, v := range [...]uint32{i.SegsOut, i.SegsIn, i.NotsentBytes, i.MinRTT, i.DataSegsIn, i.DataSegsOut} {
		b = le.AppendUint32(b, v)
	}
	for _, v := range [...]uint64{i.DeliveryRate, i.BusyTime, i.RwndLimited, i.SndbufLimited} {
		b = le.AppendUint64(b, v)
	}
	b = le.AppendUint32(b, i.Delivered)
	b = le.AppendUint32(b, i.DeliveredCE)
	b = le.AppendUint64(b, i.BytesSent)
	b = le.AppendUint64(b, i.BytesRetrans)
	for _, v := range [...]uint32{i.DSACKDups, i.ReordSeen, i.RcvOOOPack, i.SndWnd, i.RcvWnd, i.Rehash} {
		b = le.AppendUint32(b, v)
	}
	b = le.AppendUint16(b, i.TotalRTO)
	b = le.AppendUint16(b, i.TotalRTORecoveries)
	b = le.AppendUint32(b, i.TotalRTOTime)
	return b
}
