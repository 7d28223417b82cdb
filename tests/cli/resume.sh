#!/usr/bin/env bash
# Checkpoints and resume at NP ranks:
#  - resuming from the checkpoint at step 26 of a 55-step run gives bitwise the parameters
#    of the uninterrupted run (Adam + cosine schedule, and SGD + momentum), and so does
#    stopping with train.max_steps = 20 and resuming with max_steps = 40;
#  - at another rank count the same checkpoint continues from the same sample position
#    (parameters equal to a relative 1e-5: only the order of gradient sums differs);
#  - --resume auto skips a truncated and a corrupted newer checkpoint, with a warning each;
#  - another architecture, another optimizer, a newer format version are refused;
#  - checkpoint.keep bounds the files and no .tmp is left; inspect reads and verifies.
#   resume.sh NP   (RINGTRAIN, MKDATA, MODELDIFF, CKPTEDIT, MPIRUN_SH come from meson)
set -u
np=$1
other=$((np % 3 + 1))
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
"$MKDATA" "$tmp/train.h5" blobs 610 16 4 && "$MKDATA" "$tmp/test.h5" blobs 203 16 4 || exit 99
cat >"$tmp/job.ini" <<INI
[model]
layers = 16, 64, 32, 4
activation = tanh
[data]
train = $tmp/train.h5
test = $tmp/test.h5
[optim]
name = adam
lr = 0.003
schedule = cosine
[comm]
bucket_kb = 4
check_every = 10
[train]
epochs = 5
batch = 60
eval_batch = 50
log_every = 0
[checkpoint]
every_steps = 13
keep = 100
INI
run() { # NP OUT ARGS...: runs with its output kept in OUT.log
    local n=$1 out=$2
    shift 2
    timeout -k 5 60 "$MPIRUN_SH" "$n" "$RINGTRAIN" train "$tmp/job.ini" "$@" >"$out.log" 2>&1
}
ck=$tmp/a/checkpoints
for opt in adam sgd; do
    extra=()
    [ $opt = sgd ] && extra=(optim.name=sgd optim.lr=0.05 optim.momentum=0.9 optim.nesterov=on)
    rm -rf "$tmp/a" "$tmp/b"
    run "$np" "$tmp/a" "${extra[@]}" train.out="$tmp/a/model.h5" || fail "$opt full run: $(tail -3 "$tmp/a.log")"
    for f in ckpt-00000026.h5 ckpt-00000055-train.h5; do
        [ -f "$ck/$f" ] || fail "$opt: $f missing: $(ls "$ck")"
    done
    run "$np" "$tmp/b" "${extra[@]}" train.out="$tmp/b/model.h5" --resume "$ck/ckpt-00000026.h5" ||
        fail "$opt resume: $(tail -3 "$tmp/b.log")"
    grep -q "^resume: .*ckpt-00000026.h5: step 26, epoch 3 (4 of 11 steps done)" "$tmp/b.log" ||
        fail "$opt: no resume line: $(head -3 "$tmp/b.log")"
    same "$tmp/a/model.h5" "$tmp/b/model.h5"
    grep -qx "resume: changed train.out = $tmp/b/model.h5 (the checkpoint's run had $tmp/a/model.h5)" "$tmp/b.log" ||
        fail "$opt: changed keys not reported: $(grep '^resume' "$tmp/b.log")"
    [ "$(grep -c '^resume: changed' "$tmp/b.log")" -eq 1 ] || fail "$opt: unchanged keys reported"
    # The epoch in progress at the checkpoint reports the same loss as without the stop.
    want=$(grep '^epoch 3/5 done' "$tmp/a.log")
    grep -qxF "$want" "$tmp/b.log" || fail "$opt: epoch 3 line differs: $want"
done
# Stop with max_steps, resume with a larger one (constant schedule: the LR does not depend
# on the planned total).
for part in 20 40; do
    run "$np" "$tmp/c$part" optim.schedule=constant train.max_steps=$part train.out="$tmp/c/model.h5" \
        checkpoint.dir="$tmp/c/ck" --resume auto || fail "max_steps=$part: $(tail -3 "$tmp/c$part.log")"
done
grep -q '^final: epochs=3.636 steps=40 ' "$tmp/c40.log" || fail "resumed final line: $(tail -1 "$tmp/c40.log")"
run "$np" "$tmp/d" optim.schedule=constant train.max_steps=40 train.out="$tmp/d/model.h5" || fail "40-step run"
same "$tmp/d/model.h5" "$tmp/c/model.h5"
# Another rank count: same global position, float-rounding differences only.
rm -rf "$tmp/a"
run "$np" "$tmp/a" train.out="$tmp/a/model.h5" || fail "adam full run again"
run "$other" "$tmp/e" train.out="$tmp/e/model.h5" checkpoint.dir="$tmp/e/ck" --resume "$ck/ckpt-00000026.h5" ||
    fail "np=$other resume: $(tail -3 "$tmp/e.log")"
close "$tmp/a/model.h5" "$tmp/e/model.h5"

# --resume auto falls back over damage, with a warning naming each damaged file.
cp -r "$ck" "$tmp/auto"
truncate -s 3000 "$tmp/auto/ckpt-00000055-train.h5"
"$CKPTEDIT" "$tmp/auto/ckpt-00000052.h5" corrupt optim/v || fail "ckptedit corrupt"
cp "$tmp/auto/ckpt-00000052.h5" "$tmp/corrupt.h5" # the resumed run writes a new step 52
run "$np" "$tmp/f" train.out="$tmp/f/model.h5" checkpoint.dir="$tmp/auto" --resume auto ||
    fail "auto resume: $(tail -3 "$tmp/f.log")"
