#!/usr/bin/env bash
# make bench: the same workloads through the kernel and through ustack, on one
# topology in one run, side by side. The client runs in namespace A (under
# LD_PRELOAD for ustack), the server in B on the kernel.
#   sockperf TCP ping-pong, 64-byte messages, $SOCKPERF_SECS s (default 5):
#     kernel, kernel with busy polling (net.core.busy_poll/busy_read, global
#     sysctls, restored afterwards), ustack
#   iperf3, one stream, $IPERF_SECS s (default 10): kernel, ustack
#   exec: 200 x /bin/true and 20 x python3 -c pass, with and without LD_PRELOAD (no socket)
# Reports the client's CPU time (user+sys, from /usr/bin/time). No thresholds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
lib=${USTACK_LIB:-$root/build/libustack.so}
SOCKPERF_SECS=${SOCKPERF_SECS:-5}
IPERF_SECS=${IPERF_SECS:-10}
BUSY_US=${BUSY_US:-50}
source scripts/topo.sh

work=$(mktemp -d)
stats=$(mktemp -d /dev/shm/ustack-bench-XXXXXX)
bp0=$(cat /proc/sys/net/core/busy_poll); br0=$(cat /proc/sys/net/core/busy_read)
cleanup() {
	set +e
	for p in ${srv1:-} ${srv2:-}; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	echo "$bp0" > /proc/sys/net/core/busy_poll; echo "$br0" > /proc/sys/net/core/busy_read
	topo_down
	rm -rf "$work" "$stats"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

topo_up
ip netns exec "$NSB" sockperf server --tcp -i "$ADDRB" -p 11111 >"$work/sockperf-server.log" 2>&1 &
srv1=$!
ip netns exec "$NSB" iperf3 -s -B "$ADDRB" -p 5201 >"$work/iperf-server.log" 2>&1 &
srv2=$!
wait_listen "$NSB" 11111
wait_listen "$NSB" 5201

accel=(env LD_PRELOAD="$lib" USTACK_IFACE="$IFA" USTACK_STATS_DIR="$stats")
kernel=(env)

# run NAME MODE cmd...: runs cmd in A, output in $work/NAME.out, CPU in $work/NAME.cpu
run() {
	local name=$1 mode=$2; shift 2
	local pre=("${kernel[@]}")
	[ "$mode" = ustack ] && pre=("${accel[@]}")
	echo "bench: $name" >&2
	if ! /usr/bin/time -f '%U %S %e' -o "$work/$name.cpu" \
		timeout $(( ${SOCKPERF_SECS} + ${IPERF_SECS} + 30 )) \
		ip netns exec "$NSA" "${pre[@]}" "$@" >"$work/$name.out" 2>&1; then
		echo "bench: $name failed:" >&2; tail -5 "$work/$name.out" >&2
		echo failed >"$work/$name.failed"
	fi
}

sp=(sockperf ping-pong --tcp -i "$ADDRB" -p 11111 -m 64 -t "$SOCKPERF_SECS")
run sockperf-kernel kernel "${sp[@]}"
echo "$BUSY_US" > /proc/sys/net/core/busy_poll; echo "$BUSY_US" > /proc/sys/net/core/busy_read
run sockperf-busypoll kernel "${sp[@]}"
echo "$bp0" > /proc/sys/net/core/busy_poll; echo "$br0" > /proc/sys/net/core/busy_read
run sockperf-ustack ustack "${sp[@]}"
accel+=(USTACK_SPIN_US="$BUSY_US")
run sockperf-ustackspin ustack "${sp[@]}"
unset 'accel[-1]'
ip=(iperf3 -c "$ADDRB" -p 5201 -t "$IPERF_SECS" -J)
run iperf3-kernel kernel "${ip[@]}"
# The kernel in A hands 64 KiB GSO super-frames to the veth; ustack sends MTU frames through
# AF_XDP. The same kernel without TSO/GSO on A's veth shows the per-frame cost alone.
offl=$(ip netns exec "$NSA" ethtool -k "$IFA" | awk '/^(tcp-segmentation-offload|generic-segmentation-offload):/ {print $2}' | tr '\n' ' ')
ip netns exec "$NSA" ethtool -K "$IFA" tso off gso off >/dev/null
run iperf3-kernel-nogso kernel "${ip[@]}"
set -- $offl
ip netns exec "$NSA" ethtool -K "$IFA" tso "${1:-on}" gso "${2:-on}" >/dev/null
run iperf3-ustack ustack "${ip[@]}"

# Exec cost: programs that open no accelerated socket under LD_PRELOAD (no namespace needed: no
# socket, no stack). 5 alternating rounds of each; wall time of the whole loop, and the peak
# RSS of one python3 -c pass.
echo "bench: exec" >&2
for round in 1 2 3 4 5; do
	for mode in kernel ustack; do
		pre=(env); [ "$mode" = ustack ] && pre=(env LD_PRELOAD="$lib")
		/usr/bin/time -f '%e' -a -o "$work/exec-true-$mode" "${pre[@]}" sh -c 'for i in $(seq 200); do /bin/true; done'
		/usr/bin/time -f '%e' -a -o "$work/exec-python-$mode" "${pre[@]}" sh -c 'for i in $(seq 20); do python3 -c pass; done'
		/usr/bin/time -f '%M' -a -o "$work/exec-rss-$mode" "${pre[@]}" python3 -c pass
	done
done

/usr/bin/python3 - "$work" "$SOCKPERF_SECS" "$IPERF_SECS" "$BUSY_US" <<'PY'
import json, os, re, sys
work, sps, ips, busy = sys.argv[1:5]

def read(name, f):
    try:
        return open(os.path.join(work, name + f)).read()
    except OSError:
        return None

def cpu(name):
    t = read(name, ".cpu")
    m = re.search(r"^([\d.]+) ([\d.]+) ([\d.]+)$", t or "", re.M)
    return float(m.group(1)) + float(m.group(2)) if m else None

def sockperf(name):
    if read(name, ".failed"):
        return {}
    out = read(name, ".out") or ""
    r = {}
    m = re.search(r"avg-lat(?:ency)?=\s*([\d.]+)", out)
    if m: r["avg"] = float(m.group(1))
    m = re.search(r"percentile 50\.000 =\s*([\d.]+)", out)
    if m: r["p50"] = float(m.group(1))
    m = re.search(r"percentile 99\.000 =\s*([\d.]+)", out)
    if m: r["p99"] = float(m.group(1))
    m = re.search(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)", out)
    if m and float(m.group(1)) > 0: r["rate"] = int(m.group(2)) / float(m.group(1))
    return r

def iperf(name):
    if read(name, ".failed"):
        return {}
    out = read(name, ".out") or ""
    try:
        j, _ = json.JSONDecoder().raw_decode(out[out.find("{"):])  # warnings may share the file
        return {"gbps": j["end"]["sum_received"]["bits_per_second"] / 1e9}
    except Exception as e:
        print("bench: %s: no result (%s): %s" % (name, e, out[:600]), file=sys.stderr)
        return {}

def fmt(v, f="%.2f"):
    return "failed" if v is None else f % v

def ratio(u, k):
    return "-" if u is None or k is None or k == 0 else "%.2fx" % (u / k)

sk, sb, su, ss = (sockperf("sockperf-" + n) for n in ("kernel", "busypoll", "ustack", "ustackspin"))
ik, ing, iu = iperf("iperf3-kernel"), iperf("iperf3-kernel-nogso"), iperf("iperf3-ustack")
sections = [
    (("sockperf TCP ping-pong 64 B (%s s)" % sps, "kernel", "kernel busy-poll %sus" % busy, "ustack",
      "ustack spin %sus" % busy, "ustack/kernel", "spin/busy-poll"), [
        ("  avg latency, us",) + tuple(fmt(r.get("avg")) for r in (sk, sb, su, ss))
        + (ratio(su.get("avg"), sk.get("avg")), ratio(ss.get("avg"), sb.get("avg"))),
        ("  median latency, us",) + tuple(fmt(r.get("p50")) for r in (sk, sb, su, ss))
        + (ratio(su.get("p50"), sk.get("p50")), ratio(ss.get("p50"), sb.get("p50"))),
        ("  p99 latency, us",) + tuple(fmt(r.get("p99")) for r in (sk, sb, su, ss))
        + (ratio(su.get("p99"), sk.get("p99")), ratio(ss.get("p99"), sb.get("p99"))),
        ("  round trips/s",) + tuple(fmt(r.get("rate"), "%.0f") for r in (sk, sb, su, ss))
        + (ratio(su.get("rate"), sk.get("rate")), ratio(ss.get("rate"), sb.get("rate"))),
        ("  client CPU, s",) + tuple(fmt(cpu("sockperf-" + n)) for n in ("kernel", "busypoll", "ustack", "ustackspin"))
        + (ratio(cpu("sockperf-ustack"), cpu("sockperf-kernel")), ratio(cpu("sockperf-ustackspin"), cpu("sockperf-busypoll"))),
    ]),
    (("iperf3 one stream (%s s)" % ips, "kernel", "kernel, no TSO/GSO", "ustack", "", "ustack/kernel", "ustack/no GSO"), [
        ("  throughput, Gbit/s", fmt(ik.get("gbps")), fmt(ing.get("gbps")), fmt(iu.get("gbps")), "",
         ratio(iu.get("gbps"), ik.get("gbps")), ratio(iu.get("gbps"), ing.get("gbps"))),
        ("  client CPU, s", fmt(cpu("iperf3-kernel")), fmt(cpu("iperf3-kernel-nogso")), fmt(cpu("iperf3-ustack")), "",
         ratio(cpu("iperf3-ustack"), cpu("iperf3-kernel")), ratio(cpu("iperf3-ustack"), cpu("iperf3-kernel-nogso"))),
    ]),
]
def median(name):
    t = read(name, "")
    v = sorted(float(x) for x in (t or "").split() if re.match(r"^[\d.]+$", x))
    return v[len(v) // 2] if v else None

et, eu = median("exec-true-kernel"), median("exec-true-ustack")
pt, pu = median("exec-python-kernel"), median("exec-python-ustack")
rt, ru = median("exec-rss-kernel"), median("exec-rss-ustack")
sections.append((("exec, no accelerated socket (median of 5)", "kernel", "LD_PRELOAD", "", "", "preload/kernel", ""), [
    ("  200 x /bin/true from sh, wall s", fmt(et), fmt(eu), "", "", ratio(eu, et), ""),
    ("  20 x python3 -c pass, wall s", fmt(pt), fmt(pu), "", "", ratio(pu, pt), ""),
    ("  python3 -c pass, peak RSS MB", fmt(rt and rt / 1024), fmt(ru and ru / 1024), "", "", ratio(ru, rt), ""),
]))
allrows = [r for hdr, rows in sections for r in [hdr] + rows]
w = [max(len(r[i]) for r in allrows) for i in range(len(allrows[0]))]
for hdr, rows in sections:
    print()
    for r in [hdr] + rows:
        print("  ".join((r[0].ljust(w[0]),) + tuple(c.rjust(w[i]) for i, c in enumerate(r) if i)))
PY
for f in "$work"/*.failed; do [ -e "$f" ] && { echo; echo "some runs failed (see above)"; }; break; done
exit 0
