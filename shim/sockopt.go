package shim

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// tcpOpts are the options an accelerated socket keeps for its connection: set before connect
// they apply when it opens, and an accepted connection inherits its listener's, as on Linux.
type tcpOpts struct {
	nodelay, cork, quickack bool
	keepalive               bool
	keepIdle, keepIntvl     stackcore.Time // 0: Linux's defaults
	keepCnt                 int
	congestion              string
	userTimeout             stackcore.Time // TCP_USER_TIMEOUT; 0 = none
	rcvLowat                int
	reuseAddr, reusePort    bool
}

// apply gives a connection the options. Caller holds st.mu.
func (o *tcpOpts) apply(c *stackcore.TCPConn) {
	c.SetNoDelay(o.nodelay)
	c.SetCork(o.cork)
	c.SetQuickAck(o.quickack)
	c.SetKeepAlive(o.keepalive, o.keepIdle, o.keepIntvl, o.keepCnt)
	if o.congestion != "" {
		_ = c.SetCongestion(o.congestion)
	}
	c.SetUserTimeout(o.userTimeout)
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

// Getsockopt answers what only the stack knows (SO_ERROR, TCP_INFO); the shadow answers the
// rest, since every option set is set on it too.
func (e *Engine) Getsockopt(fd, level, name int, val []byte, valLen *uint32) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	st := s.st
	switch {
	case level == unix.SOL_SOCKET && name == unix.SO_ERROR:
		st.mu.Lock()
		r := 0
		if s.udp != nil {
			r = -errnoOf(s.udp.TakeErr())
		}
		if s.conn != nil {
			if err := s.conn.TakeErr(); err != nil {
				r = -errnoOf(err)
				s.errReported = true
			}
		}
		st.mu.Unlock()
		return putInt(val, valLen, r)
	case level == unix.IPPROTO_TCP && name == unix.TCP_INFO:
		if valLen == nil {
			return neg(unix.EFAULT)
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		if s.conn == nil {
			return Pass // the kernel's answer for a socket with no connection
		}
		var buf [stackcore.TCPInfoLen]byte
		info := s.conn.AppendTCPInfo(buf[:0], st.now())
		n := copy(val[:min(int(*valLen), len(val))], info)
		*valLen = uint32(n)
		return 0
	}
	return Pass
}

// Setsockopt records what the stack needs and lets the shadow take the option too (Pass), so
// that getsockopt answers and a hand-over keeps it.
func (e *Engine) Setsockopt(fd, level, name int, val []byte) int {
	s := e.sock(fd)
	if s == nil {
		return Pass
	}
	st := s.st
	v, isInt := getInt(val)
	st.mu.Lock()
	defer st.mu.Unlock()
	o := &s.opts
	c := s.conn
	flush := false
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
			flush = o.nodelay
		case unix.TCP_CORK:
			o.cork = v != 0
			flush = !o.cork
		case unix.TCP_QUICKACK:
			o.quickack = v != 0
			flush = o.quickack
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
	case unix.IPPROTO_IP:
		switch name {
		case unix.IP_ADD_MEMBERSHIP, unix.IP_ADD_SOURCE_MEMBERSHIP, unix.MCAST_JOIN_GROUP:
			if s.dgram {
				// multicast stays with the kernel: the socket is the kernel's from now on
				st.mu.Unlock()
				e.handOver(s)
				st.mu.Lock()
				return Pass
			}
		}
	case unix.SOL_SOCKET:
		switch name {
		case unix.SO_RCVBUF, unix.SO_SNDBUF:
			if s.udp != nil && isInt && v > 0 {
				if name == unix.SO_RCVBUF {
					s.udp.SetBuffers(2*v, 0) // Linux doubles the value for its bookkeeping
				} else {
					s.udp.SetBuffers(0, 2*v)
				}
			}
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
			s.lingerRST = on != 0 && secs == 0
		case unix.SO_RCVTIMEO, unix.SO_SNDTIMEO:
			if len(val) < 16 {
				return neg(unix.EINVAL)
			}
			sec := int64(binary.NativeEndian.Uint64(val))
			usec := int64(binary.NativeEndian.Uint64(val[8:]))
			ms := sec*1000 + (usec+999)/1000
			if ms > 1<<31-1 || ms < 0 {
				ms = 0
			}
			if name == unix.SO_RCVTIMEO {
				e.tab.SetTimeouts(fd, int32(ms), -1)
			} else {
				e.tab.SetTimeouts(fd, -1, int32(ms))
			}
		}
	}
	if c != nil {
		o.apply(c)
		if flush {
			st.txLocked() // held data or a pending ACK may go now
		}
	}
	return Pass
}
