#!/usr/bin/env bash
# N ranks train like one: the same job on 1 and NP ranks (global shuffle) gives models
# whose parameters agree to float rounding (gradient sums are added in another order), that
# classify the test blobs well, and `eval` counts every test sample exactly once at any
# rank count with the same loss.
#   train_equiv.sh NP       (RINGTRAIN, MKDATA and MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL [np=$np]: $*"; exit 1; }
"$MKDATA" "$tmp/train.h5" blobs 600 16 4 && "$MKDATA" "$tmp/test.h5" blobs 203 16 4 || exit 99
cat >"$tmp/job.ini" <<INI
[model]
layers = 16, 32, 4
activation = tanh
[data]
train = $tmp/train.h5
test = $tmp/test.h5
[optim]
name = sgd
lr = 0.05
momentum = 0.9
[train]
epochs = 3
batch = 24
eval_batch = 50
log_every = 10
INI
run() { timeout -k 5 60 "$MPIRUN_SH" "$@"; }
run 1 "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/m1.h5" >"$tmp/o1" || fail "np=1 run failed"
run "$np" "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/mn.h5" >"$tmp/on" || fail "np=$np run failed"
cat "$tmp/on"
final='^final: epochs=3 steps=75 loss=[0-9.]+ test_loss=[0-9.]+ test_acc=[0-9.]+ samples_per_s=[0-9.]+ seconds=[0-9.]+$'
grep -qE "$final" "$tmp/o1" || fail "np=1 final line malformed: $(tail -1 "$tmp/o1")"
grep -qE "$final" "$tmp/on" || fail "np=$np final line malformed: $(tail -1 "$tmp/on")"
acc=$(sed -n 's/^final:.*test_acc=\([0-9.]*\).*/\1/p' "$tmp/on")
awk -v a="$acc" 'BEGIN { exit !(a >= 0.75) }' || fail "test_acc $acc < 0.75 (chance is 0.25)"
h5diff -d 1e-4 "$tmp/m1.h5" "$tmp/mn.h5" /layers >"$tmp/diff" ||
    fail "parameters differ beyond 1e-4: $(head -5 "$tmp/diff")"
run 1 "$RINGTRAIN" eval "$tmp/mn.h5" "$tmp/test.h5" --batch 64 >"$tmp/e1" || fail "eval np=1 failed"
run "$np" "$RINGTRAIN" eval "$tmp/mn.h5" "$tmp/test.h5" --batch 64 >"$tmp/en" || fail "eval np=$np failed"
cat "$tmp/e1" "$tmp/en"
grep -qE '^eval: loss=[0-9.]+ acc=[0-9.]+ samples=203$' "$tmp/en" || fail "eval line: $(cat "$tmp/en")"
l1=$(sed -n 's/.*loss=\([0-9.]*\).*/\1/p' "$tmp/e1")
ln=$(sed -n 's/.*loss=\([0-9.]*\).*/\1/p' "$tmp/en")
awk -v a="$l1" -v b="$ln" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * (a + 1e-9) + 1e-6) }' ||
    fail "eval loss differs: np=1 $l1, np=$np $ln"
a1=$(sed -n 's/.*acc=\([0-9.]*\).*/\1/p' "$tmp/e1")
an=$(sed -n 's/.*acc=\([0-9.]*\).*/\1/p' "$tmp/en")
[ "$a1" = "$an" ] || fail "eval accuracy differs: $a1 vs $an"
echo "ok [np=$np] test_acc=$acc eval loss $l1 = $ln"
