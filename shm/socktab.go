package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Errors returned by ReadSockTable, matched with errors.Is.
var (
	ErrSockMagic   = errors.New("not a ustack socket table")
	ErrSockVersion = errors.New("unsupported socket table layout version")
	ErrSockSize    = errors.New("socket table size inconsistent")
)

// SockRecord is one socket as a socket table holds it (socktab_layout.go).
type SockRecord struct {
	Proto   uint8 // unix.IPPROTO_TCP or IPPROTO_UDP
	State   uint8 // Linux TCP_* numbering; UDP: 1 connected, 7 not
	Flags   uint8 // SockFlag*
	Reason  uint8 // SockReason*, with SockFlagKernel
	LPort   uint16
	RPort   uint16
	LAddr   [16]byte
	RAddr   [16]byte
	RecvQ   uint32 // bytes (listener: connections waiting for accept)
	SendQ   uint32 // bytes (listener: backlog)
	Fd      int32  // -1: none
	Pending uint32 // listener: connections in their handshake
	CC      string
	Written int64  // Unix nanoseconds
	In, Out uint64 // UDP: datagrams; a kernel socket: In is its inode
	// TCPInfo is struct tcp_info in the kernel's layout (TCP connections; nil otherwise).
	TCPInfo []byte
}

// SockTable is the writer's view of a mapped socket table: the stack publishes its sockets there
// for onloadctl, which reads them without stopping or asking the process.
type SockTable struct {
	path  string
	mem   []byte
	slots int
}

// SockTablePath returns the path of the socket table of pid in dir ("" = DefaultStatsDir).
func SockTablePath(dir string, pid int) string {
	if dir == "" {
		dir = DefaultStatsDir
	}
	return filepath.Join(dir, SockFilePrefix+strconv.Itoa(pid))
}

// CreateSockTable creates dir/ustack-socks.<pid> with room for slots sockets and maps it. The file
// is sparse: a slot costs memory once used, and slots are used lowest first.
func CreateSockTable(dir string, slots int) (*SockTable, error) {
	if slots <= 0 || slots > sockMaxSlots {
		return nil, fmt.Errorf("creating socket table: %d slots", slots)
	}
	pid := os.Getpid()
	start, err := ProcStartTime(pid)
	if err != nil {
		return nil, fmt.Errorf("creating socket table: %w", err)
	}
	path := SockTablePath(dir, pid)
	size := sockHeaderSize + slots*sockSlotSize
	f, err := os.CreateTemp(filepath.Dir(path), ".ustack-socks-tmp-*")
	if err != nil {
		return nil, fmt.Errorf("creating socket table: %w", err)
	}
	tmp := f.Name()
	defer f.Close() // the mapping stays valid without the fd
	fail := func(err error) (*SockTable, error) {
		os.Remove(tmp)
		return nil, fmt.Errorf("creating socket table: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if err := f.Truncate(int64(size)); err != nil {
		return fail(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	le := binary.LittleEndian
	le.PutUint32(mem[sockOffVersion:], SockTableVersion)
	le.PutUint32(mem[sockOffHdrSize:], sockHeaderSize)
	le.PutUint64(mem[sockOffPid:], uint64(pid))
	le.PutUint64(mem[sockOffStart:], start)
	le.PutUint32(mem[sockOffSlots:], uint32(slots))
	le.PutUint32(mem[sockOffSlotSize:], sockSlotSize)
	le.PutUint64(mem[sockOffMagic:], SockTableMagic)
	if err := os.Rename(tmp, path); err != nil {
		unix.Munmap(mem)
		return fail(err)
	}
	return &SockTable{path: path, mem: mem, slots: slots}, nil
}

// Slots returns how many sockets the table holds.
func (t *SockTable) Slots() int { return t.slots }

// Path returns the table's file path.
func (t *SockTable) Path() string { return t.path }

func (t *SockTable) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&t.mem[off])) }
func (t *SockTable) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&t.mem[off])) }