grep -q "warning: .*skipping a damaged checkpoint: .*ckpt-00000055-train.h5" "$tmp/f.log" ||
    fail "no warning for the truncated file: $(head -5 "$tmp/f.log")"
grep -q "warning: .*skipping a damaged checkpoint: .*ckpt-00000052.h5: optim/v: checksum mismatch" "$tmp/f.log" ||
    fail "no checksum warning: $(head -5 "$tmp/f.log")"
grep -q "^resume: .*ckpt-00000039.h5: step 39" "$tmp/f.log" || fail "auto did not take step 39"
same "$tmp/a/model.h5" "$tmp/f/model.h5"
"$RINGTRAIN" inspect "$tmp/corrupt.h5" >"$tmp/i.out" 2>&1 && fail "inspect passed a corrupt file"
grep -q "checksum mismatch" "$tmp/i.out" || fail "inspect: $(cat "$tmp/i.out")"

# Refusals: one line naming what differs, exit 1 on every rank, nothing written.
refuse() { # EXPECTED-PATTERN ARGS...
    local want=$1
    shift
    run "$np" "$tmp/r" train.out="$tmp/r/model.h5" checkpoint.dir="$tmp/r/ck" "$@"
    local code=$?
    [ $code -eq 1 ] || fail "exit $code (want 1) for $*"
    [ "$(grep -c '^ringtrain: error: ' "$tmp/r.log")" -eq 1 ] || fail "not one error line: $(cat "$tmp/r.log")"
    grep -q "^ringtrain: error: .*$want" "$tmp/r.log" || fail "message for $*: $(grep error "$tmp/r.log")"
    [ ! -e "$tmp/r/model.h5" ] || fail "a model was written after a refusal"
    echo "  refused: $(grep '^ringtrain: error' "$tmp/r.log")"
}
c26="$ck/ckpt-00000026.h5"
refuse "layer widths 16-64-32-4 do not match the model's 16-32-4" model.layers=16,32,4 --resume "$c26"
refuse "optimizer is adam, the job's is sgd" optim.name=sgd --resume "$c26"
refuse "made with \[train\] batch = 60, the job has 120" train.batch=120 --resume "$c26"
cp "$c26" "$tmp/future.h5" || fail "copy"
"$CKPTEDIT" "$tmp/future.h5" version 9 || fail "ckptedit version"
refuse "format_version = 9 is newer than this ringtrain reads (2)" --resume "$tmp/future.h5"
refuse "no-such.h5: No such file or directory" --resume "$tmp/no-such.h5"

# keep bounds the periodic checkpoints (a phase's last one stays); inspect summarises and
# verifies.
run "$np" "$tmp/k" train.out="$tmp/k/model.h5" checkpoint.keep=2 || fail "keep run"
files=$(cd "$tmp/k/checkpoints" && echo *)
[ "$files" = "ckpt-00000039.h5 ckpt-00000052.h5 ckpt-00000055-train.h5" ] || fail "keep=2 left: $files"
"$RINGTRAIN" inspect "$tmp/k/checkpoints/ckpt-00000052.h5" >"$tmp/i.out" 2>&1 || fail "inspect: $(cat "$tmp/i.out")"
for want in "^format     ringtrain-checkpoint v2, .* on $np rank" "^phase      train \(phase 1 of the job\): step 52 of 55 in the phase, 52 in all; epoch 5 \(8 of 11 steps done\)" \
    "^model      16-64-32-4, tanh hidden, ce loss: 3300 parameters" "^optimizer  52 updates; state stored: m, v" \
    "^sparsity   layer 0 dense weight 64x16: 0.00% zero" "^metrics    train epoch 1 \(step 11\): loss" "^checksums  every dataset read back and verified"; do
    grep -qE "$want" "$tmp/i.out" || fail "inspect lacks /$want/: $(cat "$tmp/i.out")"
done
"$MPIRUN_SH" "$np" "$RINGTRAIN" eval "$tmp/k/checkpoints/ckpt-00000055-train.h5" "$tmp/test.h5" >"$tmp/ev" 2>&1 ||
    fail "eval of a checkpoint: $(cat "$tmp/ev")"
# Timed checkpoints: rank 0's clock decides and every rank follows (a 0.6 ms period here).
run "$np" "$tmp/t" train.out="$tmp/t/model.h5" checkpoint.every_steps=0 checkpoint.every_minutes=0.00001 ||
    fail "timed run: $(tail -3 "$tmp/t.log")"
n=$(find "$tmp/t/checkpoints" -name 'ckpt-*.h5' ! -name '*-train.h5' | wc -l)
[ "$n" -ge 2 ] || fail "timed checkpoints: only $n besides the final one"
same "$tmp/a/model.h5" "$tmp/t/model.h5"
# Standard HDF5 tools read every object (no custom filter, no custom type).
if command -v h5dump >/dev/null; then
    h5dump "$tmp/k/checkpoints/ckpt-00000052.h5" >/dev/null 2>&1 || fail "h5dump cannot read a checkpoint"
fi
echo "ok [np=$np] resume exact, auto skips damage, refusals, keep, inspect, timed checkpoints"
