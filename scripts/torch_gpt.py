#!/usr/bin/python3
"""torch_gpt.py - a ringtrain language-model file as a PyTorch module, weights unchanged.

    import torch_gpt
    net = torch_gpt.load("runs/kjv-gpt.h5")        # nn.Module, eval mode
    logits = net(torch.tensor([[72, 101, 108]]))   # (B, T, V) for token ids (B, T)

The file's `architecture` attribute (e.g. "embed(256, 128), posembed, block(128, heads=4)
* 4, layernorm, unembed") says what to build; /layers/<i>/weight and bias are copied in
as they are (nn.Embedding (V, D), nn.LayerNorm (D), nn.Linear (OUT, IN)). block(...) is
GPT-2's pre-LayerNorm block: x + proj(attn(ln1(x))), then x + fc2(gelu(fc1(ln2(x)))), q, k
and v from one Linear split in that order, heads consecutive slices, exact erf GELU.

Run as a script it prints the mean cross-entropy (nats per token) of the model on the
non-overlapping windows of a text dataset's split:  torch_gpt.py MODEL.h5 DATA.h5 [val]
"""
import math
import re
import sys

import h5py
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, d_in, heads, head_dim):
        super().__init__()
        self.heads, self.hd = heads, head_dim

    def forward(self, qkv):  # (B, T, 3 H hd) -> (B, T, H hd)
        B, T, _ = qkv.shape
        q, k, v = qkv.split(self.heads * self.hd, dim=2)
        q, k, v = (t.view(B, T, self.heads, self.hd).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-2, -1) / math.sqrt(self.hd)
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        return (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.heads * self.hd)


class Block(nn.Module):
    def __init__(self, d, heads, mlp, head_dim):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * heads * head_dim)
        self.attn = Attention(d, heads, head_dim)
        self.proj = nn.Linear(heads * head_dim, d)
        self.fc1, self.fc2 = nn.Linear(d, mlp), nn.Linear(mlp, d)

    def forward(self, x):
        x = x + self.proj(self.attn(self.qkv(self.ln1(x))))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    # the file's layer indices of this block's parameters, from its first layer (residual)
    slots = {"ln1": 1, "qkv": 2, "proj": 4, "ln2": 7, "fc1": 8, "fc2": 9}
    layers = 11


class GPT(nn.Module):
    def __init__(self, arch, context):
        super().__init__()
        self.mods, self.index = nn.ModuleList(), []  # module, file layer index
        self.tied, i, d = False, 0, None
        for item, times in re.findall(r"(\w+(?:\([^)]*\))?)(?:\s*\*\s*(\d+))?", arch):
            kind, _, args = item.partition("(")
            a = [s.strip() for s in args.rstrip(")").split(",") if s.strip()]
            pos = [int(s) for s in a if "=" not in s]
            kw = {k: int(v) for k, v in (s.split("=") for s in a if "=" in s)}
            for _ in range(int(times or 1)):
                if kind in ("embed", "embedding"):
                    m, d = nn.Embedding(pos[0], pos[1]), pos[1]
                elif kind in ("posembed", "pos_embed"):
                    m = nn.Parameter(torch.zeros(context, d))
                elif kind in ("layernorm", "ln"):
                    m = nn.LayerNorm(d)
                elif kind == "block":
                    h = kw["heads"]
                    m = Block(pos[0], h, kw.get("mlp", 4 * pos[0]), kw.get("head_dim", pos[0] // h))
                elif kind == "dense":
                    m = nn.Linear(d, pos[0])
                elif kind == "unembed":
                    m, self.tied = None, True
                else:
                    raise ValueError(f"{kind}: not a layer of a GPT")
                if isinstance(m, nn.Parameter):
                    self.pos = m
                    m = "pos"
                self.index.append(i)
                self.mods.append(m if isinstance(m, nn.Module) else nn.Identity())
                self.kinds = getattr(self, "kinds", []) + [m if isinstance(m, str) else kind]
                i += Block.layers if kind == "block" else 1

    def forward(self, ids):
        x = None
        for m, kind in zip(self.mods, self.kinds):
            if kind in ("embed", "embedding"):
                x, self.wte = m(ids), m.weight
            elif kind == "pos":
                x = x + self.pos[: x.shape[1]]
            elif kind == "unembed":
                x = x @ self.wte.T
            else:
                x = m(x)
        return x

    def load(self, f):
        def put(mod, i, bias=True):
            mod.weight.data = torch.from_numpy(f[f"layers/{i}/weight"][...])
            if bias:
                mod.bias.data = torch.from_numpy(f[f"layers/{i}/bias"][...])
        for m, kind, i in zip(self.mods, self.kinds, self.index):
            if kind in ("embed", "embedding"):
                put(m, i, bias=False)
            elif kind == "pos":
                self.pos.data = torch.from_numpy(f[f"layers/{i}/weight"][...])
            elif isinstance(m, Block):
                for name, off in Block.slots.items():
                    put(getattr(m, name), i + off)
            elif isinstance(m, (nn.LayerNorm, nn.Linear)):
                put(m, i)


def load(path):
    f = h5py.File(path, "r")
    arch = f.attrs["architecture"]
    arch = arch.decode() if isinstance(arch, bytes) else arch
    net = GPT(arch, int(f.attrs["input_shape"][0]))
    net.load(f)
    return net.eval()


def main():
    net = load(sys.argv[1])
    split = sys.argv[3] if len(sys.argv) > 3 else "val"
    T = int(h5py.File(sys.argv[1], "r").attrs["input_shape"][0])
    b = torch.from_numpy(h5py.File(sys.argv[2], "r")[split][...].astype("int64"))
    n = (len(b) - 1) // T
    x, y = b[: n * T].view(n, T), b[1 : n * T + 1].view(n, T)
    with torch.no_grad():
        total = sum(F.cross_entropy(net(x[i : i + 64]).flatten(0, 1), y[i : i + 64].flatten(),
                                    reduction="sum").item() for i in range(0, n, 64))
    print(f"{total / (n * T):.6f}")


if __name__ == "__main__":
    main()
