#!/usr/bin/env bash
# Distillation and the train -> prune -> distill pipeline at NP ranks:
#  - one job runs all three phases, ends each with a model file and a checkpoint named after
#    it, and writes report.json (checked field by field) with the pruned model stored CSR;
#  - the teacher's outputs cached in memory, in per-rank files, or recomputed every step
#    give bitwise the same student (the teacher runs row-wise);
#  - resuming inside the distillation phase (the checkpoint carries the teacher), or from
#    the end of pruning, is bitwise exact;
#  - alpha = 0 is plain training of the student, bitwise; a teacher file works as the
#    first phase; a regression pipeline (MSE against the blended target) runs;
#  - a teacher that does not fit the student, a missing teacher file and teacher = previous
#    in the first phase are refused with one line.
#   distill.sh NP   (RINGTRAIN, MKDATA, MODELDIFF, MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/lib.sh"
"$MKDATA" "$tmp/train.h5" blobs 610 16 4 && "$MKDATA" "$tmp/test.h5" blobs 203 16 4 || exit 99
cat >"$tmp/job.ini" <<INI
[job]
phases = train, prune, distill
[model]
layers = 16, 64, 32, 4
activation = tanh
[data]
train = $tmp/train.h5
test = $tmp/test.h5
[optim]
name = adam
lr = 0.003
[comm]
bucket_kb = 4
check_every = 10
[train]
epochs = 3
batch = 60
log_every = 5
[checkpoint]
every_steps = 7
keep = 100
[prune]
target_sparsity = 0.8
every_steps = 5
updates = 2
finetune_epochs = 1
[distill]
student_layers = 16, 8, 4
epochs = 3
lr = 0.01
temperature = 3
alpha = 0.7
INI
run() { # OUT ARGS...
    local out=$1
    shift
    timeout -k 5 90 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$tmp/job.ini" train.out="$out/model.h5" "$@" \
        >"$out.log" 2>&1
}
run "$tmp/a" || fail "pipeline: $(tail -3 "$tmp/a.log")"
# 11 steps per epoch: train 33, prune 10 + 11, distill 33.
for c in ckpt-00000033-train.h5 ckpt-00000054-prune.h5 ckpt-00000087-distill.h5; do
    [ -f "$tmp/a/checkpoints/$c" ] || fail "no $c: $(ls "$tmp/a/checkpoints")"
done
grep -q "^distill: teacher 16-64-32-4 (previous, 3300 parameters) -> student 16-8-4 (172 parameters)" \
    "$tmp/a.log" || fail "distill line: $(grep '^distill' "$tmp/a.log")"
grep -q "^distill: cached the teacher's outputs for 610 rows in memory" "$tmp/a.log" ||
    fail "cache line: $(grep '^distill' "$tmp/a.log")"
grep -qE '^final: epochs=[0-9.]+ steps=87 .* sparsity=0.0000 ' "$tmp/a.log" || fail "final: $(tail -1 "$tmp/a.log")"
same "$tmp/a/model-distill.h5" "$tmp/a/model.h5"
/usr/bin/python3 - "$tmp/a" <<'PY' || fail "report.json: $(cat "$tmp/a/report.json")"
import json, os, sys
d = sys.argv[1]
rows = json.load(open(os.path.join(d, "report.json")))
assert [r["phase"] for r in rows] == ["train", "prune", "distill"], rows
keys = {"phase", "params", "nonzeros", "bytes", "test_acc", "test_loss", "infer_us_per_sample"}
for r in rows:
    assert keys <= set(r), r
    assert r["bytes"] == os.path.getsize(r["model"]), r
    assert 0 <= r["test_acc"] <= 1 and r["test_loss"] > 0 and r["infer_us_per_sample"] > 0, r
t, p, s = rows
assert t["params"] == p["params"] == 3300 and t["nonzeros"] == 3300 and s["params"] == s["nonzeros"] == 172, rows
# 80% of the 3200 weights pruned: 640 kept + 100 biases
assert p["nonzeros"] == 740 and p["storage"] == "csr" and t["storage"] == "dense", rows
print("  report: " + "; ".join("%s %d/%d acc %.3f %.2f us" % (r["phase"], r["nonzeros"], r["params"],
      r["test_acc"], r["infer_us_per_sample"]) for r in rows))
