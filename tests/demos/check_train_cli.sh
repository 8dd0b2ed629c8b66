#!/bin/sh
# check_train_cli.sh - demos/train's command line: each bad argument is a
# usage error (exit 2) whose first line names the option and what is wrong,
# --help prints the usage and exits 0, bad paths are found before training,
# a diverging run saves nothing, and a short run on the digits ends in a
# test accuracy; the other demos' --out DIR is checked before their work. Run by meson test (suite "outside") with TG_BUILD_ROOT set.
set -u
train="${TG_BUILD_ROOT:?run through meson test}/demos/train"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fails=0

# expect CODE PATTERN ARGS...: train ARGS exits CODE and its stderr's first
# line contains PATTERN (a fixed string)
expect() {
	code=$1 pattern=$2
	shift 2
	"$train" "$@" >/dev/null 2>"$out"
	rc=$?
	first=$(head -n 1 "$out")
	if [ "$rc" != "$code" ] || ! printf '%s\n' "$first" | grep -qF -- "$pattern"; then
		echo "FAIL: train $*: exit $rc, first line: $first"
		echo "      wanted exit $code and: $pattern"
		fails=$((fails + 1))
	fi
}

expect 2 "unknown option --bogus" --bogus
expect 2 "--lr needs a value" --lr
# an option after one that wants a value is not taken for it
expect 2 "--log needs a value, not the option --quiet" --data iris --epochs 1 --log --quiet
expect 2 "--log needs a value, not the option --save" --log --save x.ckpt
expect 2 "--epochs needs a value, not the option --quiet" --epochs --quiet
# each output a file of its own: a checkpoint would replace the log
expect 2 "--save and --log name the same file run.out; give each its own" --save run.out --log run.out
expect 2 "--lr needs a number" --lr 0.1x
expect 2 "--lr must be a positive number" --lr nan
expect 2 "--lr must be a positive number" --lr inf
# 0 would otherwise stand for the optimizer's default rate
expect 2 "--lr must be a positive number" --data iris --epochs 1 --lr 0
expect 2 "--lr must be a positive number" --data iris --epochs 1 --lr -0
expect 2 "--lr 1e-320 is out of range of a double (too small)" --lr 1e-320
# an empty value (an unset variable) is refused before training, not after it
expect 2 "--save needs a value, not an empty string" --data iris --epochs 1 --save ""
expect 2 "--log needs a value, not an empty string" --data iris --epochs 1 --log=
expect 2 "--hidden needs a value, not an empty string" --data iris --epochs 1 --hidden ""
expect 2 "--dist-timeout go with --dist" --data iris --epochs 1 --dist-timeout 0
# an option after many others (a flag repeated 70 times) is still checked
many=$(i=0; while [ $i -lt 70 ]; do printf -- '--quiet '; i=$((i + 1)); done)
# shellcheck disable=SC2086
expect 2 "--hidden is a flag of the MLP" --data digits --net conv8:3p1-pool2-32-10 --epochs 1 \
	$many --hidden 5
expect 2 "--dist-timeout must be a positive number of seconds" --data iris --epochs 1 --dist --dist-timeout 0
expect 2 "--weight-decay must be a finite number >= 0" --weight-decay inf
expect 2 "--weight-decay must be a finite number >= 0" --weight-decay -1
expect 2 "--dropout must be in [0, 1)" --dropout 1
expect 2 "--batch needs an integer >= 1" --batch 0
expect 2 "--batch 99999999999999999999 is out of range: an integer from 1 to 9223372036854775807" \
	--batch 99999999999999999999
expect 2 "--lr 1e999 is out of range of a double" --lr 1e999
expect 2 "--conv winogard: onednn, winograd or im2col" --conv winogard
expect 2 "--threads needs an integer >= 1" --threads 0
expect 2 "--threads: at most 256" --threads 4294967297
expect 2 "--dtype is f16; it must be f32 or f64" --dtype f16
expect 2 '--schedule: tg_schedule_parse: "linear": unknown schedule' --schedule linear
expect 2 '--optim: tg_optim_parse: unknown optimizer "AdamW"; expected sgd, momentum, nesterov, adagrad, rmsprop, adam or adamw' \
	--data iris --epochs 1 --optim AdamW
