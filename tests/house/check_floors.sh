#!/bin/sh
# check_floors.sh - the four floors hold: engine <- ops <- nn <- demos.
# Each of engine, ops and nn is a static library of its own; a symbol that a
# lower floor uses and a higher floor defines is a call against the flow.
# nn/ and demos/ see the public headers alone, never engine/internal.h.
set -eu
src=${TG_SOURCE_ROOT:?} build=${TG_BUILD_ROOT:?}
fail=0

defined() { nm --defined-only -g "$1" | awk 'NF == 3 { print $3 }' | sort -u; }
undefined() { nm -u "$1" | awk '{ print $NF }' | sort -u; }

# against(lower, higher): symbols lower uses that higher defines
against() {
	lower=$build/libtapegrad_$1.a higher=$build/libtapegrad_$2.a
	bad=$(comm -12 "$(tmpfile "$1.u" undefined "$lower")" "$(tmpfile "$2.d" defined "$higher")")
	if [ -n "$bad" ]; then
		echo "FAIL: $1/ calls what $2/ defines:" $bad
		fail=1
	else
		echo "$1/ calls nothing of $2/"
	fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tmpfile() { "$2" "$3" >"$tmp/$1"; echo "$tmp/$1"; }

against engine ops
against engine nn
against ops nn

# includes: engine/ includes nothing of ops/, nn/ or demos/; nn/ and demos/
# include no internal header
for f in "$src"/engine/*.c "$src"/engine/*.h; do
	if grep -Eq '#include "(tapegrad_nn|tapegrad_io|tapegrad_train)\.h"|#include "\.\./(ops|nn|demos)/' "$f"; then
		echo "FAIL: $(basename "$f") in engine/ includes a higher floor"
		fail=1
	fi
done
for f in "$src"/nn/*.c "$src"/nn/*.h "$src"/demos/*.c "$src"/demos/*.h; do
	[ -e "$f" ] || continue
	if grep -q '#include "internal.h"' "$f"; then
		echo "FAIL: $f includes internal.h, which only engine/ and ops/ see"
		fail=1
	fi
done
[ $fail = 0 ] && echo "the floors hold"
exit $fail
