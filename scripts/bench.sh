#!/usr/bin/env bash
# make bench: the same workloads through the kernel and through ustack, on one topology in one
# run, side by side. Namespace A holds the process under test, pinned to CPU 0;
# namespace B the kernel peer or load client, pinned to CPU 1. TSO/GSO/GRO and TX checksum
# offload are off on both veth ends for every row.
#
# Every row runs in four modes (idle, exec and iperf3-in-capture: below):
#   kernel            no LD_PRELOAD
#   kernel busy-poll  net.core.busy_poll and busy_read = $BUSY_US (global sysctls, restored)
#   ustack            LD_PRELOAD=build/libustack.so USTACK_IFACE=<A's veth>
#   ustack spin       the same with USTACK_SPIN_US=$BUSY_US
# Rows (ids for BENCH_ONLY, a bash regex):
#   sockperf-tcp-server  sockperf server --tcp in A, sockperf ping-pong -m 64 from B
#   sockperf-tcp-client  sockperf ping-pong in A against a kernel sockperf server in B
#   sockperf-udp-server, sockperf-udp-client   the same over UDP
#   redis-set, redis-get redis-server in A, redis-benchmark -c 50 -n $REDIS_N from B
#   nginx                nginx (1 process) in A serving 612 bytes, wrk -t1 -c64 from B
#   nginx-4w             the same with nginx's master and 4 workers
#   memcached-set, memcached-get   memcached -t 1 in A, build/tests/mcload (50 connections) from B
#   iperf3-in, iperf3-out  iperf3 -s in A, iperf3 -c from B (in: B sends; out: -R, A sends)
#   iperf3-in-v6         iperf3-in over IPv6: iperf3 -s on :: in A, B sends to A's IPv6 address
#   iperf3-in-capture    iperf3-in under ustack only, for $CAPTURE_SECS s then $IPERF_SECS s more, in
#                        two modes: plain, and with onloadctl capture --pid <server> -G 0.02 -w /dev/null
#                        started and stopped 100 times in A during the first load; both throughputs,
#                        their ratio, the cycles completed (of 100), capture rings left behind
#   idle                 redis-server in A holding 100 idle connections from B for $IDLE_SECS s
#                        (kernel and ustack modes only): its CPU time, RSS and threads
#   exec                 200 x /bin/true, 20 x python3 -c pass, RSS, with and without LD_PRELOAD
# For each row: the figure per mode, the ratios ustack/kernel and spin/busy-poll, the machine's
# CPU (busy time of all CPUs in /proc/stat) per request (per GB for iperf3), and the system calls
# of the process under test per request (perf stat -e raw_syscalls:sys_enter; "-" without perf).
# After every ustack row, onloadctl's counters of the process under test must show traffic on
# the AF_XDP socket, else the row is marked "not accelerated".
# Output: the table on stdout and in build/bench/results.txt, results.json, and the sockperf
# latency percentiles as an SVG ($BENCH_OUT, default build/bench/latency.svg); with PROFILE=1
# in build/bench/profiles/.
#
# PROFILE=1 (make profile): every ustack row also writes a Go CPU profile of the process under
# test (USTACK_CPUPROFILE) and, with perf, a perf record -g of it, both to build/bench/profiles/,
# and prints their tops.
#
# Durations: SOCKPERF_SECS (4), REDIS_N (100000 requests per test), WRK_SECS (5), MC_SECS (5),
# IPERF_SECS (5), IDLE_SECS (60); BUSY_US (50); CAPTURE_SECS (20, whole seconds), CAPTURE_CPU (1: the
# CPUs of the capture loop, for taskset -c), CAPTURE_FILTER (none; onloadctl capture's filter
# words). REPEAT (3): every row but idle and exec runs its four modes (iperf3-in-capture its two)
# REPEAT times, interleaved; the table shows each mode's median run (by the row's
# main figure) and the notes every run's figure. No thresholds: it prints.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
lib=${USTACK_LIB:-$root/build/libustack.so}
golib=$root/build/libustack-go.so
onloadctl=$root/build/onloadctl
mcload=$root/build/tests/mcload
report=$root/scripts/bench_report.py
PY=/usr/bin/python3
SOCKPERF_SECS=${SOCKPERF_SECS:-4}
REDIS_N=${REDIS_N:-100000}
WRK_SECS=${WRK_SECS:-5}
MC_SECS=${MC_SECS:-5}
IPERF_SECS=${IPERF_SECS:-5}
CAPTURE_SECS=${CAPTURE_SECS:-20}
CAPTURE_CPU=${CAPTURE_CPU:-1}
CAPTURE_FILTER=${CAPTURE_FILTER:-}
REPEAT=${REPEAT:-3}
rep=1
IDLE_SECS=${IDLE_SECS:-60}
BUSY_US=${BUSY_US:-50}
BENCH_ONLY=${BENCH_ONLY:-}
PROFILE=${PROFILE:-0}
outdir=$root/build/bench
profdir=$outdir/profiles
[ "$PROFILE" = 1 ] && outdir=$profdir # make profile leaves make bench's results alone
BENCH_OUT=${BENCH_OUT:-$outdir/latency.svg}
source scripts/topo.sh