expect 2 '--optim: tg_optim_parse: unknown optimizer "adam-w"' --data iris --epochs 1 --optim adam-w
expect 2 "--eval-only needs --load FILE" --eval-only
expect 2 "--save goes with training; --eval-only trains nothing" \
	--load x.ckpt --eval-only --save y.ckpt
expect 2 "--epochs goes with training; --eval-only trains nothing" \
	--load x.ckpt --eval-only --epochs=3
expect 2 "--bn takes no value" --bn=1
expect 2 "give --epochs or --iters, not both" --epochs 1 --iters 1
expect 2 "give --layers (all sizes) or --hidden (the hidden ones), not both" \
	--data iris --layers 4-16-3 --hidden 8
expect 2 "--data /nonexistent: no such data set" --data /nonexistent
# a file (a CSV of one's own, an IDX file) is not a directory of IDX files
expect 2 "--data $train: a file, not a directory" --data "$train"
expect 2 "so the spec must start with 64 and end with 10" --data digits --layers 10-10
expect 2 "size 3 \"x\" is not a positive integer" --data digits --hidden 8-x
expect 1 "/nonexistent.ckpt: cannot open" --data digits --load /nonexistent.ckpt
expect 1 "--resume: /nonexistent.ckpt: cannot open" --data digits --resume /nonexistent.ckpt
expect 2 "--resume continues a run; give --load or --eval-only without it" \
	--resume x.ckpt --eval-only

expect 2 "--load-nonfinite needs --load FILE" --load-nonfinite
expect 2 "--batch 999999999999: at most 2147483647" --batch 999999999999
expect 2 "--batch 2000: --data digits has 1437 training samples; give at most 1437" \
	--data digits --batch 2000
# the steps of a run must be countable: iris is 8 steps an epoch
expect 2 "--epochs 2305843009213693952: 2305843009213693952 epochs of 8 steps are more than 9223372036854775807 steps; give at most 1152921504606846975" \
	--data iris --epochs 2305843009213693952
cores=$(getconf _NPROCESSORS_ONLN)
expect 2 "--threads $((cores + 1)): this machine has $cores core" --threads $((cores + 1))

# paths are proved before the data is loaded or a step is trained: nothing
# is printed on stdout before the error
dir=$(mktemp -d)
trap 'rm -f "$out"; rm -rf "$dir"' EXIT
# fast CODE PATTERN ARGS...: as expect, within 5 seconds and before any output
fast() {
	code=$1 pattern=$2
	shift 2
	timeout 5 "$train" "$@" >"$dir/stdout" 2>"$out"
	rc=$?
	first=$(head -n 1 "$out")
	if [ "$rc" != "$code" ] || ! printf '%s\n' "$first" | grep -qF -- "$pattern" ||
	   [ -s "$dir/stdout" ]; then
		echo "FAIL: train $*: exit $rc, first line: $first, stdout $(wc -c <"$dir/stdout") bytes"
		echo "      wanted exit $code and: $pattern, no stdout"
		fails=$((fails + 1))
	fi
}
# one file under two names is one file: a log and a link to it
: >"$dir/a.csv"
ln -s "$dir/a.csv" "$dir/a.link"
fast 2 "--log and --step-log name the same file $dir/a.link" --log "$dir/a.csv" \
	--step-log "$dir/a.link"
fast 1 "--save /nonexistent/dir/m.ckpt: cannot write in /nonexistent/dir" \
	--data digits --save /nonexistent/dir/m.ckpt
fast 1 "--log /nonexistent/dir/m.csv: cannot write in /nonexistent/dir" \
	--data digits --log /nonexistent/dir/m.csv
