#!/usr/bin/env bash
# compat.sh NP - files of format_version 1 (written by ringtrain before layer lists) still
# work: tests/cli/fixtures holds a v1 model file and a v1 checkpoint of the blobs job
# (lib.sh) at step 26 of 50, both written by the previous release at 2 ranks. A resume of
# that checkpoint must continue bit for bit to the model that release trained (the
# fixture model), eval and inspect must read both.
set -u
np=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
fix=$here/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
blobs_job "$tmp" || fail "blobs data"
"$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/b/model.h5" \
    --resume "$fix/v1-ckpt-00000026.h5" >"$tmp/b.log" 2>&1 || fail "resume of a v1 checkpoint: $(tail -3 "$tmp/b.log")"
grep -q "resumed\|resume" "$tmp/b.log" || fail "no resume line: $(head -5 "$tmp/b.log")"
# at the writer's rank count bit for bit; at another, gradient sums add in another order
if [ "$np" -eq 2 ]; then same "$fix/v1-model.h5" "$tmp/b/model.h5"; else close "$fix/v1-model.h5" "$tmp/b/model.h5"; fi
"$MPIRUN_SH" "$np" "$RINGTRAIN" eval "$fix/v1-model.h5" "$tmp/test.h5" >"$tmp/e.log" 2>&1 || fail "eval of a v1 model: $(cat "$tmp/e.log")"
grep -q "^eval: loss=0.415087 acc=0.8424 samples=203" "$tmp/e.log" || fail "eval: $(cat "$tmp/e.log")"
"$RINGTRAIN" inspect "$fix/v1-ckpt-00000026.h5" >"$tmp/i.log" 2>&1 || fail "inspect: $(cat "$tmp/i.log")"
grep -q "^format     ringtrain-checkpoint v1," "$tmp/i.log" || fail "inspect: $(head -3 "$tmp/i.log")"
grep -q "^model      16-64-32-4, tanh hidden" "$tmp/i.log" || fail "inspect: $(cat "$tmp/i.log")"
echo "ok [np=$np] v1 checkpoint resumed bitwise, v1 model evaluated, inspected"