work=$(mktemp -d)
res=$work/res
stats=$(mktemp -d /dev/shm/ustack-bench-XXXXXX)
mkdir -p "$res" "$outdir"
[ "$PROFILE" = 1 ] && mkdir -p "$profdir"
bp0=$(cat /proc/sys/net/core/busy_poll); br0=$(cat /proc/sys/net/core/busy_read)
pids=() # everything started in the background, killed on exit if still this shell's child

cleanup() {
	set +e
	local p
	for p in "${pids[@]}"; do
		[ "$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)" = "$$" ] && kill -9 "$p" 2>/dev/null
	done
	busy_off
	topo_down
	rm -rf "$work" "$stats"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "bench: $*" >&2; }
# run_fg CMD...: CMD in the foreground, but as a job that the exit trap interrupts and kills.
run_fg() { "$@" & local p=$!; pids+=("$p"); wait "$p"; }
selected() { [ -z "$BENCH_ONLY" ] || [[ $1 =~ $BENCH_ONLY ]]; }
busy_on() { echo "$BUSY_US" >/proc/sys/net/core/busy_poll; echo "$BUSY_US" >/proc/sys/net/core/busy_read; }
busy_off() { echo "$bp0" >/proc/sys/net/core/busy_poll; echo "$br0" >/proc/sys/net/core/busy_read; }

# perf counts the system calls of the process under test; "-" in the table without it.
have_perf=0
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -x, -o /dev/null -- true 2>/dev/null; then
	have_perf=1
else
	say "perf (raw_syscalls:sys_enter) not available: no system call counts, no perf profiles"
fi

# busy_ticks: busy time of all CPUs (user+nice+system+irq+softirq+steal), in USER_HZ ticks.
busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
hz=$(getconf CLK_TCK)
now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }

# stop PID: TERM, then KILL after 10 s; reaps it. Prints nothing.
stop() {
	local p=$1 i
	kill "$p" 2>/dev/null
	for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$p" 2>/dev/null
	wait "$p" 2>/dev/null
}


# fail DIR MESSAGE...: marks the row of DIR failed.
fail() { local d=$1; shift; echo "$*" >>"$d/failed"; say "$(basename "$d") failed: $*"; }

# mode_env MODE DIR: the environment of the process under test in menv.
mode_env() {
	menv=()
	case $1 in
	ustack | capture) menv=(LD_PRELOAD="$lib" USTACK_IFACE="$IFA" USTACK_STATS_DIR="$2/stats") ;;
	spin) menv=(LD_PRELOAD="$lib" USTACK_IFACE="$IFA" USTACK_STATS_DIR="$2/stats" USTACK_SPIN_US="$BUSY_US") ;;
	esac
	mkdir -p "$2/stats"
}
is_ustack() { [ "$1" = ustack ] || [ "$1" = spin ] || [ "$1" = capture ]; }
profiling() { [ "$PROFILE" = 1 ] && is_ustack "$1"; }

# measure_start DIR PID: the machine's busy time, and perf on PID (syscall count; perf
# record when profiling).
measure_start() {
	local d=$1 p=$2
	perfs=()
	if [ "$have_perf" = 1 ]; then
		perf stat -e raw_syscalls:sys_enter -x, -o "$d/perf.stat" -p "$p" 2>>"$d/perf.err" &
		perfs+=($!); pids+=($!)
		if profiling "$(cat "$d/mode")"; then
			perf record -g -q -o "$d/perf.data" -p "$p" >>"$d/perf.err" 2>&1 &
			perfs+=($!); pids+=($!)
		fi
		sleep 0.2 # perf attaches
	fi
	echo "$(busy_ticks) $(now)" >"$d/cpu0"
}

