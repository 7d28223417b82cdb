#!/usr/bin/env bash
# One bad input per call: runs `ringtrain train` (or, for the import-* cases, `ringtrain data
# import-text`) on NP ranks and checks the contract:
# non-zero exit from every rank within 5 s, exactly one "ringtrain: error:" line naming
# the culprit, no HDF5 stack dump or crash, no model file left behind, and the checkpoint
# a good earlier run left in the checkpoint directory byte-identical afterwards.
#   bad_input.sh CASE NP      (RINGTRAIN, MKDATA, CKPTEDIT and MPIRUN_SH come from meson)
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
no-x)             mk no-x 96 16 4; expect="[data] x = 'X': no such dataset" ;;
no-y)             mk no-y 96 16 4; expect="[data] y = 'y': no such dataset" ;;
x-wrong-rank)     mk x-1d 96 16 4; expect="[data] x = 'X' has 1 dimensions" ;;
x-wrong-dtype)    mk x-string 96 16 4; expect="[data] x = 'X' is string" ;;
x-f64-range)      mk x-f64-big 96 16 4; expect="[data] x = 'X' row 3 column 1 = 1e+300: beyond float32's range" ;;
y-i64-range)      mk y-i64-big 96 16 4; expect="[data] y = 'y' row 5 = 1099511627776: expected a class label that fits int32" ;;
y-u8-range)       mk y-u8-range 96 16 4; expect="/y row 5 = 200: expected a class label in [0, 4)" ;;
data-x-missing)   overrides+=(data.x=pixels); expect="[data] x = 'pixels': no such dataset in the file" ;;
layers-not-fit)   overrides+=("model.layers=conv(4, 3), relu, dense(4)" model.input_shape=1,4,4); expect="model: layer 1 dense(4) on input (4, 2, 2): dense takes a flat input (D) or a sequence (T, D): put flatten before it" ;;
input-shape-not-fit) overrides+=("model.layers=conv(4, 3), flatten, dense(4)" model.input_shape=1,5,5); expect="[model] layers: the model's input (1, 5, 5) does not fit the data's samples (16)" ;;
kernel-too-large) overrides+=("model.layers=conv(4, 5), flatten, dense(4)" model.input_shape=1,4,4); expect="model: layer 0 conv(4, 5) on input (1, 4, 4): the 5x5 kernel is larger than the 4x4 input padded to 4x4" ;;
pool-nothing)     overrides+=("model.layers=conv(4, 3), maxpool(3), flatten, dense(4)" model.input_shape=1,4,4); expect="model: layer 1 maxpool(3) on input (4, 2, 2): a 3x3 window leaves nothing of the 2x2 input" ;;
misspelt-kind)    overrides+=("model.layers=conv(4, 3), relu, maxpol(2), flatten, dense(4)"); expect="item 2 'maxpol(2)': unknown layer kind 'maxpol'" ;;
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
long-line)        extra_ini="[checkpoint]"$'\n'"dir = $(printf '%0195d' 0) every_steps = 1"; expect="line longer than 199 bytes" ;;
comment-path)     overrides+=("train.out=$tmp/x ;y/model.h5"); expect="';' at its start or after a blank" ;;
bad-number)       overrides+=(optim.lr=fast); expect="lr" ;;
negative-size)    overrides+=("model.layers=16,-8,4"); expect="layers" ;;
unknown-act)      overrides+=(model.activation=swish); expect="swish" ;;
unknown-optim)    overrides+=(optim.name=lion); expect="lion" ;;
unknown-override) overrides+=(train.speed=3); expect="speed" ;;
missing-job)      job_missing=1; expect="nojob.ini" ;;
unwritable-out)   overrides+=(train.out=/proc/ringtrain-test/model.h5); expect="/proc/ringtrain-test" ;;
unwritable-ckpt)  overrides+=(checkpoint.dir=/proc/ringtrain-test/ck checkpoint.every_steps=2); expect="/proc/ringtrain-test" ;;
unknown-phase)    overrides+=("job.phases=train,finetune"); expect="finetune" ;;
prune-first)      overrides+=(job.phases=prune); expect="phases" ;;
distill-no-teacher) overrides+=(job.phases=distill); expect="distill is the first phase" ;;
ckpt-truncated)   ckpt_case=truncate; expect="bad-ckpt.h5" ;;
ckpt-corrupt)     ckpt_case=corrupt; expect="bad-ckpt.h5" ;;
ckpt-future)      ckpt_case=future; expect="format_version = 9" ;;
ckpt-other-arch)  ckpt_case=copy; overrides+=("model.layers=16,12,4"); expect="16-8-4" ;;
ckpt-other-batch) ckpt_case=copy; overrides+=(train.batch=$((np * 2))); expect="batch" ;;
ckpt-not-ckpt)    ckpt_case=data; expect="bad-ckpt.h5" ;;
teacher-mismatch) teacher_case=other; overrides+=(job.phases=distill "distill.student_layers=16,8,4"); expect="does not fit the student" ;;
teacher-missing)  overrides+=(job.phases=distill "distill.student_layers=16,8,4" distill.teacher=$tmp/no-teacher.h5); expect="no-teacher.h5" ;;
teacher-not-model) overrides+=(job.phases=distill "distill.student_layers=16,8,4" distill.teacher=$data); expect="train.h5: not a ringtrain model" ;;
import-empty)     : >"$tmp/in.txt"; import=1; expect="in.txt: empty file: expected text" ;;
import-binary)    printf 'hello\0world\n' >"$tmp/in.txt"; import=1; expect="in.txt: looks binary (1 NUL/control bytes of 12): expected text" ;;
heads-not-divisible) overrides+=("model.layers=embed(256, 10), posembed, block(10, heads=4), layernorm, unembed"); expect="item 2 'block(10, heads=4)': width 10 is not divisible by heads = 4" ;;
text-context-long) text_case=1; overrides+=(data.train="$tmp/text.h5" "model.layers=embed(256, 8), posembed, block(8, heads=2), layernorm, unembed" model.context=64); expect="text.h5: the train split has 45 bytes: model.context = 64 needs at least 65" ;;
context-not-text) overrides+=(model.context=16); expect="[model] context = 16, but $tmp/train.h5 is not a text dataset" ;;
generate-long-prompt) text_case=1; gen_case=lm; expect="generate: --prompt is 20 bytes: longer than $tmp/lm/model.h5's context of 8 tokens" ;;
accum-too-many)   overrides+=(train.accum_steps=5); expect="[train] accum_steps = 5: more micro-batches than the 4 rows each of the 3 ranks has of [train] batch = 12" ;;
micro-not-divisible) overrides+=(comm.deterministic=on comm.micro_batches=4); expect="[comm] micro_batches = 4: comm.deterministic needs a multiple of the 3 ranks" ;;
generate-not-lm)  gen_case=mlp; expect="good/model.h5: not a language model: its input is (16) into dense" ;;
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
INI
cp "$job" "$tmp/base.ini"
echo "$extra_ini" >>"$job"
# A good earlier run: its last checkpoint must come through every bad run untouched.
sed -e "s|^train = .*|train = $tmp/train.h5|" -e "s|^out = .*|out = $tmp/good/model.h5|" \
    "$tmp/base.ini" >"$tmp/good.ini"
