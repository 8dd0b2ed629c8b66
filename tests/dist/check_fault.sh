#!/bin/sh
# check_fault.sh - a rank that dies or hangs mid-epoch stops the others
# within 30 seconds, with a message naming a rank, and --resume from the
# last checkpoint finishes the run exactly as an uninterrupted run ends.
#  1. rank 1 killed (SIGKILL) in epoch 2: mpirun sees the death and ends the
#     job ("process rank 1 ... exited on signal 9").
#  2. rank 1 stopped (SIGSTOP) in epoch 2: nothing dies, so only the bounded
#     waits can end it: rank 0 stops after --dist-timeout 5 with its own
#     message and aborts the job.
# After each, 2 ranks --resume the checkpoint of epoch 1 to epoch 4 and must
# end with the tensors of a straight 4-epoch run (1e-12).
#  3. rank 1 fails on its own before training (its data will not load):
#     it aborts the job at once, saying why, rather than leaving rank 0 to
#     wait out --dist-timeout 30 in a collective rank 1 never calls.
#  4. rank 0's --step-log fails after a step (on_step): the job ends at
#     once, rank 0 saying why.
#  5. rank 0 refuses its --step-log after tg_dist_attach (a resumed run's
#     log whose lines are not steps), a failure said on stderr alone: the
#     job ends at once, not after rank 1 waits out --dist-timeout 30.
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
job="--data digits --hidden 256-256 --batch 8 --epochs 4 --dtype f64 --no-bn --seed 5 --quiet"

$mpirun -np 2 "$train" --dist $job --save "$dir/straight.ckpt" >"$dir/straight.out" 2>&1 ||
	{ fail "the straight run:"; cat "$dir/straight.out"; }

# interrupt NAME SIGNAL: a 2-rank run with --save; once epoch 1 is saved and
# epoch 2 has run 20 steps (90 a epoch), SIGNAL to rank 1; then the job
# must end within 30 s, non-zero, with a message naming a rank
interrupt() {
	name=$1 sig=$2
	rm -f "$dir/$name.ckpt" "$dir/$name.steps"
	$mpirun -np 2 "$train" --dist $job --save "$dir/$name.ckpt" --step-log "$dir/$name.steps" \
		--dist-timeout 5 >"$dir/$name.out" 2>&1 &
	job_pid=$!
	waited=0
	while ! [ -f "$dir/$name.ckpt" ] || [ "$(wc -l <"$dir/$name.steps" 2>/dev/null || echo 0)" -lt 110 ]; do
		sleep 0.1
		waited=$((waited + 1))
		if [ "$waited" -gt 600 ]; then
			fail "$name: the run did not reach epoch 2 in 60 s"
			kill "$job_pid"
			return
		fi
	done
	victim=""
	for p in $(ps -o pid= --ppid "$job_pid"); do
		if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
			victim=$p
		fi
	done
	if [ -z "$victim" ]; then
		fail "$name: rank 1 is not a child of mpirun $job_pid"
		kill "$job_pid"
		wait "$job_pid"
		return
	fi
	start=$(date +%s)
	kill "-$sig" "$victim"
	echo "$name: SIG$sig to rank 1 (pid $victim) at step $(wc -l <"$dir/$name.steps")"
	# the job ends by itself, or it fails the test after 30 s
	( sleep 30; kill -9 "$job_pid" 2>/dev/null; kill -9 "$victim" 2>/dev/null ) &
	guard=$!
	wait "$job_pid"
	status=$?
	took=$(( $(date +%s) - start ))
	kill "$guard" 2>/dev/null
	echo "$name: the job ended in $took s with status $status"
	grep -i 'rank [0-9]' "$dir/$name.out" | sed "s/^/$name:   /"
	[ "$status" -ne 0 ] || fail "$name: the job ended with status 0"
	[ "$took" -le 30 ] || fail "$name: the job took $took s to end"
	grep -qi 'rank [0-9]' "$dir/$name.out" || { fail "$name: no message names a rank:"; cat "$dir/$name.out"; }
	kill -9 "$victim" 2>/dev/null
	# the last checkpoint (epoch 1) resumes to the end of the straight run
	$mpirun -np 2 "$train" --dist --resume "$dir/$name.ckpt" --save "$dir/$name.ckpt" --quiet \
		>"$dir/$name.resume" 2>&1 || { fail "$name: --resume:"; cat "$dir/$name.resume"; }
	grep '^resumed' "$dir/$name.resume"
	"$compare" "$dir/straight.ckpt" "$dir/$name.ckpt" 1e-12 >"$dir/cmp" ||
		{ fail "$name: the resumed run ends elsewhere:"; cat "$dir/cmp"; }
	echo "$name: resumed: $(tail -1 "$dir/cmp")"
}

