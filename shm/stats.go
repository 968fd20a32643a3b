package shm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Errors returned by ReadStats, matched with errors.Is.
var (
	ErrStatsMagic   = errors.New("not a ustack stats segment")
	ErrStatsVersion = errors.New("unsupported stats layout version")
	ErrStatsSize    = errors.New("stats segment size inconsistent")
)

// StatsInfo describes the process's link; CreateStats adds the pid, the
// process start time and the command line itself.
type StatsInfo struct {
	Iface string // accelerated interface, e.g. "veth0"
	Mode  string // link mode, e.g. "native/copy"
}

// StatsSegment is the writer's view of a mapped stats segment.
type StatsSegment struct {
	path   string
	mem    []byte
	values []uint64
}

// StatsPath returns the path of the segment of pid in dir ("" = DefaultStatsDir).
func StatsPath(dir string, pid int) string {
	if dir == "" {
		dir = DefaultStatsDir
	}
	return filepath.Join(dir, StatsFilePrefix+strconv.Itoa(pid))
}

// CreateStats creates dir/ustack-stats.<pid> (dir "" = /dev/shm) with one
// zeroed counter per name and maps it read-write. An existing file of the
// same name (left by an earlier process with this pid) is replaced.
func CreateStats(dir string, names []string, info StatsInfo) (*StatsSegment, error) {
	for _, n := range names {
		if n == "" || len(n) >= statsNameSlot || strings.IndexByte(n, 0) >= 0 {
			return nil, fmt.Errorf("creating stats segment: bad counter name %q", n)
		}
	}
	pid := os.Getpid()
	start, err := ProcStartTime(pid)
	if err != nil {
		return nil, fmt.Errorf("creating stats segment: %w", err)
	}
	path := StatsPath(dir, pid)
	namesOff, valuesOff, total := statsLayout(len(names))

	f, err := os.CreateTemp(filepath.Dir(path), ".ustack-stats-tmp-*")
	if err != nil {
		return nil, fmt.Errorf("creating stats segment: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) (*StatsSegment, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("creating stats segment: %w", err)
	}
	// a process's counters and command line are its user's (and root's) to read, as its
	// /proc/PID/io is
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if err := f.Truncate(int64(total)); err != nil {
		return fail(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, total, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	le := binary.LittleEndian
	le.PutUint32(mem[statsOffVersion:], StatsVersion)
	le.PutUint32(mem[statsOffHeaderSize:], statsHeaderSize)
	le.PutUint64(mem[statsOffPid:], uint64(pid))
	le.PutUint64(mem[statsOffStartTime:], start)
	le.PutUint32(mem[statsOffCount:], uint32(len(names)))
	le.PutUint32(mem[statsOffNameSlot:], statsNameSlot)
	le.PutUint32(mem[statsOffNamesOff:], uint32(namesOff))
	le.PutUint32(mem[statsOffValuesOff:], uint32(valuesOff))
	le.PutUint64(mem[statsOffTotalSize:], uint64(total))
	le.PutUint64(mem[statsOffCreated:], uint64(time.Now().UnixNano()))
	putString(mem[statsOffIface:statsOffIface+statsIfaceLen], info.Iface)
	putString(mem[statsOffMode:statsOffMode+statsModeLen], info.Mode)
	putString(mem[statsOffCmdline:statsOffCmdline+statsCmdlineLen], selfCmdline())
	for i, n := range names {
		copy(mem[namesOff+i*statsNameSlot:], n)
	}
	le.PutUint64(mem[statsOffMagic:], StatsMagic)
	if err := os.Rename(tmp, path); err != nil {
		unix.Munmap(mem)
		return fail(err)
	}
	f.Close() // the mapping stays valid without the fd
	s := &StatsSegment{path: path, mem: mem}
	if len(names) > 0 {
		s.values = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[valuesOff])), len(names))
	} else {
		s.values = []uint64{}
	}
	return s, nil
}

// putString copies s into dst, truncated so that at least one NUL remains.
func putString(dst []byte, s string) {
	if len(s) > len(dst)-1 {
		s = s[:len(dst)-1]
	}
	copy(dst, s)
}

// SetMode records the link mode once it is known (the segment exists before the link opens, so
// the link can count into it from the start). Readers may see it appear; nothing else changes.
func (s *StatsSegment) SetMode(mode string) {
	field := s.mem[statsOffMode : statsOffMode+statsModeLen]
	clear(field)
	putString(field, mode)
}

