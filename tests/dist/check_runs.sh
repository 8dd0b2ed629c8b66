#!/bin/sh
# check_runs.sh - demos/train under mpirun where the ranks' runs could part
# without a word:
#  1. ranks whose models have the same shapes but another activation or a
#     dropout layer (an MPMD line) stop before training, naming both
#     architectures;
#  2. a last batch too short for the ranks is dropped with a notice (one
#     process of the global batch keeps it: another run);
#  3. a one-process checkpoint that keeps such a last batch, resumed on more
#     ranks than its rows, is refused saying so, not with advice --resume
#     cannot take;
#  4. --sync-bn given to resume a run of per-rank batch norm is refused;
#  5. outputs only rank 0 writes (--save, --log, --step-log) in a directory
#     that another rank's machine lacks train all the same;
#  6. a process of the job started without --dist, which ends before
#     rank 0 calls MPI_Init and never joins it, ends the job after
#     --dist-timeout rather than leave rank 0 in MPI_Init for ever (one
#     that ends later mpirun sees, saying it did not call "init");
#  7. --load on one rank only, or of files that differ, stops every rank
#     saying so (tg_dist_attach would give them rank 0's parameters
#     without a word); the same file on every rank trains.
# Run by meson test (suites "outside" and "dist").
set -u
. "$(dirname "$0")/mpi_env.sh"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

for other in "--act tanh" "--dropout 0.5"; do
	$mpirun -np 1 "$train" --dist --data iris --epochs 2 --quiet : \
		-np 1 "$train" --dist --data iris --epochs 2 --quiet $other >"$dir/arch.out" 2>&1
	status=$?
	echo "rank 1 with $other: status $status"
	[ "$status" -ne 0 ] || fail "rank 1 with $other: the job ended with status 0"
	grep -q "the ranks' models differ: rank 0's is \"linear:4:16,relu,linear:16:3\" but rank 1's" \
		"$dir/arch.out" || { fail "rank 1 with $other: not named:"; cat "$dir/arch.out"; }
done

# digits: 1437 train rows; a global batch of 4 leaves 1
$mpirun -np 2 "$train" --dist --data digits --batch 2 --no-bn --epochs 1 --quiet \
	>"$dir/drop.out" 2>&1 || { fail "2 ranks of batch 2:"; cat "$dir/drop.out"; }
grep '^dist' "$dir/drop.out"
grep -q 'the last batch of 1 row cannot be split over the ranks.*one process of batch 4' \
	"$dir/drop.out" || { fail "no notice of the dropped batch:"; cat "$dir/drop.out"; }
grep -q '359 steps' "$dir/drop.out" || { fail "not 359 steps:"; cat "$dir/drop.out"; }

"$train" --data digits --batch 4 --no-bn --epochs 1 --quiet --save "$dir/one.ckpt" \
	>"$dir/one.out" 2>&1 || { fail "one process of batch 4:"; cat "$dir/one.out"; }
$mpirun -np 2 "$train" --dist --resume "$dir/one.ckpt" --epochs 2 --quiet >"$dir/res.out" 2>&1
status=$?
echo "a run that keeps its last row, resumed on 2 ranks: status $status"
[ "$status" -ne 0 ] || fail "resumed on 2 ranks: the job ended with status 0"
grep -q 'keeps the last batch of each epoch, 1 row, which 2 ranks cannot share.*at most 1 rank' \
	"$dir/res.out" || { fail "resumed on 2 ranks: not said:"; cat "$dir/res.out"; }
if grep -q 'drop_last\|after 0 steps' "$dir/res.out"; then
	fail "resumed on 2 ranks: advice --resume cannot take:"
	cat "$dir/res.out"
fi

$mpirun -np 2 "$train" --dist --resume "$dir/one.ckpt" --sync-bn --epochs 2 --quiet \
	>"$dir/sync.out" 2>&1
status=$?
[ "$status" -ne 0 ] || fail "--sync-bn on a per-rank run: the job ended with status 0"
grep -q -- '--sync-bn: the run in .* trained with per-rank batch norm' "$dir/sync.out" ||
	{ fail "--sync-bn on a per-rank run: not said:"; cat "$dir/sync.out"; }

# rank 1 names a directory that is not there, as another machine would
out="--save $dir/out.ckpt --log $dir/out.csv --step-log $dir/out.steps"
gone="--save $dir/gone/out.ckpt --log $dir/gone/out.csv --step-log $dir/gone/out.steps"
$mpirun -np 1 "$train" --dist --data iris --epochs 2 --quiet $out : \
	-np 1 "$train" --dist --data iris --epochs 2 --quiet $gone >"$dir/paths.out" 2>&1 ||
	{ fail "outputs rank 1 does not write, in a directory it lacks:"; cat "$dir/paths.out"; }
[ -s "$dir/out.ckpt" ] && [ -s "$dir/out.csv" ] && [ -s "$dir/out.steps" ] ||
	fail "rank 0 did not write its --save, --log and --step-log"

start=$(date +%s)
timeout 60 $mpirun -np 1 "$train" --dist --data iris --epochs 2 --quiet --dist-timeout 5 : \
	-np 1 "$train" --help >"$dir/nodist.out" 2>&1
status=$?
took=$(( $(date +%s) - start ))
echo "rank 1 without --dist: the job ended in $took s with status $status"
[ "$status" -ne 0 ] && [ "$status" -ne 124 ] || fail "rank 1 without --dist: status $status"
[ "$took" -lt 30 ] || fail "rank 1 without --dist: the job took $took s to end"
grep -q 'MPI_Init did not complete within 5 s\|did not call "init"' "$dir/nodist.out" ||
	{ fail "rank 1 without --dist: rank 0 did not say why:"; cat "$dir/nodist.out"; }

"$train" --data iris --epochs 1 --save "$dir/a.ckpt" --quiet >/dev/null 2>&1 &&
	"$train" --data iris --epochs 2 --save "$dir/b.ckpt" --quiet >/dev/null 2>&1 ||
	fail "the files to --load were not saved"
for loads in "|--load $dir/a.ckpt|given on 1 of 2 ranks" \
	     "--load $dir/a.ckpt||given on 1 of 2 ranks" \
	     "--load $dir/a.ckpt|--load $dir/b.ckpt|the ranks loaded files that differ" \
	     "--load $dir/a.ckpt|--load $dir/a.ckpt|"; do
	l0=${loads%%|*} rest=${loads#*|}
	l1=${rest%%|*} says=${rest#*|}
	timeout 120 $mpirun -np 1 "$train" --dist --data iris --epochs 1 --quiet $l0 : \
		-np 1 "$train" --dist --data iris --epochs 1 --quiet $l1 >"$dir/load.out" 2>&1
	status=$?
	echo "rank 0 ${l0:-without --load}, rank 1 ${l1:-without --load}: status $status"
	if [ -z "$says" ]; then
		[ "$status" -eq 0 ] || { fail "the same --load on both ranks:"; cat "$dir/load.out"; }
		continue
	fi
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ] || fail "--load $loads: status $status"
	for r in 0 1; do
		grep -q "rank $r of 2): --load: $says; every rank must load the same file" \
			"$dir/load.out" || { fail "--load $loads: rank $r did not say so:"; cat "$dir/load.out"; }
	done
done

if [ "$fails" -ne 0 ]; then
	echo "$fails failure(s)"
	exit 1
fi
echo "all run checks passed"