interrupt killed KILL
interrupt stopped STOP
grep -q 'did not complete within 5 s' "$dir/stopped.out" ||
	fail "stopped: rank 0 did not say that its wait ran out"

empty=$(mktemp -d)
start=$(date +%s)
$mpirun -np 1 "$train" --dist --data iris --quiet --dist-timeout 30 : \
	-np 1 "$train" --dist --data "$empty" --quiet --dist-timeout 30 >"$dir/alone.out" 2>&1
status=$?
took=$(( $(date +%s) - start ))
rmdir "$empty"
echo "alone: rank 1 could not load its data; the job ended in $took s with status $status"
[ "$status" -ne 0 ] || fail "alone: the job ended with status 0"
[ "$took" -lt 20 ] || fail "alone: the job took $took s to end (a rank waited out its timeout)"
grep -q 'rank 1 of 2.*loading the data' "$dir/alone.out" ||
	{ fail "alone: rank 1 did not say why:"; cat "$dir/alone.out"; }

# 4. rank 0's --step-log cannot write (a full disk) at step 1, a failure
#    after the step's gradients are shared that no collective carries: the
#    job still ends at once, naming rank 0, rather than leaving rank 1 to
#    wait out --dist-timeout 30 in the next step
if [ -w /dev/full ]; then
	start=$(date +%s)
	$mpirun -np 2 "$train" --dist --data iris --epochs 2 --quiet --step-log /dev/full \
		--dist-timeout 30 >"$dir/full.out" 2>&1
	status=$?
	took=$(( $(date +%s) - start ))
	echo "full: rank 0's --step-log failed; the job ended in $took s with status $status"
	[ "$status" -ne 0 ] || fail "full: the job ended with status 0"
	[ "$took" -lt 20 ] || fail "full: the job took $took s to end (a rank waited out its timeout)"
	grep -q 'rank 0 of 2.*--step-log /dev/full: writing the line of step 1 failed' "$dir/full.out" ||
		{ fail "full: rank 0 did not say why:"; cat "$dir/full.out"; }
fi

# 5. a failure said on stderr with the context clear, on rank 0 alone,
#    after the ranks have met (tg_dist_attach): rank 1 waits in tg_fit
"$train" --data iris --epochs 1 --quiet --save "$dir/one.ckpt" >"$dir/one.out" 2>&1 ||
	{ fail "saving a run to resume:"; cat "$dir/one.out"; }
echo garbage >"$dir/bad.steps"
start=$(date +%s)
$mpirun -np 2 "$train" --dist --resume "$dir/one.ckpt" --epochs 2 --quiet \
	--step-log "$dir/bad.steps" --dist-timeout 30 >"$dir/steplog.out" 2>&1
status=$?
took=$(( $(date +%s) - start ))
echo "steplog: rank 0 refused its --step-log; the job ended in $took s with status $status"
[ "$status" -ne 0 ] || fail "steplog: the job ended with status 0"
[ "$took" -lt 20 ] || fail "steplog: the job took $took s to end (a rank waited out its timeout)"
grep -q 'rank 0 of 2.*--step-log .*a line does not start with its step number' \
	"$dir/steplog.out" || { fail "steplog: rank 0 did not say why:"; cat "$dir/steplog.out"; }

if [ "$fails" -ne 0 ]; then
	echo "$fails failure(s)"
	exit 1
fi
echo "all fault checks passed"
