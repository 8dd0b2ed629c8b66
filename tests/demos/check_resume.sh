#!/bin/sh
# check_resume.sh - demos/train --save / --resume / --load: training 4 epochs
# straight and training 2, saving, and resuming to 4 leave byte-identical
# files (a classifier on the digits, a regressor on the diabetes data); a
# run's file loads without the net flags, flags that disagree with it are a
# usage error, a version-1 file (tensors only) loads with the net flags, a
# run file holding values train never saves (a rate of 0, a batch of -3) is
# refused, and a resumed run's log and step log keep the rows of the epochs
# before (a step log with steps missing is refused); a run holding a
# negative or NaN running variance is a fault of the file, the NaN one
# naming --load-nonfinite, and so are a stored optimizer or schedule that
# does not parse and a stored data directory that is not there (exit 1,
# not a usage error).
# Run by meson test (suite "outside") with TG_BUILD_ROOT set.
set -u
train="${TG_BUILD_ROOT:?run through meson test}/demos/train"
here=$(dirname "$0")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0

# run NAME ARGS...: train ARGS must succeed (stdout in $dir/NAME.out)
run() {
	name=$1
	shift
	if ! "$train" "$@" --quiet >"$dir/$name.out" 2>&1; then
		echo "FAIL: train $*: exit $?:"
		cat "$dir/$name.out"
		fails=$((fails + 1))
	fi
}

# straight_vs_resumed DATA SCHEDULE ARGS...: 4 epochs straight into A, 2
# into B and resumed to 4; the two files must be the same bytes. The
# schedule must not depend on --epochs (cosine:4 gives its T) so that the
# 2-epoch run's rates are those of the first 2 of 4.
straight_vs_resumed() {
	data=$1 sched=$2
	shift 2
	rm -f "$dir/A" "$dir/B"
	run "$data-A" --data "$data" "$@" --schedule "$sched" --epochs 4 --save "$dir/A" \
		--step-log "$dir/SA"
	run "$data-B" --data "$data" "$@" --schedule "$sched" --epochs 2 --save "$dir/B" \
		--step-log "$dir/SB"
	cp "$dir/B" "$dir/B2"
	# a step past the save (a run stopped after it) runs again: its line goes
	steps=$(wc -l <"$dir/SB")
	echo "$((steps + 1)) 0.5" >>"$dir/SB"
	run "$data-R" --data "$data" --resume "$dir/B" --epochs 4 --save "$dir/B" \
		--step-log "$dir/SB"
	if ! cmp "$dir/A" "$dir/B"; then
		echo "FAIL: --data $data: 4 epochs straight and 2 + resumed 2 differ"
		fails=$((fails + 1))
	fi
	# the resumed run's step log follows the steps before, as the straight one
	if ! cmp "$dir/SA" "$dir/SB"; then
		echo "FAIL: --data $data: the step logs of the straight and resumed runs differ"
		fails=$((fails + 1))
	fi
	# the resumed run counts its epochs from 3, and ends as the straight one
	if ! grep -q "^resumed .* after 2 epochs" "$dir/$data-R.out" ||
	   grep -q "^epoch 1 " "$dir/$data-R.out" || ! grep -q "^epoch 3 " "$dir/$data-R.out"; then
		echo "FAIL: --data $data --resume: the epochs it printed:"
		cat "$dir/$data-R.out"
		fails=$((fails + 1))
	fi
	a=$(grep "^epoch 4 " "$dir/$data-A.out" | sed 's/ [0-9.]* s$//')
	r=$(grep "^epoch 4 " "$dir/$data-R.out" | sed 's/ [0-9.]* s$//')
	if [ -z "$a" ] || [ "$a" != "$r" ]; then
		echo "FAIL: --data $data: epoch 4 straight: '$a'; resumed: '$r'"
		fails=$((fails + 1))
	fi
	# and the file differs from the one it resumed (it trained)
	if cmp -s "$dir/B" "$dir/B2"; then
		echo "FAIL: --data $data --resume: the file did not change"
		fails=$((fails + 1))
	fi
}

straight_vs_resumed digits cosine:4 --hidden 32 --batch 64
straight_vs_resumed diabetes cosine:4 --batch 64
# with dropout (the generator draws masks)
straight_vs_resumed digits cosine:4 --hidden 16 --no-bn --dropout 0.2 --batch 128
# plateau's best loss and count carry over (patience 0: it cuts the rate
# after any epoch without a better test loss)
straight_vs_resumed diabetes plateau:0.5:0 --batch 16 --lr 0.05
# AdamW's moments and counts carry over as Adam's, its decoupled decay too
straight_vs_resumed digits cosine:4 --hidden 32 --batch 64 --optim adamw --weight-decay 0.05