measure_end() {
	local d=$1 p i
	echo "$(busy_ticks) $(now)" >"$d/cpu1"
	read -r b0 t0 <"$d/cpu0"; read -r b1 t1 <"$d/cpu1"
	echo "$(( b1 - b0 )) $(calc "$t1 - $t0") $hz" >"$d/cpu"
	for p in "${perfs[@]}"; do kill -INT "$p" 2>/dev/null; done
	for p in "${perfs[@]}"; do
		for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
	done
	perfs=()
}

# rowdir ID MODE: the result directory of the row's run in this repeat.
rowdir() { echo "$res/$1.$2.r$rep"; }

# newrow ID MODE: the row's result directory (printed).
newrow() {
	local d
	d=$(rowdir "$1" "$2")
	mkdir -p "$d"
	echo "$1" >"$d/id"; echo "$2" >"$d/mode"; echo "$rep" >"$d/repeat"
	echo "$d"
}

# finish DIR: counters of ustack's processes of the row, the check that they ran on ustack,
# the profiles, a one-line summary.
finish() {
	local d=$1 mode id
	mode=$(cat "$d/mode"); id=$(cat "$d/id")
	if is_ustack "$mode"; then
		"$onloadctl" stats --all --json --dir "$d/stats" >"$d/stats.json" 2>"$d/stats.err"
	fi
	if profiling "$mode"; then show_profiles "$d"; fi
	$PY "$report" row "$d" >&2
}

show_profiles() {
	local d=$1 name
	name=$(cat "$d/id").$(cat "$d/mode")
	if [ -s "$profdir/$name.pprof" ]; then
		echo "== Go CPU profile, $name: go tool pprof -top -nodecount=25 build/libustack-go.so $profdir/$name.pprof"
		go tool pprof -top -nodecount=25 "$golib" "$profdir/$name.pprof" 2>&1 | tee "$profdir/$name.pprof.top.txt"
	else
		echo "== Go CPU profile, $name: $profdir/$name.pprof was not written (empty or missing)"
	fi
	if [ -s "$d/perf.data" ]; then
		cp "$d/perf.data" "$profdir/$name.perf.data"
		perf report -i "$profdir/$name.perf.data" --stdio --no-children --percent-limit 2 >"$profdir/$name.perf.txt" 2>/dev/null
		echo "== perf, $name: share per object (perf report --stdio --no-children -g none --sort dso)"
		perf report -i "$profdir/$name.perf.data" --stdio --no-children -g none --sort dso --percent-limit 1 2>/dev/null | grep -v '^#' | grep -v '^$'
		echo "== perf, $name: perf report --stdio --no-children --percent-limit 2 -i $profdir/$name.perf.data | head -60"
		head -60 "$profdir/$name.perf.txt"
	elif [ "$have_perf" = 1 ]; then
		echo "== perf, $name: no perf.data ($(head -c 300 "$d/perf.err" 2>/dev/null))"
	fi
}

# wait_profile DIR START SECS: when profiling, wait (to START+SECS+10 s at most) until the process
# under test has written its Go CPU profile, which happens at the end of its window.
wait_profile() {
	local d=$1 start=$2 secs=$3 f
	profiling "$(cat "$d/mode")" || return 0
	f=$profdir/$(cat "$d/id").$(cat "$d/mode").pprof
	while [ ! -s "$f" ] && [ "$(calc "$(now) < $start + $secs + 10")" = 1 ]; do sleep 0.2; done
	sleep 0.3
	[ -s "$f" ] || say "$(basename "$d"): no Go CPU profile in $f after $secs s + 10 s"
}