// Path returns the segment's file path.
func (s *StatsSegment) Path() string { return s.path }

// Values returns the counters, in the order of the names given to
// CreateStats. The slice lives in the shared mapping: update it with
// sync/atomic, and not after Close.
func (s *StatsSegment) Values() []uint64 { return s.values }

// Close unmaps the segment and leaves the file for onloadctl, which removes
// segments of processes that have exited. Safe on nil and twice.
func (s *StatsSegment) Close() error {
	if s == nil || s.mem == nil {
		return nil
	}
	err := unix.Munmap(s.mem)
	s.mem, s.values = nil, nil
	if err != nil {
		return fmt.Errorf("unmapping stats segment: %w", err)
	}
	return nil
}

// Remove closes the segment and deletes its file.
func (s *StatsSegment) Remove() error {
	if s == nil {
		return nil
	}
	return errors.Join(s.Close(), os.Remove(s.path))
}

// StatsSnapshot is one reading of a stats segment.
type StatsSnapshot struct {
	Path      string
	Pid       int
	StartTime uint64 // field 22 of /proc/<pid>/stat when the segment was created
	Created   time.Time
	Cmdline   string
	Iface     string
	Mode      string
	Names     []string
	Values    []uint64
	// Alive: a process with Pid exists, has StartTime, and is not a zombie.
	Alive bool
	// Gone: no process with Pid and StartTime exists any more (not even a
	// zombie waiting to be reaped); the segment can be removed.
	Gone bool
}

// Get returns the value of the counter called name.
func (s *StatsSnapshot) Get(name string) (uint64, bool) {
	for i, n := range s.Names {
		if n == name {
			return s.Values[i], true
		}
	}
	return 0, false
}

// ReadStats maps the segment at path read-only, validates magic, version and
// sizes, and copies the counters with atomic loads.
func ReadStats(path string) (*StatsSnapshot, error) {
	mem, err := mapFile(path, unix.PROT_READ, statsHeaderSize, 1<<30, ErrStatsSize)
	if err != nil {
		return nil, fmt.Errorf("reading stats: %w", err)
	}
	defer unix.Munmap(mem)
	snap, err := parseStats(mem)
	if err != nil {
		return nil, fmt.Errorf("reading stats %s: %w", path, err)
	}
	snap.Path = path
	snap.Alive, snap.Gone = procState(snap.Pid, snap.StartTime)
	if snap.Alive {
		// what it calls itself now: a program renames itself after its stack started
		// (nginx's workers take the listener, then say "worker process")
		if c := cmdlineOf(snap.Pid); c != "" {
			snap.Cmdline = c
		}
	}
	return snap, nil
}

func parseStats(mem []byte) (*StatsSnapshot, error) {
	le := binary.LittleEndian
	if le.Uint64(mem[statsOffMagic:]) != StatsMagic {
		return nil, ErrStatsMagic
	}
	if v := le.Uint32(mem[statsOffVersion:]); v != StatsVersion {
		return nil, fmt.Errorf("version %d: %w", v, ErrStatsVersion)
	}
	n := int(le.Uint32(mem[statsOffCount:]))
	if le.Uint32(mem[statsOffHeaderSize:]) != statsHeaderSize ||
		le.Uint32(mem[statsOffNameSlot:]) != statsNameSlot || n > statsMaxCounters {
		return nil, fmt.Errorf("header: %w", ErrStatsSize)
	}
	namesOff, valuesOff, total := statsLayout(n)
	if int(le.Uint32(mem[statsOffNamesOff:])) != namesOff ||
		int(le.Uint32(mem[statsOffValuesOff:])) != valuesOff ||
		le.Uint64(mem[statsOffTotalSize:]) != uint64(total) || len(mem) < total {
		return nil, fmt.Errorf("%d counters in %d bytes: %w", n, len(mem), ErrStatsSize)
	}
	s := &StatsSnapshot{
		Pid:       int(le.Uint64(mem[statsOffPid:])),
		StartTime: le.Uint64(mem[statsOffStartTime:]),
		Created:   time.Unix(0, int64(le.Uint64(mem[statsOffCreated:]))),
		Iface:     getString(mem[statsOffIface : statsOffIface+statsIfaceLen]),
		Mode:      getString(mem[statsOffMode : statsOffMode+statsModeLen]),
		Cmdline:   getString(mem[statsOffCmdline : statsOffCmdline+statsCmdlineLen]),
		Names:     make([]string, n),
		Values:    make([]uint64, n),
	}
	for i := range n {
		s.Names[i] = getString(mem[namesOff+i*statsNameSlot : namesOff+(i+1)*statsNameSlot])
		s.Values[i] = atomic.LoadUint64((*uint64)(unsafe.Pointer(&mem[valuesOff+8*i])))
	}
	return s, nil
}