# a resumed run with the same --log adds its epochs' rows to the ones there
run log3 --data digits --hidden 16 --batch 256 --epochs 3 --save "$dir/log.ckpt" \
	--log "$dir/log.csv"
run log5 --resume "$dir/log.ckpt" --epochs 5 --log "$dir/log.csv"
got=$(cut -d, -f1 "$dir/log.csv" | tr '\n' ' ')
if [ "$got" != "epoch 1 2 3 4 5 " ]; then
	echo "FAIL: --resume --log: the log's epochs are '$got', wanted 'epoch 1 2 3 4 5 '"
	fails=$((fails + 1))
fi
# a step log that is not this run's steps 1, 2, ... up to the checkpoint's
# (18 steps: 3 epochs of 6) is not continued: the file stays as it was
bad_step_log() { # WHY: the lines written to $dir/bad.log are refused for WHY
	cp "$dir/bad.log" "$dir/bad.copy"
	"$train" --resume "$dir/log.ckpt" --epochs 6 --step-log "$dir/bad.log" --quiet \
		>/dev/null 2>"$dir/bad.err"
	rc=$?
	if [ "$rc" != 1 ] || ! grep -qF -- "--step-log $dir/bad.log: $1; give another file" \
		"$dir/bad.err" || ! cmp -s "$dir/bad.log" "$dir/bad.copy"; then
		echo "FAIL: --resume --step-log with lines $(head -c 40 "$dir/bad.log" | tr '\n' '|'):"
		echo "      exit $rc, $(head -n 1 "$dir/bad.err")"
		echo "      wanted exit 1, the file unchanged and: $1"
		fails=$((fails + 1))
	fi
}
steps() { i=$1; while [ "$i" -le "$2" ]; do echo "$i 0.5"; i=$((i + 1)); done; }
printf '1 2.5\n3 2.25\n' >"$dir/bad.log"
bad_step_log "its lines skip steps"
{ echo "-5 0.1"; echo "-5 0.1"; steps 1 18; } >"$dir/bad.log"
bad_step_log "its first line is not step 1"
{ echo "0 0.1"; steps 1 18; } >"$dir/bad.log"
bad_step_log "its first line is not step 1"
{ steps 1 2; steps 2 18; } >"$dir/bad.log"
bad_step_log "its steps go back or repeat"
{ echo "1 garbage"; steps 2 18; } >"$dir/bad.log"
bad_step_log "a line's loss is not a number"
{ echo "1 0.5 extra"; steps 2 18; } >"$dir/bad.log"
bad_step_log "a line's loss is not a number"
{ echo "step 1 0.5"; steps 2 18; } >"$dir/bad.log"
bad_step_log "a line does not start with its step number"
steps 1 17 >"$dir/bad.log"
bad_step_log "its last step comes before the checkpoint's: steps are missing"
: >"$dir/bad.log"
bad_step_log "it has no line of the checkpoint's steps"
# the steps done are kept, nan losses too, and the lines of steps that run
# again are cut
{ steps 1 17; echo "18 nan"; steps 19 20; } >"$dir/good.log"
run goodlog --resume "$dir/log.ckpt" --epochs 4 --step-log "$dir/good.log"
got=$(cut -d' ' -f1 "$dir/good.log" | tr '\n' ' ')
if [ "$got" != "$(seq 1 24 | tr '\n' ' ')" ] || [ "$(sed -n 18p "$dir/good.log")" != "18 nan" ]; then
	echo "FAIL: --resume --step-log over steps 1-20: its steps are now $got"
	fails=$((fails + 1))
fi

# --load takes the net from the file: the same test figures with no net
# flags, with the ones it was made with, and a usage error naming both for
# flags that make another net
run save --data digits --hidden 32 --batch 64 --epochs 1 --save "$dir/one"
want=$(sed -n 's/^final test accuracy \([0-9.]*\) .*/\1/p' "$dir/save.out")
run load --data digits --load "$dir/one" --eval-only
got=$(sed -n 's/^test loss [0-9.]*, accuracy \([0-9.]*\)$/\1/p' "$dir/load.out")
if [ -z "$want" ] || [ "$want" != "$got" ]; then
	echo "FAIL: --load without net flags: accuracy '$got', trained '$want'"
	cat "$dir/load.out"
	fails=$((fails + 1))
