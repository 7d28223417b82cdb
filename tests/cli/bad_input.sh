#!/usr/bin/env bash
# One bad input per call: runs `ringtrain train` on NP ranks and checks the contract:
# non-zero exit from every rank within 10 s, exactly one "ringtrain: error:" line naming
# the culprit, no HDF5 stack dump or crash, and no model file left behind.
#   bad_input.sh CASE NP      (RINGTRAIN, MKDATA and MPIRUN_SH come from meson)
set -u
case_=$1
np=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=$tmp/train.h5
"$MKDATA" "$data" blobs 96 16 4 || exit 99
overrides=()
extra_ini=""
expect=""
mk() { "$MKDATA" "$tmp/bad.h5" "$@" || exit 99; data=$tmp/bad.h5; }
case "$case_" in
missing-data)     data=$tmp/nope.h5; expect="nope.h5" ;;
not-hdf5)         mk text; expect="bad.h5" ;;
truncated)        mk truncated 96 16 4; expect="bad.h5" ;;
no-x)             mk no-x 96 16 4; expect="/X" ;;
no-y)             mk no-y 96 16 4; expect="/y" ;;
x-wrong-rank)     mk x-1d 96 16 4; expect="/X" ;;
x-wrong-dtype)    mk x-f64 96 16 4; expect="/X" ;;
y-rows-mismatch)  mk y-rows 96 16 4; expect="bad.h5" ;;
label-range)      mk label-range 96 16 4; expect="bad.h5" ;;
nan-input)        mk nan 96 16 4; expect="bad.h5" ;;
inf-input)        mk inf 96 16 4; expect="bad.h5" ;;
zero-rows)        mk blobs 0 16 4; expect="bad.h5" ;;
fewer-rows)       mk blobs 2 16 4; overrides+=("train.batch=$np"); expect="bad.h5" ;;
input-width)      overrides+=("model.layers=20,8,4"); expect="train.h5" ;;
mse-on-labels)    overrides+=(model.loss=mse); expect="train.h5" ;;
batch-divisible)  overrides+=(train.batch=$((np * 4 + 1))); expect="batch" ;;
unknown-key)      extra_ini=$'[train]\nspeed = 3'; expect="speed" ;;
unknown-section)  extra_ini=$'[trian]\nepochs = 3'; expect="[trian]" ;;
bad-number)       overrides+=(optim.lr=fast); expect="lr" ;;
negative-size)    overrides+=("model.layers=16,-8,4"); expect="layers" ;;
unknown-act)      overrides+=(model.activation=swish); expect="swish" ;;
unknown-optim)    overrides+=(optim.name=lion); expect="lion" ;;
unknown-override) overrides+=(train.speed=3); expect="speed" ;;
missing-job)      job_missing=1; expect="nojob.ini" ;;
unwritable-out)   overrides+=(train.out=/proc/ringtrain-test/model.h5); expect="/proc/ringtrain-test" ;;
*) echo "unknown case $case_"; exit 99 ;;
esac
job=$tmp/job.ini
cat >"$job" <<INI
[model]
layers = 16, 8, 4
[data]
train = $data
test =
[train]
epochs = 1
batch = 12
log_every = 0
out = $tmp/model.h5
$extra_ini
INI
[ "${job_missing:-0}" = 1 ] && job=$tmp/nojob.ini
start=$(date +%s%N)
timeout -k 5 20 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$job" "${overrides[@]}" \
    >"$tmp/out" 2>"$tmp/err"
code=$?
ms=$((($(date +%s%N) - start) / 1000000))
cat "$tmp/err"
fail() { echo "FAIL [$case_ np=$np]: $*"; exit 1; }
[ $code -ne 0 ] || fail "exit code 0"
if [ $code -eq 124 ] || [ $code -eq 137 ]; then fail "hung: killed by timeout"; fi
[ "$ms" -lt 10000 ] || fail "took ${ms} ms (limit 10 s)"
n=$(grep -c '^ringtrain: error: ' "$tmp/err")
[ "$n" -eq 1 ] || fail "expected exactly one 'ringtrain: error:' line, got $n"
grep '^ringtrain: error: ' "$tmp/err" | grep -qF -- "$expect" || fail "error line lacks '$expect'"
! grep -qE 'HDF5-DIAG|Segmentation|core dumped|Backtrace|Aborted' "$tmp/err" || fail "crash or HDF5 dump"
[ "$case_" = unwritable-out ] || [ ! -e "$tmp/model.h5" ] || fail "a model file was written"
echo "ok [$case_ np=$np] exit=$code ${ms} ms"