# server_row ID MODE PORT PROTO PROFSECS LOADFN -- SERVER...: SERVER under test in A (PORT,
# tcp or udp, must be listening within 10 s), LOADFN DIR run in B while measured.
# PROFSECS: the Go profile's window, counted from the server's start.
server_row() {
	local id=$1 mode=$2 port=$3 proto=$4 profsecs=$5 loadfn=$6 d srv start prof=()
	shift 7
	d=$(newrow "$id" "$mode")
	mode_env "$mode" "$d"
	profiling "$mode" && prof=(USTACK_CPUPROFILE="$profdir/$id.$mode.pprof" USTACK_CPUPROFILE_SECS="$profsecs")
	rm -f "$profdir/$id.$mode".*
	start=$(now)
	ip netns exec "$NSA" taskset -c 0 env "${menv[@]}" "${prof[@]}" "$@" >"$d/server.log" 2>&1 &
	srv=$!; pids+=("$srv")
	echo "$srv" >"$d/pid"
	wait_bound "$NSA" "$port" "$proto" 2>>"$d/server.log" ||
		fail "$d" "$1 does not listen on $proto port $port: $(tail -3 "$d/server.log")"
	if [ ! -e "$d/failed" ]; then
		measure_start "$d" "$srv"
		local t0 t1
		t0=$(now)
		"$loadfn" "$d" || fail "$d" "load: $(tail -3 "$d/load.out")"
		t1=$(now)
		echo "wall=$(calc "$t1 - $t0")" >>"$d/meta"
		measure_end "$d"
		kill -0 "$srv" 2>/dev/null || { wait "$srv"; fail "$d" "$1 exited during the load (status $?): $(tail -3 "$d/server.log")"; }
		wait_profile "$d" "$start" "$profsecs"
	fi
	stop "$srv"
	finish "$d"
}

# in_b CMD...: runs CMD in B pinned to CPU 1, bounded.
in_b() { local t=$1; shift; run_fg ip netns exec "$NSB" timeout "$t" taskset -c 1 "$@"; }

# four_modes ROWFN ID ARGS...: ROWFN ID MODE ARGS... for the four modes, busy polling on in
# the second; all four REPEAT times, interleaved, so that a slow minute of the machine falls
# on every mode alike. The report takes each mode's median run.
four_modes() {
	local fn=$1 id=$2 m; shift 2
	selected "$id" || return 0
	for rep in $(seq "$REPEAT"); do
		say "$id (run $rep of $REPEAT)"
		for m in kernel busy ustack spin; do
			[ "$m" = busy ] && busy_on
			"$fn" "$id" "$m" "$@"
			[ "$m" = busy ] && busy_off
		done
	done
	rep=1
}

# row_secs ID DEFAULT: the Go profile window for a row counted in requests, not seconds: 1.5x
# the kernel run's load time, + 2 s.
row_secs() {
	local w
	w=$(sed -n 's/^wall=//p' "$res/$1.kernel.r1/meta" 2>/dev/null)
	[ -n "$w" ] && calc "int($w * 1.5 + 2)" || echo "$2"
}

topo_up
ip netns exec "$NSA" ethtool -K "$IFA" tx off tso off gso off gro off >/dev/null
say "offloads (tx checksum, tso, gso, gro) off on $IFA and $IFB; A pinned to CPU 0, B to CPU 1"

# ---- sockperf ---------------------------------------------------------------------------------
SPPORT=11111
sp_flags() { [ "$1" = tcp ] && echo --tcp; }
load_sockperf() { # DIR: ping-pong from B against the server in A
	local proto; proto=$(cat "$1/proto")
	in_b $(( SOCKPERF_SECS + 30 )) sockperf ping-pong $(sp_flags "$proto") -i "$ADDRA" -p "$SPPORT" -m 64 -t "$SOCKPERF_SECS" >"$1/load.out" 2>&1
}
sockperf_server_row() { # ID MODE PROTO
	local d; d=$(rowdir "$1" "$2")
	mkdir -p "$d"; echo "$3" >"$d/proto"
	server_row "$1" "$2" "$SPPORT" "$3" $(( SOCKPERF_SECS + 1 )) load_sockperf -- sockperf server $(sp_flags "$3") -i 0.0.0.0 -p "$SPPORT"
}
sockperf_client_row() { # ID MODE PROTO: the client in A, a kernel server in B
	local id=$1 mode=$2 proto=$3 d srv wrap=() prof=()
	d=$(newrow "$id" "$mode")
	mode_env "$mode" "$d"
	ip netns exec "$NSB" taskset -c 1 sockperf server $(sp_flags "$proto") -i "$ADDRB" -p "$SPPORT" >"$d/server.log" 2>&1 &
	srv=$!; pids+=("$srv")
	wait_bound "$NSB" "$SPPORT" "$proto" 2>>"$d/server.log" ||
		fail "$d" "the kernel sockperf server in B does not start: $(tail -3 "$d/server.log")"
	if [ ! -e "$d/failed" ]; then
		if [ "$have_perf" = 1 ]; then
			profiling "$mode" && wrap=(perf record -g -q -o "$d/perf.data" --)
			wrap+=(perf stat -e raw_syscalls:sys_enter -x, -o "$d/perf.stat" --)
		fi
		# the profile window ends before the client does (its test lasts SOCKPERF_SECS + warm-up)
		profiling "$mode" && prof=(USTACK_CPUPROFILE="$profdir/$id.$mode.pprof" USTACK_CPUPROFILE_SECS="$SOCKPERF_SECS")
		rm -f "$profdir/$id.$mode".*
		echo "$(busy_ticks) $(now)" >"$d/cpu0"
		run_fg ip netns exec "$NSA" timeout $(( SOCKPERF_SECS + 30 )) "${wrap[@]}" taskset -c 0 env "${menv[@]}" "${prof[@]}" \
			sockperf ping-pong $(sp_flags "$proto") -i "$ADDRB" -p "$SPPORT" -m 64 -t "$SOCKPERF_SECS" >"$d/load.out" 2>&1 ||
			fail "$d" "sockperf ping-pong in A: $(tail -3 "$d/load.out")"
		perfs=(); measure_end "$d"
	fi
	stop "$srv"
	finish "$d"
}
for proto in tcp udp; do
	four_modes sockperf_server_row "sockperf-$proto-server" "$proto"
	four_modes sockperf_client_row "sockperf-$proto-client" "$proto"
