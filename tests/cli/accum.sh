#!/usr/bin/env bash
# Gradient accumulation (train.accum_steps = K) at NP ranks: the step's batch runs as K
# micro-batches whose gradients add up before the one reduction.
#  - K = 4 trains like K = 1 at the same global batch: SGD to a relative 1e-6 after 50
#    steps (only the grouping of the weight-gradient sums differs); Adam, which divides
#    each coordinate by its own running magnitude and so magnifies rounding in small
#    coordinates, to 1e-4;
#  - with optim.shard = on it gives bitwise the parameters of shard = off;
#  - a run resumed from a checkpoint at step 20 continues bitwise.
#   accum.sh NP   (RINGTRAIN, MKDATA, MODELDIFF, MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
blobs_job "$tmp" || exit 99
run() { # OUT ARGS...
    local out=$1
    shift
    timeout -k 5 60 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/$out/model.h5" \
        checkpoint.dir="$tmp/$out/ck" "$@" >"$tmp/$out.log" 2>&1 || fail "$out: $(tail -3 "$tmp/$out.log")"
}
run sgd1
run sgd4 train.accum_steps=4
close "$tmp/sgd1/model.h5" "$tmp/sgd4/model.h5" 1e-6
run adam1 optim.name=adam optim.lr=0.003
run adam4 optim.name=adam optim.lr=0.003 train.accum_steps=4 checkpoint.every_steps=20
close "$tmp/adam1/model.h5" "$tmp/adam4/model.h5" 1e-4
grep -qE '^final: epochs=4.545 steps=50 ' "$tmp/adam4.log" || fail "final: $(grep final "$tmp/adam4.log")"
run shard4 optim.name=adam optim.lr=0.003 train.accum_steps=4 optim.shard=on
same "$tmp/adam4/model.h5" "$tmp/shard4/model.h5"
run resumed optim.name=adam optim.lr=0.003 train.accum_steps=4 --resume "$tmp/adam4/ck/ckpt-00000020.h5"
same "$tmp/adam4/model.h5" "$tmp/resumed/model.h5"
echo "ok [np=$np]"
