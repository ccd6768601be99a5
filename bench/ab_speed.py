"""A/B speed of md2f-mamba: this tree against an older source tree, in one process.

    git worktree add /tmp/oldwt 70a756b
    python bench/ab_speed.py /tmp/oldwt [--rounds 12]

The older tree's ``hsicls`` package is copied under the name ``hsicls_old`` (its imports are
relative) so both versions load in one process with the same weights and running statistics.
Forward passes (eval mode, batch 256 and 1,024, best of 3 per round) and training steps (batch
64, forward + backward + Adam, 8 steps per round) then alternate old/new for ``--rounds``
rounds, and the medians are compared. On a shared virtual machine the speed drifts by tens of
percent between runs, so only such tightly interleaved comparisons are meaningful.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old_tree", type=Path, help="a checkout of the older version (contains hsicls/)")
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    shutil.copytree(args.old_tree / "hsicls", tmp / "hsicls_old")
    sys.path.insert(0, str(tmp))
    import hsicls_old.models as old

    import hsicls.models as new
    from hsicls.engine.runtime import tune_allocator

    tune_allocator()
    torch.manual_seed(0)
    models = {
        "old": old.create_model("md2f-mamba", in_bands=30, n_classes=9, patch_size=13),
        "new": new.create_model("md2f-mamba", in_bands=30, n_classes=9, patch_size=13),
    }
    models["old"].load_state_dict(models["new"].state_dict())
    with torch.no_grad():
        for _ in range(3):  # non-trivial BatchNorm running statistics, the same in both
            x = torch.randn(64, 30, 13, 13)
            for m in models.values():
                m.train()(x)
    rows = []
    for bs in (256, 1024):
        x = torch.randn(bs, 30, 13, 13)
        speed = {k: [] for k in models}
        with torch.inference_mode():
            diff = (models["new"].eval()(x) - models["old"].eval()(x)).abs().max().item()
            for _ in range(args.rounds):
                for k, m in models.items():
                    ts = []
                    for _ in range(3):
                        t = time.perf_counter()
                        m(x)
                        ts.append(time.perf_counter() - t)
                    speed[k].append(bs / min(ts))
        rows.append((f"inference, batch {bs} (px/s)", speed, f"max abs logit difference {diff:.1e}"))
    xb, y = torch.randn(512, 30, 13, 13), torch.randint(0, 9, (512,))
    opts = {k: torch.optim.Adam(m.parameters(), lr=0.002) for k, m in models.items()}
    speed = {k: [] for k in models}
    for _ in range(args.rounds):
        for k, m in models.items():
            m.train()
            t = time.perf_counter()
            for i in range(8):
                sl = slice(64 * i, 64 * i + 64)
                loss = torch.nn.functional.cross_entropy(m(xb[sl]), y[sl])
                opts[k].zero_grad()
                loss.backward()
                opts[k].step()
            speed[k].append(512 / (time.perf_counter() - t))
    rows.append(("training, batch 64 (samples/s)", speed, ""))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"md2f-mamba, 30 bands, 13x13, 9 classes; {torch.get_num_threads()} threads; {args.rounds} interleaved rounds")
    print("| measurement | old median (best) | new median (best) | ratio of medians | note |")
    print("|---|---|---|---|---|")
    for name, s, note in rows:
        mo, mn = statistics.median(s["old"]), statistics.median(s["new"])
        print(f"| {name} | {mo:,.0f} ({max(s['old']):,.0f}) | {mn:,.0f} ({max(s['new']):,.0f}) | {mn / mo:.2f}x | {note} |")


if __name__ == "__main__":
    main()
