"""Interleaved A/B speed of md2f-mamba between two source trees of hsicls.

    git worktree add /tmp/oldwt 70a756b
    python bench/ab_speed.py /tmp/oldwt . [ROUNDS]

Each measurement runs in a fresh process with ``PYTHONPATH`` set to one tree, alternating
between the trees for ROUNDS rounds (default 4): eval-mode px/s at batch 256 and 1,024 (best of
several forward passes, allocator tuned as in hsicls) and training samples/s at batch 64
(forward + backward + Adam, best of 3 epochs of 1,024 samples). Prints medians and maxima per
tree: on a shared virtual machine single runs vary by tens of percent, interleaving keeps the
comparison fair.
"""
import json, subprocess, sys, statistics
CODE = r'''
import time, torch, json, sys
from torch import nn
from hsicls.models import create_model
from hsicls.runtime import tune_allocator
tune_allocator()
torch.manual_seed(0)
m = create_model("md2f-mamba", in_bands=30, n_classes=9, patch_size=13).eval()
res = {}
for bs in (256, 1024):
    x = torch.randn(bs, 30, 13, 13)
    with torch.inference_mode():
        m(x); ts = []
        for _ in range(max(4, 4096 // bs)):
            t0 = time.perf_counter(); m(x); ts.append(time.perf_counter() - t0)
    res[f"eval{bs}"] = bs / min(ts)
m.train(); xb = torch.randn(1024, 30, 13, 13); y = torch.randint(0, 9, (1024,))
opt = torch.optim.Adam(m.parameters(), 0.002)
def epoch():
    for i in range(16):
        s = slice(64 * i, 64 * i + 64)
        loss = nn.functional.cross_entropy(m(xb[s]), y[s]); opt.zero_grad(); loss.backward(); opt.step()
epoch(); ts = []
for _ in range(3):
    t0 = time.perf_counter(); epoch(); ts.append(time.perf_counter() - t0)
res["train64"] = 1024 / min(ts)
print(json.dumps(res))
'''
import os

trees = {"old": os.path.abspath(sys.argv[1]), "new": os.path.abspath(sys.argv[2])}
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
out = {k: [] for k in trees}
for r in range(rounds):
    for name, path in trees.items():
        p = subprocess.run([sys.executable, "-c", CODE], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True)
        out[name].append(json.loads(p.stdout))
        print(name, out[name][-1], flush=True)
for key in ("eval256", "eval1024", "train64"):
    o = [d[key] for d in out["old"]]; n = [d[key] for d in out["new"]]
    print(f"{key}: old median {statistics.median(o):.0f} max {max(o):.0f} | new median {statistics.median(n):.0f} max {max(n):.0f} | ratio of medians {statistics.median(n)/statistics.median(o):.2f}")
