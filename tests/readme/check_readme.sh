#!/bin/sh
# check_readme.sh - every C program in README.md compiles against the
# library, runs from the source root, and prints exactly the ```text block
# that follows it (when one does, before the next program); the shell
# lines that train on the shipped digits run as shown; and README's table
# of tests names every test of this build with its suites.
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

# the shell lines that train on the digits shipped in demos/data (the
# others need Fashion-MNIST, MPI or minutes): each runs as shown, from the
# source root, with this build's train
awk '/^```sh$/ { on = 1; next } /^```/ { on = 0 } on' "$src/README.md" |
	sed 's/[[:space:]]*#.*$//' | grep '^build/demos/train .*--data digits' >"$tmp/sh_lines" || true
ns=0
while IFS= read -r line; do
	ns=$((ns + 1))
	(cd "$src" && eval "\"\$build/demos/train\"${line#build/demos/train}") >"$tmp/sh.out" 2>&1 ||
		{ echo "FAIL: README's line '$line' exits non-zero:"; tail -n 5 "$tmp/sh.out"; exit 1; }
	echo "README's line runs: $line ($(grep -E '^final' "$tmp/sh.out"))"
done <"$tmp/sh_lines"
[ "$ns" -ge 2 ] || { echo "FAIL: expected at least 2 train lines on the digits in README.md, found $ns"; exit 1; }

# the table of tests: a row "| `NAME` | SUITES |" for every test meson
# knows, with its suites (meson's introspection of this build)
tests_json="$build/meson-info/intro-tests.json"
[ -f "$tests_json" ] || { echo "FAIL: no $tests_json to list the tests"; exit 1; }
{ sed 's/}, {/\n/g' "$tests_json"; echo; } |
	sed -n 's/.*"name": "\([^"]*\)".*"suite": \[\([^]]*\)\].*/\1|\2/p' |
	sed 's/"[^":]*:\([^"]*\)"/\1/g' >"$tmp/tests"
nt=0
while IFS='|' read -r name suites; do
	nt=$((nt + 1))
	row="| \`$name\` | $suites |"
	grep -qF -- "$row" "$src/README.md" ||
		{ echo "FAIL: README's table of tests has no row $row"; exit 1; }
done <"$tmp/tests"
[ "$nt" -ge 40 ] || { echo "FAIL: found $nt tests in $tests_json, expected 40 or more"; exit 1; }
echo "README's table of tests lists the $nt tests with their suites"
