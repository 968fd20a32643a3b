#!/usr/bin/env bash
# Run every Fuzz target in stackcore (and shim, nic) for $1 each (default 10s).
#
# $1 is a time (N, Ns, Nm or Nh) or a count of executions (Nx). A time is not
# passed as -fuzztime: Go before 1.27 can fail a run that found nothing with
# "context deadline exceeded" when -fuzztime runs out (go.dev/issue/75804: the
# coordinator reads its deadline's error before the workers' context has it).
# Instead each target's test binary fuzzes until this script interrupts it,
# which Go treats as a normal end ("PASS"); a failure is a real finding.
#
# FUZZMINIMIZE (default 100x) bounds the minimisation of each new input: the
# default of 60s stalls short runs for seconds. FUZZPARALLEL sets -parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
GO=${GO:-go}
minimize=${FUZZMINIMIZE:-100x}
parallel=${FUZZPARALLEL:+-test.parallel=$FUZZPARALLEL}

count= secs=
case $fuzztime in
*x) count=$fuzztime secs=0 ;;
*[0-9]h) secs=$((${fuzztime%h} * 3600)) ;;
*[0-9]m) secs=$((${fuzztime%m} * 60)) ;;
*[0-9]s) secs=${fuzztime%s} ;;
*) secs=$fuzztime ;;
esac
if ! [[ $secs =~ ^[0-9]+$ ]]; then
	echo "fuzz.sh: fuzz time '$fuzztime' is not N, Ns, Nm, Nh or Nx" >&2
	exit 2
fi

tmp=$(mktemp -d)
pid=
trap 'if [[ -n $pid ]]; then kill -INT "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
cachedir=$($GO env GOCACHE)/fuzz

# running reports whether process $1 has not exited.
running() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]
}

# fuzz pkg dir bin target: fuzzes one target, for $secs once it has started
# (or $count executions), and prints its exec rate.
fuzz() {
	local pkg=$1 dir=$2 bin=$3 f=$4 log=$tmp/log tailpid rc=0 limit end
	if [[ -n $count ]]; then
		limit=-test.fuzztime=$count
	else
		limit=-test.timeout=$((secs + 600))s # a backstop: the end is our SIGINT
	fi
	: >"$log"
	(cd "$dir" && exec "$bin" -test.run='^$' -test.fuzz="^${f}\$" "$limit" \
		-test.fuzzminimizetime="$minimize" -test.fuzzcachedir="$cachedir/$pkg" $parallel) >"$log" 2>&1 &
	pid=$!
	tail -n +1 -s 0.2 -f --pid="$pid" "$log" &
	tailpid=$!
	if [[ -z $count ]]; then
		# From its first status line the coordinator takes SIGINT as the end.
		while running "$pid" && ! grep -qs '^fuzz: elapsed' "$log"; do
			sleep 0.1
		done
		end=$((${EPOCHREALTIME/./} + secs * 1000000))
		while running "$pid" && ((${EPOCHREALTIME/./} < end)); do
			sleep 0.2
		done
		kill -INT "$pid" 2>/dev/null || true
	fi
	wait "$pid" || rc=$?
	pid=
	wait "$tailpid" || true
	sed -n 's/^fuzz: elapsed: \([0-9]*\)s, execs: \([0-9]*\) .*/\1 \2/p' "$log" | tail -1 |
		while read -r el ex; do
			echo "fuzz: $pkg $f: $ex execs in ${el}s ($((ex / (el > 0 ? el : 1)))/sec)"
		done
	return "$rc"
}

n=0
for pkg in $($GO list ./stackcore/... ./shim/... ./nic/... 2>/dev/null); do
	targets=$($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
	[[ -n $targets ]] || continue
	bin=$tmp/fuzz.test
	$GO test -c -fuzz=. -tags ustack_fuzz -o "$bin" "$pkg"
	dir=$($GO list -f '{{.Dir}}' "$pkg")
	for f in $targets; do
		echo "fuzz $pkg $f ($fuzztime)"
		fuzz "$pkg" "$dir" "$bin" "$f"
		n=$((n + 1))
	done
done
echo "fuzz: $n targets"