fast 1 "--save $dir: is a directory" --data digits --save "$dir"
# two names of one file still to be made are one file too
fast 2 "--save and --log name the same file $dir/./new.ckpt" --data digits \
	--log "$dir/./new.ckpt" --save "$dir/new.ckpt"
# a checkpoint replaces only a checkpoint, not a file of something else
printf 'notes\n' >"$dir/notes.c"
fast 1 "--save $dir/notes.c: is a file of something else, not a checkpoint" --data digits \
	--save "$dir/notes.c"
# a link is written through: a link to a file in a missing directory, or a
# loop of links, is found before training, not when the first save fails
ln -s nodir/m.ckpt "$dir/dangling"
fast 1 "--save $dir/dangling: cannot write in $dir/nodir" --data digits --save "$dir/dangling"
fast 1 "--log $dir/dangling: cannot write in $dir/nodir" --data digits --log "$dir/dangling"
ln -s loop2 "$dir/loop1"
ln -s loop1 "$dir/loop2"
fast 1 "--save $dir/loop1: Too many levels of symbolic links" --data digits --save "$dir/loop1"
fast 1 "--step-log /nonexistent/dir/s.txt: cannot write in /nonexistent/dir" \
	--data digits --step-log /nonexistent/dir/s.txt
fast 1 "--step-log $dir: is a directory" --data digits --step-log "$dir"
mkfifo "$dir/fifo"
fast 1 "--load: $dir/fifo: not a regular file (a FIFO)" --data digits --load "$dir/fifo"
# a checkpoint is renamed over its path: a FIFO there is refused, and kept
fast 1 "--save $dir/fifo: is a FIFO, not a regular file" --data digits --save "$dir/fifo"
if [ ! -p "$dir/fifo" ]; then
	echo "FAIL: train --save $dir/fifo: the FIFO is gone"
	fails=$((fails + 1))
fi
# a log into a FIFO that no process reads is an error, not a run that waits
for opt in --log --step-log; do
	timeout 20 "$train" --data iris --epochs 1 --quiet "$opt" "$dir/fifo" \
		>/dev/null 2>"$dir/err"
	rc=$?
	if [ "$rc" != 1 ] || ! grep -qF "$dir/fifo: it is a FIFO that no process reads" "$dir/err" &&
	   ! grep -qF -- "--step-log $dir/fifo: a FIFO that no process reads" "$dir/err"; then
		echo "FAIL: train $opt $dir/fifo: exit $rc (124: it waited), $(head -c 300 "$dir/err")"
		fails=$((fails + 1))
	fi
done
# nor does a new log overwrite a file of something else
printf 'notes\n' >"$dir/notes.txt"
for opt in --log --step-log; do
	"$train" --data iris --epochs 1 --quiet "$opt" "$dir/notes.txt" >/dev/null 2>"$dir/err"
	rc=$?
	if [ "$rc" != 1 ] || ! grep -qF "a file of something else" "$dir/err" ||
	   [ "$(cat "$dir/notes.txt")" != notes ]; then
		echo "FAIL: train $opt $dir/notes.txt: exit $rc, $(head -c 300 "$dir/err")"
		fails=$((fails + 1))
	fi
done
# /proc has the directory but makes no files: said so, not ENOENT
if [ -d /proc ]; then
	fast 1 "--save /proc/version: cannot write in /proc: its file system makes no new files" \
		--data digits --save /proc/version
fi
# --resume: a file that is not a checkpoint, a checkpoint cut short, one
# without a run in it, another data set, flags the file decides
printf 'not a checkpoint\n' >"$dir/junk.ckpt"
fast 1 "--resume $dir/junk.ckpt: " --data digits --resume "$dir/junk.ckpt"
if ! "$train" --data digits --hidden 8 --epochs 1 --quiet --save "$dir/run.ckpt" \
	>/dev/null 2>"$out"; then
	echo "FAIL: train --data digits --hidden 8 --epochs 1 --save: $(cat "$out")"
	fails=$((fails + 1))
