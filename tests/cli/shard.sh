#!/usr/bin/env bash
# The sharded optimizer (optim.shard = on, ZeRO-1) at NP ranks:
#  - it trains to bitwise the parameters of shard = off at the same NP: Adam and SGD with
#    momentum, every overlap mode, several buckets in flight; with clipping the global norm
#    is summed over the shards (equal to its rounding: 1e-6);
#  - through pruning with sparse communication (train, prune phases): bitwise again;
#  - checkpoints keep the unsharded layout: a run resumed from a sharded checkpoint with
#    shard = on or off, or from an unsharded one with shard = on, continues bitwise at the
#    same NP, and at another rank count to 1e-5;
#  - a NaN in one gradient coordinate of one rank, which after the reduce-scatter only the
#    owner of that coordinate sees, stops every rank with one error line; a NaN in a
#    pruned coordinate (masked away on every rank) stops none.
#   shard.sh NP   (RINGTRAIN, MKDATA, MODELDIFF, MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
blobs_job "$tmp" || exit 99
run() { # NP OUT ARGS...
    local n=$1 out=$2
    shift 2
    timeout -k 5 90 "$MPIRUN_SH" "$n" "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/$out/model.h5" \
        checkpoint.dir="$tmp/$out/ck" "$@" >"$tmp/$out.log" 2>&1 || fail "$out: $(tail -3 "$tmp/$out.log")"
}
for opt in "optim.name=adam optim.lr=0.003 comm.overlap=poll" "optim.name=sgd comm.overlap=off" \
    "optim.name=adamw optim.lr=0.003 optim.weight_decay=0.01 comm.overlap=thread"; do
    tag=${opt%% *}
    tag=${tag#optim.name=}
    # shellcheck disable=SC2086
    run "$np" "$tag-off" $opt optim.shard=off
    # shellcheck disable=SC2086
    run "$np" "$tag-on" $opt optim.shard=on
    same "$tmp/$tag-off/model.h5" "$tmp/$tag-on/model.h5"
done
# Rank 0 keeps its shards only: 3300 parameters in buckets of 1024 floats, shard sizes from
# shard.h (ceil for rank 0 of each bucket).
want=$(awk -v n="$np" 'BEGIN { s = 0; split("228 1024 1024 1024", b, " "); for (i in b) s += int((b[i] + n - 1) / n); print s }')
grep -q "^optim: state sharded over $np rank.*: $want of 3300 floats per moment" "$tmp/adam-on.log" ||
    fail "sharded state: $(grep '^optim' "$tmp/adam-on.log") (want $want)"
run "$np" clip-off optim.name=adam optim.lr=0.003 optim.clip_norm=0.05
run "$np" clip-on optim.name=adam optim.lr=0.003 optim.clip_norm=0.05 optim.shard=on
close "$tmp/clip-off/model.h5" "$tmp/clip-on/model.h5" 1e-6

# Checkpoints: every 20 steps; resume from step 20 in every combination.
run "$np" a optim.name=adam optim.lr=0.003 optim.shard=on checkpoint.every_steps=20
ck=$tmp/a/ck/ckpt-00000020.h5
[ -f "$ck" ] || fail "no checkpoint at step 20: $(ls "$tmp/a/ck")"
run "$np" off-ck optim.name=adam optim.lr=0.003 optim.shard=off checkpoint.every_steps=20
same "$tmp/a/model.h5" "$tmp/off-ck/model.h5"
run "$np" r-on optim.name=adam optim.lr=0.003 optim.shard=on --resume "$ck"
same "$tmp/a/model.h5" "$tmp/r-on/model.h5"
run "$np" r-off optim.name=adam optim.lr=0.003 optim.shard=off --resume "$ck"
same "$tmp/a/model.h5" "$tmp/r-off/model.h5"
run "$np" r-from-off optim.name=adam optim.lr=0.003 optim.shard=on --resume "$tmp/off-ck/ck/ckpt-00000020.h5"
same "$tmp/a/model.h5" "$tmp/r-from-off/model.h5"
other=$((np == 1 ? 2 : np - 1))
run "$other" r-other optim.name=adam optim.lr=0.003 optim.shard=on --resume "$ck"
close "$tmp/a/model.h5" "$tmp/r-other/model.h5"

# Pruning with sparse communication (comm.sparse = on from the first mask update).
cat >>"$tmp/job.ini" <<INI
[job]
phases = train, prune
[prune]
target_sparsity = 0.8
start_step = 0
every_steps = 5
updates = 4
finetune_epochs = 1
INI
run "$np" p-off optim.name=adam optim.lr=0.003 comm.sparse=on
run "$np" p-on optim.name=adam optim.lr=0.003 comm.sparse=on optim.shard=on
same "$tmp/p-off/model.h5" "$tmp/p-on/model.h5"
grep -qE '^final: .* sparsity=0.8000 ' "$tmp/p-on.log" || fail "p-on final: $(grep final "$tmp/p-on.log")"

# Faults. Coordinate 1030 is a bias of layer 0 (never pruned), in the bucket [228, 1252) of
# the 4 KiB buckets, whose shard holding it is the last rank's at 2-4 ranks; the NaN goes
# into rank 0's gradient, so after the reduce-scatter only the last rank sees it.
fault() { # OUT WHERE ARGS...
    local out=$1 where=$2
    shift 2
    RINGTRAIN_FAULT_NAN_GRAD=0:55:$where timeout -k 5 60 "$MPIRUN_SH" "$np" "$RINGTRAIN" train \
        "$tmp/job.ini" train.out="$tmp/$out/model.h5" checkpoint.dir="$tmp/$out/ck" optim.name=adam \
        optim.lr=0.003 comm.sparse=on optim.shard=on "$@" >"$tmp/$out.log" 2>&1
}
[ "$np" -ge 2 ] || { echo "ok [np=$np] (faults need 2 ranks)"; exit 0; }
fault nan 1030
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "a NaN on one rank: exit $rc: $(tail -3 "$tmp/nan.log")"
[ "$(grep -c 'ringtrain: error' "$tmp/nan.log")" -eq 1 ] || fail "not one error line: $(cat "$tmp/nan.log")"
grep -q "error: step 56 (phase prune, epoch 1): the averaged gradient of layer 0 is not finite" "$tmp/nan.log" ||
    fail "message: $(grep error "$tmp/nan.log")"
fault masked pruned || fail "a NaN in a pruned coordinate stopped the run: $(tail -3 "$tmp/masked.log")"
same "$tmp/p-on/model.h5" "$tmp/masked/model.h5"
echo "  $(grep error "$tmp/nan.log")"
echo "ok [np=$np]"