func getString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// ListStats returns the paths of the stats segments in dir ("" =
// DefaultStatsDir), sorted by pid.
func ListStats(dir string) ([]string, error) { return listByPid(dir, StatsFilePrefix) }

// listByPid returns the paths of the files prefix<pid> in dir ("" = DefaultStatsDir), sorted by
// pid.
func listByPid(dir, prefix string) ([]string, error) {
	if dir == "" {
		dir = DefaultStatsDir
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s*: %w", prefix, err)
	}
	type seg struct {
		pid  int
		path string
	}
	var segs []seg
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || !e.Type().IsRegular() {
			continue
		}
		pid, err := strconv.Atoi(name[len(prefix):])
		if err != nil || pid <= 0 {
			continue
		}
		segs = append(segs, seg{pid, filepath.Join(dir, name)})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].pid < segs[j].pid })
	paths := make([]string, len(segs))
	for i, s := range segs {
		paths[i] = s.path
	}
	return paths, nil
}

// ProcStartTime returns field 22 of /proc/<pid>/stat: the process start time
// in clock ticks after boot.
func ProcStartTime(pid int) (uint64, error) {
	fields, err := procStatFields(pid)
	if err != nil {
		return 0, err
	}
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
	}
	return v, nil
}

// procStatFields returns the fields of /proc/<pid>/stat after the command
// name (which may hold spaces and parentheses), starting with the state.
func procStatFields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, fmt.Errorf("reading process stat: %w", err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parsing /proc/%d/stat: no command name", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// procState reports whether the process pid with the given start time is
// alive (exists, not a zombie) and whether it is gone altogether.
func procState(pid int, start uint64) (alive, gone bool) {
	if pid <= 0 {
		return false, true
	}
	fields, err := procStatFields(pid)
	if err != nil || len(fields) < 20 {
		return false, errors.Is(err, os.ErrNotExist)
	}
	if fields[19] != strconv.FormatUint(start, 10) {
		return false, true // the pid was reused
	}
	if fields[0] == "Z" || fields[0] == "X" {
		return false, false
	}
	return true, false
}

func selfCmdline() string { return readCmdline("/proc/self/cmdline") }

func cmdlineOf(pid int) string { return readCmdline(fmt.Sprintf("/proc/%d/cmdline", pid)) }

func readCmdline(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	b = bytes.TrimRight(b, "\x00")
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// StatNames returns the `stat` tags (the field name where there is none) of
// the uint64 fields of the structs pointed to by ptrs, in field order, struct after struct: the names to give
// CreateStats for counters bound with BindStats.
func StatNames(ptrs ...any) []string {
	descs := StatDescs(ptrs...)
	names := make([]string, len(descs))
	for i, d := range descs {
		names[i] = d.Name
	}
	return names
}

// BindStats places a struct made only of uint64 fields over the front of
// values (typically StatsSegment.Values()) and returns it with the rest of
// values. It panics if T has other fields or values is too short.
func BindStats[T any](values []uint64) (*T, []uint64) {
	var zero T
	t := reflect.TypeOf(zero)
	if t.Kind() != reflect.Struct {
		panic("shm.BindStats: not a struct: " + t.String())
	}
	for i := range t.NumField() {
		if t.Field(i).Type.Kind() != reflect.Uint64 {
			panic("shm.BindStats: field " + t.Field(i).Name + " is not uint64")
		}
	}
	n := int(t.Size() / 8)
	if len(values) < n || t.Size()%8 != 0 || n != t.NumField() {
		panic("shm.BindStats: " + t.String() + " does not fit")
	}
	if n == 0 {
		return new(T), values
	}
	return (*T)(unsafe.Pointer(&values[0])), values[n:]
}