fi
head -c 200 "$dir/run.ckpt" >"$dir/cut.ckpt"
fast 1 "--resume $dir/cut.ckpt: " --resume "$dir/cut.ckpt"
cp "$TG_SOURCE_ROOT/tests/nn/fixtures/model-v1.ckpt" "$dir/v1.ckpt"
fast 1 "--resume $dir/v1.ckpt: not a run saved by train --save" --resume "$dir/v1.ckpt"
fast 2 "--data iris: the run in $dir/run.ckpt trained on digits" \
	--data iris --resume "$dir/run.ckpt"
fast 2 "--hidden: a resumed run takes it from $dir/run.ckpt" \
	--hidden 16 --resume "$dir/run.ckpt"
fast 2 "--epochs 1: the run in $dir/run.ckpt has trained 1 epoch already" \
	--epochs 1 --resume "$dir/run.ckpt"
# a log over the checkpoint the run starts from would destroy it
cp "$dir/run.ckpt" "$dir/run.copy"
fast 2 "--log $dir/run.ckpt is the checkpoint --load reads; writing the log there would destroy it" \
	--data digits --epochs 1 --load "$dir/run.ckpt" --log "$dir/run.ckpt"
fast 2 "--step-log $dir/run.ckpt is the checkpoint --resume reads" \
	--epochs 2 --resume "$dir/run.ckpt" --step-log "$dir/run.ckpt"
if ! cmp -s "$dir/run.ckpt" "$dir/run.copy"; then
	echo "FAIL: train --load/--resume $dir/run.ckpt with a log there: the checkpoint changed"
	fails=$((fails + 1))
fi
# nor over a file the data is read from: a shipped data set's (its name
# found from --resume's file too), or an IDX file of a directory or its .gz
mkdir "$dir/idx"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
	t10k-labels-idx1-ubyte.gz; do
	printf 'images\n' >"$dir/idx/$f"
done
cp -r "$dir/idx" "$dir/idx.copy"
fast 2 "--save $dir/idx/t10k-images-idx3-ubyte is a file --data $dir/idx reads" \
	--data "$dir/idx" --save "$dir/idx/t10k-images-idx3-ubyte"
fast 2 "--log $dir/idx/../idx/t10k-labels-idx1-ubyte.gz is a file --data $dir/idx reads" \
	--data "$dir/idx" --log "$dir/idx/../idx/t10k-labels-idx1-ubyte.gz"
# (the shipped files copied: train looks in ./demos/data first)
mkdir -p "$dir/tree/demos/data"
cp "$TG_SOURCE_ROOT/demos/data/iris.csv" "$TG_SOURCE_ROOT/demos/data/digits.csv.gz" \
	"$dir/tree/demos/data/"
cp -r "$dir/tree" "$dir/tree.copy"
ln -s "$dir/tree/demos/data/iris.csv" "$dir/iris.link"
cd "$dir/tree" || exit 1
fast 2 "--step-log $dir/iris.link is a file --data iris reads" \
	--data iris --epochs 1 --step-log "$dir/iris.link"
fast 2 "--log demos/data/digits.csv.gz is a file --data digits reads" \
	--epochs 2 --resume "$dir/run.ckpt" --log demos/data/digits.csv.gz
cd - >/dev/null || exit 1
if ! diff -r "$dir/idx" "$dir/idx.copy" >/dev/null ||
   ! diff -r "$dir/tree" "$dir/tree.copy" >/dev/null; then
	echo "FAIL: train with an output over a file of --data: the file changed"
	fails=$((fails + 1))
fi
# a data set's name that is also a directory here: the name wins, and
# train says so
mkdir "$dir/tree/iris"
cd "$dir/tree" || exit 1
expect 0 "--data iris is the data set of that name; the directory iris here is not read (give ./iris for it)" \
	--data iris --epochs 1 --quiet
