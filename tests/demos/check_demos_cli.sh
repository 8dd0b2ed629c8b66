#!/bin/sh
# check_demos_cli.sh - the command lines and outputs of the demos other
# than train (check_train_cli.sh has train's), and of the scripts
# demos/experiments and demos/run. Run by meson test (suite "outside") with
# TG_BUILD_ROOT and TG_SOURCE_ROOT set.
set -u
demos="${TG_BUILD_ROOT:?run through meson test}/demos"
src="${TG_SOURCE_ROOT:?run through meson test}"
dir=$(mktemp -d)
out="$dir/stderr"
trap 'rm -rf "$dir"' EXIT
fails=0

# fail MESSAGE: one failed check
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

# a folder name of 200 d's, and paths made of them
d=$(printf '%200s' '' | tr ' ' d)
long="$d/$d/$d/$d/$d/$d"

# --out of about 1000 characters: every graph under its own whole name
# (gate_max, gate_max_tie and gate_mul once all landed in "gate_m")
cd "$dir" || exit 1
L="col/$long"
L=$(printf '%s' "$L" | cut -c 1-1016)
if ! "$demos/chain_rule" --out "$L" >"$dir/stdout" 2>"$out"; then
	fail "chain_rule --out (1016 characters): exit $?: $(head -n 1 "$out")"
fi
for g in gate_max gate_max_tie gate_mul apple; do
	[ -f "$L/$g.dot" ] || fail "chain_rule --out (1016 characters): no $g.dot"
done
graphs=$(grep -c '^  graph: ' "$dir/stdout")
files=$(find "$L" -name '*.dot' | wc -l)
if [ "$graphs" -lt 18 ] || [ "$graphs" -ne "$files" ]; then
	fail "chain_rule --out (1016 characters): $graphs graphs printed, $files .dot files"
fi
rm -rf col

# --out too long for its files' paths (PATH_MAX): exit 1 naming it, before
# any work (nothing on stdout), nothing made
# (4021 characters: under PATH_MAX, but DIR/.<name>.tmp.<pid> would not be)
T="far/$long/$long/$long/$d/$d"
for demo in chain_rule valley simple_convnet; do
	quick=""
	[ "$demo" = simple_convnet ] && quick=--quick
	# shellcheck disable=SC2086
	"$demos/$demo" --out "$T" $quick >"$dir/stdout" 2>"$out"
	rc=$?
	if [ "$rc" != 1 ] || [ -s "$dir/stdout" ] || [ -e far ] ||
		! grep -qF "$demo: --out $T: too long: ${#T} characters" "$out"; then
		fail "$demo --out (${#T} characters): exit $rc, $(ls -d far 2>/dev/null) $(head -c 200 "$out")"
	fi
	rm -rf far
done
cd - >/dev/null || exit 1

# results that cannot be written to stdout (a full disk) are no success
if [ -w /dev/full ]; then
	for run in "chain_rule --out $dir/g" "derivatives" "valley --out $dir/v" \
		"init_hist --out $dir/h"; do
		# shellcheck disable=SC2086
		set -- $run
		demo=$1
		shift
		"$demos/$demo" "$@" >/dev/full 2>"$out"
		rc=$?
		if [ "$rc" != 1 ] ||
			! grep -qF "$demo: writing the results to stdout failed: No space" "$out"; then
			fail "$demo >/dev/full: exit $rc, $(tail -n 1 "$out")"
		fi
	done
fi

# valley and init_hist run short already: no --quick to ignore
for demo in valley init_hist; do
	"$demos/$demo" --quick --out "$dir/q" >/dev/null 2>"$out"
	rc=$?
	if [ "$rc" != 2 ] || ! grep -qF "$demo: unknown option '--quick'" "$out"; then
		fail "$demo --quick: exit $rc, $(head -n 1 "$out")"
	fi
	if "$demos/$demo" --help | grep -q -- --quick; then
		fail "$demo --help offers --quick"
	fi
done
if ! "$demos/batchnorm" --help | grep -qF -- "--quick    a short run, to check that everything works: 3 epochs"; then
	fail "batchnorm --help does not say what --quick shortens: $("$demos/batchnorm" --help)"
fi

