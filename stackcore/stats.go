package stackcore

import (
	"sync/atomic"
)

// Stats are the stack's counters. Every field is a uint64 with a `stat` tag;
// the host may place the struct in shared memory. Writers use sync/atomic.
type Stats struct {
	EthRxFrames uint64 `stat:"eth.rx_frames"`
	EthTxFrames uint64 `stat:"eth.tx_frames"`

	IPRxPackets uint64 `stat:"ip.rx_packets"`
	IPTxPackets uint64 `stat:"ip.tx_packets"`

	TCPSegsIn             uint64 `stat:"tcp.segs_in"`
	TCPSegsOut            uint64 `stat:"tcp.segs_out"`
	TCPBytesIn            uint64 `stat:"tcp.bytes_in"`
	TCPBytesOut           uint64 `stat:"tcp.bytes_out"`
	TCPRetransSegs        uint64 `stat:"tcp.retrans_segs"`
	TCPFastRetrans        uint64 `stat:"tcp.fast_retrans"`
	TCPTimeouts           uint64 `stat:"tcp.timeouts"`
	TCPActiveOpens        uint64 `stat:"tcp.active_opens"`
	TCPPassiveOpens       uint64 `stat:"tcp.passive_opens"`
	TCPCurrEstab          uint64 `stat:"tcp.curr_estab"`
	TCPRstsSent           uint64 `stat:"tcp.rsts_sent"`
	TCPRstsRecv           uint64 `stat:"tcp.rsts_recv"`
	TCPListenDrops        uint64 `stat:"tcp.listen_drops"`
	TCPOOOQueued          uint64 `stat:"tcp.ooo_queued"`
	TCPOOODropped         uint64 `stat:"tcp.ooo_dropped"`
	TCPSpuriousRecoveries uint64 `stat:"tcp.spurious_recoveries"`
	TCPChallengeAck       uint64 `stat:"tcp.challenge_acks"`
	TCPPAWSDrops          uint64 `stat:"tcp.paws_drops"`
	TCPBufGrown           uint64 `stat:"tcp.buf_grown"`
	TCPHyStartExits       uint64 `stat:"tcp.hystart_exits"`

	DropMalformed        uint64 `stat:"drop.malformed"`
	DropBadChecksum      uint64 `stat:"drop.bad_checksum"`
	DropNotForUs         uint64 `stat:"drop.not_for_us"`
	DropFragment         uint64 `stat:"drop.fragment"`
	DropUnsupportedProto uint64 `stat:"drop.unsupported_proto"`
	DropNoSocket         uint64 `stat:"drop.no_socket"`
	DropNoPort           uint64 `stat:"drop.no_port"` // of which to a local port nothing here uses (steered here by mistake, or late for a port let go)
	DropTxNoBuffer       uint64 `stat:"drop.tx_no_buffer"`
	DropBadSegment       uint64 `stat:"drop.bad_segment"`

	// UDP (RFC 768), named after Linux's Udp MIB.
	UDPInDatagrams  uint64 `stat:"udp.in_datagrams"`
	UDPOutDatagrams uint64 `stat:"udp.out_datagrams"`
	UDPNoPorts      uint64 `stat:"udp.no_ports"`
	UDPInErrors     uint64 `stat:"udp.in_errors"`
	UDPRcvbufErrors uint64 `stat:"udp.rcvbuf_errors"`
	UDPSndbufErrors uint64 `stat:"udp.sndbuf_errors"`

	// ICMP (RFC 792), named after Linux's Icmp MIB.
	ICMPInMsgs         uint64 `stat:"icmp.in_msgs"`
	ICMPInErrors       uint64 `stat:"icmp.in_errors"`
	ICMPInDestUnreachs uint64 `stat:"icmp.in_dest_unreachs"`

	// SYN cookies (RFC 4987 3.6), named after Linux's SyncookiesSent/Recv/Failed.
	TCPSynCookiesSent   uint64 `stat:"tcp.syncookies_sent"`
	TCPSynCookiesRecv   uint64 `stat:"tcp.syncookies_recv"`
	TCPSynCookiesFailed uint64 `stat:"tcp.syncookies_failed"`

	// IPv4 reassembly (RFC 791, RFC 815), named after Linux's Ip MIB.
	IPReasmReqds   uint64 `stat:"ip.reasm_reqds"`
	IPReasmOKs     uint64 `stat:"ip.reasm_oks"`
	IPReasmFails   uint64 `stat:"ip.reasm_fails"`
	IPReasmTimeout uint64 `stat:"ip.reasm_timeout"`
}

func inc(p *uint64)           { atomic.AddUint64(p, 1) }
func add(p *uint64, n uint64) { atomic.AddUint64(p, n) }
func dec(p *uint64)           { atomic.AddUint64(p, ^uint64(0)) }
