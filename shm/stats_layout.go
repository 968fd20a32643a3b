package shm

// Byte layout of a stats segment, version 1. All integers are little-endian
// (native on every platform ustack runs on) and naturally aligned.
//
//	offset size  field
//	0      8     magic "USTKSTAT" (StatsMagic)
//	8      4     layout version (StatsVersion)
//	12     4     header size (statsHeaderSize)
//	16     8     pid
//	24     8     process start time: field 22 of /proc/<pid>/stat (clock ticks since boot)
//	32     4     counter count n
//	36     4     name slot size (statsNameSlot)
//	40     4     offset of the names table
//	44     4     offset of the values (multiple of 64)
//	48     8     total size in bytes
//	56     8     creation time, Unix nanoseconds
//	64     32    interface name, NUL-padded
//	96     32    link mode, NUL-padded (e.g. "native/copy")
//	128    256   command line, arguments joined by spaces, truncated, NUL-padded
//	384          names table: n slots of statsNameSlot bytes, NUL-padded
//	values       n uint64 counters
//
// A segment is written under a temporary name and renamed into place, so a
// reader never sees a half-written header.
const (
	// StatsMagic is "USTKSTAT" read as a little-endian uint64.
	StatsMagic uint64 = 0x54415453_4b545355
	// StatsVersion is the layout version this package writes and reads.
	StatsVersion uint32 = 1

	statsOffMagic      = 0
	statsOffVersion    = 8
	statsOffHeaderSize = 12
	statsOffPid        = 16
	statsOffStartTime  = 24
	statsOffCount      = 32
	statsOffNameSlot   = 36
	statsOffNamesOff   = 40
	statsOffValuesOff  = 44
	statsOffTotalSize  = 48
	statsOffCreated    = 56
	statsOffIface      = 64
	statsOffMode       = 96
	statsOffCmdline    = 128

	statsIfaceLen   = 32
	statsModeLen    = 32
	statsCmdlineLen = 256

	statsHeaderSize = 384
	statsNameSlot   = 64 // longest name: statsNameSlot-1 bytes
	statsValueAlign = 64

	// statsMaxCounters bounds what a reader accepts from a file.
	statsMaxCounters = 1 << 16

	// StatsFilePrefix is the file name of a segment without the pid.
	StatsFilePrefix = "ustack-stats."
	// DefaultStatsDir is where segments live when no directory is given.
	DefaultStatsDir = "/dev/shm"
)

// statsLayout returns the names offset, values offset and total size of a
// segment with n counters.
func statsLayout(n int) (namesOff, valuesOff, total int) {
	namesOff = statsHeaderSize
	valuesOff = namesOff + n*statsNameSlot
	valuesOff = (valuesOff + statsValueAlign - 1) &^ (statsValueAlign - 1)
	total = valuesOff + 8*n
	return namesOff, valuesOff, total
}
