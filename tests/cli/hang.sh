#!/usr/bin/env bash
# Hang report at NP ranks: one rank stalls (test hook RINGTRAIN_FAULT_STALL=RANK:STEP:SECONDS,
# a 60 s sleep before its backward pass); with comm.timeout_s = 2 the ranks waiting on it
# name it (the ring: its right neighbour waits for it as its left neighbour, at the first
# reduce-scatter step) and the whole job ends, non-zero, within the timeout plus a few
# seconds instead of sleeping out the minute.
#   hang.sh NP   (RINGTRAIN, MKDATA, MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
blobs_job "$tmp" || exit 99
stalled=1
culprit_seen="for rank $stalled \(left neighbour\) in the allreduce of bucket [0-9]+ \(reduce-scatter step 1 of $((np - 1)),"
for algo in ring rd; do
    t0=$(date +%s%N)
    RINGTRAIN_FAULT_STALL=$stalled:10:60 timeout -k 5 50 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" \
        train.out="$tmp/$algo/model.h5" comm.timeout_s=2 comm.algorithm=$algo >"$tmp/$algo.log" 2>&1
    rc=$?
    dt=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$algo: exit $rc: $(tail -3 "$tmp/$algo.log")"
    awk -v d="$dt" 'BEGIN { exit !(d < 12) }' || fail "$algo: took $dt s"
    grep -q "hang: waited [0-9.]* s for rank " "$tmp/$algo.log" || fail "$algo: no hang report: $(cat "$tmp/$algo.log")"
    if [ $algo = ring ]; then
        grep -qE "$culprit_seen" "$tmp/$algo.log" || fail "ring: culprit not named: $(grep hang "$tmp/$algo.log")"
    fi
    echo "  $algo: ended in $dt s: $(grep -m1 -o 'hang: .*' "$tmp/$algo.log")"
done
