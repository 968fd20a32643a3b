package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A capture ring carries copies of the frames a stack receives and sends to onloadctl capture.
// onloadctl creates it (CreateCapture) and names it in the process's socket table; the stack maps
// it (OpenCapture) at its next batch and writes every frame that matches the ring's filter, or
// counts a drop when the ring is full. One writer (the stack, under its lock), one reader.
//
//	offset size  field
//	0      8     magic "USTKCAPT" (CaptureMagic)
//	8      4     layout version (CaptureVersion)
//	12     4     header size (capHeaderSize)
//	16     8     data size in bytes, a power of two
//	24     4     snap length: bytes kept of each frame
//	28     1     filter: IP protocol, 0 = any
//	29     1     filter: 1 if a host is given
//	30     2     filter: port (either end), 0 = any
//	32     16    filter: host address (either end; IPv4 in the first 4 bytes)
//	64     8     head: bytes written so far (the stack)
//	72     8     frames dropped: the ring was full (the stack)
//	80     8     frames written (the stack)
//	128    8     tail: bytes read so far (onloadctl)
//	136    8     the reader's pid (onloadctl): a stack whose reader is gone stops writing
//	256          data: records, each 8-aligned and never split by the end of the data
//
// A record: caplen u32 (capWrap: the rest of the data is skipped), frame length u32, time in Unix
// nanoseconds u64, direction u32 (0 received, 1 sent), reserved u32, then caplen bytes.
const (
	// CaptureMagic is "USTKCAPT" read as a little-endian uint64.
	CaptureMagic uint64 = 0x54504143_4b545355
	// CaptureVersion is the layout version this package writes and reads.
	CaptureVersion uint32 = 2
	// CaptureFilePrefix is the file name of a capture ring without the pid and id.
	CaptureFilePrefix = "ustack-capture."

	capOffMagic    = 0
	capOffVersion  = 8
	capOffHdrSize  = 12
	capOffDataSize = 16
	capOffSnap     = 24
	capOffProto    = 28
	capOffHasHost  = 29
	capOffPort     = 30
	capOffHost     = 32
	capOffHead     = 64
	capOffDrops    = 72
	capOffFrames   = 80
	capOffTail     = 128
	capOffReader   = 136
	capHeaderSize  = 256
	capRecHeader   = 24
	capWrap        = 0xffffffff
)

var errCaptureSize = errors.New("capture ring size inconsistent")

// CaptureFilter selects frames: all of the fields given must match; a frame that is neither
// IPv4 nor IPv6 matches only the empty filter.
type CaptureFilter struct {
	Proto   uint8 // unix.IPPROTO_TCP, IPPROTO_UDP; 0 = any
	HasHost bool
	Host    [16]byte // source or destination: IPv6, or IPv4 mapped (::ffff:a.b.c.d)
	Port    uint16   // source or destination port, 0 = any
}

func (f *CaptureFilter) empty() bool { return f.Proto == 0 && !f.HasHost && f.Port == 0 }

// match reports whether frame (Ethernet) passes the filter.
func (f *CaptureFilter) match(frame []byte) bool {
	if f.empty() {
		return true
	}
	var proto uint8
	var l4 int
	var later bool // a later fragment: no ports
	switch {
	case len(frame) >= 34 && frame[12] == 0x08 && frame[13] == 0x00:
		proto = frame[23]
		if f.HasHost && !isMapped(f.Host, frame[26:30]) && !isMapped(f.Host, frame[30:34]) {
			return false
		}
		l4 = 14 + int(frame[14]&0xf)*4
		later = binary.BigEndian.Uint16(frame[20:22])&0x1fff != 0
	case len(frame) >= 54 && frame[12] == 0x86 && frame[13] == 0xdd:
		proto = frame[20] // the first next header: the stack sends no extension headers
		if f.HasHost && [16]byte(frame[22:38]) != f.Host && [16]byte(frame[38:54]) != f.Host {
			return false
		}
		l4 = 54
	default:
		return false
	}
	if f.Proto != 0 && proto != f.Proto {
		return false
	}
	if f.Port != 0 {
		if (proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_UDP) || later || len(frame) < l4+4 {
			return false
		}
		sport, dport := binary.BigEndian.Uint16(frame[l4:]), binary.BigEndian.Uint16(frame[l4+2:])
		if sport != f.Port && dport != f.Port {
			return false
		}
	}
	return true
}

type captureRing struct {
	mem  []byte
	data []byte
	mask uint64
}

func (c *captureRing) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&c.mem[off])) }

// CaptureWriter is the stack's end of a capture ring.
type CaptureWriter struct {
	captureRing
	path   string
	snap   int
	filter CaptureFilter
	head   uint64
	tail   uint64 // the reader's, as last seen
	drops  uint64
	frames uint64
}

