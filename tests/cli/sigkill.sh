#!/usr/bin/env bash
# SIGKILL of one rank mid-step at NP ranks: the whole job ends promptly (mpirun notices the
# dead process and kills the rest; no rank is left behind), the checkpoints already written
# are intact, and --resume auto from them finishes with bitwise the parameters of an
# uninterrupted run.
#   sigkill.sh NP RANK   (RINGTRAIN, MKDATA, MODELDIFF, MPIRUN_SH come from meson)
set -u
np=$1
victim=${2:-1}
tmp=$(mktemp -d)
trap 'pkill -9 -f "$tmp/job.ini" 2>/dev/null; rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
"$MKDATA" "$tmp/train.h5" blobs 4000 64 8 >/dev/null && "$MKDATA" "$tmp/test.h5" blobs 500 64 8 >/dev/null || exit 99
cat >"$tmp/job.ini" <<INI
[model]
layers = 64, 256, 256, 8
[data]
train = $tmp/train.h5
test = $tmp/test.h5
[optim]
name = adam
lr = 0.001
[train]
epochs = 4
batch = 60
log_every = 0
[checkpoint]
every_steps = 20
keep = 100
INI
run() { # OUT ARGS...
    local out=$1
    shift
    timeout -k 5 120 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/$out/model.h5" "$@" \
        >"$tmp/$out.log" 2>&1
}
run ref || fail "reference run: $(tail -3 "$tmp/ref.log")"
# The victim's pid: the ringtrain process whose Open MPI rank is $victim.
run a &
pid=$!
for _ in $(seq 100); do
    [ -n "$(ls "$tmp/a/checkpoints" 2>/dev/null)" ] && break
    sleep 0.1
done
target=""
for p in $(pgrep -f "ringtrain train $tmp/job.ini train.out=$tmp/a/"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$victim" && target=$p
done
[ -n "$target" ] || fail "rank $victim not found (the run ended before any checkpoint?)"
t0=$(date +%s%N)
kill -9 "$target"
wait $pid
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc -ne 0 ] || fail "the job exited 0 after a rank was killed"
[ $rc -ne 124 ] || fail "the job hung until the timeout"
[ "$ms" -lt 10000 ] || fail "the job took $ms ms to end after the kill"
left=$(pgrep -f "ringtrain train $tmp/job.ini train.out=$tmp/a/" | wc -l)
[ "$left" -eq 0 ] || fail "$left ranks left running"
last=$(ls "$tmp/a/checkpoints" | tail -1)
for c in "$tmp"/a/checkpoints/ckpt-*.h5; do
    "$RINGTRAIN" inspect "$c" >/dev/null || fail "checkpoint $c damaged"
done
run a --resume auto || fail "resume: $(tail -3 "$tmp/a.log")"
grep -q "^resume: $tmp/a/checkpoints/$last" "$tmp/a.log" || fail "resumed from: $(grep '^resume' "$tmp/a.log")"
same "$tmp/ref/model.h5" "$tmp/a/model.h5"
echo "  killed rank $victim (pid $target): job ended in $ms ms (exit $rc), resumed from $last"
