#!/bin/sh
# check_equiv.sh - data-parallel training is the same training: 2 ranks of
# batch B and 1 process of batch 2B (same seed, so the same permutation of
# every epoch, each rank taking its half of each global batch; f64, no
# dropout) give the same loss at every step to 1e-10 relative and the same
# final parameters and optimizer state to 1e-9 (max|a-b| / max(max|a|,
# 1e-3) per tensor: see ckpt_compare.c), with and without synchronised batch norm
# (of an MLP's features, and of a CNN's channels); per-rank batch norm
# trains too, differently. A checkpoint written by 2 ranks resumes on 1 and
# on 3 ranks and ends where a straight single-process run ends; one written
# with --sync-bn, resumed without the flag, keeps batch norm synchronised.
# Run by meson test (suites "outside" and "dist").
set -u
. "$(dirname "$0")/mpi_env.sh"
compare="$TG_BUILD_ROOT/tests/ckpt_compare"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0

fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

# one NAME ARGS: one process; dist NAME N ARGS: N ranks. Each keeps its
# stdout, step log and checkpoint under $dir/NAME.
one() {
	name=$1
	shift
	"$train" "$@" --quiet --step-log "$dir/$name.steps" --save "$dir/$name.ckpt" \
		--log "$dir/$name.csv" >"$dir/$name.out" 2>&1 || { fail "train $*:"; cat "$dir/$name.out"; }
}
dist() {
	name=$1 n=$2
	shift 2
	$mpirun -np "$n" "$train" --dist "$@" --quiet --step-log "$dir/$name.steps" \
		--save "$dir/$name.ckpt" --log "$dir/$name.csv" >"$dir/$name.out" 2>&1 ||
		{ fail "mpirun -np $n train --dist $*:"; cat "$dir/$name.out"; }
}

# agree A B: the step losses and the checkpoints of runs A and B; the epoch
# lines (4 decimals of each loss) and the CSV logs' losses and accuracies
# (6 decimals: epoch, iter, train and test loss and accuracy) the same text
agree() {
	cut -d, -f1-6 "$dir/$1.csv" >"$dir/l1"
	cut -d, -f1-6 "$dir/$2.csv" >"$dir/l2"
	if [ "$(wc -l <"$dir/l1")" -lt 2 ] || ! cmp -s "$dir/l1" "$dir/l2"; then
		fail "$1 and $2: the logs' per-epoch losses differ:"
		diff "$dir/l1" "$dir/l2"
	fi
	same_steps "$dir/$1.steps" "$dir/$2.steps" 1e-10 || fail "$1 and $2: step losses differ"
	"$compare" "$dir/$1.ckpt" "$dir/$2.ckpt" 1e-9 >"$dir/cmp" ||
		{ fail "$1 and $2: final tensors differ:"; cat "$dir/cmp"; }
	tail -1 "$dir/cmp"
	grep '^epoch' "$dir/$1.out" | sed 's/  [0-9.]* s$//' >"$dir/e1"
	grep '^epoch' "$dir/$2.out" | sed 's/  [0-9.]* s$//' >"$dir/e2"
	if ! [ -s "$dir/e1" ] || ! cmp -s "$dir/e1" "$dir/e2"; then
		fail "$1 and $2: the epoch lines differ:"
		diff "$dir/e1" "$dir/e2"
	fi
}

common="--data digits --epochs 5 --dtype f64 --seed 3"
echo "2 ranks x 32 against 1 x 64, no batch norm (the last batch of 29 rows splits 14 + 15)"
one plain $common --batch 64 --no-bn
dist plain2 2 $common --batch 32 --no-bn
agree plain plain2

echo "2 ranks x 32 with --sync-bn against 1 x 64 with batch norm"
one bn $common --batch 64 --bn
dist bn2 2 $common --batch 32 --bn --sync-bn
agree bn bn2

# (SGD: the conv's bias before batch norm has a gradient of 0 but for
# rounding, which Adam's division by its own size would blow up to 1e-12
# steps, as far apart as the rounding of the two runs)
echo "the same for a CNN with batch norm over its convolution's channels"
cnn="--net conv:1:4:3:1:1,bn:4,relu,maxpool:2,flatten,linear:64:10 --data digits --epochs 2"
cnn="$cnn --dtype f64 --seed 3 --optim sgd --lr 0.1"
one cnnbn $cnn --batch 64
dist cnnbn2 2 $cnn --batch 32 --sync-bn
agree cnnbn cnnbn2

echo "per-rank batch norm (the default) is another training: it must differ, and train"
dist bnlocal 2 $common --batch 32 --bn
if same_steps "$dir/bn.steps" "$dir/bnlocal.steps" 1e-10 >/dev/null; then
	fail "per-rank batch norm gave the losses of the global batch's statistics"
fi
grep -q 'final test accuracy 0\.9' "$dir/bnlocal.out" ||
	{ fail "per-rank batch norm did not reach 0.9 test accuracy:"; cat "$dir/bnlocal.out"; }

echo "written by 2 ranks after 2 epochs, resumed on 1 and on 3 ranks to 5"
sched="--schedule cosine:5"
one straight --data digits --epochs 5 --dtype f64 --seed 3 --batch 60 --no-bn $sched
dist half 2 --data digits --epochs 2 --dtype f64 --seed 3 --batch 30 --no-bn $sched
cp "$dir/half.ckpt" "$dir/half3.ckpt"
"$train" --resume "$dir/half.ckpt" --epochs 5 --save "$dir/on1.ckpt" --quiet \
	>"$dir/on1.out" 2>&1 || { fail "resume on 1:"; cat "$dir/on1.out"; }
$mpirun -np 3 "$train" --dist --resume "$dir/half3.ckpt" --epochs 5 --save "$dir/on3.ckpt" \
	--quiet >"$dir/on3.out" 2>&1 || { fail "resume on 3:"; cat "$dir/on3.out"; }
for m in on1 on3; do
	"$compare" "$dir/straight.ckpt" "$dir/$m.ckpt" 1e-9 >"$dir/cmp" ||
		{ fail "resumed ($m) and straight runs differ:"; cat "$dir/cmp"; }
	echo "$m: $(tail -1 "$dir/cmp")"
done

echo "written by 2 ranks with --sync-bn after 2 epochs, resumed (no --sync-bn) to 4"
dist syncstraight 2 $common --epochs 4 --batch 32 --bn --sync-bn --schedule cosine:4
dist synchalf 2 $common --epochs 2 --batch 32 --bn --sync-bn --schedule cosine:4
$mpirun -np 2 "$train" --dist --resume "$dir/synchalf.ckpt" --epochs 4 --save "$dir/syncres.ckpt" \
	>"$dir/syncres.out" 2>&1 || { fail "resume with --sync-bn:"; cat "$dir/syncres.out"; }
grep -q 'batch norm synchronised' "$dir/syncres.out" ||
	{ fail "the resumed run does not synchronise batch norm:"; cat "$dir/syncres.out"; }
"$compare" "$dir/syncstraight.ckpt" "$dir/syncres.ckpt" 1e-9 >"$dir/cmp" ||
	{ fail "resumed --sync-bn and straight runs differ:"; cat "$dir/cmp"; }
echo "syncres: $(tail -1 "$dir/cmp")"

if [ "$fails" -ne 0 ]; then
	echo "$fails failure(s)"
	exit 1
fi
echo "all equivalence checks passed"
