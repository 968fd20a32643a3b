package shim

import (
	"encoding/binary"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/nic/pair"
	"ustack/stackcore"
)

// The engine under test runs its stack at 127.0.0.2 (a local address, so shadow sockets can bind
// to it) over nic/pair; the peer is a bare stackcore at 127.0.0.3 on the other end. Nothing runs
// by itself: no poller, no pumping goroutine. Time is a ManualClock that the test moves with
// step, which also drives both stacks, so every test runs on simulated time, deterministically.
var (
	engAddr    = [4]byte{127, 0, 0, 2}
	peerAddr   = [4]byte{127, 0, 0, 3}
	silentAddr = [4]byte{127, 0, 0, 4} // on the wire, but no neighbour answers for it
	engMAC     = [6]byte{2, 0, 0, 0, 0, 2}
	peerMAC    = [6]byte{2, 0, 0, 0, 0, 3}
)

// pairLink is a pair.End that remembers which ports are steered.
type pairLink struct {
	*pair.End
	mu      sync.Mutex
	steered map[uint16]bool
}

func (l *pairLink) Steer(proto uint8, ip [16]byte, port uint16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.steered[port] = true
	return nil
}

func (l *pairLink) Unsteer(proto uint8, ip [16]byte, port uint16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.steered, port)
	return nil
}

func (l *pairLink) isSteered(port uint16) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.steered[port]
}

func (l *pairLink) SteerListed(proto uint8, ip [16]byte, port uint16) error { return nil }

func (l *pairLink) SteerShared(proto uint8, ip [16]byte, port uint16) error {
	return l.Steer(proto, ip, port)
}

func (l *pairLink) UnsteerShared(proto uint8, ip [16]byte, port uint16) error {
	return l.Unsteer(proto, ip, port)
}

func (l *pairLink) SteerFlow(proto uint8, local [16]byte, lport uint16, remote [16]byte, rport uint16, action uint32) error {
	return nil
}

func (l *pairLink) UnsteerFlow(proto uint8, local [16]byte, lport uint16, remote [16]byte, rport uint16) error {
	return nil
}

func (l *pairLink) Mode() string { return "pair" }

// fakeControlPlane routes the peer's and the silent address through the accelerated
// interface. The kernel's neighbour table knows the peer only after a resolution (as after an
// ARP exchange); the silent address never answers. Resolutions end when the test says
// (finishResolutions), on the test's goroutine.
type fakeControlPlane struct {
	mu      sync.Mutex
	known   bool // the peer is in the neighbour table
	pending []pendingResolve
	started int
}

type pendingResolve struct {
	ip   [4]byte
	done func([6]byte, error)
}

func (cp *fakeControlPlane) routeVia(dst stackcore.Addr) (stackcore.Addr, bool) {
	return dst, dst.Is4() && (dst.As4() == peerAddr || dst.As4() == silentAddr)
}

func (cp *fakeControlPlane) neighbour(ip stackcore.Addr) ([6]byte, bool) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return peerMAC, ip.As4() == peerAddr && cp.known
}

func (cp *fakeControlPlane) resolveAsync(ip6 stackcore.Addr, done func([6]byte, error)) {
	ip := [4]byte(ip6.As4())
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.started++
	cp.pending = append(cp.pending, pendingResolve{ip, done})
}

// finishResolutions ends the resolutions started so far: the peer answers, the silent address
// does not.
func (cp *fakeControlPlane) finishResolutions() {
	cp.mu.Lock()
	p := cp.pending
	cp.pending = nil
	cp.mu.Unlock()
	for _, r := range p {
		if r.ip == peerAddr {
			cp.mu.Lock()
			cp.known = true
			cp.mu.Unlock()
			r.done(peerMAC, nil)
		} else {
			r.done([6]byte{}, errNoNeighbour)
		}
	}
}

// peer is a stackcore host on the other end of the wire, driven by step.
type peer struct {
	mu   sync.Mutex
	core *stackcore.Stack
	end  *pair.End
	rx   [][]byte
}

// do runs f with the peer's stack locked.
func (p *peer) do(f func(s *stackcore.Stack)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p.core)
}

func (p *peer) service(now stackcore.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		n := p.end.Receive(p.rx)
		if n == 0 {
			break
		}
		for _, f := range p.rx[:n] {
			p.core.Input(now, f)
		}
		p.end.ReleaseRx()
	}
	p.core.Poll(now, p.end)
	p.end.Flush()
}

type rig struct {
	t     *testing.T
	e     *Engine
	st    *stack
	tab   *MapTable
	link  *pairLink
	cp    *fakeControlPlane
	clock *ManualClock
	peer  *peer
}

