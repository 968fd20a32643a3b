// Package shim gives accelerated sockets their POSIX meaning: file descriptors, blocking and
// non-blocking calls, readiness for poll and epoll, socket options, and hand-over to the kernel.
// It never blocks a thread itself: a call either completes or answers Wait, and the caller
// (preload's C interposers) sleeps on the fds named in the FDTable entry.
package shim