good() {
    timeout -k 5 30 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/good.ini" "$@" >"$tmp/good.log" 2>&1 ||
        { cat "$tmp/good.log"; exit 99; }
}
ckpt=""
if [ "${import:-0}" = 0 ]; then # an import touches no checkpoint: nothing to compare
    good checkpoint.dir="$tmp/ck"
    ckpt=$(ls "$tmp"/ck/ckpt-*.h5 | tail -1)
    sum_before=$(md5sum <"$ckpt")
fi
overrides=(checkpoint.dir="$tmp/ck" "${overrides[@]}") # a case's own dir wins
if [ -n "${ckpt_case:-}" ]; then
    cp "$ckpt" "$tmp/bad-ckpt.h5"
    case $ckpt_case in
    truncate) truncate -s 3000 "$tmp/bad-ckpt.h5" ;;
    corrupt) "$CKPTEDIT" "$tmp/bad-ckpt.h5" corrupt model/layers/0/weight || exit 99 ;;
    future) "$CKPTEDIT" "$tmp/bad-ckpt.h5" version 9 || exit 99 ;;
    data) cp "$data" "$tmp/bad-ckpt.h5" ;;
    esac
    overrides+=(--resume "$tmp/bad-ckpt.h5")
fi
if [ "${teacher_case:-}" = other ]; then # a model of other input width: 12-6-4
    "$MKDATA" "$tmp/other.h5" blobs 48 12 4 || exit 99
    good model.layers=12,6,4 data.train="$tmp/other.h5" train.out="$tmp/teacher/model.h5" \
        checkpoint.dir="$tmp/teacher/ck"
    overrides+=(distill.teacher="$tmp/teacher/model.h5")
