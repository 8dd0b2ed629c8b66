#!/bin/sh
# check_layout.sh - the top level holds the house and nothing else: the
# floors engine/, ops/, nn/, demos/, the tests/, the build's meson.build and
# meson_options.txt, README.md, LICENSE and dotfiles (.ci/, .gitignore).
# A file written there by a run and committed by mistake fails here. Reads
# the files git tracks; without git (a tarball), the directory less the
# build folders .gitignore names.
set -eu
src=${TG_SOURCE_ROOT:?}

if command -v git >/dev/null 2>&1 && git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	entries=$(git -C "$src" ls-files | cut -d/ -f1 | sort -u)
else
	entries=$(cd "$src" && ls -A | grep -v '^build')
fi

fail=0
for e in $entries; do
	case $e in
	engine | ops | nn | demos | tests | meson.build | meson_options.txt | README.md | LICENSE | .*) ;;
	*)
		echo "FAIL: $e at the top level; it belongs in a floor, tests/ or demos/ (or nowhere)"
		fail=1
		;;
	esac
done
for floor in engine ops nn demos tests; do
	if ! echo "$entries" | grep -qx "$floor"; then
		echo "FAIL: $floor/ is missing"
		fail=1
	fi
done
[ $fail = 0 ] && echo "the top level holds the house alone"
exit $fail
