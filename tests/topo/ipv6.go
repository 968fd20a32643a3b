package topo

import (
	"crypto/rand"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ULA48 returns a random RFC 4193 unique local /48, "fdXX:XXXX:XXXX" (fd00::/8 and a 40-bit
// random global ID): append "::/64" for its subnet 0, ":1::/64" for subnet 1.
func ULA48() (string, error) {
	var g [5]byte
	if _, err := rand.Read(g[:]); err != nil {
		return "", fmt.Errorf("random unique local prefix: %w", err)
	}
	return fmt.Sprintf("fd%02x:%02x%02x:%02x%02x", g[0], g[1], g[2], g[3], g[4]), nil
}

// QuietIPv6 is the step (an argv) that turns IPv6 on in namespace ns, quietly, for the
// interfaces ifnames already in it and any made later: no duplicate address detection (a
// link-local address is usable the moment its link is up, never "tentative"), no router
// solicitations, no autoconfiguration from router advertisements, and the unsolicited MLD reports
// of the groups an interface joins as it comes up (solicited-node multicast) all within 10 ms of
// that, not spread over the next second: a test that counts the frames on the wire once the
// topology is built sees none of them. Run it before the links go up. Addresses added with
// "nodad" are usable at once too.
func QuietIPv6(ns string, ifnames ...string) []string {
	var b strings.Builder
	for _, c := range append([]string{"all", "default"}, ifnames...) {
		for _, kv := range []string{"disable_ipv6=0", "accept_dad=0", "dad_transmits=0", "router_solicitations=0", "accept_ra=0",
			"mldv1_unsolicited_report_interval=10", "mldv2_unsolicited_report_interval=10"} {
			k, v, _ := strings.Cut(kv, "=")
			fmt.Fprintf(&b, "echo %s > /proc/sys/net/ipv6/conf/%s/%s && ", v, c, k)
		}
	}
	b.WriteString("true")
	return []string{"ip", "netns", "exec", ns, "sh", "-c", b.String()}
}

// LearnLinkLocals fills LinkLocalA/B and IndexA/B from the kernel, waiting (at most 5 s) for
// the link-local addresses, which the kernel adds when a link goes up.
func (tp *Topo) LearnLinkLocals() error {
	var err error
	if tp.LinkLocalA, err = LinkLocal(tp.NSA, tp.IfA, 5*time.Second); err != nil {
		return err
	}
	if tp.LinkLocalB, err = LinkLocal(tp.NSB, tp.IfB, 5*time.Second); err != nil {
		return err
	}
	if tp.IndexA, err = IfIndex(tp.NSA, tp.IfA); err != nil {
		return err
	}
	tp.IndexB, err = IfIndex(tp.NSB, tp.IfB)
	return err
}

// LinkLocal returns the usable (not tentative) link-local address of ifname in namespace ns,
// without a zone, waiting at most timeout for it.
func LinkLocal(ns, ifname string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command("ip", "-n", ns, "-6", "-o", "addr", "show", "dev", ifname, "scope", "link").Output()
		if err == nil {
			if a := parseLinkLocal(string(out)); a != "" {
				return a, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no usable link-local address on %s in %s after %v: %v %s", ifname, ns, timeout, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parseLinkLocal reads `ip -6 -o addr show` lines ("2: usa1 inet6 fe80::1/64 scope link \ ...")
// and returns the first fe80::/10 address that is not tentative, or "".
func parseLinkLocal(out string) string {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "inet6" {
				continue
			}
			a, _, _ := strings.Cut(f[i+1], "/")
			if strings.HasPrefix(a, "fe80:") && !strings.Contains(line, "tentative") {
				return a
			}
		}
	}
	return ""
}

// IfIndex returns the index of interface ifname in namespace ns.
func IfIndex(ns, ifname string) (int, error) {
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "dev", ifname).Output()
	if err != nil {
		return 0, fmt.Errorf("ip -n %s link show %s: %w", ns, ifname, err)
	}
	i, _, ok := strings.Cut(string(out), ":")
	n, err := strconv.Atoi(strings.TrimSpace(i))
	if !ok || err != nil || n <= 0 {
		return 0, fmt.Errorf("no index of %s in %q", ifname, out)
	}
	return n, nil
}
