#!/bin/sh
# check_cnn.sh - demos/train --net: a tiny CNN on the UCI digits as (1,8,8)
# images learns (test accuracy at least 0.93 after 10 short epochs, where
# chance is 0.1), with batch norm after its convolution too; training 4 epochs straight and 2 + resumed 2 leave
# byte-identical files; the file loads without flags and evaluates to the
# accuracy it trained to; and the --net mistakes are usage errors naming
# what is wrong. Run by meson test (suite "outside") with TG_BUILD_ROOT set.
set -u
train="${TG_BUILD_ROOT:?run through meson test}/demos/train"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
net=conv8:3p1-pool2-32-10

# run NAME ARGS...: train ARGS must succeed (stdout in $dir/NAME.out)
run() {
	name=$1
	shift
	rc=0
	"$train" "$@" --quiet >"$dir/$name.out" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "FAIL: train $*: exit $rc:"
		cat "$dir/$name.out"
		fails=$((fails + 1))
	fi
}

# it learns
run learn --data digits --net $net --epochs 10 --batch 32 --lr 0.003 --save "$dir/L"
acc=$(sed -n 's/^final test accuracy \([0-9.]*\) .*/\1/p' "$dir/learn.out")
if [ -z "$acc" ] || ! awk -v a="$acc" 'BEGIN { exit !(a >= 0.93) }'; then
	echo "FAIL: --net $net on the digits: final test accuracy '$acc', wanted >= 0.93"
	cat "$dir/learn.out"
	fails=$((fails + 1))
fi
# the net the short form made, and its convolution's parameters (8*9 + 8)
if ! grep -q "^net  *conv:1:8:3:1:1,relu,maxpool:2,flatten,linear:128:32,relu,linear:32:10 (--net $net)" \
	"$dir/learn.out"; then
	echo "FAIL: --net $net: the net line:"
	grep "^net" "$dir/learn.out"
	fails=$((fails + 1))
fi

# --load takes the CNN from the file and scores the same
run load --data digits --load "$dir/L" --eval-only
got=$(sed -n 's/^test loss [0-9.]*, accuracy \([0-9.]*\)$/\1/p' "$dir/load.out")
if [ -z "$acc" ] || [ "$acc" != "$got" ]; then
	echo "FAIL: --load of a CNN: accuracy '$got', trained '$acc'"
	cat "$dir/load.out"
	fails=$((fails + 1))
fi
run load2 --data digits --net $net --load "$dir/L" --eval-only
if ! grep -q "accuracy $acc" "$dir/load2.out"; then
	echo "FAIL: --load of a CNN with the same --net:"
	cat "$dir/load2.out"
	fails=$((fails + 1))
fi

# 4 epochs straight = 2 epochs, saved, resumed to 4 (the same bytes)
run A --data digits --net $net --batch 64 --schedule cosine:4 --epochs 4 --save "$dir/A"
run B --data digits --net $net --batch 64 --schedule cosine:4 --epochs 2 --save "$dir/B"
run R --data digits --resume "$dir/B" --epochs 4 --save "$dir/B"
if ! cmp "$dir/A" "$dir/B"; then
	echo "FAIL: --net $net: 4 epochs straight and 2 + resumed 2 differ"
	fails=$((fails + 1))
fi
if ! grep -q "^resumed .* after 2 epochs" "$dir/R.out"; then
	echo "FAIL: --resume of a CNN:"
	cat "$dir/R.out"
	fails=$((fails + 1))
fi

# with batch norm over the convolution's channels (the full form): it
# learns, and the file's running statistics, (8) per channel, evaluate to
# the same accuracy; 4 epochs straight = 2 + resumed 2
bnnet=conv:1:8:3:1:1,bn:8,relu,maxpool:2,flatten,linear:128:10
run bn --data digits --net $bnnet --epochs 10 --batch 32 --lr 0.003 --save "$dir/N"
bnacc=$(sed -n 's/^final test accuracy \([0-9.]*\) .*/\1/p' "$dir/bn.out")
if [ -z "$bnacc" ] || ! awk -v a="$bnacc" 'BEGIN { exit !(a >= 0.93) }'; then
	echo "FAIL: --net $bnnet on the digits: final test accuracy '$bnacc', wanted >= 0.93"
	cat "$dir/bn.out"
	fails=$((fails + 1))
fi
run bnload --data digits --load "$dir/N" --eval-only
if ! grep -q "^test loss [0-9.]*, accuracy $bnacc\$" "$dir/bnload.out"; then
	echo "FAIL: --load of a CNN with batch norm: trained '$bnacc':"
	cat "$dir/bnload.out"
	fails=$((fails + 1))
fi
run BA --data digits --net $bnnet --batch 64 --schedule cosine:4 --epochs 4 --save "$dir/BA"
run BB --data digits --net $bnnet --batch 64 --schedule cosine:4 --epochs 2 --save "$dir/BB"
run BR --data digits --resume "$dir/BB" --epochs 4 --save "$dir/BB"
if ! cmp "$dir/BA" "$dir/BB"; then
	echo "FAIL: --net $bnnet: 4 epochs straight and 2 + resumed 2 differ"
	fails=$((fails + 1))
fi

# expect CODE PATTERN ARGS...: train ARGS exits CODE and its stderr's first
# line contains PATTERN (a fixed string)
expect() {
	code=$1 pattern=$2
	shift 2
	"$train" "$@" >/dev/null 2>"$dir/err"
	rc=$?
	first=$(head -n 1 "$dir/err")
	if [ "$rc" != "$code" ] || ! printf '%s\n' "$first" | grep -qF -- "$pattern"; then
		echo "FAIL: train $*: exit $rc, first line: $first"
		echo "      wanted exit $code and: $pattern"
		fails=$((fails + 1))
	fi
}

expect 2 "--net cnn: --data iris is not images" --data iris --net cnn
expect 2 "--hidden is a flag of the MLP; --net $net gives the whole net" \
	--data digits --net $net --hidden 16
# a net ending in a convolution or a pool gives images, not scores
expect 2 "--net conv8:3 gives an output of shape (1,8,6,6) for one image, not a row of scores; end it with a linear layer of 10 outputs" \
	--data digits --net conv8:3 --epochs 1
expect 2 "--net conv8:3-avgpool2 gives an output of shape (1,8,3,3)" \
	--data digits --net conv8:3-avgpool2 --epochs 1
expect 2 "--net conv8:3-pool2-32-7 gives 7 outputs; --data digits has 10 classes" \
	--data digits --net conv8:3-pool2-32-7
expect 2 'piece 2 "pool16" on input (N,8,8,8): a 16x16 window does not fit' \
	--data digits --net conv8:3p1-pool16-10
expect 2 "--net: a resumed run takes it from" --data digits --resume "$dir/B" --net $net
expect 2 "but $dir/L holds conv:1:8:3:1:1" --data digits --net conv4:3-10 --load "$dir/L" \
	--eval-only

if [ "$fails" -gt 0 ]; then
	echo "$fails of the CNN checks failed"
	exit 1
fi
echo "train --net: a CNN on the digits learns ($acc; with batch norm $bnacc), resumes to the same" \
	"bytes and loads"
