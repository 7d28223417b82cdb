#!/usr/bin/env bash
# cnn.sh NP - a CNN job through every phase at NP ranks, against one rank and against
# itself resumed. Images (N, 1, 8, 8) in the file; a CNN with dropout trains, is pruned
# (half of its channels structurally, then magnitude masks), and distils into a smaller
# CNN, in one job. Checks:
#  - NP ranks give the parameters of one rank to a relative 1e-5 (dropout masks keyed by
#    row ids: only the order of gradient sums differs);
#  - resuming from a checkpoint inside each phase (train, prune, distill) gives bitwise
#    the parameters of the uninterrupted run, and at one rank the same to 1e-5;
#  - export --sparse and eval: the CSR file gives the dense file's loss.
#   cnn.sh NP   (RINGTRAIN, MKDATA, MODELDIFF, MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
export OPENBLAS_NUM_THREADS=1
"$MKDATA" "$tmp/train.h5" images 330 64 4 >/dev/null && "$MKDATA" "$tmp/test.h5" images 90 64 4 >/dev/null || exit 99
cat >"$tmp/job.ini" <<INI
[job]
phases = train, prune, distill
[model]
layers = conv(6, 3, pad=1), relu, maxpool(2), conv(8, 3), relu, dropout(0.25), flatten, dense(12), relu, dropout(0.5), dense(4)
[data]
train = $tmp/train.h5
test = $tmp/test.h5
[optim]
name = adam
lr = 0.003
[comm]
bucket_kb = 2
check_every = 7
[train]
epochs = 2
batch = 30
eval_batch = 45
log_every = 0
[prune]
keep_neurons = 0.5
target_sparsity = 0.6
every_steps = 4
updates = 3
finetune_epochs = 1
[distill]
student_layers = conv(3, 3, stride=2), tanh, flatten, dense(4)
epochs = 2
[checkpoint]
every_steps = 9
keep = 100
INI
run() { # NP DIR ARGS...
    local n=$1 d=$2
    shift 2
    timeout -k 5 90 "$MPIRUN_SH" "$n" "$RINGTRAIN" train "$tmp/job.ini" train.out="$d/model.h5" "$@" >"$d.log" 2>&1
}
run "$np" "$tmp/a" || fail "full run: $(tail -5 "$tmp/a.log")"
grep -q "^prune: neurons: .* -> conv(3, 3, pad=1), relu, maxpool(2), conv(4, 3), relu" "$tmp/a.log" ||
    fail "no channel pruning line: $(grep '^prune' "$tmp/a.log")"
run 1 "$tmp/one" || fail "one rank: $(tail -5 "$tmp/one.log")"
for m in model-train model-prune model; do close "$tmp/one/$m.h5" "$tmp/a/$m.h5"; done
# 22 train steps (11 per epoch), the prune phase to 22 + 12 + 11 = 45, distill to 67
ck=$tmp/a/checkpoints
for c in 00000018 00000036 00000054; do
    [ -f "$ck/ckpt-$c.h5" ] || fail "no checkpoint $c: $(ls "$ck")"
    run "$np" "$tmp/r$c" --resume "$ck/ckpt-$c.h5" || fail "resume $c: $(tail -5 "$tmp/r$c.log")"
    grep -q "^resume: .*ckpt-$c.h5" "$tmp/r$c.log" || fail "no resume line for $c"
    same "$tmp/a/model.h5" "$tmp/r$c/model.h5"
done
# at another rank count the prune checkpoint continues (sums in another order: 1e-5)
run 1 "$tmp/o36" --resume "$ck/ckpt-00000036.h5" || fail "resume at 1 rank: $(tail -5 "$tmp/o36.log")"
close "$tmp/a/model.h5" "$tmp/o36/model.h5"
grep -q "^phase      train" <("$RINGTRAIN" inspect "$ck/ckpt-00000018.h5") || fail "18 is not in train"
grep -q "^phase      prune" <("$RINGTRAIN" inspect "$ck/ckpt-00000036.h5") || fail "36 is not in prune"
grep -q "^phase      distill" <("$RINGTRAIN" inspect "$ck/ckpt-00000054.h5") || fail "54 is not in distill"
"$RINGTRAIN" export --sparse "$tmp/a/model-prune.h5" "$tmp/csr.h5" >"$tmp/x.log" 2>&1 || fail "export --sparse: $(cat "$tmp/x.log")"
d=$("$MPIRUN_SH" "$np" "$RINGTRAIN" eval "$tmp/a/model-prune.h5" "$tmp/test.h5" 2>&1 | sed -n 's/^eval: loss=\([^ ]*\).*/\1/p')
s=$("$MPIRUN_SH" "$np" "$RINGTRAIN" eval "$tmp/csr.h5" "$tmp/test.h5" 2>&1 | grep '^eval:')
echo "  dense eval loss $d; $s"
awk -v a="$d" -v b="$(echo "$s" | sed -n 's/^eval: loss=\([^ ]*\).*/\1/p')" \
    'BEGIN { e = a - b; if (e < 0) e = -e; exit !(a != "" && e <= 1e-5 * (1 + a)) }' || fail "CSR eval differs: $d vs $s"
echo "$s" | grep -q "kernels=0:conv2d:" || fail "eval names no kernels: $s"
echo "ok [np=$np] CNN: $np ranks = 1 rank, bitwise resume in train, prune, distill; CSR eval"
