#!/usr/bin/env bash
# Non-finite gradients at NP ranks (test hook RINGTRAIN_FAULT_NAN=RANK:STEP puts a NaN into
# one rank's loss gradient; the allreduce spreads it to every rank's average):
#  - by default the job stops on every rank with one line naming the step, the phase and
#    the last good checkpoint, which stays intact and is the newest one;
#  - with train.skip_nonfinite = on the step is skipped on every rank, counted in the log
#    and in final:, and training ends with finite parameters.
#   nonfinite.sh NP   (RINGTRAIN, MKDATA, MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
blobs_job "$tmp" || exit 99
run() { # OUT ARGS...
    local out=$1
    shift
    RINGTRAIN_FAULT_NAN=$((np - 1)):10 timeout -k 5 60 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" \
        train.out="$tmp/$out/model.h5" checkpoint.every_steps=7 "$@" >"$tmp/$out.log" 2>&1
}
run a && fail "a NaN gradient did not stop the job"
[ "$(grep -c 'ringtrain: error' "$tmp/a.log")" -eq 1 ] || fail "not one error line: $(cat "$tmp/a.log")"
grep -q "error: step 11 (phase train, epoch 1): the averaged gradient of layer [0-9] is not finite .* the last good checkpoint is $tmp/a/checkpoints/ckpt-00000007.h5" \
    "$tmp/a.log" || fail "message: $(grep error "$tmp/a.log")"
[ "$(ls "$tmp/a/checkpoints")" = "ckpt-00000007.h5" ] || fail "checkpoints: $(ls "$tmp/a/checkpoints")"
"$RINGTRAIN" inspect "$tmp/a/checkpoints/ckpt-00000007.h5" >/dev/null || fail "last good checkpoint damaged"
run b train.skip_nonfinite=on || fail "skip: $(tail -3 "$tmp/b.log")"
grep -q "^step 11: non-finite gradient, step skipped on every rank" "$tmp/b.log" || fail "no skip line"
grep -qE "^final: .* skipped=1$" "$tmp/b.log" || fail "final: $(grep final "$tmp/b.log")"
grep -qE "^final: .* loss=[0-9.]+ test_loss=[0-9.]+ " "$tmp/b.log" || fail "not finite: $(grep final "$tmp/b.log")"
echo "  $(grep error "$tmp/a.log")"
echo "  $(grep final "$tmp/b.log")"
