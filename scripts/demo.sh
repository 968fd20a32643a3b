#!/usr/bin/env bash
# make demo: curl under LD_PRELOAD=build/libustack.so in namespace A downloads
# a 50 MB random file from a kernel python3 http.server in namespace B; prints
# both sha256s and the process's `onloadctl stats`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/topo.sh

work=$(mktemp -d); chmod 755 "$work"
stats=$(mktemp -d /dev/shm/ustack-demo-XXXXXX)
cleanup() {
	set +e
	[ -n "${srv:-}" ] && { kill "$srv"; wait "$srv"; } 2>/dev/null
	topo_down
	rm -rf "$work" "$stats"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

topo_up
head -c 50M /dev/urandom > "$work/big"
ip netns exec "$NSB" /usr/bin/python3 -m http.server --bind "$ADDRB" --directory "$work" 8000 >/dev/null 2>&1 &
srv=$!
wait_listen "$NSB" 8000

echo
echo "\$ USTACK_IFACE=$IFA LD_PRELOAD=$root/build/libustack.so curl -o out http://$ADDRB:8000/big"
# ip netns exec and env both exec, so $! is curl's pid.
ip netns exec "$NSA" env LD_PRELOAD="$root/build/libustack.so" USTACK_IFACE="$IFA" USTACK_STATS_DIR="$stats" \
	curl -sS --fail --max-time 120 -o "$work/out" -w 'downloaded %{size_download} bytes in %{time_total} s (%{speed_download} B/s)\n' \
	"http://$ADDRB:8000/big" &
pid=$!
rc=0; wait $pid || rc=$?
echo
echo "sha256:"
(cd "$work" && sha256sum big out)
echo
echo "\$ onloadctl stats --pid $pid"
statsrc=0
build/onloadctl stats --pid "$pid" --dir "$stats" || statsrc=$?
if [ $rc -ne 0 ]; then echo "FAIL: curl exit $rc"; exit $rc; fi
cmp -s "$work/big" "$work/out" || { echo "FAIL: files differ"; exit 1; }
if [ $statsrc -ne 0 ]; then echo "FAIL: no ustack stats for curl (pid $pid): ustack did not run"; exit 1; fi
echo
echo "demo ok"
