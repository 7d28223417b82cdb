#!/usr/bin/env bash
# N ranks train like one: 50 steps of the same job (global shuffle, a short last batch in
# every epoch) on 1 and NP ranks give the same parameters to a relative 1e-5 (gradient sums
# are added in another order, nothing else differs), for SGD+momentum and Adam, with the
# gradient buckets small enough that several are in flight. `eval` counts every test sample
# exactly once at any rank count and gives the same loss.
#   train_equiv.sh NP       (RINGTRAIN, MKDATA, MODELDIFF and MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
blobs_job "$tmp" || exit 99
run() { timeout -k 5 60 "$MPIRUN_SH" "$@"; }
for opt in "optim.name=sgd comm.overlap=thread" "optim.name=adamw optim.lr=0.003 comm.overlap=off" \
    "optim.name=adam optim.lr=0.003 comm.overlap=poll"; do
    tag=${opt%% *}
    tag=${tag#optim.name=}
    # shellcheck disable=SC2086
    run 1 "$RINGTRAIN" train "$tmp/job.ini" $opt train.out="$tmp/$tag-1.h5" >"$tmp/o1" ||
        fail "$tag np=1 run failed"
    # shellcheck disable=SC2086
    run "$np" "$RINGTRAIN" train "$tmp/job.ini" $opt train.out="$tmp/$tag-n.h5" >"$tmp/on" ||
        fail "$tag np=$np run failed"
    final='^final: epochs=4.545 steps=50 loss=[0-9.]+ test_loss=[0-9.]+ test_acc=[0-9.]+ sparsity=0.0000 samples_per_s=[0-9.]+ seconds=[0-9.]+$'
    grep -qE "$final" "$tmp/on" || fail "$tag final line malformed: $(tail -1 "$tmp/on")"
    d=$("$MODELDIFF" "$tmp/$tag-1.h5" "$tmp/$tag-n.h5") || fail "modeldiff failed"
    echo "$tag np=1 vs np=$np: $d"
    rel=$(echo "$d" | sed -n 's/.*max_rel=\([^ ]*\).*/\1/p')
    awk -v r="$rel" 'BEGIN { exit !(r <= 1e-5) }' || fail "$tag: parameters differ: $d"
done
acc=$(sed -n 's/^final:.*test_acc=\([0-9.]*\).*/\1/p' "$tmp/on")
awk -v a="$acc" 'BEGIN { exit !(a >= 0.75) }' || fail "test_acc $acc < 0.75 (chance is 0.25)"
m="$tmp/adam-n.h5"
run 1 "$RINGTRAIN" eval "$m" "$tmp/test.h5" --batch 64 >"$tmp/e1" || fail "eval np=1 failed"
run "$np" "$RINGTRAIN" eval "$m" "$tmp/test.h5" --batch 64 >"$tmp/en" || fail "eval np=$np failed"
cat "$tmp/e1" "$tmp/en"
grep -qE '^eval: loss=[0-9.]+ acc=[0-9.]+ samples=203$' "$tmp/en" || fail "eval line: $(cat "$tmp/en")"
l1=$(sed -n 's/.*loss=\([0-9.]*\).*/\1/p' "$tmp/e1")
ln=$(sed -n 's/.*loss=\([0-9.]*\).*/\1/p' "$tmp/en")
awk -v a="$l1" -v b="$ln" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * a + 1e-6) }' ||
    fail "eval loss differs: np=1 $l1, np=$np $ln"
a1=$(sed -n 's/.*acc=\([0-9.]*\).*/\1/p' "$tmp/e1")
an=$(sed -n 's/.*acc=\([0-9.]*\).*/\1/p' "$tmp/en")
[ "$a1" = "$an" ] || fail "eval accuracy differs: $a1 vs $an"
echo "ok [np=$np] test_acc=$acc eval loss $l1 = $ln"
