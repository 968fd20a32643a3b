# Sourced by demo.sh and bench.sh: the same two-namespace topology as
# tests/topo (see there): namespace A (accelerated, veth $IFA, $ADDRA) and
# namespace B (kernel peer, veth $IFB, $ADDRB), with IPv6 unique local addresses $ADDRA6 and
# $ADDRB6 too (quiet: no DAD, no router solicitations). Names are unique per run.
# On $IFB TX checksum offload and TSO/GSO/GRO are off, so frames reaching $IFA
# carry full checksums.

topo_up() {
	local id x y
	id=$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
	x=$((100 + RANDOM % 100)); y=$((RANDOM % 256))
	NSA="ustk-$$-$id-a"; NSB="ustk-$$-$id-b"
	IFA="usa$id"; IFB="usb$id"
	ADDRA="10.$x.$y.1"; ADDRB="10.$x.$y.2"
	ADDRA6="fd00:$x:$y::1"; ADDRB6="fd00:$x:$y::2"
	ip netns add "$NSA"
	ip netns add "$NSB"
	local c k
	for ns in "$NSA" "$NSB"; do
		for c in all default; do
			for k in accept_dad=0 dad_transmits=0 router_solicitations=0 accept_ra=0; do
				ip netns exec "$ns" sh -c "echo ${k#*=} > /proc/sys/net/ipv6/conf/$c/${k%=*}"
			done
		done
	done
	ip link add "$IFA" netns "$NSA" type veth peer name "$IFB" netns "$NSB"
	ip -n "$NSA" addr add "$ADDRA/24" dev "$IFA"
	ip -n "$NSB" addr add "$ADDRB/24" dev "$IFB"
	ip -n "$NSA" addr add "$ADDRA6/64" dev "$IFA" nodad
	ip -n "$NSB" addr add "$ADDRB6/64" dev "$IFB" nodad
	ip netns exec "$NSB" ethtool -K "$IFB" tx off tso off gso off gro off >/dev/null
	ip -n "$NSA" link set lo up; ip -n "$NSB" link set lo up
	ip -n "$NSA" link set "$IFA" up; ip -n "$NSB" link set "$IFB" up
	local i
	for i in $(seq 100); do
		ip -n "$NSA" -o link show "$IFA" | grep -q LOWER_UP && break
		sleep 0.05
	done
	echo "topology: $NSA/$IFA $ADDRA $ADDRA6 <-> $NSB/$IFB $ADDRB $ADDRB6 (tx checksum offload, tso, gso, gro off on $IFB)"
}

topo_down() {
	local ns p
	for ns in "${NSA:-}" "${NSB:-}"; do
		[ -n "$ns" ] && [ -e "/run/netns/$ns" ] || continue
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
}

# wait_listen NS PORT [SECONDS]: wait until a TCP socket listens on PORT in NS.
wait_listen() { wait_bound "$1" "$2" tcp "${3:-10}"; }

# wait_bound NS PORT tcp|udp [SECONDS]: wait until a TCP socket listens on PORT in NS, or a UDP
# socket is bound to it.
wait_bound() {
	local i n=$(( ${4:-10} * 20 )) opt=-Hltn what="listens on port $2"
	[ "$3" = udp ] && opt=-Hlun what="is bound to UDP port $2"
	for i in $(seq "$n"); do
		ip netns exec "$1" ss "$opt" "sport = :$2" | grep -q . && return 0
		sleep 0.05
	done
	echo "nothing $what in $1" >&2
	return 1
}
