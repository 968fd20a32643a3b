package stackcore

import (
	"sync/atomic"
)

// Stats are the stack's counters. Every field is a uint64 with a `stat` tag
// (its name in the stats segment) and a `help` tag (one line saying what it
// counts, for `onloadctl metrics`); `kind:"gauge"` marks a current value that
// goes down as well as up. The host may place the struct in shared memory.
// Writers use sync/atomic.
type Stats struct {
	EthRxFrames uint64 `stat:"eth.rx_frames" help:"Ethernet frames the stack received from its link"`
	EthTxFrames uint64 `stat:"eth.tx_frames" help:"Ethernet frames the stack sent"`

	IPRxPackets uint64 `stat:"ip.rx_packets" help:"IPv4 packets received, before the check of their destination address"`
	IPTxPackets uint64 `stat:"ip.tx_packets" help:"IPv4 packets sent"`

	IP6RxPackets uint64 `stat:"ip6.rx_packets" help:"IPv6 packets received, before the check of their destination address"`
	IP6TxPackets uint64 `stat:"ip6.tx_packets" help:"IPv6 packets sent"`

	TCPSegsIn             uint64 `stat:"tcp.segs_in" help:"TCP segments received with a good checksum (Linux: Tcp InSegs)"`
	TCPSegsOut            uint64 `stat:"tcp.segs_out" help:"TCP segments sent, retransmissions included (Linux: Tcp OutSegs)"`
	TCPBytesIn            uint64 `stat:"tcp.bytes_in" help:"TCP payload bytes received in sequence and queued for the application"`
	TCPBytesOut           uint64 `stat:"tcp.bytes_out" help:"TCP payload bytes sent, retransmissions included"`
	TCPRetransSegs        uint64 `stat:"tcp.retrans_segs" help:"TCP segments retransmitted (Linux: Tcp RetransSegs)"`
	TCPFastRetrans        uint64 `stat:"tcp.fast_retrans" help:"TCP loss recoveries started without a timeout (SACK, RACK or three duplicate ACKs)"`
	TCPTimeouts           uint64 `stat:"tcp.timeouts" help:"TCP retransmission timeouts, and connections ended by a SYN, keepalive or user timeout"`
	TCPActiveOpens        uint64 `stat:"tcp.active_opens" help:"TCP connections opened by connect (Linux: Tcp ActiveOpens)"`
	TCPPassiveOpens       uint64 `stat:"tcp.passive_opens" help:"TCP connections opened by a listener for a SYN (Linux: Tcp PassiveOpens)"`
	TCPCurrEstab          uint64 `stat:"tcp.curr_estab" help:"TCP connections now in ESTABLISHED or CLOSE-WAIT (Linux: Tcp CurrEstab)" kind:"gauge"`
	TCPRstsSent           uint64 `stat:"tcp.rsts_sent" help:"TCP resets sent (to segments no connection takes, and by connections aborted)"`
	TCPRstsRecv           uint64 `stat:"tcp.rsts_recv" help:"TCP resets received and accepted (in window)"`
	TCPListenDrops        uint64 `stat:"tcp.listen_drops" help:"connection attempts a listener dropped (accept queue full, or no room to answer)"`
	TCPOOOQueued          uint64 `stat:"tcp.ooo_queued" help:"TCP segments received out of order and kept for reassembly"`
	TCPOOODropped         uint64 `stat:"tcp.ooo_dropped" help:"TCP segments received out of order and dropped (the out-of-order queue was full)"`
	TCPSpuriousRecoveries uint64 `stat:"tcp.spurious_recoveries" help:"TCP loss recoveries undone because the retransmissions proved spurious"`
	TCPChallengeAck       uint64 `stat:"tcp.challenge_acks" help:"TCP challenge ACKs sent for suspicious RST or SYN segments (RFC 5961)"`
	TCPPAWSDrops          uint64 `stat:"tcp.paws_drops" help:"TCP segments dropped for an old timestamp (PAWS, RFC 7323)"`
	TCPBufGrown           uint64 `stat:"tcp.buf_grown" help:"TCP receive and send buffers doubled by autotuning"`
	TCPHyStartExits       uint64 `stat:"tcp.hystart_exits" help:"TCP slow starts left early by HyStart++ on a rising round-trip time (RFC 9406)"`

	DropMalformed        uint64 `stat:"drop.malformed" help:"received frames dropped as malformed (truncated or invalid headers)"`
	DropBadChecksum      uint64 `stat:"drop.bad_checksum" help:"received frames dropped for a bad IPv4, TCP or UDP checksum (a zero one over IPv6 included)"`
	DropNotForUs         uint64 `stat:"drop.not_for_us" help:"received frames dropped as addressed to another MAC or IP address"`
	DropFragment         uint64 `stat:"drop.fragment" help:"IPv4 and IPv6 fragments dropped (invalid, or the reassembly pool full)"`
	DropExtHeader        uint64 `stat:"drop.ext_header" help:"IPv6 packets dropped for an extension header RFC 8200 says to discard (unknown option, routing header to forward, misplaced or too many headers)"`
	DropUnsupportedProto uint64 `stat:"drop.unsupported_proto" help:"received frames dropped for an EtherType or IP protocol the stack does not handle"`
	DropNoSocket         uint64 `stat:"drop.no_socket" help:"received TCP segments and UDP datagrams dropped because no socket matched them"`
	DropNoPort           uint64 `stat:"drop.no_port" help:"part of drop.no_socket: to a local port nothing here uses (steered here by mistake, or late for a port let go)"`
	DropTxNoBuffer       uint64 `stat:"drop.tx_no_buffer" help:"frames not sent for want of a free transmit buffer"`
	DropBadSegment       uint64 `stat:"drop.bad_segment" help:"TCP segments dropped as invalid for their connection or their addresses"`

	// UDP (RFC 768), named after Linux's Udp MIB.
	UDPInDatagrams  uint64 `stat:"udp.in_datagrams" help:"UDP datagrams delivered to sockets (Linux: Udp InDatagrams)"`
	UDPOutDatagrams uint64 `stat:"udp.out_datagrams" help:"UDP datagrams sent (Linux: Udp OutDatagrams)"`
	UDPNoPorts      uint64 `stat:"udp.no_ports" help:"UDP datagrams to a port no socket here matches (Linux: Udp NoPorts)"`
	UDPInErrors     uint64 `stat:"udp.in_errors" help:"UDP datagrams dropped as malformed, for a bad checksum or a full receive buffer (Linux: Udp InErrors)"`
	UDPRcvbufErrors uint64 `stat:"udp.rcvbuf_errors" help:"UDP datagrams dropped because the socket receive buffer was full"`
	UDPSndbufErrors uint64 `stat:"udp.sndbuf_errors" help:"UDP sends refused because the socket send buffer was full"`
	UDPInMulticast  uint64 `stat:"udp.in_multicast" help:"UDP datagrams to a joined multicast group delivered to at least one socket (each copy counts in udp.in_datagrams)"`
	UDPIgnoredMulti uint64 `stat:"udp.ignored_multi" help:"UDP datagrams to a joined multicast group no socket took (Linux: Udp IgnoredMulti)"`
	UDPOutMulticast uint64 `stat:"udp.out_multicast" help:"UDP datagrams sent to a multicast group"`

	// ICMP (RFC 792), named after Linux's Icmp MIB.
	ICMPInMsgs         uint64 `stat:"icmp.in_msgs" help:"ICMP messages received"`
	ICMPInErrors       uint64 `stat:"icmp.in_errors" help:"ICMP messages received malformed, with a bad checksum or quoting no usable header"`
	ICMPInDestUnreachs uint64 `stat:"icmp.in_dest_unreachs" help:"ICMP destination unreachable messages received"`

	// ICMPv6 (RFC 4443), named after Linux's Icmp6 MIB.
	ICMP6InMsgs         uint64 `stat:"icmp6.in_msgs" help:"ICMPv6 messages received (Linux: Icmp6 InMsgs)"`
	ICMP6InErrors       uint64 `stat:"icmp6.in_errors" help:"ICMPv6 messages received malformed, with a bad checksum or quoting no usable header"`
	ICMP6InDestUnreachs uint64 `stat:"icmp6.in_dest_unreachs" help:"ICMPv6 destination unreachable messages received"`
	ICMP6InPktTooBigs   uint64 `stat:"icmp6.in_pkt_too_bigs" help:"ICMPv6 packet too big messages received (RFC 8201 path MTU discovery)"`

	// SYN cookies (RFC 4987 3.6), named after Linux's SyncookiesSent/Recv/Failed.
	TCPSynCookiesSent   uint64 `stat:"tcp.syncookies_sent" help:"SYN cookies sent by listeners whose SYN queue was full"`
	TCPSynCookiesRecv   uint64 `stat:"tcp.syncookies_recv" help:"ACKs received that carried a valid SYN cookie"`
	TCPSynCookiesFailed uint64 `stat:"tcp.syncookies_failed" help:"ACKs received whose SYN cookie did not check"`

	// IPv4 reassembly (RFC 791, RFC 815), named after Linux's Ip MIB.
	IPReasmReqds   uint64 `stat:"ip.reasm_reqds" help:"IPv4 fragments received for reassembly (Linux: Ip ReasmReqds)"`
	IPReasmOKs     uint64 `stat:"ip.reasm_oks" help:"IPv4 datagrams reassembled from fragments (Linux: Ip ReasmOKs)"`
	IPReasmFails   uint64 `stat:"ip.reasm_fails" help:"IPv4 reassemblies that failed, timeouts included (Linux: Ip ReasmFails)"`
	IPReasmTimeout uint64 `stat:"ip.reasm_timeout" help:"IPv4 reassemblies given up after the timeout (Linux: Ip ReasmTimeout)"`

	// IPv6 reassembly (RFC 8200 4.5), named after Linux's Ip6 MIB.
	IP6ReasmReqds uint64 `stat:"ip6.reasm_reqds" help:"IPv6 fragments received for reassembly (Linux: Ip6 ReasmReqds)"`
	IP6ReasmOKs   uint64 `stat:"ip6.reasm_oks" help:"IPv6 datagrams reassembled from fragments (Linux: Ip6 ReasmOKs)"`
	IP6ReasmFails uint64 `stat:"ip6.reasm_fails" help:"IPv6 reassemblies that failed, timeouts included (Linux: Ip6 ReasmFails)"`
}

func inc(p *uint64)           { atomic.AddUint64(p, 1) }
func add(p *uint64, n uint64) { atomic.AddUint64(p, n) }
func dec(p *uint64)           { atomic.AddUint64(p, ^uint64(0)) }
