#!/usr/bin/env bash
# Stop signals at NP ranks. For each case a signal goes to ONE rank (SIGTERM to the last
# rank, SIGINT to rank 0, SIGUSR1 to a middle rank) or to mpirun (SIGUSR1, which mpirun
# forwards at once; SIGTERM, on which mpirun sends every rank SIGCONT, waits
# odls_base_sigkill_timeout seconds (default 1), sends SIGTERM, waits again, then SIGKILL,
# and exits 1 itself). Every rank must stop at the next step boundary, rank 0 write a
# checkpoint, all exit with 75 within seconds (mpirun's own 1 for SIGTERM to mpirun);
# `--resume auto` then finishes the job with parameters bitwise equal to an uninterrupted
# run.
#   signals.sh NP [CASE...]   (RINGTRAIN, MKDATA, MODELDIFF, MPIRUN_SH come from meson)
set -u
np=$1
shift
cases=${*:-term-rank int-rank0 usr1-rank usr1-mpirun term-mpirun}
steps=1200
tmp=$(mktemp -d)
watchdog=
trap '[ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL [np=$np]: $*"; exit 1; }
"$MKDATA" "$tmp/train.h5" blobs 610 16 4 || exit 99
cat >"$tmp/job.ini" <<INI
[model]
layers = 16, 512, 512, 4
[data]
train = $tmp/train.h5
test =
[optim]
name = adam
lr = 0.001
[comm]
bucket_kb = 256
[train]
epochs = 10000
max_steps = $steps
batch = 60
log_every = 0
[checkpoint]
every_steps = 50
keep = 2
INI
timeout -k 5 120 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/u/model.h5" \
    >"$tmp/u.log" 2>&1 || fail "uninterrupted run: $(tail -3 "$tmp/u.log")"

# The pid of rank R of the job launched as mpirun pid $1 (Open MPI sets the rank in env).
rank_pid() {
    local p
    for p in $(pgrep -P "$1" -x ringtrain); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p"
    done
}

stop_case() { # NAME SIGNAL TARGET(rank number or "mpirun") [EXIT-CODE]
    local name=$1 sig=$2 target=$3 dir=$tmp/$1 pid victim i code start ms
    local want=${4:-75}
    "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" train.out="$dir/model.h5" \
        >"$dir.log" 2>&1 &
    pid=$!
    (sleep 100 && kill -9 "$pid") 2>/dev/null &
    watchdog=$!
    # Signal once training is under way: the first periodic checkpoint exists.
    for ((i = 0; i < 600; i++)); do
        [ -e "$dir/checkpoints/ckpt-00000050.h5" ] && break
        sleep 0.05
    done
    [ -e "$dir/checkpoints/ckpt-00000050.h5" ] || fail "$name: no checkpoint at step 50"
    victim=$pid
    [ "$target" != mpirun ] && victim=$(rank_pid "$pid" "$target")
    [ -n "$victim" ] || fail "$name: rank $target not found"
    start=$(date +%s%N)
    kill -s "$sig" "$victim"
    wait "$pid"
    code=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    kill "$watchdog" 2>/dev/null
    watchdog=
    [ $code -eq "$want" ] || fail "$name: exit $code, want $want: $(grep -v '^epoch' "$dir.log" | tail -5)"
    [ "$ms" -lt 10000 ] || fail "$name: took $ms ms to stop"
    local line step
    line=$(grep '^stopped: ' "$dir.log") || fail "$name: no stopped line: $(tail -5 "$dir.log")"
    step=$(echo "$line" | sed -n 's/^stopped: SIG[A-Z0-9]* at step \([0-9]*\);.*/\1/p')
    [[ $line == "stopped: SIG$sig at step $step; checkpoint "*"ckpt-$(printf %08d "$step").h5; continue with --resume auto" ]] ||
        fail "$name: stopped line: $line"
    [ "$step" -lt "$steps" ] || fail "$name: the run finished before the signal (step $step)"
    [ ! -e "$dir/model.h5" ] || fail "$name: a final model was written by a stopped run"
    timeout -k 5 120 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" train.out="$dir/model.h5" \
        --resume auto >"$dir.resume.log" 2>&1 || fail "$name: resume: $(tail -3 "$dir.resume.log")"
    grep -q "^resume: .*ckpt-$(printf %08d "$step").h5: step $step," "$dir.resume.log" ||
        fail "$name: resumed elsewhere: $(grep resume "$dir.resume.log")"
    local d
    d=$("$MODELDIFF" "$tmp/u/model.h5" "$dir/model.h5") || fail "$name: modeldiff"
    [[ $d == max_abs=0\ * ]] || fail "$name: resumed parameters differ: $d"
    echo "  $name: SIG$sig to $target -> exit $code in $ms ms at step $step; resumed = uninterrupted ($d)"
}

for c in $cases; do
    case $c in
    term-rank) stop_case term-rank TERM $((np - 1)) ;;
    int-rank0) stop_case int-rank0 INT 0 ;;
    usr1-rank) stop_case usr1-rank USR1 $((np / 2)) ;;
    usr1-mpirun) stop_case usr1-mpirun USR1 mpirun ;;
    term-mpirun) stop_case term-mpirun TERM mpirun 1 ;;
    *) fail "unknown case $c" ;;
    esac
done
echo "ok [np=$np] $cases: checkpoint, exit, exact resume"