fi
run load2 --data digits --hidden 32 --load "$dir/one" --eval-only
if ! grep -q "accuracy $want" "$dir/load2.out"; then
	echo "FAIL: --load with the same net flags:"
	cat "$dir/load2.out"
	fails=$((fails + 1))
fi
"$train" --data digits --hidden 16 --load "$dir/one" --eval-only >/dev/null 2>"$dir/err"
rc=$?
if [ "$rc" != 2 ] || ! head -n 1 "$dir/err" | grep -qF \
	"the net flags make linear:64:16,bn:16,relu,linear:16:10, but $dir/one holds linear:64:32,bn:32,relu,linear:32:10"; then
	echo "FAIL: --load with other net flags: exit $rc: $(head -n 1 "$dir/err")"
	fails=$((fails + 1))
fi

# a version-1 file of the same tensors (no architecture): loads with the
# net flags, gives the same figures
if command -v python3 >/dev/null 2>&1; then
	python3 "$here/run_file.py" v1 "$dir/one" "$dir/v1"
	# a run whose values (with a good CRC) are not ones train saves, or of
	# another kind (sync_bn a float): exit 1
	# naming the value, never a run with the preset's in their place
	for bad in "dtype f16 its dtype" "optim.lr nan its learning rate" \
		   "optim.lr 0 its learning rate" "train 0 its batch" \
		   "train -3 its batch" "epoch -1 its epoch" "sync_bn f64:1 its sync_bn"; do
		set -- $bad
		key=$1 val=$2
		shift 2
		python3 "$here/run_file.py" meta "$dir/one" "$dir/bad" "$key" "$val"
		"$train" --resume "$dir/bad" --epochs 3 --quiet >/dev/null 2>"$dir/err"
		rc=$?
		if [ "$rc" != 1 ] || ! head -n 1 "$dir/err" | grep -qF "a damaged run: $*"; then
			echo "FAIL: --resume of a run with $key $val: exit $rc: $(head -n 1 "$dir/err")"
			fails=$((fails + 1))
		fi
	done

	run v1 --data digits --hidden 32 --load "$dir/v1" --eval-only
	if ! grep -q "accuracy $want" "$dir/v1.out"; then
		echo "FAIL: --load of a version-1 file with the net flags:"
		cat "$dir/v1.out"
		fails=$((fails + 1))
	fi

	# a run whose running variance is negative (a good CRC): no NaN
	# figures, and a fault of the file (exit 1), not of the flags (2)
	python3 "$here/run_file.py" tensor "$dir/one" "$dir/negvar" bn1.running_var -1
	for how in "--load $dir/negvar --eval-only" "--resume $dir/negvar --epochs 2"; do
		"$train" --data digits $how --quiet >/dev/null 2>"$dir/err"
		rc=$?
		if [ "$rc" != 1 ] || grep -q "^usage:" "$dir/err" || ! grep -qF \
			"bn1.running_var holds -1 at element 0; a variance is never negative" \
			"$dir/err"; then
			echo "FAIL: train $how with a negative running variance: exit $rc:"
			head -n 2 "$dir/err"
			fails=$((fails + 1))
		fi
	done

	# a stored optimizer or schedule that does not parse: the file's fault
	for key in optim schedule.spec; do
		python3 "$here/run_file.py" meta "$dir/one" "$dir/badstr" "$key" bogus
		"$train" --data digits --resume "$dir/badstr" --epochs 2 --quiet >/dev/null 2>"$dir/err"
		rc=$?
		if [ "$rc" != 1 ] || grep -q "^usage:" "$dir/err" ||
			! grep -qF "train: --resume $dir/badstr: the ${key%.spec} stored there:" "$dir/err"; then
			echo "FAIL: train --resume of a run whose $key is bogus: exit $rc:"
			head -n 3 "$dir/err"
			fails=$((fails + 1))
		fi
	done

	# a stored data directory that is not here: the file's, exit 1
	python3 "$here/run_file.py" meta "$dir/one" "$dir/baddata" data "$dir/gone"
	"$train" --resume "$dir/baddata" --epochs 2 --quiet >/dev/null 2>"$dir/err"
	rc=$?
	if [ "$rc" != 1 ] || grep -q "^usage:" "$dir/err" || ! grep -qF \
		"train: --resume $dir/baddata: the data set stored there, $dir/gone, is not on this machine" \
		"$dir/err"; then
		echo "FAIL: train --resume of a run whose data directory is not here: exit $rc:"
		head -n 3 "$dir/err"
		fails=$((fails + 1))
	fi

	# one holding NaN is refused naming the flag that loads it anyway
	python3 "$here/run_file.py" tensor "$dir/one" "$dir/nanvar" bn1.running_var nan
	"$train" --data digits --load "$dir/nanvar" --eval-only --quiet >/dev/null 2>"$dir/err"
	rc=$?
	if [ "$rc" != 1 ] || ! grep -qF "train: --load-nonfinite loads it all the same" "$dir/err"; then
		echo "FAIL: train --load of a run holding NaN: exit $rc:"
		cat "$dir/err"
		fails=$((fails + 1))
	fi
