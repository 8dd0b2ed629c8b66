#!/bin/sh
# check_args.sh - the benchmark and fuzzing tools refuse a bad command line
# before doing anything: tg_bench and ops_bench say which option is out of
# its range (exit 2) and leave a --losses file as it was; tg_bench reports
# a --losses file it could not write; blas_probe prints --help on stdout and
# fails when stdout does; bench.py and ops_bench.py refuse an unknown --only
# name, listing the valid ones, with results.md untouched; a --suite --quick
# run goes to history.csv only; ops_bench.py --iters reaches tapegrad's side;
# tests/bench/run --help, tests/bench/run with an unknown option and
# tests/fuzz/run 0 return at once. No benchmark
# runs (the Python scripts drive stand-ins for the C programs); a few
# seconds. Run by meson test (suite "outside") with TG_BUILD_ROOT set.
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
expect 2 "--fused-relu needs a suite workload with relu; w3 is not a suite workload" \
	"$tg" w3 --fused-relu
expect 2 "--fused-relu needs a suite workload with relu; s-tanh-w5 has another activation" \
	"$tg" s-tanh-w5 --fused-relu --iters 1
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

# ---- bench.py and ops_bench.py ------------------------------------------------
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3 || true)
if [ -z "$py" ]; then
	echo "check_args.sh: no python3: bench.py and ops_bench.py not checked"
else
	# stand-ins for tg_bench and ops_bench: they list workloads of their
	# kind, log their arguments and print a RESULT line at once
	mkdir "$dir/fake"
	cat >"$dir/fake/tg_bench" <<EOF
#!/bin/sh
echo "\$*" >>"$dir/fake/log"
case "\$1" in
suite-list) echo "s-a 4-3-2 relu 0 2 f32 0 100" ;;
suite-data) : >"\$3" ;;
*) echo "RESULT sec_per_iter=0.001 cpu=0.02 iters=20 loss=1 dtype=f32 error=none" ;;
esac
EOF
	cat >"$dir/fake/ops_bench" <<EOF
#!/bin/sh
echo "\$*" >>"$dir/fake/log"
if [ "\$1" = --list ]; then
	printf 'o-a\tthe first\no-b\tthe second\n'
else
	echo "RESULT side=tapegrad workload=\$1 sec_per_iter=0.001 loss=1"
fi
EOF
	chmod +x "$dir/fake/tg_bench" "$dir/fake/ops_bench"
	printf '# tests/bench results\n\nkept\n' >"$dir/results.md"
	cp "$dir/results.md" "$dir/results.0"
	files="--results $dir/results.md --history $dir/history.csv"
	# shellcheck disable=SC2086
	expect 2 "^bench.py: --only: unknown workload w9; valid: w1, w1-f64, " \
		"$py" "$src/tests/bench/bench.py" --bin "$dir/fake/tg_bench" --no-torch --only w1,w9 $files
	# shellcheck disable=SC2086
	expect 2 "^bench.py: --only: unknown workload s-typo; valid: s-a, s-cnn, " \
		"$py" "$src/tests/bench/bench.py" --bin "$dir/fake/tg_bench" --suite --no-torch \
		--only s-typo $files
	expect 2 "^ops_bench.py: --only: unknown workloads bogus, zz; valid: o-a, o-b$" \
		"$py" "$src/tests/bench/ops_bench.py" --bin "$dir/fake/ops_bench" --no-torch \
		--only zz,o-a,bogus --results "$dir/results.md"
	same "$dir/results.md" "$dir/results.0" "an unknown --only name"
	checks=$((checks + 1))
	if [ -e "$dir/history.csv" ]; then
		echo "FAIL: an unknown --only name wrote $dir/history.csv"
		fails=$((fails + 1))
	fi
	# --suite --quick: history.csv only
	cp "$dir/results.0" "$dir/results.md"
	# shellcheck disable=SC2086
	expect 0 "s-a: 4-3-2 relu" "$py" "$src/tests/bench/bench.py" --bin "$dir/fake/tg_bench" \
		--suite --quick --no-torch --only s-a $files
	same "$dir/results.md" "$dir/results.0" "bench.py --suite --quick"
	checks=$((checks + 1))
	if ! grep -q ",suite-quick,.*,s-a,tapegrad," "$dir/history.csv" 2>/dev/null; then
		echo "FAIL: bench.py --suite --quick: no suite-quick row in history.csv:"
		sed 's/^/  /' "$dir/history.csv" 2>/dev/null
		fails=$((fails + 1))
	fi
	# ops_bench.py --iters reaches tapegrad's side (and --before's)
	: >"$dir/fake/log"
	expect 0 "o-b +tapegrad +1 ms" "$py" "$src/tests/bench/ops_bench.py" --bin "$dir/fake/ops_bench" \
		--before "$dir/fake/ops_bench" --no-torch --no-save --only o-b --reps 1 --iters 7
	checks=$((checks + 1))
	if [ "$(grep -c "^o-b --threads 1 --iters 7$" "$dir/fake/log")" -ne 2 ]; then
		echo "FAIL: ops_bench.py --iters 7: the programs ran as:"
		sed 's/^/  /' "$dir/fake/log"
		fails=$((fails + 1))
	fi
fi

# ---- the scripts' usage ---------------------------------------------------------
expect 0 "tests/bench/run --ops \[--sweep\]" "$src/tests/bench/run" --help
expect 0 "tests/bench/run --suite" "$src/tests/bench/run" --suite -h
# a bad option or number is refused before anything is built or installed
expect 2 "bench.py: error: unrecognized arguments: --bogus" "$src/tests/bench/run" --bogus
expect 2 "ops_bench.py: error: argument --iters: a whole number" \
	"$src/tests/bench/run" --ops --iters 0
expect 2 "^tests/fuzz/run: SECONDS must be a whole number from 1 .*, not 0$" \
	"$src/tests/fuzz/run" 0 expr
expect 2 "^tests/fuzz/run: SECONDS must be a whole number from 1 .*, not 1.5$" \
	"$src/tests/fuzz/run" --keep-going 1.5
expect 0 "tests/fuzz/run" "$src/tests/fuzz/run" --keep-going --help
expect 2 "^tests/fuzz/run: --bogus: an option goes first" "$src/tests/fuzz/run" 10 --bogus

echo "check_args.sh: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
