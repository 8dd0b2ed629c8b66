#!/bin/sh
# check_readme.sh - README's first C example compiles against the library
# and prints exactly the output README shows below it.
set -eu
src=${TG_SOURCE_ROOT:?} build=${TG_BUILD_ROOT:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the first ```c block, and the first ```text block after it
awk '/^```c$/ && !done {on=1; next} on && /^```$/ {on=0; done=1} on' "$src/README.md" >"$tmp/example.c"
awk '/^```c$/ {seen=1} seen && /^```text$/ && !done {on=1; next} on && /^```$/ {on=0; done=1} on' \
	"$src/README.md" >"$tmp/expected.txt"
[ -s "$tmp/example.c" ] || { echo "FAIL: no C example in README.md"; exit 1; }
[ -s "$tmp/expected.txt" ] || { echo "FAIL: no expected output in README.md"; exit 1; }

cc -std=c11 -Wall -Wextra -Werror -o "$tmp/example" "$tmp/example.c" -I"$src/engine" \
	-I"$src/nn" "$build/libtapegrad.a" $(pkg-config --libs openblas zlib) -lm
"$tmp/example" >"$tmp/got.txt"
if ! diff -u "$tmp/expected.txt" "$tmp/got.txt"; then
	echo "FAIL: README's example prints something else than README says"
	exit 1
fi
echo "README example prints what README says:"
cat "$tmp/got.txt"
