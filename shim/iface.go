package shim

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// iface is what the stack takes from the kernel about the accelerated interface: the kernel is
// the control plane (addresses, routes, MTU, neighbours).
type iface struct {
	name   string
	index  int
	mac    [6]byte
	addr   [4]byte
	prefix int
	mtu    int
}

var errNoIface = errors.New("no interface to accelerate")

// findIface picks the interface named, else the one of the default route, else the only
// non-loopback interface that is up.
func findIface(name string) (iface, error) {
	var link netlink.Link
	var err error
	switch {
	case name != "":
		if link, err = netlink.LinkByName(name); err != nil {
			return iface{}, fmt.Errorf("interface %q: %w", name, err)
		}
	default:
		link, err = defaultLink()
		if err != nil {
			return iface{}, err
		}
	}
	a := link.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return iface{}, fmt.Errorf("interface %s is down", a.Name)
	}
	if len(a.HardwareAddr) != 6 {
		return iface{}, fmt.Errorf("interface %s has no Ethernet address", a.Name)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return iface{}, fmt.Errorf("addresses of %s: %w", a.Name, err)
	}
	if len(addrs) == 0 {
		return iface{}, fmt.Errorf("interface %s has no IPv4 address", a.Name)
	}
	ifc := iface{name: a.Name, index: a.Index, mtu: a.MTU}
	copy(ifc.mac[:], a.HardwareAddr)
	copy(ifc.addr[:], addrs[0].IP.To4())
	ifc.prefix, _ = addrs[0].Mask.Size()
	return ifc, nil
}

func defaultLink() (netlink.Link, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.LinkIndex > 0 {
			return netlink.LinkByIndex(r.LinkIndex)
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var found netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%w: no default route and several interfaces are up; set USTACK_IFACE", errNoIface)
		}
		found = l
	}
	if found == nil {
		return nil, errNoIface
	}
	return found, nil
}

// resolveTimeout bounds a background resolution: Linux's ARP gives up after 3 probes a second
// apart, and then so does a connect waiting for it (EHOSTUNREACH).
const resolveTimeout = 3500 * time.Millisecond

// routeVia reports whether dst is reached through the accelerated interface and, if so, the IPv4
// address of the next hop (dst itself when on-link).
func (ifc *iface) routeVia(dst [4]byte) (nextHop [4]byte, ok bool) {
	routes, err := netlink.RouteGet(net.IP(dst[:]))
	if err != nil || len(routes) == 0 {
		return nextHop, false
	}
	r := routes[0]
	if r.LinkIndex != ifc.index || r.Type == unix.RTN_LOCAL {
		return nextHop, false
	}
	if gw := r.Gw.To4(); gw != nil {
		copy(nextHop[:], gw)
	} else {
		nextHop = dst
	}
	return nextHop, true
}

// neighbour reads the kernel's neighbour table for a usable entry of ip, without waiting.
func (ifc *iface) neighbour(ip [4]byte) ([6]byte, bool) {
	var mac [6]byte
	neighs, err := netlink.NeighList(ifc.index, netlink.FAMILY_V4)
	if err != nil {
		return mac, false
	}
	for _, n := range neighs {
		if n.IP.To4() == nil || !n.IP.To4().Equal(net.IP(ip[:])) || len(n.HardwareAddr) != 6 {
			continue
		}
		if n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
			copy(mac[:], n.HardwareAddr)
			return mac, true
		}
	}
	return mac, false
}

// resolveAsync has the kernel resolve ip on a goroutine of its own, never on the caller's
// thread, and reports the outcome through done.
func (ifc *iface) resolveAsync(ip [4]byte, done func([6]byte, error)) {
	go func() {
		mac, err := ifc.resolve(ip, resolveTimeout)
		done(mac, err)
	}()
}

// resolve waits at most timeout for the kernel to resolve ip, prodding it (a datagram to the
// discard port) each second: a lost ARP request or reply must not cost the connection. It runs
// on the resolver's goroutine only.
func (ifc *iface) resolve(ip [4]byte, timeout time.Duration) ([6]byte, error) {
	deadline := time.Now().Add(timeout)
	var prodded time.Time
	for {
		if mac, ok := ifc.neighbour(ip); ok {
			return mac, nil
		}
		if time.Now().After(deadline) {
			return [6]byte{}, fmt.Errorf("%w: %s on %s", errNoNeighbour, net.IP(ip[:]), ifc.name)
		}
		if time.Since(prodded) > time.Second {
			prodded = time.Now()
			prodNeighbour(ip)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// prodNeighbour makes the kernel resolve ip by sending an empty datagram to its discard port.
func prodNeighbour(ip [4]byte) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	_ = unix.Sendto(fd, nil, unix.MSG_DONTWAIT, &unix.SockaddrInet4{Port: 9, Addr: ip})
}