// stepSize is how far step moves the clock: about a round trip on a fast LAN.
const stepSize = 100 * stackcore.Microsecond

func newRig(t *testing.T) *rig {
	t.Helper()
	a, b := pair.New(pair.Options{})
	tab := NewMapTable()
	cfg := Config{VerifyChecksum: true, LogLevel: "error"}
	e := NewEngine(cfg, tab)
	link := &pairLink{End: a, steered: map[uint16]bool{}}
	ifc := iface{name: "pair0", index: 1, mac: engMAC, addr: mapped(engAddr), prefix: 8, mtu: 1500}
	clock := new(ManualClock)
	clock.Set(stackcore.Second) // not 0: a zero time is special to some callers
	cp := &fakeControlPlane{known: true}
	st, err := startStack(e, cfg, stackOptions{ifc: ifc, cp: cp, link: link, clock: clock,
		coreStats: new(stackcore.Stats), stats: new(Stats), seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.startOnce.Do(func() { e.st = st })
	p := &peer{
		core: stackcore.New(stackcore.Config{MAC: peerMAC, Addr: peerAddr, MTU: 1500, VerifyChecksums: true,
			Seed: 7, Stats: new(stackcore.Stats)}),
		end: b, rx: make([][]byte, 64),
	}
	r := &rig{t: t, e: e, st: st, tab: tab, link: link, cp: cp, clock: clock, peer: p}
	t.Cleanup(e.Close)
	return r
}

// step moves simulated time on and lets both stacks work: what the poller and the peer's own
// loop would do meanwhile.
func (r *rig) step() {
	r.clock.Advance(stepSize)
	r.st.with(nil, faultNone, func() int { r.st.serviceLocked(); return 0 })
	r.peer.service(r.clock.Now())
	r.st.with(nil, faultNone, func() int { r.st.serviceLocked(); return 0 })
}

// simLimit bounds every wait of a test in simulated time.
const simLimit = 10 * stackcore.Second

// socket makes a kernel TCP socket and lets the engine accelerate it, as socket(2) does.
func (r *rig) socket(typ int) int {
	r.t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|typ, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	r.e.Socket(fd, unix.SOCK_STREAM|typ)
	r.t.Cleanup(func() { r.close(fd) })
	if e, _ := r.tab.Entry(fd); e.Kind != KindTCP {
		r.t.Fatalf("socket %d not accelerated", fd)
	}
	return fd
}

// close is close(2) on an fd that may be ours.
func (r *rig) close(fd int) {
	if _, ok := r.tab.Entry(fd); ok {
		r.e.CloseFD(fd)
	}
	unix.Close(fd)
}

// block repeats call while it answers Wait, as the interposer does, stepping simulated time in
// between, for at most simLimit.
func (r *rig) block(call func() int) int {
	r.t.Helper()
	deadline := r.clock.Now() + simLimit
	for {
		res := call()
		if res != Wait {
			return res
		}
		if r.clock.Now() > deadline {
			r.t.Fatal("call still waiting after 10 s of simulated time")
		}
		r.step()
	}
}

// until steps simulated time until cond holds, for at most simLimit.
func (r *rig) until(what string, cond func() bool) {
	r.t.Helper()
	deadline := r.clock.Now() + simLimit
	for !cond() {
		if r.clock.Now() > deadline {
			r.t.Fatalf("no %s after 10 s of simulated time", what)
		}
		r.step()
	}
}

func sockaddr(ip [4]byte, port uint16) []byte {
	var sa [unix.SizeofSockaddrInet4]byte
	var n uint32 = unix.SizeofSockaddrInet4
	putAddrFamily(sa[:], &n, unix.AF_INET, 0, mapped(ip), port)
	return sa[:]
}

func mapped(ip [4]byte) stackcore.Addr { return stackcore.AddrFrom4(ip) }

// parseInet4 reads a struct sockaddr_in; ok is false for another family.
func parseInet4(sa []byte) (ip [4]byte, port uint16, ok bool, errno unix.Errno) {
	if len(sa) < unix.SizeofSockaddrInet4 || binary.NativeEndian.Uint16(sa) != unix.AF_INET {
		return ip, 0, false, unix.EINVAL
	}
	return [4]byte(sa[4:8]), binary.BigEndian.Uint16(sa[2:4]), true, 0
}

func iov(b []byte) []unix.Iovec {
	return []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}
}

// connected returns an accelerated socket connected to a peer listener on port, and the
// peer's end of the connection.
func (r *rig) connected(port uint16) (int, *stackcore.TCPConn) {
	r.t.Helper()
	var l *stackcore.Listener
	r.peer.do(func(s *stackcore.Stack) {
		var err error
		if l, err = s.Listen(port, 8); err != nil {
			r.t.Fatal(err)
		}
	})
	fd := r.socket(0)
	if res := r.e.Connect(fd, sockaddr(peerAddr, port)); res != Wait {
		r.t.Fatalf("blocking connect: %d, want Wait", res)
	}
	if res := r.block(func() int { return r.e.ConnectWait(fd) }); res != 0 {
		r.t.Fatalf("connect: %v", unix.Errno(-res))
	}
	var pc *stackcore.TCPConn
	r.until("peer accept", func() bool {
		r.peer.do(func(*stackcore.Stack) { pc = l.Accept() })
		return pc != nil
	})
	return fd, pc
}

// peerNow is the peer's time (the clock both stacks share).
func (r *rig) peerNow() stackcore.Time { return r.clock.Now() }

func unsafePointer(p *int32) unsafe.Pointer { return unsafe.Pointer(p) }

func timevalBytes(tv *unix.Timeval) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(tv)), unsafe.Sizeof(*tv))
}