done

# ---- redis ------------------------------------------------------------------------------------
RPORT=6379
redis_srv=(redis-server --port "$RPORT" --bind 0.0.0.0 --daemonize no --save '' --appendonly no --protected-mode no)
load_redis() { # DIR
	local t; t=$(cat "$1/test")
	echo "requests=$REDIS_N" >>"$1/meta"
	if [ "$t" = get ]; then # the key redis-benchmark reads exists
		in_b 60 redis-benchmark -h "$ADDRA" -p "$RPORT" -n 100 -c 1 -t set -q >/dev/null 2>&1 || return 1
	fi
	in_b 300 redis-benchmark -h "$ADDRA" -p "$RPORT" -n "$REDIS_N" -c 50 -P 1 -t "$t" --csv >"$1/load.out" 2>&1
}
redis_row() { # ID MODE TEST
	local d; d=$(rowdir "$1" "$2")
	mkdir -p "$d"; echo "$3" >"$d/test"
	server_row "$1" "$2" "$RPORT" tcp "$(row_secs "$1" 10)" load_redis -- "${redis_srv[@]}"
}
four_modes redis_row redis-set set
four_modes redis_row redis-get get

# ---- nginx ------------------------------------------------------------------------------------
NPORT=8080
ngx=$work/nginx
mkdir -p "$ngx/www" "$ngx/tmp"
head -c 612 /dev/zero | tr '\0' x >"$ngx/www/index.html"
cat >"$ngx/nginx.conf" <<EOF
master_process off;
daemon off;
worker_processes 1;
pid $ngx/nginx.pid;
error_log $ngx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    default_type text/html;
    client_body_temp_path $ngx/tmp/body;
    proxy_temp_path $ngx/tmp/proxy;
    fastcgi_temp_path $ngx/tmp/fastcgi;
    uwsgi_temp_path $ngx/tmp/uwsgi;
    scgi_temp_path $ngx/tmp/scgi;
    server {
        listen 0.0.0.0:$NPORT;
        root $ngx/www;
    }
}
EOF
load_wrk() { in_b $(( WRK_SECS + 30 )) wrk -t1 -c64 -d"${WRK_SECS}s" "http://$ADDRA:$NPORT/index.html" >"$1/load.out" 2>&1; }
nginx_row() { server_row "$1" "$2" "$NPORT" tcp $(( WRK_SECS + 1 )) load_wrk -- nginx -p "$ngx/" -c "$ngx/nginx.conf" -e "$ngx/error.log"; }
four_modes nginx_row nginx

# nginx's default process model: a master and 4 workers that accept on the listener it opened
# (the workers are its fork children; the server is pinned to CPU 0 as in every row)
# (as root, the workers would run as nobody, who cannot read the work directory)
sed -e 's/^master_process off;/master_process on;\nuser root;/' -e 's/^worker_processes 1;/worker_processes 4;/' \
	-e "s#^pid .*#pid $ngx/nginx4.pid;#" "$ngx/nginx.conf" >"$ngx/nginx4.conf"