cd - >/dev/null || exit 1
# a run saved inside an epoch (--iters) has no epoch's end to go on from
if ! "$train" --data digits --hidden 8 --iters 3 --quiet --save "$dir/part.ckpt" \
	>/dev/null 2>"$out"; then
	echo "FAIL: train --data digits --hidden 8 --iters 3 --save: $(cat "$out")"
	fails=$((fails + 1))
fi
expect 1 "--resume $dir/part.ckpt: the run stopped at step 3, inside epoch 1 (12 steps an epoch)" \
	--resume "$dir/part.ckpt"

# batch norm with a last batch of one row: the run drops that batch, and
# --iters counts the epochs it makes without it (the cosine's T), so ten
# steps of one-step epochs are the run --epochs 10 makes, step for step
for how in "--iters 10" "--epochs 10"; do
	# shellcheck disable=SC2086
	if ! "$train" --data iris --bn --batch 119 $how --quiet \
		--step-log "$dir/steps ${how#--}" >/dev/null 2>"$out"; then
		echo "FAIL: train --data iris --bn --batch 119 $how: $(cat "$out")"
		fails=$((fails + 1))
	fi
done
if ! cmp -s "$dir/steps iters 10" "$dir/steps epochs 10"; then
	echo "FAIL: train --data iris --bn --batch 119: --iters 10 and --epochs 10 differ:"
	paste "$dir/steps iters 10" "$dir/steps epochs 10" | head -n 12
	fails=$((fails + 1))
fi

# one training image with batch norm: said as it is, no option never given
printf '\000\000\010\003\000\000\000\001\000\000\000\002\000\000\000\002\001\002\003\004' \
	>"$dir/train-images-idx3-ubyte"
cp "$dir/train-images-idx3-ubyte" "$dir/t10k-images-idx3-ubyte"
printf '\000\000\010\001\000\000\000\001\011' >"$dir/train-labels-idx1-ubyte"
cp "$dir/train-labels-idx1-ubyte" "$dir/t10k-labels-idx1-ubyte"
expect 2 "has 1 training sample; batch norm needs at least 2 in a batch (use --no-bn)" \
	--data "$dir" --quiet
if grep -q drop_last "$out"; then
	echo "FAIL: train --data (one image): the message speaks of drop_last: $(cat "$out")"
	fails=$((fails + 1))
fi
# without batch norm its batch is the default, too large: said to be the
# default, not taken for one typed
expect 2 "--batch 128 (the default): --data $dir has 1 training sample; give at most 1" \
	--data "$dir" --quiet --no-bn
expect 2 "--batch 2: --data $dir has 1 training sample; give at most 1" \
	--data "$dir" --quiet --no-bn --batch 2

# a diverging run stops, exits 1 suggesting a smaller rate, and leaves the
# good checkpoint at --save as it was
if ! "$train" --data digits --epochs 1 --quiet --save "$dir/good.ckpt" >/dev/null 2>"$out"; then
	echo "FAIL: train --data digits --epochs 1 --save: $(cat "$out")"
	fails=$((fails + 1))
fi
# a saved net and data of another width: named before a step is taken
expect 2 "does not take --data iris's samples" --data iris --load "$dir/good.ckpt" --epochs 1
cp "$dir/good.ckpt" "$dir/good.bak"
"$train" --data digits --optim adam --lr 1e6 --epochs 3 --quiet --save "$dir/good.ckpt" \
	>/dev/null 2>"$out"
rc=$?
if [ "$rc" != 1 ] || ! grep -q "the loss diverged" "$out" ||
   ! grep -q "try a smaller learning rate" "$out" ||
   ! cmp -s "$dir/good.ckpt" "$dir/good.bak"; then
	echo "FAIL: train --lr 1e6: exit $rc, the checkpoint $(cmp -s "$dir/good.ckpt" \
		"$dir/good.bak" && echo kept || echo changed): $(cat "$out")"
	fails=$((fails + 1))
