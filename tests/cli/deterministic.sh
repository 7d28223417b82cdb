#!/usr/bin/env bash
# comm.deterministic: the same job at 1, 2, 3, 4 and 6 ranks (12 micro-batches) ends with
# bitwise the same parameters after 100 steps: Adam; a wider model whose sum over ranks goes
# in pieces during backward, or after it; with dropout (masks from row ids);
# through pruning; with the sharded optimizer. A checkpoint written at 2 ranks resumes at 3
# and continues bitwise. A non-finite gradient stops or is skipped on every rank. Without
# it, the rank counts differ (the test's control).
#   deterministic.sh   (RINGTRAIN, MKDATA, MODELDIFF, MPIRUN_SH come from meson)
set -u
np=1-6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
blobs_job "$tmp" || exit 99
run() { # NP OUT ARGS...
    local n=$1 out=$2
    shift 2
    timeout -k 5 120 "$MPIRUN_SH" "$n" "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/$out/model.h5" \
        checkpoint.dir="$tmp/$out/ck" train.epochs=10 train.max_steps=100 optim.name=adam optim.lr=0.003 \
        "$@" >"$tmp/$out.log" 2>&1 || fail "$out: $(tail -3 "$tmp/$out.log")"
}
for n in 1 2 3 4 6; do
    run "$n" "d$n" comm.deterministic=on checkpoint.every_steps=40
    [ "$n" = 1 ] || same "$tmp/d1/model.h5" "$tmp/d$n/model.h5"
done
grep -qE '^final: epochs=9.09[0-9] steps=100 ' "$tmp/d6.log" || fail "final: $(grep final "$tmp/d6.log")"
run 3 r3 comm.deterministic=on --resume "$tmp/d2/ck/ckpt-00000040.h5"
same "$tmp/d1/model.h5" "$tmp/r3/model.h5"
run 3 s3 comm.deterministic=on optim.shard=on
same "$tmp/d1/model.h5" "$tmp/s3/model.h5"
# Wide enough that the int64 sum over ranks goes in several pieces during backward, and
# without that overlap (comm.overlap = off: one sum after backward).
wide="model.layers=dense(512), tanh, dense(256), tanh, dense(4)"
run 1 w1 comm.deterministic=on "$wide" train.max_steps=30
run 3 w3 comm.deterministic=on "$wide" train.max_steps=30
same "$tmp/w1/model.h5" "$tmp/w3/model.h5"
run 2 w2 comm.deterministic=on "$wide" train.max_steps=30 comm.overlap=off
same "$tmp/w1/model.h5" "$tmp/w2/model.h5"
drop="model.layers=dense(64), tanh, dropout(0.2), dense(32), tanh, dense(4)"
run 1 drop1 comm.deterministic=on "$drop"
run 4 drop4 comm.deterministic=on "$drop"
same "$tmp/drop1/model.h5" "$tmp/drop4/model.h5"
prune=(job.phases=train,prune prune.target_sparsity=0.8 prune.every_steps=5 prune.updates=4
    prune.finetune_epochs=1)
run 1 p1 comm.deterministic=on "${prune[@]}"
run 3 p3 comm.deterministic=on "${prune[@]}"
same "$tmp/p1/model.h5" "$tmp/p3/model.h5"
# A NaN in one rank's loss gradient (step 6: every micro-batch has rows) stops every rank
# with the usual message, or is skipped on every rank.
RINGTRAIN_FAULT_NAN=1:5 timeout -k 5 60 "$MPIRUN_SH" 2 "$RINGTRAIN" train "$tmp/job.ini" comm.deterministic=on \
    train.out="$tmp/nan/model.h5" checkpoint.dir="$tmp/nan/ck" >"$tmp/nan.log" 2>&1 && fail "a NaN did not stop the job"
[ "$(grep -c 'ringtrain: error' "$tmp/nan.log")" -eq 1 ] || fail "not one error line: $(cat "$tmp/nan.log")"
grep -q "error: step 6 (phase train, epoch 1): the averaged gradient of layer 0 is not finite" "$tmp/nan.log" ||
    fail "message: $(grep error "$tmp/nan.log")"
RINGTRAIN_FAULT_NAN=1:5 timeout -k 5 60 "$MPIRUN_SH" 2 "$RINGTRAIN" train "$tmp/job.ini" comm.deterministic=on \
    train.skip_nonfinite=on train.out="$tmp/skip/model.h5" checkpoint.dir="$tmp/skip/ck" >"$tmp/skip.log" 2>&1 ||
    fail "skip: $(tail -3 "$tmp/skip.log")"
grep -qE "^final: .* skipped=1$" "$tmp/skip.log" || fail "final: $(grep final "$tmp/skip.log")"
# The control: the usual sums at 1 and 3 ranks do differ (in the last bits).
run 1 u1
run 3 u3
d=$("$MODELDIFF" "$tmp/u1/model.h5" "$tmp/u3/model.h5")
[[ $d != max_abs=0\ * ]] || fail "the control run is bitwise equal too: the test cannot tell"
echo "  without comm.deterministic, 3 ranks vs 1: $d"
echo "ok"