fi
if [ "${text_case:-0}" = 1 ]; then # 50 bytes of text: 45 to train on, 5 held out
    printf 'In the beginning God created the heaven and earth' >"$tmp/in.txt"
    "$RINGTRAIN" data import-text "$tmp/in.txt" "$tmp/text.h5" >/dev/null || exit 99
fi
if [ "${gen_case:-}" = lm ]; then # a language model of context 8
    good data.train="$tmp/text.h5" "model.layers=embed(256, 8), posembed, block(8, heads=2), layernorm, unembed" model.context=8 train.out="$tmp/lm/model.h5" \
        checkpoint.dir="$tmp/lm/ck"
    rm -f "$tmp/text.h5"
fi
[ "${job_missing:-0}" = 1 ] && job=$tmp/nojob.ini
cmd=(train "$job" "${overrides[@]}")
[ "${import:-0}" = 1 ] && cmd=(data import-text "$tmp/in.txt" "$tmp/text.h5")
[ "${gen_case:-}" = lm ] && cmd=(generate "$tmp/lm/model.h5" --prompt "And God said, Let us")
[ "${gen_case:-}" = mlp ] && cmd=(generate "$tmp/good/model.h5")
start=$(date +%s%N)
timeout -k 5 20 "$MPIRUN_SH" "$np" "$RINGTRAIN" "${cmd[@]}" >"$tmp/out" 2>"$tmp/err"
code=$?
ms=$((($(date +%s%N) - start) / 1000000))
cat "$tmp/err"
fail() { echo "FAIL [$case_ np=$np]: $*"; exit 1; }
[ $code -ne 0 ] || fail "exit code 0"
if [ $code -eq 124 ] || [ $code -eq 137 ]; then fail "hung: killed by timeout"; fi
[ "$ms" -lt 5000 ] || fail "took ${ms} ms (limit 5 s)"
n=$(grep -c '^ringtrain: error: ' "$tmp/err")
[ "$n" -eq 1 ] || fail "expected exactly one 'ringtrain: error:' line, got $n"
grep '^ringtrain: error: ' "$tmp/err" | grep -qF -- "$expect" || fail "error line lacks '$expect'"
! grep -qE 'HDF5-DIAG|Segmentation|core dumped|Backtrace|Aborted' "$tmp/err" || fail "crash or HDF5 dump"
[ "$case_" = unwritable-out ] || [ ! -e "$tmp/model.h5" ] || fail "a model file was written"
[ "${text_case:-0}" = 1 ] || [ ! -e "$tmp/text.h5" ] && [ ! -e "$tmp/text.h5.tmp" ] ||
    fail "an import left a file behind"
[ -z "$ckpt" ] || [ "$(md5sum <"$ckpt")" = "$sum_before" ] || fail "the earlier checkpoint $ckpt changed"
echo "ok [$case_ np=$np] exit=$code ${ms} ms"