fi
# with the check off it is not the divergence check that stops it
"$train" --data digits --optim adam --lr 1e6 --iters 3 --quiet --no-divergence-check \
	>/dev/null 2>"$out"
if grep -q "the loss diverged" "$out"; then
	echo "FAIL: train --no-divergence-check still stopped for divergence: $(cat "$out")"
	fails=$((fails + 1))
fi

# the most steps there can be is a run that trains (stopped here after 3 s)
timeout 3 "$train" --data iris --iters 9223372036854775807 --quiet >"$dir/stdout" 2>"$out"
if [ -s "$out" ] || ! grep -q "^epoch  *1  iter  *8 " "$dir/stdout"; then
	echo "FAIL: train --data iris --iters 9223372036854775807: no first epoch: $(head -n 1 "$out")"
	fails=$((fails + 1))
fi

if ! "$train" --help >"$out" 2>&1 || ! grep -q "^usage: train" "$out"; then
	echo "FAIL: train --help does not print the usage and exit 0"
	fails=$((fails + 1))
fi
# --help names the log's columns as the log has them, every one in order
if ! "$train" --data iris --epochs 1 --quiet --log "$dir/cols.csv" >/dev/null 2>"$out"; then
	echo "FAIL: train --data iris --epochs 1 --log: $(cat "$out")"
	fails=$((fails + 1))
fi
cols=$(head -n 1 "$dir/cols.csv")
"$train" --help 2>&1 | sed -n '/^  --log /,/^  --save /p' | sed 's/^  --log FILE.csv//' |
	tr -d ' \n' >"$out"
if [ -z "$cols" ] || ! grep -qF -- "$cols" "$out"; then
	echo "FAIL: train --help does not list the log's columns $cols: $(cat "$out")"
	fails=$((fails + 1))
fi

# a run that trains: two epochs on the digits end in a test accuracy
if ! "$train" --data digits --epochs 2 --quiet >"$out" 2>&1; then
	echo "FAIL: train --data digits --epochs 2 exited with $?:"
	cat "$out"
	fails=$((fails + 1))
elif ! grep -q "test accuracy" "$out"; then
	echo "FAIL: train --data digits --epochs 2 printed no test accuracy:"
	cat "$out"
	fails=$((fails + 1))
fi

# the regression and the binary task with their defaults (a second each)
if ! "$train" --data diabetes --quiet >"$out" 2>&1; then
	echo "FAIL: train --data diabetes exited with $?:"
	cat "$out"
	fails=$((fails + 1))
elif ! r2=$(sed -n 's/^test R2 \([-0-9.]*\)$/\1/p' "$out") || [ -z "$r2" ] ||
     ! awk -v r="$r2" 'BEGIN { exit !(r >= 0.45) }'; then
	echo "FAIL: train --data diabetes: want a line 'test R2 X' with X >= 0.45:"
	cat "$out"
	fails=$((fails + 1))
fi
if ! "$train" --data breast-cancer --quiet >"$out" 2>&1; then
	echo "FAIL: train --data breast-cancer exited with $?:"
	cat "$out"
	fails=$((fails + 1))
elif ! acc=$(sed -n 's/^final test accuracy \([0-9.]*\) .*/\1/p' "$out") || [ -z "$acc" ] ||
     ! awk -v a="$acc" 'BEGIN { exit !(a >= 0.96) }' ||
     ! grep -q "malignant" "$out"; then
	echo "FAIL: train --data breast-cancer: want test accuracy >= 0.96 and a confusion matrix:"
	cat "$out"
	fails=$((fails + 1))
fi

# the header counts in the singular when there is one; no batch norm is
# reported for a net without hidden layers
"$train" --data iris --hidden 0 --epochs 1 --quiet >"$out" 2>&1
if ! grep -q "^batches .* 1 epoch;" "$out" || grep -q "batch norm" "$out"; then
	echo "FAIL: train --data iris --hidden 0 --epochs 1: header says:"
	cat "$out"
	fails=$((fails + 1))
