#!/usr/bin/env bash
# A replica that drifts is caught: rank NP-1's parameters are nudged after step 5 (test hook
# RINGTRAIN_FAULT_CORRUPT=RANK:STEP), and the checksum at step 10 must stop every rank with
# one message naming that rank, within seconds.
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL [np=$np]: $*"; exit 1; }
"$MKDATA" "$tmp/train.h5" blobs 600 16 4 || exit 99
bad=$((np - 1))
start=$(date +%s%N)
RINGTRAIN_FAULT_CORRUPT="$bad:5" timeout -k 5 30 "$MPIRUN_SH" "$np" "$RINGTRAIN" train \
    data.train="$tmp/train.h5" data.test= model.layers=16,8,4 train.batch=24 train.epochs=2 \
    comm.check_every=10 train.out="$tmp/model.h5" >"$tmp/out" 2>"$tmp/err"
code=$?
ms=$((($(date +%s%N) - start) / 1000000))
cat "$tmp/err"
[ $code -ne 0 ] || fail "exit code 0: the corrupted replica was not noticed"
[ "$ms" -lt 10000 ] || fail "took $ms ms"
grep '^ringtrain: error: ' "$tmp/err" | grep -q "diverged at step 10: the parameters of rank $bad differ" ||
    fail "no divergence message naming rank $bad"
[ ! -e "$tmp/model.h5" ] || fail "a model was written after divergence"
echo "ok [np=$np] divergence of rank $bad caught, exit $code in $ms ms"