// entry is fd's entry in the interposer's table (the zero entry when fd is not ours).
func (r *rig) entry(fd int) FDEntry {
	e, _ := r.tab.Entry(fd)
	return e
}

// The helpers below serve epoll_test.go, poll_test.go and concurrency_test.go.

// fdOwner holds the fds a test opens and closes itself, and closes at the end of the test those
// it still holds, each once: a number closed twice may belong to another file by then.
type fdOwner struct {
	r    *rig
	mu   sync.Mutex
	open map[int]bool
}

func (r *rig) owner() *fdOwner {
	o := &fdOwner{r: r, open: map[int]bool{}}
	r.t.Cleanup(func() {
		o.mu.Lock()
		fds := make([]int, 0, len(o.open))
		for fd := range o.open {
			fds = append(fds, fd)
		}
		o.mu.Unlock()
		for _, fd := range fds {
			o.close(fd)
		}
	})
	return o
}

func (o *fdOwner) hold(fd int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.open[fd] {
		panic("fd held twice")
	}
	o.open[fd] = true
	return fd
}

// close is close(2) as the interposer does it: the engine lets go of a socket's fd or an epoll
// set's fd, then the kernel closes it.
func (o *fdOwner) close(fd int) {
	o.mu.Lock()
	held := o.open[fd]
	delete(o.open, fd)
	o.mu.Unlock()
	if !held {
		panic("close of an fd not held")
	}
	if e, ours := o.r.tab.Entry(fd); ours && e.Kind == KindEpoll {
		o.r.e.EpollClose(fd)
	} else if ours {
		o.r.e.CloseFD(fd)
	}
	unix.Close(fd)
}

// socket is socket(2) for TCP (typ: SOCK_NONBLOCK or 0), accelerated.
func (o *fdOwner) socket(typ int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|typ, 0)
	if err != nil {
		return -1, err
	}
	o.r.e.Socket(fd, unix.SOCK_STREAM|typ)
	return o.hold(fd), nil
}

// dup is dup(2) of an accelerated socket or epoll fd, as the interposer does it.
func (o *fdOwner) dup(fd int) (int, error) {
	d, err := unix.Dup(fd)
	if err != nil {
		return -1, err
	}
	if _, ours := o.r.tab.Entry(fd); ours {
		o.r.e.Dup(fd, d)
	}
	return o.hold(d), nil
}

// epoll is epoll_create1(2).
func (o *fdOwner) epoll() (int, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, err
	}
	return o.hold(ep), nil
}

// peerListen makes the peer listen on port.
func (r *rig) peerListen(port uint16) *stackcore.Listener {
	r.t.Helper()
	var l *stackcore.Listener
	r.peer.do(func(s *stackcore.Stack) {
		var err error
		if l, err = s.Listen(port, 64); err != nil {
			r.t.Fatal(err)
		}
	})
	return l
}

// dial is a blocking connect of a new accelerated socket to the peer's listener l on port, on
// the test's goroutine; it returns the fd and the peer's end.
func (o *fdOwner) dial(l *stackcore.Listener, port uint16) (int, *stackcore.TCPConn) {
	r := o.r
	r.t.Helper()
	fd, err := o.socket(0)
	if err != nil {
		r.t.Fatal(err)
	}
	if res := r.e.Connect(fd, sockaddr(peerAddr, port)); res != Wait {
		r.t.Fatalf("blocking connect: %d, want Wait", res)
	}
	if res := r.block(func() int { return r.e.ConnectWait(fd) }); res != 0 {
		r.t.Fatalf("connect: %v", unix.Errno(-res))
	}
	var pc *stackcore.TCPConn
	r.until("peer accept", func() bool {
		r.peer.do(func(*stackcore.Stack) { pc = l.Accept() })
		return pc != nil
	})
	return fd, pc
}
