// Package shim gives accelerated sockets their POSIX meaning: file descriptors, blocking and
// non-blocking calls, readiness for poll and epoll, socket options, and hand-over to the kernel.
// It never blocks a thread itself: a call either completes or answers Wait, and the caller
// (preload's C interposers) sleeps until FDTable.Wake says the socket changed.
//
// Each fd kind has its own type behind one interface, sock (tcpSock, tcpListener, udpSock; epoll
// sets in epoll.go): Engine's entry points look the fd up and dispatch. Every way into the
// protocol core goes through stack.with, which holds the stack's lock, always releases it, and
// turns a panic into EIO and a reset of the socket it hit. Time comes from an injected Clock, so
// the tests run on simulated time.
package shim
