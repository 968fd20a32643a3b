#!/usr/bin/env bash
# Run every Fuzz target in stackcore (and shim, nic) for $1 each (default 10s).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
GO=${GO:-go}
n=0
for pkg in $($GO list ./stackcore/... ./shim/... ./nic/... 2>/dev/null); do
	for f in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $f ($fuzztime)"
		$GO test -run '^$' -fuzz "^${f}\$" -fuzztime "$fuzztime" "$pkg"
		n=$((n + 1))
	done
done
echo "fuzz: $n targets"
