package stackcore

import (
	"errors"
	"fmt"
)

// ErrInvalid is returned for an invalid argument, such as an unknown
// congestion control name.
var ErrInvalid = errors.New("stackcore: invalid argument")

// congestion is a congestion control algorithm (gVisor's congestionControl):
// it grows cwnd on ACKs outside recovery and picks ssthresh on a loss.
// Recovery itself (fast retransmit, NewReno or SACK recovery, RTO) is common
// code in tcp_rcv.go and tcp_snd.go.
type congestion interface {
	name() string
	// onAck grows c.cwnd for acked newly acknowledged bytes (slow start or
	// congestion avoidance), outside loss recovery.
	onAck(c *TCPConn, now Time, acked int)
	// onLoss returns ssthresh for a loss detected by duplicate ACKs or SACK
	// (RFC 5681 3.2 step 2, RFC 9438 4.6).
	onLoss(c *TCPConn, now Time) uint32
	// onRTO returns ssthresh after a retransmission timeout (RFC 5681 3.1
	// equation 4, RFC 9438 4.8).
	onRTO(c *TCPConn, now Time) uint32
}

// Congestion control names for SetCongestion and Config.Congestion.
const (
	CongestionCubic = "cubic"
	CongestionReno  = "reno"
)

// SetCongestion selects the connection's congestion control (TCP_CONGESTION):
// "cubic" (RFC 9438, the default as in Linux) or "reno" (RFC 5681 with
// RFC 6582 NewReno recovery).
func (c *TCPConn) SetCongestion(name string) error {
	switch name {
	case CongestionCubic:
		c.cubic = cubicCC{}
		c.cc = &c.cubic
	case CongestionReno:
		c.cc = renoCC{}
	default:
		return fmt.Errorf("congestion control %q: %w", name, ErrInvalid)
	}
	return nil
}

// Congestion returns the name of the connection's congestion control.
func (c *TCPConn) Congestion() string { return c.cc.name() }

// slowStart is RFC 5681 3.1 with appropriate byte counting (RFC 3465 2.2,
// L = 2*SMSS, so that a delayed ACK covering two segments counts for two);
// it returns the bytes of acked left over once cwnd reaches ssthresh.
func slowStart(c *TCPConn, acked int) int {
	if c.cwnd >= c.ssthresh {
		return acked
	}
	grow := acked
	if c.sackOK && c.ssthresh == ssthreshInitial {
		grow = c.hsGrowth(acked) // HyStart++ in the initial slow start (RFC 9406 4.1)
		if c.cwnd >= c.ssthresh {
			return 0
		}
	}
	mss := uint32(c.mss)
	inc := min(uint32(grow), 2*mss)
	if c.cwnd+inc > c.ssthresh {
		inc = c.ssthresh - c.cwnd
	}
	c.cwnd += inc
	if grow < acked {
		return 0 // Conservative Slow Start used the rest
	}
	return acked - int(inc)
}

// halfFlight is RFC 5681 equation 4: max(FlightSize/2, 2*SMSS).
func halfFlight(c *TCPConn) uint32 {
	flight := uint32(max(c.sndMax.sub(c.sndUna), 0))
	return max(flight/2, 2*uint32(c.mss))
}

// renoCC is RFC 5681: slow start, then one SMSS per RTT.
type renoCC struct{}

func (renoCC) name() string { return CongestionReno }

func (renoCC) onAck(c *TCPConn, _ Time, acked int) {
	if slowStart(c, acked) == 0 {
		return
	}
	mss := uint32(c.mss)
	c.cwnd += max(mss*mss/c.cwnd, 1) // RFC 5681 equation 3
}

func (renoCC) onLoss(c *TCPConn, _ Time) uint32 { return halfFlight(c) }

func (renoCC) onRTO(c *TCPConn, _ Time) uint32 { return halfFlight(c) }
