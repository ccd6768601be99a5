"""Accuracy of the registered models on Indian Pines (real data from ../shared/data).

    python bench/accuracy.py [--seeds 5] [--epochs 100] [--models md2f-mamba,ssftt,svm,rf]

Protocol (named beside every number): random stratified split with 5 % of each class's
labelled pixels for training, a different split per seed (seeds 0..N-1); PCA to 30 components
fitted on all pixels (the paper family's habit); deep models: Adam lr 0.002, batch 64,
``--epochs`` epochs, 13 x 13 patches, **final epoch kept** (``--val-ratio 0``: no model
selection at all, so the test split is never looked at); SVM: C and gamma by 3-fold CV on the
training pixels; RF: 200 trees. Metrics on the remaining 95 % (test split), mean ± std over seeds.
Writes bench/out/accuracy.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from hsicls.evaluate import evaluate
from hsicls.models import get_entry
from hsicls.models.complexity import model_info
from hsicls.preprocess import PreprocessOptions, preprocess
from hsicls.train import TrainOptions, train

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HSICLS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "indian_pines"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--patch", type=int, default=13)
    ap.add_argument("--models", default="md2f-mamba,ssftt,svm,rf")
    args = ap.parse_args()
    models = args.models.split(",")
    results: dict[str, list] = {m: [] for m in models}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            prep = Path(tmp) / f"ip{seed}.h5"
            preprocess(DATA / "Indian_pines_corrected.npy", DATA / "Indian_pines_gt.mat", prep,
                       PreprocessOptions(components=30, train_ratio=0.05, val_ratio=0.0, seed=seed), overwrite=True)
            for name in models:
                out = Path(tmp) / f"{name}{seed}.pt"
                t0 = time.perf_counter()
                res = train(prep, out, TrainOptions(model=name, patch_size=args.patch, epochs=args.epochs, batch_size=64,
                                                     lr=0.002, seed=seed, device="cpu"), overwrite=True)
                seconds = time.perf_counter() - t0
                rep = evaluate(out, prep, device="cpu")
                rep["train_seconds"] = seconds
                rep["seconds_per_epoch"] = (sum(h["seconds"] for h in res.history) / len(res.history)) if res.history else None
                results[name].append(rep)
                print(f"seed {seed} {name}: OA {100 * rep['oa']:.2f}  ({seconds:.0f} s)", flush=True)
    rows = []
    for name in models:
        reps = results[name]
        row = {"model": name}
        for k in ("oa", "aa", "kappa"):
            v = 100 * np.array([r[k] for r in reps])
            row[k] = [float(v.mean()), float(v.std())]
        row["per_class_mean"] = np.nanmean(np.array([[np.nan if a is None else a for a in r["per_class"]] for r in reps], float), 0).tolist()
        if get_entry(name).kind == "deep":
            info = model_info(name, 30, args.patch, 16)
            row.update(params=info["params"], macs=info["macs"], flops=info["flops"],
                       seconds_per_epoch=float(np.mean([r["seconds_per_epoch"] for r in reps])))
        row["seeds"] = list(range(args.seeds))
        row["reports"] = [{k: v for k, v in r.items() if k != "split_masks"} for r in reps]
        rows.append(row)
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "accuracy.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"Indian Pines, random stratified 5 % training split per class, seeds 0-{args.seeds - 1} (own split each), "
          f"final epoch ({args.epochs} epochs), test = remaining 95 %")
    print("| model | OA % | AA % | kappa % | params | MACs | s/epoch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = " | ".join(f"{r[k][0]:.2f} ± {r[k][1]:.2f}" for k in ("oa", "aa", "kappa"))
        extra = (f"{r['params']:,} | {r['macs'] / 1e6:.2f}M | {r['seconds_per_epoch']:.2f}" if "params" in r else "- | - | -")
        print(f"| {r['model']} | {cells} | {extra} |")


if __name__ == "__main__":
    main()