fi

# piped, the first progress line comes after a second, not after ten (the
# run takes a few seconds: 800 epochs of the digits, 3 s at 2700 steps a
# second)
"$train" --data digits --epochs 800 >/dev/null 2>"$out"
if ! grep -q "^epoch [0-9]*/800  iter" "$out"; then
	echo "FAIL: train --data digits --epochs 800 2>file: no early progress line:"
	cat "$out"
	fails=$((fails + 1))
fi

# a write that fails (a full disk) is not a success: the step log, and the
# results on stdout
if [ -w /dev/full ]; then
	# the step log stops the run at the first line it cannot write, as the
	# epoch log stops it at its row; each names the epoch it stopped in and
	# counts the steps made (step 1's update is, before its line fails)
	expect 1 "training stopped after 1 step (in epoch 1): --step-log /dev/full: writing the line of step 1 failed: No space" \
		--data iris --epochs 3 --quiet --step-log /dev/full
	expect 1 "training stopped after 8 steps (at the end of epoch 1): tg_fit: writing the log /dev/full failed at epoch 1: No space" \
		--data iris --epochs 1 --quiet --log /dev/full
	"$train" --data iris --epochs 1 --quiet >/dev/full 2>"$out"
	rc=$?
	if [ "$rc" != 1 ] || ! grep -qF "writing the results to stdout failed: No space" "$out"; then
		echo "FAIL: train >/dev/full: exit $rc, $(head -n 1 "$out")"
		fails=$((fails + 1))
	fi
	# --help too: a usage text nobody could read is no success
	for demo in train valley; do
		"${TG_BUILD_ROOT}/demos/$demo" --help >/dev/full 2>"$out"
		rc=$?
		if [ "$rc" != 1 ] ||
			! grep -qF "$demo: writing --help to stdout failed: No space" "$out"; then
			echo "FAIL: $demo --help >/dev/full: exit $rc, $(head -n 1 "$out")"
			fails=$((fails + 1))
		fi
	done
fi

# the other demos that write into --out DIR find a DIR they cannot use
# before their work, not after it: nothing on stdout, exit 1, named
for demo in valley simple_convnet; do
	quick=--quick
	[ "$demo" = valley ] && quick="" # short already
	# shellcheck disable=SC2086
	"${TG_BUILD_ROOT}/demos/$demo" $quick --out "$train" >"$dir/stdout" 2>"$out"
	rc=$?
	first=$(head -n 1 "$out")
	case "$first" in
	"$demo: --out $train: cannot make the directory: Not a directory") ;;
	*) first="wrong message: $first" ;;
	esac
	if [ "$rc" != 1 ] || [ -s "$dir/stdout" ] || [ "${first#wrong}" != "$first" ]; then
		echo "FAIL: $demo $quick --out FILE: exit $rc, $first, stdout:"
		head -n 3 "$dir/stdout"
		fails=$((fails + 1))
	fi
done

# a demo's output that cannot be written (a file size limit of 0 stands in
# for a full disk) is reported with the reason; stderr goes to a pipe,
# which the limit does not touch. The file written before stays as it was,
# and no partial one is left beside it.
mkdir "$dir/full"
echo "an earlier run" >"$dir/full/valley.csv"
msg=$( (trap '' XFSZ; ulimit -f 0 && "${TG_BUILD_ROOT}/demos/valley" --out "$dir/full" \
	2>&1 >/dev/null; echo "exit $?") )
case "$msg" in
*"could not write $dir/full/valley.csv: File too large"*"exit 1") ;;
*)
	echo "FAIL: valley --out onto a full disk: $msg"
	fails=$((fails + 1)) ;;
esac
left=$(cd "$dir/full" && ls -A | tr '\n' ' ')
if [ "$(cat "$dir/full/valley.csv")" != "an earlier run" ] || [ "$left" != "valley.csv " ]; then
	echo "FAIL: valley --out onto a full disk left: $left; valley.csv: $(head -c 80 "$dir/full/valley.csv")"
	fails=$((fails + 1))
