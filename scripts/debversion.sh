#!/bin/sh
# Prints the Debian package version of this tree, from `git describe --tags --always`: a tag v1.2
# (or 1.2) gives 1.2, three commits after it 1.2+git3.gHASH; without such a tag,
# 0.0~git<commit date>.<hash>; outside git, 0.0~git<today>.unknown.
v=$(git describe --tags --always 2>/dev/null)
if git describe --tags >/dev/null 2>&1; then
	case "$v" in
	[0-9]* | v[0-9]*)
		echo "$v" | sed -e 's/^v//' -e 's/-\([0-9]*\)-g/+git\1.g/' -e 's/[^A-Za-z0-9.+~]/./g'
		exit 0
		;;
	esac
	v=$(git rev-parse --short HEAD)
fi
d=$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d)
echo "0.0~git$d.${v:-unknown}"
