#!/bin/sh
# check_readme.sh - every C program in README.md compiles against the
# library, runs from the source root, and prints exactly the ```text block
# that follows it (when one does, before the next program).
set -eu
src=${TG_SOURCE_ROOT:?} build=${TG_BUILD_ROOT:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# example<k>.c for the k-th ```c block, example<k>.txt for its ```text block
awk -v dir="$tmp" '
	/^```c$/    { k++; out = dir "/example" k ".c"; on = 1; next }
	/^```text$/ { if (k && !(k in txt)) { txt[k] = 1; out = dir "/example" k ".txt"; on = 1 }; next }
	/^```/      { on = 0; next }
	on          { print > out }
' "$src/README.md"

# the library's oneDNN kernels (ops/conv_dnnl.c), when meson found libdnnl
dnnl_libs=
if grep -q "/ops_conv_dnnl\\.c\\.o" "$build/build.ninja"; then
	dnnl_libs="-ldnnl -lgomp"
fi
n=0
for c in "$tmp"/example*.c; do
	[ -e "$c" ] || break
	n=$((n + 1))
	exe=${c%.c}
	cc -std=c11 -Wall -Wextra -Werror -o "$exe" "$c" -I"$src/engine" -I"$src/nn" \
		"$build/libtapegrad.a" $(pkg-config --libs openblas zlib) -lsleef -lm $dnnl_libs ||
		{ echo "FAIL: README's program $n does not compile"; exit 1; }
	(cd "$src" && "$exe") >"$exe.out" ||
		{ echo "FAIL: README's program $n exited non-zero"; exit 1; }
	if [ -f "$exe.txt" ]; then
		diff -u "$exe.txt" "$exe.out" ||
			{ echo "FAIL: README's program $n prints something else than README says"; exit 1; }
		echo "program $n ($(wc -l <"$c") lines) prints what README says:"
		cat "$exe.out"
	else
		echo "program $n ($(wc -l <"$c") lines) compiles and runs"
	fi
done
[ "$n" -ge 2 ] || { echo "FAIL: expected at least 2 C programs in README.md, found $n"; exit 1; }