fi

# chain_rule's pictures: dot draws into a temporary that replaces the PNG
# only when dot succeeds. A dot that fails after writing part of its output
# leaves the earlier PNG and no partial one.
mkdir "$dir/bin" "$dir/graphs"
printf '#!/bin/sh\nfor a; do o=$a; done\nprintf partial >"$o"\nexit 1\n' >"$dir/bin/dot"
chmod +x "$dir/bin/dot"
echo "an earlier picture" >"$dir/graphs/apple.png"
PATH="$dir/bin:$PATH" "${TG_BUILD_ROOT}/demos/chain_rule" --out "$dir/graphs" >/dev/null 2>"$out"
rc=$?
left=$(cd "$dir/graphs" && ls -A | grep -v '\.dot$' | tr '\n' ' ')
if [ "$rc" != 1 ] || [ "$(cat "$dir/graphs/apple.png")" != "an earlier picture" ] ||
	[ "$left" != "apple.png " ]; then
	echo "FAIL: chain_rule with a failing dot: exit $rc, left: $left; $(head -n 1 "$out")"
	fails=$((fails + 1))
fi

# the step log filling up in a later epoch stops the run in that epoch
msg=$( (trap '' XFSZ; ulimit -f 1 && "$train" --data iris --epochs 50 --quiet \
	--step-log "$dir/steps" 2>&1 >/dev/null; echo "exit $?") )
case "$msg" in
*"training stopped after "*" steps (in epoch "[2-9]"): --step-log $dir/steps: writing the line of step "*": File too large"*"exit 1") ;;
*)
	echo "FAIL: train --step-log onto a full disk: $msg"
	fails=$((fails + 1)) ;;
esac

# --conv winograd: the header names the kernels, and a CNN on the digits
# (16 channels to 32 at stride 1, the second layer Winograd's) trains
if ! "$train" --data digits --net conv16:3p1-conv32:3p1-pool2-10 --epochs 3 --conv winograd \
	--quiet >"$out" 2>&1 ||
	! grep -qF "conv      oneDNN's Winograd kernels for 3x3 at stride 1" "$out" ||
	! grep -q "^final test accuracy 0\.[5-9]" "$out"; then
	echo "FAIL: train --net ... --conv winograd:"
	cat "$out"
	fails=$((fails + 1))
fi

# demos/experiments --quick without --out would put short runs' pictures
# over the full runs' in demos/pictures: refused before any work
"${TG_SOURCE_ROOT}/demos/experiments" --quick valley >"$dir/stdout" 2>"$out"
rc=$?
if [ "$rc" != 2 ] || [ -s "$dir/stdout" ] ||
	! grep -qF "demos/experiments: --quick needs --out DIR" "$out"; then
	echo "FAIL: experiments --quick without --out: exit $rc, $(head -n 1 "$out")"
	fails=$((fails + 1))
fi

# running out of memory while building the net is no usage error: exit 1
# and the message alone. A limit on the address space makes the net too
# large on any machine; not under AddressSanitizer, whose shadow memory
# needs more address space than the limit.
if ! ldd "$train" 2>/dev/null | grep -q libasan; then
	(ulimit -v 3000000 && "$train" --data iris --hidden 100000-100000 --epochs 1) \
		>/dev/null 2>"$out"
	rc=$?
	if [ "$rc" != 1 ] || ! head -n 1 "$out" | grep -qF "out of memory" ||
		grep -qF "usage:" "$out"; then
		echo "FAIL: train with a net too large for memory: exit $rc, $(head -n 1 "$out")"
		fails=$((fails + 1))
	fi
fi

if [ "$fails" -gt 0 ]; then
	echo "$fails of the train command-line checks failed"
	exit 1
fi
echo "train: every command-line check passed"