nginx4_row() { server_row "$1" "$2" "$NPORT" tcp $(( WRK_SECS + 1 )) load_wrk -- nginx -p "$ngx/" -c "$ngx/nginx4.conf" -e "$ngx/error.log"; }
four_modes nginx4_row nginx-4w

# ---- memcached --------------------------------------------------------------------------------
MPORT=11211
load_mc() { in_b $(( MC_SECS + 30 )) "$mcload" "$ADDRA" "$MPORT" "$(cat "$1/test")" 50 "$MC_SECS" >"$1/load.out" 2>&1; }
mc_row() { # ID MODE TEST
	local d; d=$(rowdir "$1" "$2")
	mkdir -p "$d"; echo "$3" >"$d/test"
	server_row "$1" "$2" "$MPORT" tcp $(( MC_SECS + 1 )) load_mc -- memcached -u root -t 1 -U 0 -c 1024 -l "$ADDRA" -p "$MPORT"
}
four_modes mc_row memcached-set set
four_modes mc_row memcached-get get

# ---- iperf3 -----------------------------------------------------------------------------------
IPORT=5201
load_iperf() { # DIR: B sends (in, in6: over IPv6) or, -R, receives (out)
	local r=() to=$ADDRA dir; dir=$(cat "$1/dir")
	[ "$dir" = out ] && r=(-R)
	[ "$dir" = in6 ] && to=$ADDRA6
	in_b $(( IPERF_SECS + 30 )) iperf3 -c "$to" -p "$IPORT" -t "$IPERF_SECS" -J "${r[@]}" >"$1/load.out" 2>&1
}
iperf_row() { # ID MODE in|out|in6
	local d; d=$(rowdir "$1" "$2")
	mkdir -p "$d"; echo "$3" >"$d/dir"
	# -4 for the IPv4 rows, as they always ran; iperf3-in-v6's server listens on :: (dual-stack)
	local fam=(-4); [ "$3" = in6 ] && fam=()
	server_row "$1" "$2" "$IPORT" tcp $(( IPERF_SECS + 1 )) load_iperf -- iperf3 -s "${fam[@]}" -p "$IPORT"
}
four_modes iperf_row iperf3-in in
four_modes iperf_row iperf3-out out
four_modes iperf_row iperf3-in-v6 in6

