// Package shm holds ustack's shared-memory building blocks: the mmap'd rings
// and UMEM frame pool of an AF_XDP socket (ring*.go, umem*.go), and the
// per-process stats segment (stats*.go).
//
// The stats segment is a file /dev/shm/ustack-stats.<pid> (the directory can
// be changed) that a process running ustack creates with CreateStats and keeps
// mapped: a fixed header (magic, layout version, pid, process start time,
// truncated command line, interface, link mode, counter count), a table of
// counter names, and the uint64 counter values. Writers update the values with
// sync/atomic; another process (onloadctl) maps the file read-only and loads
// them with sync/atomic, without locks. stats_layout.go is the one place that
// defines the byte layout.
package shm
