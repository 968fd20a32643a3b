// Command relay forwards Ethernet frames between two interfaces, like a
// bridge, through AF_PACKET raw sockets, and injects faults on the way:
// seeded, per-direction loss, duplication, corruption, delay with jitter and
// reordering (see faults.Fault). It is the middle of the fault topology of
// package ustack/tests/faults, which starts it in namespace R:
//
//	relay -a IF_TOWARDS_A -b IF_TOWARDS_B -seed N -ab SPEC -ba SPEC -stats FILE
//
// SPEC is faults.Fault's String form ("loss=0.05,delay=50ms,jitter=10ms", or
// "none"). The counters (faults.Stats) are written as JSON to FILE when the
// sockets are ready, every 200 ms, on SIGUSR1, and at exit; SIGTERM or SIGINT ends the
// relay, which then prints them as a table on stderr. A bandwidth bottleneck is
// not the relay's business: put a TBF qdisc on the egress interfaces, which the
// frames the relay writes go through.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ustack/tests/faults"
)

func main() {
	ifA := flag.String("a", "", "interface towards host A")
	ifB := flag.String("b", "", "interface towards host B")
	seed := flag.Uint64("seed", 1, "seed of the fault generators")
	specAB := flag.String("ab", "none", "faults on frames from A to B")
	specBA := flag.String("ba", "none", "faults on frames from B to A")
	statsPath := flag.String("stats", "", "write the counters as JSON to this file")
	flag.Parse()
	if err := run(*ifA, *ifB, *seed, *specAB, *specBA, *statsPath); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

func run(ifA, ifB string, seed uint64, specAB, specBA, statsPath string) error {
	if ifA == "" || ifB == "" {
		return errors.New("-a and -b are required")
	}
	fAB, err := faults.ParseFault(specAB)
	if err != nil {
		return fmt.Errorf("-ab: %w", err)
	}
	fBA, err := faults.ParseFault(specBA)
	if err != nil {
		return fmt.Errorf("-ba: %w", err)
	}
	sa, err := openPacket(ifA)
	if err != nil {
		return err
	}
	sb, err := openPacket(ifB)
	if err != nil {
		unix.Close(sa)
		return err
	}
	r := &relay{seed: seed, path: statsPath}
	r.ab = newDir("A->B", sa, sb, fAB, rand.New(rand.NewPCG(seed, 1)))
	r.ba = newDir("B->A", sb, sa, fBA, rand.New(rand.NewPCG(seed, 2)))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	if err := r.writeStats(); err != nil { // the "ready" signal
		return err
	}
	for _, d := range []*dir{r.ab, r.ba} {
		if d.q != nil {
			go d.schedule()
		}
		go func() {
			if err := d.read(); err != nil {
				fmt.Fprintf(os.Stderr, "relay: %s: %v\n", d.name, err)
				os.Exit(1)
			}
		}()
	}
	tick := time.NewTicker(200 * time.Millisecond)
	for {
		select {
		case <-tick.C:
			if err := r.writeStats(); err != nil {
				return err
			}
		case <-usr1:
			if err := r.writeStats(); err != nil {
				return err
			}
		case <-sigs:
			err := r.writeStats()
			fmt.Fprint(os.Stderr, r.snapshot())
			return err
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openPacket opens a raw packet socket that receives every frame arriving on
// ifname (promiscuous, none of the frames sent from it) and sends on ifname.
func openPacket(ifname string) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, fmt.Errorf("interface %s: %w", ifname, err)
	}
	// Protocol 0 until bound, so that no frame of another interface is queued.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s on %s: %w", what, ifname, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("PACKET_IGNORE_OUTGOING", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		return fail("SO_RCVBUFFORCE", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	mreq := &unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mreq); err != nil {
		return fail("promiscuous mode", err)
	}
	return fd, nil
}

type counters struct {
	received, bytes, forwarded, dropped, duplicated, corrupted, reordered,
	delayed, queueDrops, txErrors, truncated atomic.Uint64
}

// item is a frame in the delay line.
type item struct {
	b      []byte
	due    time.Time
	copies int
	hold   bool // reorder it
}

// held is a frame held back to be overtaken.
type held struct {
	b        []byte
	copies   int
	left     int // frames still to overtake it
	deadline time.Time
}

// dir is one direction: frames read on in, written on out.
type dir struct {
	name    string
	in, out int
	f       faults.Fault
	rng     *rand.Rand // used by the reader goroutine only
	c       counters
	q       chan item // nil: no delay line, the reader writes at once
	lastDue time.Time

	dropsMu   sync.Mutex
	sockDrops uint64 // PACKET_STATISTICS resets on every read: accumulated here
}

func newDir(name string, in, out int, f faults.Fault, rng *rand.Rand) *dir {
	d := &dir{name: name, in: in, out: out, f: f, rng: rng}
	if f.Delay > 0 || f.Reorder > 0 {
		d.q = make(chan item, 1<<16)
	}
	return d
}

func (d *dir) read() error {
	buf := make([]byte, 1<<16+1024)
	for {
		n, from, err := unix.Recvfrom(d.in, buf, unix.MSG_TRUNC)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return fmt.Errorf("reading: %w", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		d.c.received.Add(1)
		d.c.bytes.Add(uint64(n))
		// The same draws for every frame, so that the n-th frame's fate
		// depends only on the seed.
		rLoss, rDup, rCorrupt, rReorder, rJitter := d.rng.Float64(), d.rng.Float64(), d.rng.Float64(), d.rng.Float64(), d.rng.Float64()
		rPos, rXor := d.rng.Uint64(), byte(1+d.rng.IntN(255))
		if n > len(buf) {
			d.c.truncated.Add(1)
			continue
		}
		frame := buf[:n]
		if rLoss < d.f.Loss {
			d.c.dropped.Add(1)
			continue
		}
		copies := 1
		if rDup < d.f.Duplicate {
			copies = 2
			d.c.duplicated.Add(1)
		}
		if rCorrupt < d.f.Corrupt && corrupt(frame, rPos, rXor) {
			d.c.corrupted.Add(1)
		}
		if d.q == nil {
			d.send(frame, copies)
			continue
		}
		due := time.Now()
		if d.f.Delay > 0 {
			due = due.Add(d.f.Delay + time.Duration((2*rJitter-1)*float64(d.f.Jitter)))
			d.c.delayed.Add(1)
		}
		if due.Before(d.lastDue) { // jitter never reorders
			due = d.lastDue
		}
		d.lastDue = due
		d.q <- item{b: append([]byte(nil), frame...), due: due, copies: copies, hold: rReorder < d.f.Reorder}
	}
}

// schedule runs the delay line and the reordering of one direction.
func (d *dir) schedule() {
	var fifo []item
	var holds []held
	gap, hold := d.f.Gap(), d.f.Hold()
	timer := time.NewTimer(time.Hour)
	for {
		now := time.Now()
		for len(fifo) > 0 && !fifo[0].due.After(now) {
			it := fifo[0]
			fifo[0] = item{}
			fifo = fifo[1:]
			if it.hold {
				holds = append(holds, held{b: it.b, copies: it.copies, left: gap, deadline: now.Add(hold)})
				d.c.reordered.Add(1)
				continue
			}
			d.send(it.b, it.copies)
			// One more frame has overtaken every held frame.
			kept := holds[:0]
			for _, h := range holds {
				if h.left--; h.left <= 0 {
					d.send(h.b, h.copies)
				} else {
					kept = append(kept, h)
				}
			}
			holds = kept
		}
		next := now.Add(time.Hour)
		kept := holds[:0]
		for _, h := range holds {
			if !h.deadline.After(now) {
				d.send(h.b, h.copies)
				continue
			}
			kept = append(kept, h)
			if h.deadline.Before(next) {
				next = h.deadline
			}
		}
		holds = kept
		if len(fifo) > 0 && fifo[0].due.Before(next) {
			next = fifo[0].due
		}
		timer.Reset(next.Sub(now))
		select {
		case it := <-d.q:
			fifo = append(fifo, it)
			for more := true; more; { // take what is queued without sleeping
				select {
				case it := <-d.q:
					fifo = append(fifo, it)
				default:
					more = false
				}
			}
		case <-timer.C:
		}
	}
}

func (d *dir) send(b []byte, copies int) {
	for range copies {
		for {
			_, err := unix.Write(d.out, b)
			switch {
			case err == nil:
				d.c.forwarded.Add(1)
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.ENOBUFS):
				d.c.queueDrops.Add(1)
			default:
				d.c.txErrors.Add(1)
			}
			break
		}
	}
}

// corrupt flips one byte of an IPv4 frame, XOR x, at a position (from pos)
// that a checksum covers: the transport payload, else the transport header,
// else the IPv4 header. It reports false, changing nothing, for frames that
// are not IPv4.
func corrupt(f []byte, pos uint64, x byte) bool {
	const eth = 14
	if len(f) < eth+20 || f[12] != 0x08 || f[13] != 0x00 {
		return false
	}
	ip := f[eth:]
	ihl := int(ip[0]&0x0f) * 4
	tot := int(ip[2])<<8 | int(ip[3])
	if ip[0]>>4 != 4 || ihl < 20 || tot < ihl || tot > len(ip) {
		return false
	}
	lo, hi := 0, ihl // IPv4 header: its checksum
	l4 := ip[ihl:tot]
	firstFrag := (int(ip[6])<<8|int(ip[7]))&0x1fff == 0
	switch proto := ip[9]; {
	case !firstFrag:
	case proto == unix.IPPROTO_TCP && len(l4) >= 20:
		if off := int(l4[12]>>4) * 4; off >= 20 && off < len(l4) {
			lo, hi = ihl+off, tot
		} else if off >= 20 && off == len(l4) {
			lo, hi = ihl, tot
		}
	case proto == unix.IPPROTO_UDP && len(l4) >= 8 && (l4[6] != 0 || l4[7] != 0):
		if len(l4) > 8 {
			lo, hi = ihl+8, tot
		} else {
			lo, hi = ihl, tot
		}
	case proto == unix.IPPROTO_ICMP && len(l4) >= 8:
		lo, hi = ihl, tot
	}
	ip[lo+int(pos%uint64(hi-lo))] ^= x
	return true
}

type relay struct {
	seed   uint64
	path   string
	ab, ba *dir
	mu     sync.Mutex // writeStats
	seq    uint64
}

func (d *dir) stats() faults.DirStats {
	d.dropsMu.Lock()
	if st, err := unix.GetsockoptTpacketStats(d.in, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		d.sockDrops += uint64(st.Drops)
	}
	drops := d.sockDrops
	d.dropsMu.Unlock()
	return faults.DirStats{
		Received: d.c.received.Load(), Bytes: d.c.bytes.Load(), Forwarded: d.c.forwarded.Load(),
		Dropped: d.c.dropped.Load(), Duplicated: d.c.duplicated.Load(), Corrupted: d.c.corrupted.Load(),
		Reordered: d.c.reordered.Load(), Delayed: d.c.delayed.Load(), QueueDrops: d.c.queueDrops.Load(),
		TxErrors: d.c.txErrors.Load(), SockDrops: drops, Truncated: d.c.truncated.Load(),
	}
}

func (r *relay) snapshot() faults.Stats {
	return faults.Stats{Seed: r.seed, Seq: r.seq, AB: r.ab.stats(), BA: r.ba.stats()}
}

// writeStats replaces the stats file atomically (a reader never sees half).
func (r *relay) writeStats() error {
	if r.path == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	b, err := json.Marshal(r.snapshot())
	if err != nil {
		return fmt.Errorf("encoding stats: %w", err)
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing stats: %w", err)
	}
	if err := os.Rename(tmp, r.path); err != nil {
		return fmt.Errorf("writing stats: %w", err)
	}
	return nil
}