# ---- capture ----------------------------------------------------------------------------------
# iperf3-in-capture: iperf3 -s under ustack in A, B sends for CAPTURE_SECS (first load), then at once
# for IPERF_SECS more (second load), twice per repeat: plain (mode ustack), and with a loop in A
# that starts and stops onloadctl capture of the server CAPTURE_CYCLES times during the first load
# (mode capture); no capture runs during the second load, which shows what the loop left behind.
# The loop runs on CPU CAPTURE_CPU (1: beside the load client, so that CPU 0 holds only the
# process under test), under one ip netns exec (one per cycle costs ~35 ms here); its cycles are
# spread over the first load (one every (CAPTURE_SECS - 1) / CAPTURE_CYCLES s at the earliest,
# from 0.5 s into it), back to back when a cycle takes longer, and none starts after that load has
# ended. CAPTURE_FILTER: filter words for onloadctl capture (default none: every frame is copied;
# "port 1" copies none, which leaves the cost of the loop itself).
CAPTURE_CYCLES=100
# cap_cycles ONLOADCTL PID DIR CYCLES SECS: the loop, run through ip netns exec as its own bash.
cap_cycles() {
	local ctl=$1 pid=$2 d=$3 n=$4 secs=$5 i rc ok=0 seen=0 frames=0 drops=0 f dr t0 t start slot
	slot=$(( (secs - 1) * 1000000 / n ))
	sleep 0.5
	t0=${EPOCHREALTIME/./}
	for (( i = 0; i < n; i++ )); do
		[ -e "$d/load.done" ] && break
		start=$(( t0 + i * slot )); t=${EPOCHREALTIME/./}
		(( start > t )) && sleep "$(printf '%d.%06d' $(( (start - t) / 1000000 )) $(( (start - t) % 1000000 )))"
		[ -e "$d/load.done" ] && break
		# shellcheck disable=SC2086 # the filter is words
		"$ctl" capture --pid "$pid" --dir "$d/stats" -G 0.02 -w /dev/null $CAPTURE_FILTER 2>"$d/capture.one"; rc=$?
		cat "$d/capture.one" >>"$d/capture.log"
		f=$(sed -n 's/^\([0-9][0-9]*\) packets captured$/\1/p' "$d/capture.one")
		dr=$(sed -n 's/^\([0-9][0-9]*\) packets dropped.*/\1/p' "$d/capture.one")
		if [ "$rc" = 0 ] && [ -n "$f" ] && [ -n "$dr" ]; then
			ok=$(( ok + 1 )); frames=$(( frames + f )); drops=$(( drops + dr ))
			(( f > 0 )) && seen=$(( seen + 1 ))
		else
			echo "capture cycle $(( i + 1 )): exit status $rc" >>"$d/capture.log"
		fi
	done
	t=${EPOCHREALTIME/./}
	echo "capture_cycles=$ok capture_started=$i capture_seen=$seen capture_frames=$frames capture_drops=$drops" \
		"capture_loop_ms=$(( (t - t0) / 1000 ))" >>"$d/meta"
}
# capture_files DIR: the capture rings in the run's stats directory and in /dev/shm, one a line.
capture_files() { ls -d "$1/stats"/ustack-capture.* /dev/shm/ustack-capture.* 2>/dev/null; }
load_iperf_capture() { # DIR: the two loads; in mode capture the loop beside the first
	local d=$1 lp rc
	if [ "$(cat "$d/mode")" = capture ]; then
		echo "$CAPTURE_CYCLES" >"$d/capture.want"
		capture_files "$d" | sort >"$d/capture.before"
		ip netns exec "$NSA" taskset -c "$CAPTURE_CPU" env CAPTURE_FILTER="$CAPTURE_FILTER" \
			bash -c "$(declare -f cap_cycles); cap_cycles \"\$@\"" cap_cycles \
			"$onloadctl" "$(cat "$d/pid")" "$d" "$CAPTURE_CYCLES" "$CAPTURE_SECS" >>"$d/capture.log" 2>&1 &
		lp=$!; pids+=("$lp")
	fi
	in_b $(( CAPTURE_SECS + 30 )) iperf3 -c "$ADDRA" -p "$IPORT" -t "$CAPTURE_SECS" -J >"$d/load.out" 2>&1; rc=$?
	if [ -n "${lp:-}" ]; then
		touch "$d/load.done"
		wait "$lp"
		# what onloadctl left behind (files that were there before the loop are someone else's)
		capture_files "$d" | sort | comm -13 "$d/capture.before" - >"$d/capture.leftover"
		echo "capture_leftover=$(wc -l <"$d/capture.leftover")" >>"$d/meta"
	fi
	echo "$(busy_ticks) $(now)" >"$d/cpu.first" # the machine's CPU over the first load
	[ "$rc" = 0 ] || return "$rc"
	in_b $(( IPERF_SECS + 30 )) iperf3 -c "$ADDRA" -p "$IPORT" -t "$IPERF_SECS" -J >"$d/after.out" 2>&1 ||
		fail "$d" "second load: $(tail -3 "$d/after.out")"
}
iperf_capture_row() { # ID MODE
	local d sd; d=$(rowdir "$1" "$2")
	mkdir -p "$d"
	# the stats directory, where onloadctl capture makes its ring, on tmpfs as USTACK_STATS_DIR's
	# default /dev/shm is (the other rows' is on $work's file system): a ring on a disk file system
	# costs the stack page faults that a tmpfs one does not
	sd=$stats/$(basename "$d"); mkdir -p "$sd"; ln -s "$sd" "$d/stats"
	server_row "$1" "$2" "$IPORT" tcp $(( CAPTURE_SECS + IPERF_SECS + 1 )) load_iperf_capture -- iperf3 -s -4 -p "$IPORT"
	rm "$d/stats"; mv "$sd" "$d/stats"
}
if selected iperf3-in-capture; then
	for rep in $(seq "$REPEAT"); do
		say "iperf3-in-capture (run $rep of $REPEAT)"
		for m in ustack capture; do iperf_capture_row iperf3-in-capture "$m"; done
	done
	rep=1
	say "iperf3-in-capture: capture rings in /dev/shm after the row: $(ls -d /dev/shm/ustack-capture.* 2>/dev/null | tr '\n' ' ' | grep . || echo none)"