// Write publishes r in slot i under the slot's sequence lock.
func (t *SockTable) Write(i int, r *SockRecord) {
	off := sockHeaderSize + i*sockSlotSize
	seq := t.u32(off + slotOffSeq)
	n := atomic.LoadUint32(seq)
	atomic.StoreUint32(seq, n|1)
	s := t.mem[off : off+sockSlotSize]
	le := binary.LittleEndian
	s[slotOffUsed], s[slotOffProto], s[slotOffState], s[slotOffFlags], s[slotOffReason] =
		1, r.Proto, r.State, r.Flags, r.Reason
	le.PutUint16(s[slotOffLPort:], r.LPort)
	le.PutUint16(s[slotOffRPort:], r.RPort)
	copy(s[slotOffLAddr:slotOffLAddr+16], r.LAddr[:])
	copy(s[slotOffRAddr:slotOffRAddr+16], r.RAddr[:])
	le.PutUint32(s[slotOffRecvQ:], r.RecvQ)
	le.PutUint32(s[slotOffSendQ:], r.SendQ)
	le.PutUint32(s[slotOffFd:], uint32(r.Fd))
	le.PutUint32(s[slotOffPending:], r.Pending)
	cc := s[slotOffCC : slotOffCC+slotCCLen]
	clear(cc)
	putString(cc, r.CC)
	le.PutUint64(s[slotOffWritten:], uint64(r.Written))
	le.PutUint64(s[slotOffIn:], r.In)
	le.PutUint64(s[slotOffOut:], r.Out)
	ti := s[slotOffTCPInfo : slotOffTCPInfo+slotTCPInfoSize]
	clear(ti[copy(ti, r.TCPInfo):])
	atomic.StoreUint32(seq, (n|1)+1)
}

// Free marks slot i unused.
func (t *SockTable) Free(i int) {
	off := sockHeaderSize + i*sockSlotSize
	seq := t.u32(off + slotOffSeq)
	n := atomic.LoadUint32(seq)
	atomic.StoreUint32(seq, n|1)
	t.mem[off+slotOffUsed] = 0
	atomic.StoreUint32(seq, (n|1)+1)
}

// Published records a publication: slots at and above highWater have never been used, unlisted
// sockets found no free slot.
func (t *SockTable) Published(highWater, unlisted int, now time.Time) {
	atomic.StoreUint32(t.u32(sockOffHighWater), uint32(highWater))
	atomic.StoreUint32(t.u32(sockOffUnlisted), uint32(unlisted))
	atomic.StoreUint64(t.u64(sockOffPubTime), uint64(now.UnixNano()))
	atomic.AddUint64(t.u64(sockOffPubCount), 1)
}

// CaptureRequest returns the capture onloadctl asks for (0: none) and the ring's file name.
// The name is read only when the id is not the one attached already.
func (t *SockTable) CaptureRequest() uint64 { return atomic.LoadUint64(t.u64(sockOffCapReq)) }

// CaptureName returns the capture ring's file path.
func (t *SockTable) CaptureName() string {
	return filepath.Join(filepath.Dir(t.path), getString(t.mem[sockOffCapName:sockOffCapName+sockCapNameLen]))
}

// StopCapture withdraws capture id's request, unless another capture has replaced it (its reader
// is gone).
func (t *SockTable) StopCapture(id uint64) { atomic.CompareAndSwapUint64(t.u64(sockOffCapReq), id, 0) }

// SetCaptureAttached tells onloadctl which capture the stack writes into (0: none).
func (t *SockTable) SetCaptureAttached(id uint64) { atomic.StoreUint64(t.u64(sockOffCapAck), id) }

// Close unmaps the table; the file stays for onloadctl (it removes those of exited processes).
func (t *SockTable) Close() error {
	if t == nil || t.mem == nil {
		return nil
	}
	err := unix.Munmap(t.mem)
	t.mem = nil
	return err
}

// Remove closes the table and deletes its file.
func (t *SockTable) Remove() error {
	if t == nil {
		return nil
	}
	return errors.Join(t.Close(), os.Remove(t.path))
}

// SockSnapshot is one reading of a socket table.
type SockSnapshot struct {
	Path       string
	Pid        int
	StartTime  uint64
	Published  time.Time // the last publication
	Count      uint64    // publications so far
	Unlisted   int       // sockets that found no slot at the last publication
	Sockets    []SockRecord
	Alive      bool
	Gone       bool
	CaptureReq uint64
}

// ReadSockTable maps the table at path read-only and copies its sockets, each one consistent
// (a slot being written is read again).
func ReadSockTable(path string) (*SockSnapshot, error) {
	mem, err := mapFile(path, unix.PROT_READ, sockHeaderSize, 1<<32, ErrSockSize)
	if err != nil {
		return nil, fmt.Errorf("reading socket table: %w", err)
	}
	defer unix.Munmap(mem)
	snap, err := parseSockTable(mem)
	if err != nil {
		return nil, fmt.Errorf("reading socket table %s: %w", path, err)
	}
	snap.Path = path
	snap.Alive, snap.Gone = procState(snap.Pid, snap.StartTime)
	return snap, nil
}

