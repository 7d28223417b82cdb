#!/usr/bin/env bash
# scripts/plot on synthetic metrics.jsonl files (no training needed):
#  - a classification run through train, prune and distill, with events and a resume that
#    repeats steps, gives loss, accuracy, sparsity and throughput PNGs (valid, non-trivial);
#    the later line for a repeated (kind, step) wins;
#  - a regression run (accuracy null, no pruning) skips accuracy.png and sparsity.png with a
#    note each, and gets a log-scale loss; both runs overlaid give the four charts;
#  - a missing, empty or malformed file is exit 1 and one line on stderr naming file[:line].
#   plot.sh [PLOT]   (PLOT defaults to scripts/plot next to this tests/ directory)
# Skipped (77) without Debian's python3 and python3-matplotlib, which scripts/plot runs on.
set -u
plot=${1:-$(cd "$(dirname "$0")/../.." && pwd)/scripts/plot}
py=/usr/bin/python3
if ! "$py" -c 'import matplotlib' 2>/dev/null; then
    echo "skip: $py cannot import matplotlib (apt-get install python3-matplotlib)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export MPLCONFIGDIR=$tmp/mpl  # matplotlib's cache: not in a possibly read-only $HOME

fail() { echo "FAIL: $*"; exit 1; }

# gen.py KIND DIR: DIR/metrics.jsonl as the trainer writes it. KIND class: 3 phases
# (train 0-300, prune 300-500 with mask updates, distill 500-600), stopped at step 420 and
# resumed from the checkpoint at 400, so steps 400-420 appear twice; the first copies carry
# loss 999 so a wrong winner shows. KIND reg: one train phase, accuracy null, loss falling
# over 3 decades, sparsity 0. Unknown keys and an unknown kind are sprinkled in.
cat >"$tmp/gen.py" <<'PY'
import json, math, os, sys
kind, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
f = open(os.path.join(out, "metrics.jsonl"), "w")
def put(**r): f.write(json.dumps(r) + "\n")
def event(step, phase, ev, detail=""):
    put(kind="event", time=step * 0.05, step=step, phase=phase, event=ev, detail=detail)
phases = [("train", 0, 300), ("prune", 300, 500), ("distill", 500, 600)] if kind == "class" \
    else [("train", 0, 400)]
def record(phase, start, step, stale=False):
    loss = 2.0 * math.exp(-step / 80) + 0.05 if kind == "class" else 10 * math.exp(-step / 50)
    sp = {"prune": min(0.8, 0.8 * (step - 300) / 150), "distill": 0.8}.get(phase, 0)
    return dict(kind="step", phase=phase, epoch=(step - start - 1) // 100 + 1, step=step,
                phase_step=step - start, time=step * 0.05, loss=999.0 if stale else loss,
                accuracy=(1 - loss / 2.5) if kind == "class" else None, lr=0.01,
                sparsity=sp if kind == "class" else 0,
                samples_per_s=12000 + 500 * math.sin(step / 30),
                compute_s=0.004, comm_s=0.001 + 0.0005 * math.sin(step / 20), wait_s=0.0007,
                slowest_rank=2, slowest_compute_s=0.0048, max_wait_rank=1, max_wait_s=0.0012,
                future_key={"ignored": True})
resumed = kind != "class"  # only the class run is stopped and resumed
for phase, start, end in phases:
    event(start, phase, "phase_start")
    for step in range(start + 10, end + 1, 10):
        if step == 430 and not resumed:
            event(420, phase, "stop", "SIGTERM")  # the job stops at step 420 ...
            resumed = True
            for s in (410, 420):                  # ... and resumes from its step-400 checkpoint
                put(**record(phase, start, s))
        r = record(phase, start, step, stale=step in (410, 420) and not resumed)
        put(**r)
        if phase == "prune" and step % 50 == 0 and step <= 450:
            event(step, phase, "mask_update", f"sparsity {r['sparsity']:.3f}")
        if (step - start) % 100 == 0:
            ep = dict(r, kind="epoch", test_loss=r["loss"] * 1.1,
                      test_acc=None if kind == "reg" else r["accuracy"] - 0.02)
            for k in ("phase_step", "compute_s", "comm_s", "wait_s", "slowest_rank"):
                ep.pop(k)
            put(**ep)
            if step % 200 == 0:
                event(step, phase, "checkpoint", f"ckpt-{step:08d}.h5")
    event(end, phase, "phase_end")
put(kind="histogram", step=600, bins=[1, 2, 3])           # a kind from a newer trainer
PY
for k in class reg; do "$py" "$tmp/gen.py" $k "$tmp/$k" || fail "generator $k"; done

# png FILE: exists, starts with the PNG signature, and is bigger than an empty canvas.
png() {
    [ -f "$1" ] || fail "$1 not written"
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$1 is not a PNG"
    local size
    size=$(wc -c <"$1")
    [ "$size" -gt 20000 ] || fail "$1 is only $size bytes"
}

# The classification run, OUTDIR defaulting to the metrics file's directory.
"$plot" "$tmp/class/metrics.jsonl" >"$tmp/class.out" 2>"$tmp/class.err" ||
    fail "plot class: $(cat "$tmp/class.err")"
