package shim

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// sockOpts are the options an accelerated socket keeps for the stack: set before connect they
// apply when the connection opens, and an accepted connection inherits its listener's, as on
// Linux. Every option is set on the shadow too (setsockopt answers Pass), so that getsockopt
// answers and a hand-over keeps it.
type sockOpts struct {
	nodelay, cork, quickack bool
	keepalive               bool
	keepIdle, keepIntvl     stackcore.Time // 0: Linux's defaults
	keepCnt                 int
	congestion              string
	userTimeout             stackcore.Time // TCP_USER_TIMEOUT; 0 = none
	rcvLowat                int
	reuseAddr, reusePort    bool
	lingerRST               bool // SO_LINGER on with a zero timeout: close resets
	// IP_TOS and IP_TTL for IPv4 packets, IPV6_TCLASS and IPV6_UNICAST_HOPS for IPv6 ones
	// (ip(7), ipv6(7)); 0 TTL or hop limit: the default, 64
	tos, ttl, tclass, hops uint8
}

// ipFields are the traffic class and hop limit of packets to a peer of that family.
func (o *sockOpts) ipFields(v4 bool) (tclass, hops uint8) {
	if v4 {
		return o.tos, o.ttl
	}
	return o.tclass, o.hops
}

// apply gives a connection the options. Caller holds st.mu.
func (o *sockOpts) apply(c *stackcore.TCPConn) {
	c.SetNoDelay(o.nodelay)
	c.SetCork(o.cork)
	c.SetQuickAck(o.quickack)
	c.SetKeepAlive(o.keepalive, o.keepIdle, o.keepIntvl, o.keepCnt)
	if o.congestion != "" {
		_ = c.SetCongestion(o.congestion)
	}
	c.SetUserTimeout(o.userTimeout)
	ip, _ := c.Remote()
	tclass, hops := o.ipFields(ip.Is4())
	c.SetTrafficClass(tclass)
	c.SetHopLimit(hops)
}

// set records an option; it answers 0, or the errno the kernel gives for a bad value.
func (o *sockOpts) set(level, name int, v int, isInt bool, val []byte) int {
	switch level {
	case unix.IPPROTO_TCP:
		switch name {
		case unix.TCP_NODELAY, unix.TCP_CORK, unix.TCP_QUICKACK, unix.TCP_KEEPIDLE, unix.TCP_KEEPINTVL, unix.TCP_KEEPCNT,
			unix.TCP_USER_TIMEOUT:
			if !isInt {
				return neg(unix.EINVAL)
			}
		}
		switch name {
		case unix.TCP_NODELAY:
			o.nodelay = v != 0
		case unix.TCP_CORK:
			o.cork = v != 0
		case unix.TCP_QUICKACK:
			o.quickack = v != 0
		case unix.TCP_KEEPIDLE:
			o.keepIdle = stackcore.Time(v) * stackcore.Second
		case unix.TCP_KEEPINTVL:
			o.keepIntvl = stackcore.Time(v) * stackcore.Second
		case unix.TCP_KEEPCNT:
			o.keepCnt = v
		case unix.TCP_USER_TIMEOUT:
			if v < 0 {
				return neg(unix.EINVAL)
			}
			o.userTimeout = stackcore.Time(v) * stackcore.Millisecond
		case unix.TCP_CONGESTION:
			name := string(val)
			if i := bytes.IndexByte(val, 0); i >= 0 {
				name = string(val[:i])
			}
			switch name {
			case "cubic", "reno":
				o.congestion = name
			default:
				return neg(unix.ENOENT) // what Linux says of an unknown algorithm
			}
		}
	case unix.IPPROTO_IP, unix.IPPROTO_IPV6:
		if !isInt {
			break // the shadow answers (EINVAL for a short value)
		}
		// the kernel's bounds: TTL 1..255, hop limit -1..255 (-1: the default), TOS and
		// traffic class one byte (-1: 0); out of them the shadow refuses, and so do we
		switch {
		case level == unix.IPPROTO_IP && name == unix.IP_TOS:
			o.tos = uint8(v)
		case level == unix.IPPROTO_IP && name == unix.IP_TTL:
			if v == -1 {
				v = 0
			} else if v < 1 || v > 255 {
				return neg(unix.EINVAL)
			}
			o.ttl = uint8(v)
		case level == unix.IPPROTO_IPV6 && name == unix.IPV6_TCLASS:
			if v < -1 || v > 255 {
				return neg(unix.EINVAL)
			}
			o.tclass = uint8(max(v, 0))
		case level == unix.IPPROTO_IPV6 && name == unix.IPV6_UNICAST_HOPS:
			if v < -1 || v > 255 {
				return neg(unix.EINVAL)
			}
			o.hops = uint8(max(v, 0))
		}
	case unix.SOL_SOCKET:
		switch name {
		case unix.SO_KEEPALIVE:
			if !isInt {
				return neg(unix.EINVAL)
			}
			o.keepalive = v != 0
		case unix.SO_RCVLOWAT:
			if !isInt {
				return neg(unix.EINVAL)
			}
			o.rcvLowat = max(v, 1)
		case unix.SO_REUSEADDR:
			o.reuseAddr = isInt && v != 0
		case unix.SO_REUSEPORT:
			o.reusePort = isInt && v != 0
		case unix.SO_LINGER:
			if len(val) < 8 {
				return neg(unix.EINVAL)
			}
			on, secs := int32(binary.NativeEndian.Uint32(val)), int32(binary.NativeEndian.Uint32(val[4:]))
			o.lingerRST = on != 0 && secs == 0
		}
	}
	return 0
}

