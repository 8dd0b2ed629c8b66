#!/bin/sh
# check_args.sh - the benchmark programs refuse a bad command line before
# doing anything: tg_bench and ops_bench say which option is out of its
# range (exit 2) and leave a --losses file as it was; tg_bench reports a
# --losses file it could not write; blas_probe prints --help on stdout and
# fails when stdout does. No benchmark runs; a few seconds. Run by meson
# test (suite "outside") with TG_BUILD_ROOT set.
set -u
src="${TG_SOURCE_ROOT:?run through meson test}"
bin="${TG_BUILD_ROOT:?run through meson test}/tests"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
checks=0
fails=0
# a program that starts its work instead of refusing is stopped
to=""
command -v timeout >/dev/null && to="timeout 20"


# expect RC PATTERN CMD...: CMD exits RC, its stdout and stderr matching the
# extended regular expression PATTERN
expect() {
	want=$1
	pattern=$2
	shift 2
	checks=$((checks + 1))
	rc=0
	# shellcheck disable=SC2086
	$to "$@" >"$dir/out" 2>&1 </dev/null || rc=$?
	if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pattern" "$dir/out"; then
		echo "FAIL: $*: exit $rc (wanted $want), output (wanted /$pattern/):"
		head -20 "$dir/out" | sed 's/^/  /'
		fails=$((fails + 1))
	fi
}

# same FILE COPY WHAT: FILE still has COPY's contents
same() {
	checks=$((checks + 1))
	if ! cmp -s "$1" "$2"; then
		echo "FAIL: $3 changed $1:"
		diff "$2" "$1" | head -10 | sed 's/^/  /'
		fails=$((fails + 1))
	fi
}

# ---- tg_bench ---------------------------------------------------------------
tg="$bin/tg_bench"
range="needs a whole number from 1 to 2147483647"
expect 2 "--iters $range, not '0'" "$tg" w1 --iters 0
expect 2 "--iters $range, not '4294967296'" "$tg" w1 --iters 4294967296
expect 2 "--iters $range, not '2147483648'" "$tg" w1 --iters 2147483648
expect 2 "--iters $range, not 'x'" "$tg" w1 --iters x
expect 2 "--epochs $range, not '-1'" "$tg" w2 --epochs -1
expect 2 "--threads needs a whole number from 1 to 64, not '4294967297'" \
	"$tg" w1 --threads 4294967297
expect 2 "--threads needs a whole number from 1 to 64, not '99999'" "$tg" w1 --threads 99999
expect 2 "--threads needs a whole number from 1 to 64, not '0'" "$tg" w1 --threads 0
expect 2 "^tg_bench: --data needs a value" "$tg" w1 --data
expect 2 "^tg_bench: --losses needs a value" "$tg" w1 --losses
expect 2 "unknown workload bogus" "$tg" bogus
# a mistake in the arguments leaves --losses as it was
echo keep >"$dir/keep"
cp "$dir/keep" "$dir/keep.0"
expect 2 "unknown workload bogus" "$tg" bogus --losses "$dir/keep"
same "$dir/keep" "$dir/keep.0" "tg_bench bogus --losses"
expect 2 "--iters $range" "$tg" s-relu-sgd --losses "$dir/keep" --iters x
same "$dir/keep" "$dir/keep.0" "tg_bench --iters x --losses"
# a --losses write that fails is an error naming the file (one iteration)
if [ -w /dev/full ]; then
	expect 1 "^tg_bench: writing --losses /dev/full: " "$tg" s-relu-sgd --iters 1 --losses /dev/full
fi
expect 0 "RESULT .*error=none" "$tg" s-relu-sgd --iters 1 --losses "$dir/losses"
checks=$((checks + 1))
if [ "$(wc -l <"$dir/losses")" -ne 1 ]; then
	echo "FAIL: tg_bench s-relu-sgd --iters 1 --losses wrote $(wc -l <"$dir/losses") lines, wanted 1"
	fails=$((fails + 1))
fi

# ---- ops_bench --------------------------------------------------------------
ob="$bin/ops_bench"
expect 2 "--iters $range, not '4294967296'" "$ob" o-ce10k --iters 4294967296
expect 2 "--iters $range, not '2147483648'" "$ob" o-ce10k --iters 2147483648
expect 2 "--iters $range, not '0'" "$ob" o-ce10k --iters 0
expect 2 "--threads needs a whole number from 1 to 64, not '4294967296'" \
	"$ob" o-ce10k --threads 4294967296
expect 2 "--threads needs a whole number from 1 to 64, not '65'" "$ob" o-ce10k --threads 65
expect 2 "unknown option --bogus" "$ob" o-ce10k --bogus 1

# ---- blas_probe -------------------------------------------------------------
checks=$((checks + 1))
rc=0
"$bin/blas_probe" --help >"$dir/out" 2>"$dir/err" || rc=$?
if [ "$rc" -ne 0 ] || ! grep -q "^usage: blas_probe" "$dir/out" || [ -s "$dir/err" ]; then
	echo "FAIL: blas_probe --help: exit $rc (wanted 0), usage on stdout only:"
	cat "$dir/out" "$dir/err" | sed 's/^/  /'
	fails=$((fails + 1))
fi
expect 2 "^usage: blas_probe" "$bin/blas_probe" --bogus
if [ -w /dev/full ]; then
	checks=$((checks + 1))
	rc=0
	"$bin/blas_probe" --check >/dev/full 2>"$dir/err" || rc=$?
	if [ "$rc" -ne 1 ] || ! grep -q "^blas_probe: writing to stdout: " "$dir/err"; then
		echo "FAIL: blas_probe --check >/dev/full: exit $rc (wanted 1):"
		sed 's/^/  /' "$dir/err"
		fails=$((fails + 1))
	fi
fi

echo "check_args.sh: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