for c in loss accuracy sparsity throughput; do
    png "$tmp/class/$c.png"
    grep -qx "$tmp/class/$c.png" "$tmp/class.out" || fail "$c.png not printed"
done
[ -s "$tmp/class.err" ] && fail "unexpected stderr: $(cat "$tmp/class.err")"

# The loader itself: later line wins for a repeated step, unknown kinds and keys ignored.
"$py" - "$plot" "$tmp/class/metrics.jsonl" <<'PY' || fail "loader"
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("plot", sys.argv[1])
m = importlib.util.module_from_spec(importlib.util.spec_from_loader("plot", loader))
loader.exec_module(m)
run = m.load(sys.argv[2])
steps = [r["step"] for r in run.steps]
assert steps == sorted(set(steps)) and len(steps) == 60, steps
assert all(r["loss"] < 10 for r in run.steps), "a stale pre-resume line won"
assert [s[0] for s in run.spans] == ["train", "prune", "distill"], run.spans
assert [(a, b) for _, a, b in run.spans] == [(0, 300), (300, 500), (500, 600)], run.spans
assert sum(e["event"] == "mask_update" for e in run.events) == 3
PY

# The regression run into an explicit OUTDIR: no accuracy, no sparsity, a note for each.
"$plot" "$tmp/reg/metrics.jsonl" "$tmp/reg-out" >"$tmp/reg.out" 2>"$tmp/reg.err" ||
    fail "plot reg: $(cat "$tmp/reg.err")"
png "$tmp/reg-out/loss.png"
png "$tmp/reg-out/throughput.png"
for c in accuracy sparsity; do
    [ -e "$tmp/reg-out/$c.png" ] && fail "$c.png written for a regression run"
    grep -q "note: $c.png not written" "$tmp/reg.err" ||
        fail "no note for $c.png: $(cat "$tmp/reg.err")"
done
[ "$(wc -l <"$tmp/reg.out")" -eq 2 ] || fail "reg printed: $(cat "$tmp/reg.out")"

# Both runs overlaid, OUTDIR by -o.
"$plot" -o "$tmp/both" "$tmp/class/metrics.jsonl" "$tmp/reg/metrics.jsonl" >"$tmp/both.out" 2>&1 ||
    fail "plot overlay: $(cat "$tmp/both.out")"
for c in loss accuracy sparsity throughput; do png "$tmp/both/$c.png"; done

# err NAME EXPECT [PLOT ARGS]: exit 1, stdout empty, exactly one stderr line matching EXPECT.
err() {
    local name=$1 expect=$2 rc
    shift 2
    "$plot" "$@" >"$tmp/e.out" 2>"$tmp/e.err"
    rc=$?
    [ $rc -eq 1 ] || fail "$name: exit $rc, not 1"
    [ -s "$tmp/e.out" ] && fail "$name: wrote to stdout: $(cat "$tmp/e.out")"
    [ "$(wc -l <"$tmp/e.err")" -eq 1 ] || fail "$name: stderr is not one line: $(cat "$tmp/e.err")"
    grep -qF -- "$expect" "$tmp/e.err" || fail "$name: stderr lacks '$expect': $(cat "$tmp/e.err")"
    echo "  $name: $(cat "$tmp/e.err")"
}
mkdir "$tmp/bad"
head -n 2 "$tmp/class/metrics.jsonl" >"$tmp/bad/truncated.jsonl"
printf '{"kind": "step", "step": 30, "loss": 0.' >>"$tmp/bad/truncated.jsonl"  # killed mid-write
err truncated "$tmp/bad/truncated.jsonl:3: malformed JSON" "$tmp/bad/truncated.jsonl"
printf '{"kind": "step", "step": 1, "loss": 1}\n[1, 2]\n' >"$tmp/bad/array.jsonl"
err not-object "$tmp/bad/array.jsonl:2: not a metrics record" "$tmp/bad/array.jsonl"
printf '\n{"kind": "epoch", "step": 5, "loss": "low"}\n' >"$tmp/bad/string.jsonl"
err not-number "$tmp/bad/string.jsonl:2: \"loss\" is not a number" "$tmp/bad/string.jsonl"
printf '{"kind": "step", "loss": 1}\n' >"$tmp/bad/nostep.jsonl"
err no-step "$tmp/bad/nostep.jsonl:1: step record without \"step\"" "$tmp/bad/nostep.jsonl"
: >"$tmp/bad/empty.jsonl"
err empty "$tmp/bad/empty.jsonl: empty" "$tmp/bad/empty.jsonl"
err missing "$tmp/bad/none.jsonl: No such file or directory" "$tmp/bad/none.jsonl" "$tmp/bad/out"
err missing-2nd "$tmp/bad/none.jsonl: No such file" "$tmp/class/metrics.jsonl" "$tmp/bad/none.jsonl"
ls "$tmp/bad"/*.png >/dev/null 2>&1 && fail "PNG written despite an error"
echo "ok: 4 charts, regression skips, overlay, resume dedup, 7 error cases"
