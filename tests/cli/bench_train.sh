#!/usr/bin/env bash
# `ringtrain bench train` at NP ranks: one row per rank with every figure, plausible values
# (MFU in (0, 2), the comm share in [0, 100]), and nothing written: no checkpoint
# directory, model, metrics.jsonl or report in the job's run directory.
#   bench_train.sh NP   (RINGTRAIN, MKDATA, MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
blobs_job "$tmp" || exit 99
timeout -k 5 60 "$MPIRUN_SH" "$np" "$RINGTRAIN" bench train "$tmp/job.ini" train.out="$tmp/run/model.h5" \
    job.phases=train,prune --steps 30 >"$tmp/log" 2>&1 || fail "bench: $(tail -3 "$tmp/log")"
rows=$(grep -cE '^[0-9]+ +[0-9]+ ' "$tmp/log")
[ "$rows" -eq "$np" ] || fail "$rows rows: $(cat "$tmp/log")"
awk '/^[0-9]+ +[0-9]+ / { if (NF != 12 || $5 <= 0 || $5 >= 2 || $9 < 0 || $9 > 100 || $10 <= 0 || $11 <= 0 || $12 <= 0) bad = 1 }
     END { exit bad }' "$tmp/log" || fail "implausible figures: $(cat "$tmp/log")"
[ ! -e "$tmp/run" ] || fail "bench wrote into the run directory: $(ls -R "$tmp/run")"
grep -E '^(bench train|rank|[0-9])' "$tmp/log" | sed 's/^/  /'