// OpenCapture maps the capture ring at path for writing.
func OpenCapture(path string) (*CaptureWriter, error) {
	mem, err := mapFile(path, unix.PROT_READ|unix.PROT_WRITE, capHeaderSize, 1<<32, errCaptureSize)
	if err != nil {
		return nil, fmt.Errorf("opening capture: %w", err)
	}
	r, err := parseCapture(mem)
	if err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("opening capture %s: %w", path, err)
	}
	le := binary.LittleEndian
	w := &CaptureWriter{captureRing: r, path: path, snap: int(le.Uint32(mem[capOffSnap:]))}
	if w.snap < 1 || w.snap > len(r.data)/2 {
		unix.Munmap(mem)
		return nil, fmt.Errorf("opening capture %s: snap length %d for a ring of %d bytes", path, w.snap, len(r.data))
	}
	w.filter.Proto = mem[capOffProto]
	w.filter.HasHost = mem[capOffHasHost] != 0
	w.filter.Port = le.Uint16(mem[capOffPort:])
	copy(w.filter.Host[:], mem[capOffHost:])
	w.head = atomic.LoadUint64(w.u64(capOffHead))
	return w, nil
}

func parseCapture(mem []byte) (captureRing, error) {
	le := binary.LittleEndian
	if len(mem) < capHeaderSize || le.Uint64(mem[capOffMagic:]) != CaptureMagic {
		return captureRing{}, errors.New("not a ustack capture ring")
	}
	if v := le.Uint32(mem[capOffVersion:]); v != CaptureVersion {
		return captureRing{}, fmt.Errorf("capture ring version %d", v)
	}
	size := le.Uint64(mem[capOffDataSize:])
	if le.Uint32(mem[capOffHdrSize:]) != capHeaderSize || size < 4096 || size&(size-1) != 0 ||
		uint64(len(mem)) < capHeaderSize+size {
		return captureRing{}, errCaptureSize
	}
	return captureRing{mem: mem, data: mem[capHeaderSize : capHeaderSize+size], mask: size - 1}, nil
}

// Add copies frame into the ring if it passes the filter; tx says the stack sent it. A full ring
// counts a drop.
func (w *CaptureWriter) Add(frame []byte, tsNanos int64, tx bool) {
	if !w.filter.match(frame) {
		return
	}
	caplen := min(len(frame), w.snap)
	need := uint64(capRecHeader+caplen+7) &^ 7
	size := uint64(len(w.data))
	pos := w.head & w.mask
	skip := uint64(0)
	if pos+need > size {
		skip = size - pos // the record goes at the start; the end is skipped
	}
	if w.head+skip+need-w.tail > size {
		w.tail = atomic.LoadUint64(w.u64(capOffTail))
		if w.head+skip+need-w.tail > size {
			w.drops++
			atomic.StoreUint64(w.u64(capOffDrops), w.drops)
			return
		}
	}
	le := binary.LittleEndian
	if skip > 0 {
		le.PutUint32(w.data[pos:], capWrap)
		w.head += skip
		pos = 0
	}
	rec := w.data[pos : pos+need]
	le.PutUint32(rec[0:], uint32(caplen))
	le.PutUint32(rec[4:], uint32(len(frame)))
	le.PutUint64(rec[8:], uint64(tsNanos))
	var dir uint32
	if tx {
		dir = 1
	}
	le.PutUint32(rec[16:], dir)
	copy(rec[capRecHeader:], frame[:caplen])
	w.head += need
	w.frames++
	atomic.StoreUint64(w.u64(capOffFrames), w.frames)
	atomic.StoreUint64(w.u64(capOffHead), w.head) // publishes the record
}

// ReaderGone reports whether the process that reads the ring has exited (killed before it could
// say stop): nothing will read what is written, nor remove the file.
func (w *CaptureWriter) ReaderGone() bool {
	pid := int(atomic.LoadUint64(w.u64(capOffReader)))
	return pid > 0 && unix.Kill(pid, 0) == unix.ESRCH
}

// Path returns the ring's file path.
func (w *CaptureWriter) Path() string { return w.path }

// Close unmaps the ring.
func (w *CaptureWriter) Close() error {
	if w == nil || w.mem == nil {
		return nil
	}
	err := unix.Munmap(w.mem)
	w.mem, w.data = nil, nil
	return err
}

// CaptureReader is onloadctl's end of a capture ring.
type CaptureReader struct {
	captureRing
	path string
	tail uint64
}

