package faults

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fault is what the relay does to the frames of one direction. The zero value
// forwards every frame unchanged and at once. Probabilities are in [0, 1] and
// drawn per frame from the direction's seeded generator, in this order: loss,
// duplication, corruption, reordering.
type Fault struct {
	// Loss drops the frame.
	Loss float64
	// Duplicate sends the frame twice.
	Duplicate float64
	// Corrupt flips one byte of an IPv4 frame where a checksum covers it:
	// in the TCP/UDP/ICMP payload when there is one, else in the transport
	// header, else (UDP without checksum, other protocols) in the IPv4
	// header. Frames that are not IPv4 (ARP) are never corrupted.
	Corrupt float64
	// Reorder holds the frame back until ReorderGap later frames of the same
	// direction have gone out (or ReorderHold has passed), so that it
	// arrives after them.
	Reorder float64
	// ReorderGap is how many frames overtake a held frame; 0 means 3 (enough
	// to trigger a fast retransmit at the receiver's third duplicate ACK).
	ReorderGap int
	// ReorderHold bounds how long a frame is held when no other frames come;
	// 0 means 10 ms.
	ReorderHold time.Duration
	// Delay is added to every frame, plus a uniform jitter in
	// [-Jitter, +Jitter]. Jitter does not reorder: a frame never leaves
	// before the one received ahead of it (a queue, not netem's default).
	Delay, Jitter time.Duration
}

// Zero reports whether f changes nothing.
func (f Fault) Zero() bool { return f == Fault{} }

func (f Fault) gap() int {
	if f.ReorderGap <= 0 {
		return 3
	}
	return f.ReorderGap
}

func (f Fault) hold() time.Duration {
	if f.ReorderHold <= 0 {
		return 10 * time.Millisecond
	}
	return f.ReorderHold
}

// Gap is ReorderGap with its default applied.
func (f Fault) Gap() int { return f.gap() }

// Hold is ReorderHold with its default applied.
func (f Fault) Hold() time.Duration { return f.hold() }

// String is the relay's command-line form, "loss=0.01,dup=0.05,...";
// "none" for the zero Fault. ParseFault reads it back.
func (f Fault) String() string {
	var p []string
	add := func(k string, v float64) {
		if v != 0 {
			p = append(p, k+"="+strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	add("loss", f.Loss)
	add("dup", f.Duplicate)
	add("corrupt", f.Corrupt)
	add("reorder", f.Reorder)
	if f.ReorderGap != 0 {
		p = append(p, "gap="+strconv.Itoa(f.ReorderGap))
	}
	if f.ReorderHold != 0 {
		p = append(p, "hold="+f.ReorderHold.String())
	}
	if f.Delay != 0 {
		p = append(p, "delay="+f.Delay.String())
	}
	if f.Jitter != 0 {
		p = append(p, "jitter="+f.Jitter.String())
	}
	if len(p) == 0 {
		return "none"
	}
	return strings.Join(p, ",")
}

// ErrBadFault is wrapped by ParseFault's and Validate's errors.
var ErrBadFault = errors.New("bad fault specification")

// ParseFault parses the form String prints.
func ParseFault(s string) (Fault, error) {
	var f Fault
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return f, nil
	}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return Fault{}, fmt.Errorf("%w: %q: want key=value", ErrBadFault, kv)
		}
		var err error
		switch k {
		case "loss":
			f.Loss, err = strconv.ParseFloat(v, 64)
		case "dup":
			f.Duplicate, err = strconv.ParseFloat(v, 64)
		case "corrupt":
			f.Corrupt, err = strconv.ParseFloat(v, 64)
		case "reorder":
			f.Reorder, err = strconv.ParseFloat(v, 64)
		case "gap":
			f.ReorderGap, err = strconv.Atoi(v)
		case "hold":
			f.ReorderHold, err = time.ParseDuration(v)
		case "delay":
			f.Delay, err = time.ParseDuration(v)
		case "jitter":
			f.Jitter, err = time.ParseDuration(v)
		default:
			return Fault{}, fmt.Errorf("%w: unknown key %q", ErrBadFault, k)
		}
		if err != nil {
			return Fault{}, fmt.Errorf("%w: %s: %w", ErrBadFault, k, err)
		}
	}
	return f, f.Validate()
}

// Validate reports a probability outside [0, 1] or a negative duration.
func (f Fault) Validate() error {
	for _, p := range []struct {
		k string
		v float64
	}{{"loss", f.Loss}, {"dup", f.Duplicate}, {"corrupt", f.Corrupt}, {"reorder", f.Reorder}} {
		if !(p.v >= 0 && p.v <= 1) {
			return fmt.Errorf("%w: %s=%v not in [0, 1]", ErrBadFault, p.k, p.v)
		}
	}
	if f.Delay < 0 || f.Jitter < 0 || f.ReorderHold < 0 || f.ReorderGap < 0 {
		return fmt.Errorf("%w: negative delay, jitter, hold or gap", ErrBadFault)
	}
	if f.Jitter > f.Delay {
		return fmt.Errorf("%w: jitter %v larger than delay %v", ErrBadFault, f.Jitter, f.Delay)
	}
	return nil
}

// DirStats are the relay's counters for one direction.
type DirStats struct {
	Received   uint64 `json:"received"`    // frames read from the ingress interface
	Bytes      uint64 `json:"bytes"`       // their bytes
	Forwarded  uint64 `json:"forwarded"`   // frames written to the egress interface (duplicates included)
	Dropped    uint64 `json:"dropped"`     // dropped by Loss
	Duplicated uint64 `json:"duplicated"`  // sent twice by Duplicate
	Corrupted  uint64 `json:"corrupted"`   // one byte flipped by Corrupt
	Reordered  uint64 `json:"reordered"`   // held back by Reorder
	Delayed    uint64 `json:"delayed"`     // went through the delay line
	QueueDrops uint64 `json:"queue_drops"` // refused by the egress qdisc (TBF queue full: ENOBUFS)
	TxErrors   uint64 `json:"tx_errors"`   // other write errors (EMSGSIZE: a frame over the MTU)
	SockDrops  uint64 `json:"sock_drops"`  // dropped by the kernel before the relay read them (receive buffer full)
	Truncated  uint64 `json:"truncated"`   // larger than the relay's buffer, not forwarded
}

// Stats are the relay's counters: "ab" is A to B, "ba" is B to A.
type Stats struct {
	Seed uint64   `json:"seed"`
	Seq  uint64   `json:"seq"` // how many times the relay has written its counters
	AB   DirStats `json:"ab"`
	BA   DirStats `json:"ba"`
}

// String prints the counters as two table rows.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "relay (seed %d)  received    forwarded  dropped  dup  corrupt  reorder  delayed  qdrops  txerr  sockdrops\n", s.Seed)
	for _, d := range []struct {
		n string
		s DirStats
	}{{"A->B", s.AB}, {"B->A", s.BA}} {
		fmt.Fprintf(&b, "  %-14s %8d  %11d  %7d  %3d  %7d  %7d  %7d  %6d  %5d  %9d\n", d.n, d.s.Received, d.s.Forwarded,
			d.s.Dropped, d.s.Duplicated, d.s.Corrupted, d.s.Reordered, d.s.Delayed, d.s.QueueDrops, d.s.TxErrors, d.s.SockDrops)
	}
	return b.String()
}
