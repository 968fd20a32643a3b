// Package stackcore is ustack's pure TCP/IP stack: Ethernet, IPv4 and IPv6, ICMP
// and ICMPv6 errors, UDP and TCP over frames the host hands in, in the smoltcp / iip style. It makes no
// syscalls, starts no goroutines and never reads a clock: time comes in as an
// argument (Time, microseconds), received frames come in through Input, and
// Poll emits frames into an Output the host lends buffers from and returns the
// next deadline. A Stack is not safe for concurrent use; the host serialises
// calls (one lock per stack). Stats are updated with sync/atomic so another
// process can read them without locks.
//
// No ARP here. The host owns neighbour resolution (the kernel is the control
// plane): an active open is given the next-hop MAC by the caller of Connect;
// a passive open replies to the Ethernet source MAC of the SYN. Each
// connection stores its peer MAC and uses it for every segment. RSTs for
// segments to closed ports go to the source MAC of the offending frame.
//
// TCP (RFC 9293) as implemented: passive and active open with MSS and window
// scale options (RFC 7323 section 2; our shift is sized to the receive
// buffer), sliding-window flow control in both directions with silly window
// avoidance (RFC 9293 3.8.6.2), send and receive ring buffers allocated once
// per connection, retransmission timeout per RFC 6298 (min 200ms as Linux,
// initial 1s, Karn's rule, exponential backoff), fast retransmit and NewReno
// recovery (RFC 5681, RFC 6582) for peers without SACK, SACK (RFC 2018:
// blocks from the out-of-order queue, a sender scoreboard) with RFC 6675
// loss recovery, limited transmit (RFC 3042), an initial window of 10 segments
// (RFC 6928), congestion control behind an interface (congestion.go: CUBIC,
// RFC 9438, by default; NewReno selectable with SetCongestion or
// Config.Congestion), tail loss probes (RFC 8985 7; a delivered probe marks
// the holes below it lost, and in SACK recovery the probe timeout resends a
// lost retransmission), a bounded out-of-order queue (up to 32 ranges held in
// the receive ring itself, so bounded by the receive buffer; a segment that
// would need a 33rd range is dropped and recovered by retransmission; SACK
// blocks most recent first, then by recency), D-SACK (RFC 2883: duplicates
// are reported; RFC 3708: a recovery whose retransmissions all come back as
// duplicates is undone and the duplicate ACK threshold grows, as Linux
// adapts tp->reordering), zero-window probing, FIN/half-close,
// TIME_WAIT (2*MSL, MSL = 30s), RST generation (RFC 9293 3.10.7.1) and
// RFC 5961 RST/SYN handling (exact-sequence RSTs reset, other in-window RSTs
// and SYNs draw a challenge ACK), and delayed ACKs (RFC 9293 3.8.6.3 with
// Linux's engine: quick-ack start, ping-pong mode, ATO from 40ms, an ACK per
// second full-sized segment, immediate ACKs for out-of-order data, FIN and
// window updates; SetQuickAck is TCP_QUICKACK), Nagle's algorithm on by
// default in Linux's (Minshall's) variant with SetNoDelay and SetCork, and
// keepalive (SetKeepAlive, Linux defaults and timing), RFC 7323 timestamps
// (TSval in ms with a per-connection offset, PAWS, TS.Recent per 4.3, RTT
// samples from TSecr where Karn's rule leaves none; Config.NoTimestamps),
// TCPInfo/AppendTCPInfo (Linux's struct tcp_info), SetUserTimeout
// (TCP_USER_TIMEOUT, RFC 5482: unacknowledged data or a zero window for
// longer than the timeout fails the connection with ErrTimedOut), and SYN
// cookies (RFC 4987 3.6, syncookie.go: Linux's encoding; a listener whose SYN
// queue is full answers statelessly; window scale and SACK ride in the
// TSval's low bits when the SYN has timestamps, else the cookie connection
// has neither). Ephemeral ports (Connect and UDPBind with 0)
// follow RFC 6056 Algorithm 4 keyed by Config.Seed (ports.go). Not
// implemented: urgent data (the urgent pointer is ignored), IP options
// (skipped).
//
// Addresses (addr.go) are 16 bytes for both families, IPv4 as IPv4-mapped
// (RFC 4291 2.5.5.2): one connection table, one listener per port carrying a
// Family (both, IPv4 only, IPv6 only, RFC 3493 IPV6_V6ONLY) and an optional
// local address. IPv6 (RFC 8200, ipv6.go): the interface's addresses in
// Config.Addrs6, link-local ones included; extension headers walked in order
// (Hop-by-Hop only first, options skipped or the packet dropped by their
// type's two high bits, a Routing header with segments left dropped: we do
// not forward; at most maxExtHeaders); the source of a packet is the socket's
// bound address or SourceFor (RFC 6724 rule 2, scope); a flow label per
// connection (RFC 6437); MSS MTU-60, 1220 when the peer sends none (RFC 9293
// 3.7.1). Neighbour Discovery is the host's, as ARP is.
//
// IPv4 and IPv6 fragments (RFC 791, RFC 815, RFC 8200 4.5, ipfrag.go) are
// reassembled in a pool of 64 datagrams of at most 64 KiB allocated in New,
// dropped 30 s (IPv6: 60 s) after their first fragment (Linux ipfrag_time) or
// on any overlap (RFC 5722; a duplicate is ignored), and delivered to TCP,
// UDP or ICMP; fragments the pool cannot take count as drop.fragment. We
// never fragment what we send.
//
// UDP (RFC 768, udp.go): UDPBind on a port of its own namespace (0 picks an
// ephemeral port), SendTo copying a datagram into a bounded send queue that
// Poll empties, a bounded receive queue (overflow dropped and counted in
// udp.rcvbuf_errors), connected sockets that accept only their peer,
// MSG_TRUNC and MSG_PEEK semantics in RecvFrom, checksums verified per
// Config (zero means none over IPv4, a drop over IPv6: RFC 8200 8.1). No
// fragmentation: more than MTU-28 (IPv6: MTU-48) bytes is ErrMsgSize. Queues are rings allocated at bind time (and by SetBuffers).
//
// ICMP (RFC 792, RFC 1122 3.2.2, RFC 5927, icmp.go): the checksum is always
// verified; errors (destination unreachable, time exceeded, source quench,
// parameter problem) quoting a segment or datagram we sent reach its socket.
// UDP: port unreachable is ErrRefused on a connected socket only (Linux).
// TCP: the quoted sequence number must lie in SND.UNA..SND.MAX; port or
// protocol unreachable in SYN-SENT fails the attempt with ErrRefused; other
// unreachables and time exceeded are soft errors (RFC 1122 4.2.3.9) reported
// only if the connection later times out; fragmentation needed lowers the
// connection's MSS to the next-hop MTU (RFC 1191; < 68 ignored, 0 means the
// plateau below the datagram size, never raised) and resends what is in
// flight at the new size. Echo requests get no reply: the kernel answers ping.
// ICMPv6 (RFC 4443): the same for errors quoting what we sent; packet too big
// lowers the path MTU (RFC 8201), never below 1280; informational messages
// (echo, NDP, MLD) are the kernel's.
//
// Poll's cost follows the connections with work (sched.go): a ready list of
// connections that may have output and a min-heap of their deadlines.
//
// The established path (Input of an in-order data segment, Read, Write,
// Poll emitting data and ACKs) and the UDP path (SendTo, Poll, Input,
// RecvFrom) allocate nothing.
package stackcore
