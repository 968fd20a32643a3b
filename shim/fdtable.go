package shim

import "sync"

// FD kinds in the interposer's table. Keep in step with preload/ustack.h.
const (
	KindNone  = 0
	KindTCP   = 1
	KindEpoll = 2
	KindUDP   = 3
)

// FDEntry is what the interposer knows about an fd without calling into Go: whether it is ours,
// and the kernel fd a thread blocked on it watches besides its own wake-up object.
type FDEntry struct {
	Kind       int32
	ExtraFd    int32 // listener, UDP: its kernel shadow (kernel connections, datagrams); epoll: the wake epoll fd; else -1
	RcvTimeoMs int32
	SndTimeoMs int32
}

// FDTable is the interposer's fd table. Publish makes fd ours, Withdraw gives it back to the
// kernel. The preload package implements it over C memory; tests use MapTable.
//
// Wake-ups need no kernel object per socket: a thread that must wait registers itself as a
// waiter on the fd in the table and sleeps on a wake-up object of its own (preload/wait.c);
// Wake, called by the stack whenever the socket's readiness may have changed, wakes the
// registered waiters of fd that can now go on (rx: readable, tx: writable).
type FDTable interface {
	Publish(fd int, e FDEntry)
	Withdraw(fd int)
	SetTimeouts(fd int, rcvMs, sndMs int32) // -1 keeps a value
	SetXSKFd(fd int)
	// SetEpollReady tells the interposer whether epoll fd fd has members to report: while it
	// has none, a wait there may go straight to sleep (the set's eventfd wakes it).
	SetEpollReady(fd int, ready bool)
	// XSKWaiters is how many application threads sleep with the AF_XDP fd in their wait set.
	XSKWaiters() int32
	Wake(fd int, rx, tx bool)
	// SetOwner tells fork children where to ask for an inherited socket (forkserve.go).
	SetOwner(name string, pid int)
	// ForkGen counts this process's forks: a socket made before the last one is shared with a
	// child, which may still hold it.
	ForkGen() uint32
	// ChildrenAlive reports whether a fork child, or one of its own, may still run: if none
	// does, no other process holds a socket of ours.
	ChildrenAlive() bool
	// TakeShadowSeen reports, and forgets, whether a wait of the interposer saw fd's kernel
	// shadow readable since the last call.
	TakeShadowSeen(fd int) bool
	// TxKick is where the stack leaves TX kicks to the interposer (struct ustack_txkick), or
	// nil: the stack then kicks itself whenever it queues frames.
	TxKick() *TxKick
}

// TxKick is the front's struct ustack_txkick (preload/ustack.h): the stack queues frames and
// sets Pending; the interposer kicks after the application's call, or at the end of the
// thread's event batch while DeferOK says the poller will kick within pollerDeferTick.
type TxKick struct {
	Pending int32
	DeferOK int32
	Batched uint64 // calls in a batch that had a kick to make
	Refused uint64 // ... that kicked at once: DeferOK was 0
	Kicks   uint64 // kicks made by the interposer
	Busy    uint64 // ... answered EAGAIN or EBUSY
}

// MapTable is an in-memory FDTable for tests; it counts the wake-ups per fd.
type MapTable struct {
	mu      sync.Mutex
	entries map[int]FDEntry
	wakes   map[int]int
}

func NewMapTable() *MapTable { return &MapTable{entries: map[int]FDEntry{}, wakes: map[int]int{}} }

func (t *MapTable) Publish(fd int, e FDEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries[fd] = e
}

func (t *MapTable) Withdraw(fd int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, fd)
}

func (t *MapTable) SetXSKFd(int)            {}
func (t *MapTable) SetEpollReady(int, bool) {}
func (t *MapTable) SetOwner(string, int)    {}
func (t *MapTable) ChildrenAlive() bool     { return t.ForkGen() != 0 }
func (t *MapTable) TxKick() *TxKick         { return nil } // the stack kicks itself

// TakeShadowSeen always says yes: tests look at the shadows every time.
func (t *MapTable) TakeShadowSeen(int) bool { return true }

// ForkGen is 0: the tests' process does not fork.
func (t *MapTable) ForkGen() uint32   { return 0 }
func (t *MapTable) XSKWaiters() int32 { return 0 }

func (t *MapTable) Wake(fd int, rx, tx bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.wakes[fd]++
}

func (t *MapTable) SetTimeouts(fd int, r, s int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[fd]
	if r >= 0 {
		e.RcvTimeoMs = r
	}
	if s >= 0 {
		e.SndTimeoMs = s
	}
	t.entries[fd] = e
}

// Entry is fd's entry, and whether fd is ours.
func (t *MapTable) Entry(fd int) (FDEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[fd]
	return e, ok
}

// Wakes is how many wake-ups fd has had.
func (t *MapTable) Wakes(fd int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wakes[fd]
}