// timeoutMs reads a struct timeval (SO_RCVTIMEO, SO_SNDTIMEO) as milliseconds, 0 for none.
func timeoutMs(val []byte) (int32, bool) {
	if len(val) < 16 {
		return 0, false
	}
	sec := int64(binary.NativeEndian.Uint64(val))
	usec := int64(binary.NativeEndian.Uint64(val[8:]))
	ms := sec*1000 + (usec+999)/1000
	if ms > 1<<31-1 || ms < 0 {
		ms = 0
	}
	return int32(ms), true
}

func putInt(val []byte, valLen *uint32, v int) int {
	if valLen == nil || *valLen < 4 || len(val) < 4 {
		return neg(unix.EINVAL)
	}
	binary.NativeEndian.PutUint32(val, uint32(int32(v)))
	*valLen = 4
	return 0
}

func getInt(val []byte) (int, bool) {
	if len(val) < 4 {
		return 0, false
	}
	return int(int32(binary.NativeEndian.Uint32(val))), true
}

// ancillaryOptions ask the kernel for ancillary data with every datagram received (ip(7),
// ipv6(7), socket(7)): destination addresses, hop limits, traffic classes, options, timestamps,
// drop counts, queued errors. The stack's receive path produces none, so a UDP socket that asks
// for one is the kernel's: its recvmsg would otherwise find no control message and the program
// would go wrong (a DNS server without its datagrams' destination address).
var ancillaryOptions = [...]struct{ level, name int }{
	{unix.IPPROTO_IP, unix.IP_PKTINFO}, {unix.IPPROTO_IP, unix.IP_RECVTTL}, {unix.IPPROTO_IP, unix.IP_RECVTOS},
	{unix.IPPROTO_IP, unix.IP_RECVOPTS}, {unix.IPPROTO_IP, unix.IP_RETOPTS}, {unix.IPPROTO_IP, unix.IP_RECVORIGDSTADDR},
	{unix.IPPROTO_IP, unix.IP_RECVERR},
	{unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO}, {unix.IPPROTO_IPV6, unix.IPV6_2292PKTINFO},
	{unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT}, {unix.IPPROTO_IPV6, unix.IPV6_2292HOPLIMIT},
	{unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS}, {unix.IPPROTO_IPV6, unix.IPV6_RECVORIGDSTADDR},
	{unix.IPPROTO_IPV6, unix.IPV6_RECVRTHDR}, {unix.IPPROTO_IPV6, unix.IPV6_RECVDSTOPTS},
	{unix.IPPROTO_IPV6, unix.IPV6_RECVHOPOPTS}, {unix.IPPROTO_IPV6, unix.IPV6_RECVERR},
	{unix.IPPROTO_IPV6, unix.IPV6_RECVPATHMTU},
	{unix.SOL_SOCKET, unix.SO_TIMESTAMP}, {unix.SOL_SOCKET, unix.SO_TIMESTAMPNS}, {unix.SOL_SOCKET, unix.SO_TIMESTAMPING},
	{unix.SOL_SOCKET, unix.SO_TIMESTAMP_NEW}, {unix.SOL_SOCKET, unix.SO_TIMESTAMPNS_NEW},
	{unix.SOL_SOCKET, unix.SO_TIMESTAMPING_NEW}, {unix.SOL_SOCKET, unix.SO_RXQ_OVFL},
}

// ancillaryOption reports whether (level, name) is one of ancillaryOptions.
func ancillaryOption(level, name int) bool {
	for _, o := range ancillaryOptions {
		if o.level == level && o.name == name {
			return true
		}
	}
	return false
}

// kernelAncillary names the first of ancillaryOptions the kernel socket fd has on ("": none).
func kernelAncillary(fd int) string {
	for _, o := range ancillaryOptions {
		if v, err := unix.GetsockoptInt(fd, o.level, o.name); err == nil && v != 0 {
			return fmt.Sprintf("option %d of level %d", o.name, o.level)
		}
	}
	return ""
}