# simple_convnet without gnuplot names the CSV and the script it wrote, no
# picture it did not draw (needs Fashion-MNIST; 1 epoch on 3000 images)
if [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
	mkdir "$dir/nopath"
	PATH="$dir/nopath" "$demos/simple_convnet" --quick --out "$dir/sc" >"$dir/stdout" 2>"$out"
	rc=$?
	last=$(tail -n 1 "$dir/stdout")
	if [ "$rc" != 0 ] ||
		[ "$last" != "filters in $dir/sc/simple_convnet_filters.csv and simple_convnet_filters.gp" ] ||
		[ -e "$dir/sc/simple_convnet_filters.png" ]; then
		fail "simple_convnet without gnuplot: exit $rc, said: $last $(head -n 1 "$out")"
	fi
else
	echo "simple_convnet without gnuplot: skipped (no Fashion-MNIST)"
fi

# demos/experiments: an empty --out (an unset variable) is no directory
for arg in "--out=" "--out ''"; do
	eval "set -- $arg valley"
	"$src/demos/experiments" "$@" >"$dir/stdout" 2>"$out"
	rc=$?
	if [ "$rc" != 2 ] || [ -s "$dir/stdout" ] ||
		! grep -qF "demos/experiments: --out needs a directory, not an empty string" "$out"; then
		fail "experiments $arg: exit $rc, $(head -n 1 "$out")"
	fi
done

# demos/run --help: the help on stdout, first line first, with no build's
# or install's talk before it
"$src/demos/run" --help >"$dir/stdout" 2>"$out"
rc=$?
first=$(head -n 1 "$dir/stdout")
case "$first" in
"demos/run - the main job"*) ;;
*) first="wrong: $first" ;;
esac
if [ "$rc" != 0 ] || [ "${first#wrong}" != "$first" ] ||
	grep -qE "^INFO:|^ninja: |^Reading package" "$dir/stdout" "$out"; then
	fail "demos/run --help: exit $rc, $first"
fi

# tests/run, tests/memcheck/run and .ci/run --help: their header on
# stdout, exit 0, and nothing installed, built or run. Each runs as a copy
# in a tree of its own, with meson, apt-get, dpkg-query and valgrind on
# PATH as stubs that leave a mark, so a script that goes on past --help
# fails here instead of starting the whole suite.
mkdir -p "$dir/tree/tests/memcheck" "$dir/tree/.ci" "$dir/bin"
for s in tests/run tests/memcheck/run .ci/run; do
	cp "$src/$s" "$dir/tree/$s"
done
for tool in meson ninja apt-get dpkg-query valgrind; do
	printf '#!/bin/sh\necho "%s $*" >>"%s"\nexit 1\n' "$tool" "$dir/called" >"$dir/bin/$tool"
	chmod +x "$dir/bin/$tool"
done
for s in tests/run tests/memcheck/run .ci/run; do
	for h in --help -h; do
		rm -f "$dir/called"
		PATH="$dir/bin:$PATH" "$dir/tree/$s" $h >"$dir/stdout" 2>"$out"
		rc=$?
		first=$(head -n 1 "$dir/stdout")
		case "$first" in
		"$s - "*) ;;
		*) first="wrong: $first" ;;
		esac
		if [ "$rc" != 0 ] || [ "${first#wrong}" != "$first" ] || [ -e "$dir/called" ]; then
			fail "$s $h: exit $rc, $first; called: $(cat "$dir/called" 2>/dev/null | head -n 1)"
		fi
	done
done

# .ci/run runs the suite, memcheck, the fuzz targets' committed corpora and
# regression inputs (which fuzzing alone never replays), then fuzzing: the
# steps are stubs here that note how they were called
mkdir -p "$dir/ci/.ci" "$dir/ci/tests/memcheck" "$dir/ci/tests/fuzz"
cp "$src/.ci/run" "$dir/ci/.ci/run"
for s in tests/run tests/memcheck/run tests/fuzz/run; do
	printf '#!/bin/sh
echo "%s $*" >>"%s"
' "$s" "$dir/ci_steps" >"$dir/ci/$s"
	chmod +x "$dir/ci/$s"
done
rm -f "$dir/ci_steps"
"$dir/ci/.ci/run" >"$dir/stdout" 2>"$out"
rc=$?
steps=$(tr '\n' ';' <"$dir/ci_steps" 2>/dev/null)
if [ "$rc" != 0 ] ||
	[ "$steps" != "tests/run ;tests/memcheck/run ;tests/fuzz/run --regress;tests/fuzz/run 30;" ]; then
	fail ".ci/run: exit $rc, steps: $steps"
fi

# gradient_check's --samples stops where kinks would swamp the check
"$demos/gradient_check" --samples 11 >/dev/null 2>"$out"
rc=$?
if [ "$rc" != 2 ] ||
	! grep -qF "gradient_check: --samples needs a whole number from 1 to 10, not '11'" "$out"; then
	fail "gradient_check --samples 11: exit $rc, $(head -n 1 "$out")"
fi

if [ "$fails" -gt 0 ]; then
	echo "$fails of the demos' command-line checks failed"
	exit 1
fi
echo "demos: every command-line check passed"