PY
grep -q "^report: distill " "$tmp/a.log" || fail "no report table"
# metrics.jsonl: valid JSON lines; every epoch of every phase, the phase events, the time split.
/usr/bin/python3 - "$tmp/a/metrics.jsonl" <<'PY' || fail "metrics.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ep = [(r["phase"], r["epoch"]) for r in rows if r["kind"] == "epoch"]
assert ep == [("train", e) for e in (1, 2, 3)] + [("prune", e) for e in (1, 2)] + \
    [("distill", e) for e in (1, 2, 3)], ep
ev = [r["event"] + ":" + r["phase"] for r in rows if r["kind"] == "event" and r["event"].startswith("phase")]
assert ev == ["phase_start:train", "phase_end:train", "phase_start:prune", "phase_end:prune",
              "phase_start:distill", "phase_end:distill"], ev
assert sum(r["kind"] == "event" and r["event"] == "mask_update" for r in rows) == 3
assert sum(r["kind"] == "event" and r["event"] == "checkpoint" for r in rows) >= 12
for r in rows:
    if r["kind"] == "epoch":
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["test_acc"] <= 1 and r["loss"] > 0, r
        assert (r["sparsity"] > 0.7) == (r["phase"] == "prune"), r
print("  metrics.jsonl: %d lines, %d epochs, phases in order" % (len(rows), len(ep)))
PY
# The cache is an optimisation only.
for c in off file; do
    run "$tmp/c$c" distill.cache_teacher=$c || fail "cache $c: $(tail -3 "$tmp/c$c.log")"
    same "$tmp/a/model.h5" "$tmp/c$c/model.h5"
done
grep -q "in per-rank files" "$tmp/cfile.log" || fail "file cache not used: $(grep '^distill' "$tmp/cfile.log")"
ls "$tmp/cfile"/teacher-cache-* 2>/dev/null && fail "teacher cache files left behind"
# Resume inside distillation (step 63 is its step 9) and at the end of pruning.
for c in ckpt-00000063.h5 ckpt-00000054-prune.h5; do
    rm -rf "$tmp/b"
    run "$tmp/b" checkpoint.dir="$tmp/b/ck" --resume "$tmp/a/checkpoints/$c" ||
        fail "resume $c: $(tail -3 "$tmp/b.log")"
    same "$tmp/a/model.h5" "$tmp/b/model.h5"
done
# A teacher file, distillation alone; alpha = 0 is training the student from scratch.
teacher=$tmp/a/model-prune.h5
run "$tmp/f" job.phases=distill distill.teacher="$teacher" || fail "teacher file: $(tail -3 "$tmp/f.log")"
grep -q "^report: teacher " "$tmp/f.log" || fail "no teacher row"
run "$tmp/z" job.phases=distill distill.teacher="$teacher" distill.alpha=0 || fail "alpha 0: $(tail -3 "$tmp/z.log")"
run "$tmp/p" job.phases=train model.layers=16,8,4 model.activation=relu train.epochs=3 optim.lr=0.01 optim.schedule=cosine ||
    fail "plain: $(tail -3 "$tmp/p.log")"
same "$tmp/p/model.h5" "$tmp/z/model.h5"
# Regression: MSE against alpha * teacher + (1 - alpha) * target.
"$MKDATA" "$tmp/rtrain.h5" regress 300 8 3 && "$MKDATA" "$tmp/rtest.h5" regress 100 8 3 || exit 99
run "$tmp/g" model.layers=8,32,3 model.loss=mse data.train="$tmp/rtrain.h5" data.test="$tmp/rtest.h5" \
    distill.student_layers=8,4,3 || fail "regression: $(tail -3 "$tmp/g.log")"
grep -qE '^report: distill +[0-9]+ +[0-9]+ +[0-9]+ +- +[0-9.e-]+ ' "$tmp/g.log" || fail "regression report: $(grep '^report' "$tmp/g.log")"
# Refusals: one line, non-zero exit, on every rank.
refuse() { # WANT ARGS...
    local want=$1
    shift
    rm -rf "$tmp/r"
    run "$tmp/r" "$@" && fail "accepted $*"
    [ "$(grep -c 'ringtrain: error' "$tmp/r.log")" -eq 1 ] || fail "not one error line: $(cat "$tmp/r.log")"
    grep -q "$want" "$tmp/r.log" || fail "want '$want': $(cat "$tmp/r.log")"
}
refuse "teacher $tmp/g/model-train.h5 (8-32-3) does not fit the student 16-8-4" job.phases=distill distill.teacher="$tmp/g/model-train.h5"
refuse "$tmp/nope.h5" job.phases=distill distill.teacher="$tmp/nope.h5"
refuse "distill is the first phase" job.phases=distill
refuse "student_layers: input 15" distill.student_layers=15,8,4
echo "  ok"