// mapFile maps the whole file at path, shared; a file smaller than min or larger than max bytes
// is refused with errSize.
func mapFile(path string, prot int, min, max int64, errSize error) ([]byte, error) {
	flag := os.O_RDONLY
	if prot&unix.PROT_WRITE != 0 {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < min || st.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes: %w", path, st.Size(), errSize)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return mem, nil
}

func parseSockTable(mem []byte) (*SockSnapshot, error) {
	le := binary.LittleEndian
	if len(mem) < sockHeaderSize {
		return nil, ErrSockSize
	}
	if le.Uint64(mem[sockOffMagic:]) != SockTableMagic {
		return nil, ErrSockMagic
	}
	if v := le.Uint32(mem[sockOffVersion:]); v != SockTableVersion {
		return nil, fmt.Errorf("version %d: %w", v, ErrSockVersion)
	}
	slots := int(le.Uint32(mem[sockOffSlots:]))
	if le.Uint32(mem[sockOffHdrSize:]) != sockHeaderSize || le.Uint32(mem[sockOffSlotSize:]) != sockSlotSize ||
		slots > sockMaxSlots || len(mem) < sockHeaderSize+slots*sockSlotSize {
		return nil, fmt.Errorf("%d slots in %d bytes: %w", slots, len(mem), ErrSockSize)
	}
	load64 := func(off int) uint64 { return atomic.LoadUint64((*uint64)(unsafe.Pointer(&mem[off]))) }
	load32 := func(off int) uint32 { return atomic.LoadUint32((*uint32)(unsafe.Pointer(&mem[off]))) }
	snap := &SockSnapshot{
		Pid:        int(le.Uint64(mem[sockOffPid:])),
		StartTime:  le.Uint64(mem[sockOffStart:]),
		Published:  time.Unix(0, int64(load64(sockOffPubTime))),
		Count:      load64(sockOffPubCount),
		Unlisted:   int(load32(sockOffUnlisted)),
		CaptureReq: load64(sockOffCapReq),
	}
	hw := min(int(load32(sockOffHighWater)), slots)
	var buf [sockSlotSize]byte
	for i := range hw {
		off := sockHeaderSize + i*sockSlotSize
		ok := false
		// a slot is rewritten at most every few milliseconds: a few tries always find it still
		for try := 0; try < 100 && !ok; try++ {
			s1 := load32(off + slotOffSeq)
			if s1&1 != 0 {
				time.Sleep(10 * time.Microsecond)
				continue
			}
			copy(buf[:], mem[off:off+sockSlotSize])
			ok = load32(off+slotOffSeq) == s1
		}
		if !ok || buf[slotOffUsed] == 0 {
			continue
		}
		snap.Sockets = append(snap.Sockets, decodeSlot(buf[:]))
	}
	return snap, nil
}

func decodeSlot(s []byte) SockRecord {
	le := binary.LittleEndian
	r := SockRecord{
		Proto: s[slotOffProto], State: s[slotOffState], Flags: s[slotOffFlags], Reason: s[slotOffReason],
		LPort:   le.Uint16(s[slotOffLPort:]),
		RPort:   le.Uint16(s[slotOffRPort:]),
		RecvQ:   le.Uint32(s[slotOffRecvQ:]),
		SendQ:   le.Uint32(s[slotOffSendQ:]),
		Fd:      int32(le.Uint32(s[slotOffFd:])),
		Pending: le.Uint32(s[slotOffPending:]),
		CC:      getString(s[slotOffCC : slotOffCC+slotCCLen]),
		Written: int64(le.Uint64(s[slotOffWritten:])),
		In:      le.Uint64(s[slotOffIn:]),
		Out:     le.Uint64(s[slotOffOut:]),
	}
	copy(r.LAddr[:], s[slotOffLAddr:])
	copy(r.RAddr[:], s[slotOffRAddr:])
	if r.Proto == unix.IPPROTO_TCP && r.Flags&SockFlagListen == 0 {
		r.TCPInfo = append([]byte(nil), s[slotOffTCPInfo:slotOffTCPInfo+slotTCPInfoSize]...)
	}
	return r
}

// ListSockTables returns the paths of the socket tables in dir ("" = DefaultStatsDir).
func ListSockTables(dir string) ([]string, error) { return listByPid(dir, SockFilePrefix) }