// CreateCapture creates a capture ring of size data bytes (a power of two) at path, owned by
// uid/gid (the process that will write it), keeping snap bytes of each frame that passes f.
func CreateCapture(path string, size, snap int, f CaptureFilter, uid, gid int) (*CaptureReader, error) {
	if size < 4096 || size&(size-1) != 0 {
		return nil, fmt.Errorf("creating capture: size %d is not a power of two >= 4096", size)
	}
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating capture: %w", err)
	}
	defer file.Close()
	fail := func(err error) (*CaptureReader, error) {
		os.Remove(path)
		return nil, fmt.Errorf("creating capture: %w", err)
	}
	if err := file.Chown(uid, gid); err != nil {
		return fail(err)
	}
	if err := file.Truncate(int64(capHeaderSize + size)); err != nil {
		return fail(err)
	}
	mem, err := unix.Mmap(int(file.Fd()), 0, capHeaderSize+size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	le := binary.LittleEndian
	le.PutUint32(mem[capOffVersion:], CaptureVersion)
	le.PutUint32(mem[capOffHdrSize:], capHeaderSize)
	le.PutUint64(mem[capOffDataSize:], uint64(size))
	le.PutUint64(mem[capOffReader:], uint64(os.Getpid()))
	le.PutUint32(mem[capOffSnap:], uint32(snap))
	mem[capOffProto] = f.Proto
	if f.HasHost {
		mem[capOffHasHost] = 1
	}
	le.PutUint16(mem[capOffPort:], f.Port)
	copy(mem[capOffHost:], f.Host[:])
	le.PutUint64(mem[capOffMagic:], CaptureMagic)
	return &CaptureReader{captureRing: captureRing{mem: mem, data: mem[capHeaderSize:], mask: uint64(size - 1)},
		path: path}, nil
}

// CaptureFrame is one frame read from a capture ring; Data is valid until the next Drain.
type CaptureFrame struct {
	TimeNanos int64
	Sent      bool
	Len       int // the frame's length on the wire
	Data      []byte
}

// Drain calls fn for every record written since the last call, then frees their room.
func (r *CaptureReader) Drain(fn func(*CaptureFrame)) int {
	head := atomic.LoadUint64(r.u64(capOffHead))
	le := binary.LittleEndian
	n := 0
	var f CaptureFrame
	for r.tail < head {
		pos := r.tail & r.mask
		caplen := le.Uint32(r.data[pos:])
		if caplen == capWrap {
			r.tail += uint64(len(r.data)) - pos
			continue
		}
		f.Len = int(le.Uint32(r.data[pos+4:]))
		f.TimeNanos = int64(le.Uint64(r.data[pos+8:]))
		f.Sent = le.Uint32(r.data[pos+16:]) == 1
		f.Data = r.data[pos+capRecHeader : pos+capRecHeader+uint64(caplen)]
		fn(&f)
		n++
		r.tail += uint64(capRecHeader+int(caplen)+7) &^ 7
	}
	atomic.StoreUint64(r.u64(capOffTail), r.tail)
	return n
}

// Counts returns the frames the writer wrote and dropped so far.
func (r *CaptureReader) Counts() (frames, drops uint64) {
	return atomic.LoadUint64(r.u64(capOffFrames)), atomic.LoadUint64(r.u64(capOffDrops))
}

// Remove unmaps the ring and deletes its file (the writer's mapping stays valid until it lets go).
func (r *CaptureReader) Remove() error {
	if r == nil || r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem, r.data = nil, nil
	return errors.Join(err, os.Remove(r.path))
}

// SockTableControl is onloadctl's hold on a process's socket table header, to ask for a capture.
type SockTableControl struct{ mem []byte }

// OpenSockTableControl maps the socket table at path for writing its capture request.
func OpenSockTableControl(path string) (*SockTableControl, error) {
	mem, err := mapFile(path, unix.PROT_READ|unix.PROT_WRITE, sockHeaderSize, 1<<32, ErrSockSize)
	if err != nil {
		return nil, fmt.Errorf("opening socket table: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint64(mem[sockOffMagic:]) != SockTableMagic || le.Uint32(mem[sockOffVersion:]) != SockTableVersion ||
		len(mem) < sockHeaderSize {
		unix.Munmap(mem)
		return nil, fmt.Errorf("opening socket table %s: %w", path, ErrSockMagic)
	}
	return &SockTableControl{mem: mem}, nil
}

// RequestCapture asks the stack to write into the ring called name (in the table's directory)
// under id, in place of any capture asked for before.
func (c *SockTableControl) RequestCapture(id uint64, name string) {
	field := c.mem[sockOffCapName : sockOffCapName+sockCapNameLen]
	clear(field)
	putString(field, name)
	atomic.StoreUint64(c.req(), id)
}

// StopCapture asks the stack to stop capture id, unless another capture has replaced it since.
func (c *SockTableControl) StopCapture(id uint64) { atomic.CompareAndSwapUint64(c.req(), id, 0) }

// Requested returns the capture asked for now (0: none).
func (c *SockTableControl) Requested() uint64 { return atomic.LoadUint64(c.req()) }

func (c *SockTableControl) req() *uint64 { return (*uint64)(unsafe.Pointer(&c.mem[sockOffCapReq])) }

// Attached returns the capture the stack writes into now (0: none).
func (c *SockTableControl) Attached() uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&c.mem[sockOffCapAck])))
}

// Close unmaps the header.
func (c *SockTableControl) Close() error { return unix.Munmap(c.mem) }

// isMapped reports whether h is the IPv4 address a4, mapped.
func isMapped(h [16]byte, a4 []byte) bool {
	return h == [16]byte{10: 0xff, 11: 0xff, 12: a4[0], 13: a4[1], 14: a4[2], 15: a4[3]}
}
