package shim

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

// iface is what the stack takes from the kernel about the accelerated interface: the kernel is
// the control plane (addresses, routes, MTU, neighbours).
type iface struct {
	name   string
	index  int
	mac    [6]byte
	addr   stackcore.Addr   // the IPv4 address, mapped
	prefix int              // of the IPv4 address
	addrs6 []stackcore.Addr // IPv6 addresses, link-local ones included
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
	ifc.addr = stackcore.AddrFrom4(stackcore.IPv4(addrs[0].IP.To4()))
	ifc.prefix, _ = addrs[0].Mask.Size()
	addrs6, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return iface{}, fmt.Errorf("IPv6 addresses of %s: %w", a.Name, err)
	}
	for _, x := range addrs6 {
		// an address still in duplicate address detection (RFC 4862 5.4) is not ours yet
		if ip := x.IP.To16(); ip != nil && x.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
			ifc.addrs6 = append(ifc.addrs6, stackcore.Addr(ip))
		}
	}
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

// netIP is a as the net package has it (4 bytes for IPv4).
func netIP(a stackcore.Addr) net.IP {
	if a.Is4() {
		return net.IP(a[12:16])
	}
	return net.IP(a[:])
}

// family is a's netlink address family.
func family(a stackcore.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// routeVia reports whether dst is reached through the accelerated interface and, if so, the
// address of the next hop (dst itself when on-link). A link-local destination is on the
// interface's link by definition (RFC 4291 2.5.6).
func (ifc *iface) routeVia(dst stackcore.Addr) (nextHop stackcore.Addr, ok bool) {
	if dst.IsLinkLocal() {
		return dst, true
	}
	routes, err := netlink.RouteGet(netIP(dst))
	if err != nil || len(routes) == 0 {
		return nextHop, false
	}
	r := routes[0]
	if r.LinkIndex != ifc.index || r.Type == unix.RTN_LOCAL {
		return nextHop, false
	}
	switch {
	case r.Gw == nil:
		nextHop = dst
	case r.Gw.To4() != nil && dst.Is4():
		nextHop = stackcore.AddrFrom4(stackcore.IPv4(r.Gw.To4()))
	case len(r.Gw) == net.IPv6len && !dst.Is4():
		nextHop = stackcore.Addr(r.Gw)
	default:
		return nextHop, false // an IPv4 route through an IPv6 gateway (RFC 5549): the kernel's
	}
	return nextHop, true
}

// neighbour reads the kernel's neighbour table for a usable entry of ip, without waiting.
func (ifc *iface) neighbour(ip stackcore.Addr) ([6]byte, bool) {
	var mac [6]byte
	neighs, err := netlink.NeighList(ifc.index, family(ip))
	if err != nil {
		return mac, false
	}
	want := netIP(ip)
	for _, n := range neighs {
		if !n.IP.Equal(want) || len(n.HardwareAddr) != 6 {
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
func (ifc *iface) resolveAsync(ip stackcore.Addr, done func([6]byte, error)) {
	go func() {
		mac, err := ifc.resolve(ip, resolveTimeout)
		done(mac, err)
	}()
}

// resolve waits at most timeout for the kernel to resolve ip, prodding it (a datagram to the
// discard port) each second: a lost ARP request or reply must not cost the connection. It runs
// on the resolver's goroutine only.
func (ifc *iface) resolve(ip stackcore.Addr, timeout time.Duration) ([6]byte, error) {
	deadline := time.Now().Add(timeout)
	var prodded time.Time
	for {
		if mac, ok := ifc.neighbour(ip); ok {
			return mac, nil
		}
		if time.Now().After(deadline) {
			return [6]byte{}, fmt.Errorf("%w: %s on %s", errNoNeighbour, netIP(ip), ifc.name)
		}
		if time.Since(prodded) > time.Second {
			prodded = time.Now()
			ifc.prodNeighbour(ip)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// prodNeighbour makes the kernel resolve ip (ARP, or NDP's neighbour solicitation) by sending
// an empty datagram to its discard port.
func (ifc *iface) prodNeighbour(ip stackcore.Addr) {
	domain := unix.AF_INET
	if !ip.Is4() {
		domain = unix.AF_INET6
	}
	to := kernelSockaddr(uint16(domain), ifc.index, ip, 9)
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	_ = unix.Sendto(fd, nil, unix.MSG_DONTWAIT, to)
}
