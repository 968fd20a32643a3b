package shim

import (
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/nic/pair"
	"ustack/stackcore"
)

// The engine under test runs its stack at 127.0.0.2 (a local address, so shadow sockets can bind
// to it) over nic/pair; the peer is a bare stackcore at 127.0.0.3 on the other end, pumped by a
// goroutine on the real clock.
var (
	engAddr  = [4]byte{127, 0, 0, 2}
	peerAddr = [4]byte{127, 0, 0, 3}
	engMAC   = [6]byte{2, 0, 0, 0, 0, 2}
	peerMAC  = [6]byte{2, 0, 0, 0, 0, 3}
)

// pairLink is a pair.End that remembers which ports are steered.
type pairLink struct {
	*pair.End
	mu      sync.Mutex
	steered map[uint16]bool
}

func (l *pairLink) Steer(proto uint8, ip [4]byte, port uint16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.steered[port] = true
	return nil
}

func (l *pairLink) Unsteer(proto uint8, ip [4]byte, port uint16) error {
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

func (l *pairLink) Mode() string { return "pair" }

// fakeRoutes routes only the peer's address through the accelerated interface.
type fakeRoutes struct{}

func (fakeRoutes) routeVia(dst [4]byte) ([4]byte, bool) { return dst, dst == peerAddr }
func (fakeRoutes) resolve(ip [4]byte, _ time.Duration) ([6]byte, error) {
	return peerMAC, nil
}

// peer is a stackcore host driven by its own goroutine.
type peer struct {
	mu    sync.Mutex
	core  *stackcore.Stack
	end   *pair.End
	epoch time.Time
	stop  chan struct{}
	done  chan struct{}
}

func (p *peer) now() stackcore.Time { return stackcore.Time(time.Since(p.epoch).Microseconds()) }

func (p *peer) pump() {
	defer close(p.done)
	rx := make([][]byte, 64)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		p.mu.Lock()
		for {
			n := p.end.Receive(rx)
			if n == 0 {
				break
			}
			for _, f := range rx[:n] {
				p.core.Input(p.now(), f)
			}
			p.end.ReleaseRx()
		}
		p.core.Poll(p.now(), p.end)
		p.end.Flush()
		p.mu.Unlock()
		time.Sleep(20 * time.Microsecond)
	}
}

// do runs f with the peer's stack locked.
func (p *peer) do(f func(s *stackcore.Stack)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p.core)
}

type rig struct {
	t    *testing.T
	e    *Engine
	tab  *MapTable
	link *pairLink
	peer *peer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	a, b := pair.New(pair.Options{})
	tab := NewMapTable()
	cfg := Config{VerifyChecksum: true, LogLevel: "error"}
	e := NewEngine(cfg, tab)
	link := &pairLink{End: a, steered: map[uint16]bool{}}
	ifc := iface{name: "pair0", index: 1, mac: engMAC, addr: engAddr, prefix: 8, mtu: 1500}
	st, err := startStack(e, cfg, ifc, fakeRoutes{}, link, new(stackcore.Stats), new(Stats))
	if err != nil {
		t.Fatal(err)
	}
	e.startOnce.Do(func() { e.st = st })
	p := &peer{
		core: stackcore.New(stackcore.Config{MAC: peerMAC, Addr: peerAddr, MTU: 1500, VerifyChecksums: true,
			Seed: 7, Stats: new(stackcore.Stats)}),
		end: b, epoch: time.Now(), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go p.pump()
	r := &rig{t: t, e: e, tab: tab, link: link, peer: p}
	t.Cleanup(func() {
		close(p.stop)
		<-p.done
		e.Close()
	})
	return r
}

// socket makes a kernel TCP socket and lets the engine accelerate it, as socket(2) does.
func (r *rig) socket(typ int) int {
	r.t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|typ, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	r.e.Socket(fd, unix.SOCK_STREAM|typ)
	r.t.Cleanup(func() { r.close(fd) })
	if r.tab.Entries[fd].Kind != KindTCP {
		r.t.Fatalf("socket %d not accelerated", fd)
	}
	return fd
}

// close is close(2) on an fd that may be ours.
func (r *rig) close(fd int) {
	if _, ok := r.tab.Entries[fd]; ok {
		r.e.CloseFD(fd)
	}
	unix.Close(fd)
}

// block repeats call while it answers Wait, as the interposer does, for at most 5 s.
func (r *rig) block(call func() int) int {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := call()
		if res != Wait {
			return res
		}
		if time.Now().After(deadline) {
			r.t.Fatal("call still waiting after 5 s")
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// eventually polls cond for at most 5 s.
func (r *rig) eventually(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func sockaddr(ip [4]byte, port uint16) []byte {
	var sa [unix.SizeofSockaddrInet4]byte
	var n uint32 = unix.SizeofSockaddrInet4
	putInet4(sa[:], &n, ip, port)
	return sa[:]
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
	r.eventually("peer accept", func() bool {
		r.peer.do(func(*stackcore.Stack) { pc = l.Accept() })
		return pc != nil
	})
	return fd, pc
}

func unsafePointer(p *int32) unsafe.Pointer { return unsafe.Pointer(p) }

func timevalBytes(tv *unix.Timeval) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(tv)), unsafe.Sizeof(*tv))
}
