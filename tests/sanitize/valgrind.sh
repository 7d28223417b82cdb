#!/usr/bin/env bash
# valgrind memcheck of a short job at 2 ranks, every rank under valgrind: a train, prune,
# distill job with checkpoints, a resume inside the pruning phase, eval at 2 ranks, then
# inspect of the last checkpoint and export --sparse of the pruned model. Fails on any
# memory error (invalid access, uninitialised value, bad free) and on memory definitely lost,
# except what tests/sanitize/valgrind.supp attributes to a third-party library (Open MPI,
# its libevent and PMIx). Each report is printed; all logs stay in KEEP if
# set. About 1 minute on 2 cores. Skips (77) without valgrind (apt-get install valgrind).
#   tests/sanitize/valgrind.sh
#   BUILD_DIR  a build of ringtrain without sanitizers (default: build). Reports name
#              file:line only in a build with -g, e.g. `meson setup build-vg
#              -Dbuildtype=debugoptimized && ninja -C build-vg`, then BUILD_DIR=build-vg.
#   KEEP       a directory to keep the job, its output and the valgrind logs in
set -u
cd "$(dirname "$0")/../.." || exit 1
command -v valgrind >/dev/null || { echo "skip: no valgrind on PATH (apt-get install valgrind)"; exit 77; }
command -v "${MPIRUN:-mpirun}" >/dev/null || { echo "skip: no mpirun on PATH"; exit 77; }
bdir=${BUILD_DIR:-build}
[[ $bdir == /* ]] || bdir=$PWD/$bdir
rt=$bdir/ringtrain
mkdata=$bdir/tests/cli/mkdata
if [ ! -x "$rt" ] || [ ! -x "$mkdata" ]; then
    echo "valgrind.sh: build $bdir first (ninja -C $bdir)"
    exit 1
fi
if ldd "$rt" | grep -q libasan; then
    echo "valgrind.sh: $rt is built with AddressSanitizer, which valgrind cannot run: use another BUILD_DIR"
    exit 1
fi
if [ -n "${KEEP:-}" ]; then
    tmp=$KEEP
    rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
fi
if ! "$mkdata" "$tmp/train.h5" blobs 240 16 4 >/dev/null || ! "$mkdata" "$tmp/test.h5" blobs 80 16 4 >/dev/null; then
    echo "valgrind.sh: mkdata failed"
    exit 1
fi
# 4 steps per epoch; train 8, prune 2 + 4 (mask updates at phase steps 0, 2, 4), distill 8.
cat >"$tmp/job.ini" <<INI
[job]
phases = train, prune, distill
[model]
layers = 16, 32, 4
activation = tanh
[data]
train = $tmp/train.h5
test = $tmp/test.h5
[optim]
name = adam
lr = 0.003
[comm]
bucket_kb = 1
check_every = 3
[train]
epochs = 2
batch = 60
eval_batch = 40
log_every = 2
out = $tmp/a/model.h5
[checkpoint]
dir = $tmp/a/checkpoints
every_steps = 3
keep = 100
[prune]
target_sparsity = 0.5
every_steps = 2
updates = 2
finetune_epochs = 1
[distill]
student_layers = 16, 8, 4
epochs = 2
lr = 0.01
INI
# --child-silent-after-fork: MPI_Init forks to start orted when ringtrain runs without mpirun.
vg=(valgrind --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite
    --num-callers=50 --track-origins=yes --child-silent-after-fork=yes --suppressions="$PWD/tests/sanitize/valgrind.supp")
status=0
bytes() { # LABEL LOG: the byte count valgrind's leak summary gives after LABEL (0 if none)
    local v
    v=$(sed -n "s/.*$1 \([0-9,]*\) bytes.*/\1/p" "$2" | head -1 | tr -d ,)
    echo "${v:-0}"
}
step() { # NAME NP|- ARGS...: runs ringtrain ARGS under valgrind, on NP ranks or alone (-)
    local name=$1 np=$2 t0=$SECONDS
    shift 2
    mkdir -p "$tmp/vg/$name"
    local cmd=("${vg[@]}" --log-file="$tmp/vg/$name/%p.log" "$rt" "$@")
    if [ "$np" = - ]; then
        timeout -k 5 120 "${cmd[@]}" >"$tmp/$name.out" 2>&1
    else
        timeout -k 5 240 scripts/mpirun.sh "$np" "${cmd[@]}" >"$tmp/$name.out" 2>&1
    fi
    local code=$? logs=("$tmp/vg/$name"/*.log) errs=0 lost=0 supp=0 n=0 f e
    for f in "${logs[@]}"; do
        [ -f "$f" ] || continue
        n=$((n + 1))
        e=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$f" | tr -d ,)
        if [ -z "$e" ]; then
            echo "FAIL: $name: $f has no ERROR SUMMARY (valgrind died?)"
            tail -20 "$f"
            status=1
            continue
        fi
        errs=$((errs + e))
        lost=$((lost + $(bytes "definitely lost:" "$f")))
        supp=$((supp + $(bytes "suppressed:" "$f")))
        if [ "$e" -ne 0 ]; then
            echo "FAIL: $name: $e errors in $f:"
            # The reports: from the first error to the summaries.
            sed -n '/^==[0-9]*== \(Invalid\|Conditional\|Use of\|Syscall\|Mismatched\|.*definitely lost\|.*[Ss]ource and destination\)/,/^==[0-9]*== $/p' "$f"
            status=1
        fi
    done
    if [ $code -ne 0 ] || [ $n -eq 0 ]; then
        echo "FAIL: $name: exit $code, $n valgrind logs: $(tail -5 "$tmp/$name.out")"
        status=1
    fi
    echo "  $name: $n processes, $errs errors, $lost bytes definitely lost (ours), $supp bytes of third-party leaks suppressed, $((SECONDS - t0)) s"
}
echo "valgrind memcheck of $rt ($(valgrind --version)):"
step train 2 train "$tmp/job.ini"
ck=$tmp/a/checkpoints
step resume 2 train "$tmp/job.ini" checkpoint.dir="$tmp/b/checkpoints" train.out="$tmp/b/model.h5" \
    --resume "$ck/ckpt-00000012.h5"
step eval 2 eval "$tmp/a/model.h5" "$tmp/test.h5"
ends=("$ck"/ckpt-*-distill.h5)
step inspect - inspect "${ends[-1]}"
step export - export --sparse "$tmp/a/model-prune.h5" "$tmp/csr.h5"
[ $status -eq 0 ] && echo "ok: no memory errors and no definite leaks in ringtrain's code"
exit $status
