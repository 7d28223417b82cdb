#!/usr/bin/env bash
# --trace at NP ranks: the file is Chrome trace JSON that Perfetto and chrome://tracing load
# (a traceEvents list of complete "X" spans, "i" instants and "M" metadata), with one track
# per rank, and every rank's track holds what a step is made of: forward, backward of each
# layer, each bucket's reduce-scatter and allgather (ring), optimizer, mask updates,
# checkpoints, evaluations and the phase transitions, in order of time.
#   trace.sh NP   (RINGTRAIN, MKDATA, MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
blobs_job "$tmp" || exit 99
timeout -k 5 60 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/a/model.h5" \
    job.phases=train,prune prune.updates=2 prune.every_steps=3 prune.finetune_epochs=1 \
    comm.algorithm=ring checkpoint.every_steps=20 --trace "$tmp/trace.json" >"$tmp/log" 2>&1 ||
    fail "run: $(tail -3 "$tmp/log")"
grep -q "^trace: $tmp/trace.json: [0-9]* events from $np rank" "$tmp/log" || fail "no trace line"
/usr/bin/python3 - "$tmp/trace.json" "$np" <<'PY' || fail "trace structure"
import json, sys
from collections import Counter
doc = json.load(open(sys.argv[1]))
np_ = int(sys.argv[2])
ev = doc["traceEvents"]
assert isinstance(ev, list) and ev
for e in ev:
    assert e["ph"] in ("X", "i", "M"), e
    assert isinstance(e["pid"], int) and 0 <= e["pid"] < np_, e
    if e["ph"] == "X":
        assert e["dur"] >= 0 and e["ts"] >= -1e3, e
names = {e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
assert names == {"rank %d" % r for r in range(np_)}, names
for r in range(np_):
    mine = [e for e in ev if e["pid"] == r and e["ph"] != "M"]
    kinds = Counter(" ".join(e["name"].split()[:2]) for e in mine)
    steps = kinds["forward"]
    assert steps == 67, kinds  # 50 training steps, then 6 + 11 pruning steps
    assert kinds["backward layer"] == 3 * steps, kinds
    for k in ("reduce-scatter bucket", "allgather bucket", "optimizer", "mask update", "checkpoint",
              "evaluate"):
        assert kinds[k] > 0, (k, kinds)
    phases = [e["name"] for e in mine if e["ph"] == "i"]
    assert phases == ["phase train", "phase prune"], phases
    fwd = [e["ts"] for e in mine if e["name"] == "forward"]
    assert fwd == sorted(fwd), "forward spans out of order"
print("  trace: %d events, %d ranks" % (len(ev), np_))
PY