fi

# ---- idle -------------------------------------------------------------------------------------
# 100 connections from B to redis-server in A, each answered one PING, then idle.
idle_client='
import socket, sys, time
host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ss = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"PING\r\n")
    ss.append(s)
for s in ss:
    if s.recv(64) != b"+PONG\r\n":
        sys.exit("no +PONG")
print("connected", len(ss), flush=True)
time.sleep(secs)
'
idle_row() { # ID MODE
	local id=$1 mode=$2 d srv cli i t0 t1 c0 c1
	d=$(newrow "$id" "$mode")
	mode_env "$mode" "$d"
	ip netns exec "$NSA" taskset -c 0 env "${menv[@]}" "${redis_srv[@]}" >"$d/server.log" 2>&1 &
	srv=$!; pids+=("$srv")
	wait_listen "$NSA" "$RPORT" 2>>"$d/server.log" || fail "$d" "redis-server does not listen: $(tail -3 "$d/server.log")"
	if [ ! -e "$d/failed" ]; then
		ip netns exec "$NSB" timeout $(( IDLE_SECS + 60 )) taskset -c 1 "$PY" -c "$idle_client" "$ADDRA" "$RPORT" 100 $(( IDLE_SECS + 30 )) >"$d/load.out" 2>&1 &
		cli=$!; pids+=("$cli")
		for i in $(seq 300); do grep -qs connected "$d/load.out" && break; kill -0 "$cli" 2>/dev/null || break; sleep 0.1; done
		if grep -q connected "$d/load.out"; then
			sleep 1 # settle
			c0=$(awk '{print $14 + $15}' "/proc/$srv/stat")
			measure_start "$d" "$srv"
			run_fg sleep "$IDLE_SECS"
			c1=$(awk '{print $14 + $15}' "/proc/$srv/stat")
			measure_end "$d"
			echo "cpu_ticks=$(( c1 - c0 )) secs=$IDLE_SECS" >>"$d/meta"
			awk '/^VmRSS:/ {print "rss_kb=" $2} /^Threads:/ {print "threads=" $2}' "/proc/$srv/status" >>"$d/meta"
		else
			fail "$d" "100 idle connections to redis-server: $(tail -3 "$d/load.out")"
		fi
		stop "$cli"
	fi
	stop "$srv"
	finish "$d"
}
if selected idle; then
	say "idle ($IDLE_SECS s per mode; kernel and ustack only)"
	idle_row idle kernel
	idle_row idle ustack
fi

# ---- exec -------------------------------------------------------------------------------------
# Exec cost: programs that open no accelerated socket under LD_PRELOAD (no namespace needed: no
# socket, no stack). 5 alternating rounds of each; wall time of the whole loop, and the peak
# RSS of one python3 -c pass.
if selected exec; then
	say "exec"
	for round in 1 2 3 4 5; do
		for mode in kernel ustack; do
			pre=(env); [ "$mode" = ustack ] && pre=(env LD_PRELOAD="$lib")
			/usr/bin/time -f '%e' -a -o "$res/exec-true-$mode" "${pre[@]}" sh -c 'for i in $(seq 200); do /bin/true; done'
			/usr/bin/time -f '%e' -a -o "$res/exec-python-$mode" "${pre[@]}" sh -c 'for i in $(seq 20); do python3 -c pass; done'
			/usr/bin/time -f '%M' -a -o "$res/exec-rss-$mode" "${pre[@]}" python3 -c pass
		done
	done
fi

SOCKPERF_SECS=$SOCKPERF_SECS REDIS_N=$REDIS_N WRK_SECS=$WRK_SECS MC_SECS=$MC_SECS IPERF_SECS=$IPERF_SECS \
	CAPTURE_SECS=$CAPTURE_SECS CAPTURE_CYCLES=$CAPTURE_CYCLES \
	IDLE_SECS=$IDLE_SECS BUSY_US=$BUSY_US REPEAT=$REPEAT HAVE_PERF=$have_perf PROFILE=$PROFILE \
	$PY "$report" report "$res" "$outdir" "$BENCH_OUT"
# the raw outputs, to read or to report again: scripts/bench_report.py report build/bench/raw ...
find "$res" -name perf.data -delete
rm -rf "$outdir/raw" && cp -r "$res" "$outdir/raw"
exit 0
