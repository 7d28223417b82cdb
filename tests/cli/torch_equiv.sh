#!/usr/bin/env bash
# torch_equiv.sh - a model file loads into the PyTorch module of the same architecture with
# no transposes and gives the same outputs: a small CNN (every kind: conv with padding and
# stride, max and average pooling, flatten, dropout, dense, fused and standalone
# activations) is trained for a few steps, its model file is read with h5py into an
# nn.Sequential built from the file's `architecture` attribute, and PyTorch's loss and
# accuracy on the test set equal `ringtrain eval`'s. Skips (77) without python3-torch.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
py=/usr/bin/python3
if ! "$py" -c 'import torch, h5py' 2>/dev/null; then
    echo "SKIP: needs Debian's python3-torch and python3-h5py (scripts/test.sh installs them)"
    exit 77
fi
np=2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
"$MKDATA" "$tmp/train.h5" images 240 64 4 >/dev/null && "$MKDATA" "$tmp/test.h5" images 90 64 4 >/dev/null ||
    fail "mkdata"
layers="conv(4, 3, pad=1), relu, maxpool(2), conv(6, 3x2, stride=1x2, pad=1x0), tanh, avgpool(2, stride=1), flatten, dropout(0.2), dense(7), gelu, dense(4)"
"$MPIRUN_SH" $np "$RINGTRAIN" train "model.layers=$layers" data.train="$tmp/train.h5" data.test= \
    train.batch=24 train.epochs=2 train.log_every=0 train.out="$tmp/m/model.h5" >"$tmp/t.log" 2>&1 ||
    fail "train: $(tail -5 "$tmp/t.log")"
"$MPIRUN_SH" $np "$RINGTRAIN" eval "$tmp/m/model.h5" "$tmp/test.h5" >"$tmp/e.log" 2>&1 || fail "eval: $(cat "$tmp/e.log")"
ours=$(sed -n 's/^eval: loss=\([^ ]*\) acc=\([^ ]*\) .*/\1 \2/p' "$tmp/e.log")
[ -n "$ours" ] || fail "no eval line: $(cat "$tmp/e.log")"
theirs=$("$py" - "$tmp/m/model.h5" "$tmp/test.h5" <<'PY'
import re, sys
import h5py, torch, torch.nn as nn
f, d = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
shape = [int(v) for v in f.attrs["input_shape"]]
acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "identity": nn.Identity}
def pair(s):  # "3" -> (3, 3), "3x2" -> (3, 2)
    v = [int(p) for p in s.split("x")]
    return (v[0], v[-1])
mods, ours = [], {}   # ours: /layers/<i> -> the Sequential index of that layer's module
items = re.findall(r"\w+(?:\([^)]*\))?", f.attrs["architecture"])
i, c, flat = -1, shape[0], None
x = torch.zeros([1] + shape)
for it in items:
    kind, _, args = it.partition("(")
    a = [s.strip() for s in args.rstrip(")").split(",") if s.strip()]
    pos = [s for s in a if "=" not in s]
    kw = dict(s.split("=") for s in a if "=" in s)
    if kind in acts:
        mods.append(acts[kind]())   # fused into the layer before it when it follows one
        if not (mods and len(mods) > 1 and isinstance(mods[-2], (nn.Conv2d, nn.Linear))):
            i += 1
        continue
    i += 1
    if kind == "conv":
        m = nn.Conv2d(c, int(pos[0]), pair(pos[1]), stride=pair(kw.get("stride", "1")),
                      padding=pair(kw.get("pad", "0")))
        c = int(pos[0])
    elif kind in ("maxpool", "avgpool"):
        k = pair(pos[0])
        m = (nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(k, stride=pair(kw.get("stride", pos[0])))
    elif kind == "flatten":
        m = nn.Flatten()
    elif kind == "dropout":
        m = nn.Dropout(float(pos[0]) if pos else 0.5)
    elif kind == "dense":
        m = nn.Linear(nn.Sequential(*mods)(x).shape[1], int(pos[0]))
    if kind in ("conv", "dense"):
        ours[i] = len(mods)
    mods.append(m)
net = nn.Sequential(*mods).eval()
for i, j in ours.items():
    net[j].weight.data = torch.from_numpy(f[f"layers/{i}/weight"][...])  # no transposes
    net[j].bias.data = torch.from_numpy(f[f"layers/{i}/bias"][...])
X = torch.from_numpy(d["X"][...]).float().reshape([-1] + shape)
y = torch.from_numpy(d["y"][...]).long()
with torch.no_grad():
    z = net(X)
print(f"{nn.functional.cross_entropy(z, y).item():.6f} {(z.argmax(1) == y).float().mean().item():.4f}")
PY
) || fail "pytorch: $theirs"
echo "  ringtrain eval: loss acc = $ours; PyTorch: $theirs"
awk -v a="$ours" -v b="$theirs" 'BEGIN { split(a, x, " "); split(b, y, " ");
    d = x[1] - y[1]; if (d < 0) d = -d; exit !(d <= 1e-5 * (1 + y[1]) && x[2] == y[2]) }' ||
    fail "PyTorch disagrees: ours $ours, PyTorch $theirs"
echo "ok: the model file loads into PyTorch unchanged and gives the same loss and accuracy"