fi

# a run on a directory of IDX files given by a relative path: resumed from
# another working directory, --data names where it is from there (without
# it, the message says so, exit 1); from the run's own directory --data may
# name it by another path, the file keeping its bytes, but not another
# directory
mkdir "$dir/w" "$dir/w/idx" "$dir/w/other"
printf '\000\000\010\003\000\000\000\004\000\000\000\002\000\000\000\002' \
	>"$dir/w/idx/train-images-idx3-ubyte"
printf '\001\002\003\004\004\003\002\001\377\000\377\000\000\377\000\377' \
	>>"$dir/w/idx/train-images-idx3-ubyte"
cp "$dir/w/idx/train-images-idx3-ubyte" "$dir/w/idx/t10k-images-idx3-ubyte"
printf '\000\000\010\001\000\000\000\004\000\001\002\003' >"$dir/w/idx/train-labels-idx1-ubyte"
cp "$dir/w/idx/train-labels-idx1-ubyte" "$dir/w/idx/t10k-labels-idx1-ubyte"
cp "$dir/w/idx/"* "$dir/w/other/"
idx_flags="--no-bn --hidden 4 --batch 2 --schedule constant"
# resume_in DIR NAME ARGS...: train --resume ARGS in DIR, its exit status
# in rc and its stderr in $dir/NAME.err
resume_in() {
	where=$1 name=$2
	shift 2
	(cd "$where" && "$train" --resume "$@" --quiet) >/dev/null 2>"$dir/$name.err"
	rc=$?
}
if ! (cd "$dir/w" && "$train" --data idx $idx_flags --epochs 1 --save run.ckpt --quiet) \
	>/dev/null 2>"$dir/idx.err"; then
	echo "FAIL: train --data idx (relative): $(cat "$dir/idx.err")"
	fails=$((fails + 1))
fi
resume_in "$dir/w" here run.ckpt --epochs 2 --save here.ckpt
resume_in "$dir/w" same run.ckpt --data ./idx/ --epochs 2 --save same.ckpt
if [ "$rc" != 0 ] || ! cmp -s "$dir/w/here.ckpt" "$dir/w/same.ckpt"; then
	echo "FAIL: train --resume --data ./idx/ (the run's idx): exit $rc: $(cat "$dir/same.err")"
	fails=$((fails + 1))
fi
resume_in "$dir/w" another run.ckpt --data other --epochs 2
if [ "$rc" != 2 ] || ! grep -qF "train: --data other: the run in run.ckpt trained on idx" \
	"$dir/another.err"; then
	echo "FAIL: train --resume --data other (not the run's): exit $rc: $(head -n 1 "$dir/another.err")"
	fails=$((fails + 1))
fi
resume_in "$dir" away w/run.ckpt --epochs 2
if [ "$rc" != 1 ] || ! grep -qF "the data set stored there, idx, is not on this machine (no such directory of IDX files from here); give --data with its path" "$dir/away.err"; then
	echo "FAIL: train --resume from elsewhere without --data: exit $rc: $(cat "$dir/away.err")"
	fails=$((fails + 1))
fi
resume_in "$dir" found w/run.ckpt --data w/idx --epochs 2 --save w/found.ckpt
if [ "$rc" != 0 ] || ! [ -s "$dir/w/found.ckpt" ]; then
	echo "FAIL: train --resume from elsewhere --data w/idx: exit $rc: $(cat "$dir/found.err")"
	fails=$((fails + 1))
fi

if [ "$fails" -gt 0 ]; then
	echo "$fails of the resume checks failed"
	exit 1
fi
echo "train: resuming gives the same bytes as training straight"
