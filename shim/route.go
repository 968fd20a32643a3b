package shim

import (
	"errors"

	"ustack/stackcore"
)

// The kernel is the control plane: it says which destinations the accelerated interface reaches
// and resolves their next hops (ARP). Application threads never wait for it: a route is one
// netlink request, and a neighbour the kernel's table does not know yet is resolved in the
// background while the connect waits in C (interruptible) and datagrams take the kernel path.

// controlPlane answers the questions the kernel owns.
type controlPlane interface {
	// routeVia reports whether dst goes through the accelerated interface, and its next hop.
	routeVia(dst stackcore.Addr) (nextHop stackcore.Addr, ok bool)
	// neighbour reads the kernel's neighbour table, without waiting.
	neighbour(ip stackcore.Addr) ([6]byte, bool)
	// resolveAsync makes the kernel resolve ip and calls done from another goroutine with the
	// result (an error once the kernel gives up).
	resolveAsync(ip stackcore.Addr, done func([6]byte, error))
}

// Cache lifetimes: how long a route and a resolved neighbour are trusted before the kernel is
// asked again, and how long a failed resolution answers at once before it is tried again.
const (
	routeTTL       = 5 * stackcore.Second
	neighTTL       = 5 * stackcore.Second
	neighFailedTTL = stackcore.Second
)

type routeEntry struct {
	hop     stackcore.Addr
	via     bool
	expires stackcore.Time
}

type neighState uint8

const (
	neighResolving neighState = iota
	neighReachable
	neighFailed
)

// neighbour is a next hop as the stack knows it. Guarded by st.mu.
type neighbour struct {
	mac     [6]byte
	state   neighState
	known   bool // mac is usable: resolved once (it stays usable, stale, while being refreshed)
	expires stackcore.Time
	waiting []*tcpSock // connects waiting for the resolution
}

// routeLocked says whether dst goes through the interface and its next hop. Caller holds st.mu.
func (st *stack) routeLocked(dst stackcore.Addr) (hop stackcore.Addr, via bool) {
	now := st.now()
	if r, ok := st.routes[dst]; ok && now < r.expires {
		return r.hop, r.via
	}
	hop, via = st.cp.routeVia(dst)
	if dst.IsUnspecified() || st.core.IsLocal(dst) {
		via = false // the kernel's local delivery
	}
	if len(st.routes) > 4096 {
		clear(st.routes) // a scan of many destinations must not grow it without bound
	}
	st.routes[dst] = routeEntry{hop: hop, via: via, expires: now + routeTTL}
	return hop, via
}

// neighLocked returns the next hop's entry, starting its resolution when the kernel's table
// has no usable entry. Caller holds st.mu.
func (st *stack) neighLocked(ip stackcore.Addr) *neighbour {
	now := st.now()
	n := st.neighs[ip]
	if n == nil {
		n = &neighbour{state: neighFailed}
		st.neighs[ip] = n
	}
	if n.state == neighResolving || now < n.expires {
		return n
	}
	if mac, ok := st.cp.neighbour(ip); ok {
		n.mac, n.known, n.state, n.expires = mac, true, neighReachable, now+neighTTL
		return n
	}
	n.state = neighResolving
	count(&st.stats.NeighResolves)
	st.cp.resolveAsync(ip, func(mac [6]byte, err error) { st.neighResolved(ip, mac, err) })
	return n
}

// neighResolved takes the outcome of a background resolution: the connects waiting for it go
// on, or fail with EHOSTUNREACH as the kernel's do.
func (st *stack) neighResolved(ip stackcore.Addr, mac [6]byte, err error) {
	st.with(nil, faultNone, func() int {
		n := st.neighs[ip]
		if n == nil {
			return 0
		}
		now := st.now()
		if err != nil {
			n.state, n.expires = neighFailed, now+neighFailedTTL
			count(&st.stats.NeighFailed)
			st.eng.Log.Info().Err(err).Msg("next hop unresolved")
		} else {
			n.mac, n.known, n.state, n.expires = mac, true, neighReachable, now+neighTTL
		}
		waiting := n.waiting
		n.waiting = nil
		for _, s := range waiting {
			s.resolvedLocked(n)
		}
		st.txLocked()
		return 0
	})
	st.kickPending() // the resolver's goroutine is no application call: nobody else would kick
}

// nextHopLocked says whether a datagram to dst goes through the stack and to which Ethernet
// address; a destination whose next hop is still being resolved goes through the kernel
// meanwhile (which queues it until the kernel's own resolution ends). Caller holds st.mu.
func (st *stack) nextHopLocked(dst stackcore.Addr) ([6]byte, bool) {
	if dst.IsMulticast() || dst == stackcore.AddrFrom4(stackcore.IPv4{255, 255, 255, 255}) {
		return [6]byte{}, false
	}
	hop, via := st.routeLocked(dst)
	if !via || st.ifc.isBroadcast(hop) {
		return [6]byte{}, false
	}
	n := st.neighLocked(hop)
	return n.mac, n.known
}

// isBroadcast reports whether ip is the directed broadcast address of the interface's subnet.
func (ifc *iface) isBroadcast(ip stackcore.Addr) bool {
	if ifc.prefix <= 0 || ifc.prefix >= 31 || !ip.Is4() {
		return false
	}
	mask := ^uint32(0) << (32 - ifc.prefix)
	a := uint32(ifc.addr[12])<<24 | uint32(ifc.addr[13])<<16 | uint32(ifc.addr[14])<<8 | uint32(ifc.addr[15])
	b := uint32(ip[12])<<24 | uint32(ip[13])<<16 | uint32(ip[14])<<8 | uint32(ip[15])
	return a&mask == b&mask && b|mask == ^uint32(0)
}

var errNoNeighbour = errors.New("no neighbour answered")
