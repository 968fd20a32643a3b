package shim

// FD kinds in the interposer's table. Keep in step with preload/ustack.h.
const (
	KindNone  = 0
	KindTCP   = 1
	KindEpoll = 2
	KindUDP   = 3
)

// FDEntry is what the interposer knows about an fd without calling into Go: whether it is ours,
// and what a thread blocked on it sleeps on.
type FDEntry struct {
	Kind       int32
	RxEfd      int32 // readable while the socket is readable
	TxEfd      int32 // readable while the socket is writable
	ExtraFd    int32 // listener: its kernel shadow; epoll: the wake epoll fd; else -1
	RcvTimeoMs int32
	SndTimeoMs int32
}

// FDTable is the interposer's fd table. Publish makes fd ours, Withdraw gives it back to the
// kernel. The preload package implements it over C memory; tests use MapTable.
type FDTable interface {
	Publish(fd int, e FDEntry)
	Withdraw(fd int)
	SetTimeouts(fd int, rcvMs, sndMs int32) // -1 keeps a value
	SetXSKFd(fd int)
	// XSKWaiters is how many application threads sleep with the AF_XDP fd in their wait set.
	XSKWaiters() int32
}

// MapTable is an in-memory FDTable for tests.
type MapTable struct {
	Entries map[int]FDEntry
	XSKFd   int
}

func NewMapTable() *MapTable { return &MapTable{Entries: map[int]FDEntry{}, XSKFd: -1} }

func (t *MapTable) Publish(fd int, e FDEntry) { t.Entries[fd] = e }
func (t *MapTable) Withdraw(fd int)           { delete(t.Entries, fd) }
func (t *MapTable) SetXSKFd(fd int)           { t.XSKFd = fd }
func (t *MapTable) XSKWaiters() int32         { return 0 }
func (t *MapTable) SetTimeouts(fd int, r, s int32) {
	e := t.Entries[fd]
	if r >= 0 {
		e.RcvTimeoMs = r
	}
	if s >= 0 {
		e.SndTimeoMs = s
	}
	t.Entries[fd] = e
}
