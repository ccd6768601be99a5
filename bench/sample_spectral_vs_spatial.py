"""Spectral-only vs spatial-spectral on the embedded sample scene.

    python bench/sample_spectral_vs_spatial.py [--seeds 3] [--epochs 80] [--patch 7]

For each seed (its own random stratified 5 % split, 20 % of it held out for validation):
an RBF SVM on the centre pixel's PCA spectrum (C and gamma picked on the validation split,
then refitted on training + validation pixels) and MD2F-Mamba (checkpoint picked on the
validation split). Test-split OA / AA / kappa, mean +- std over seeds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from hsicls.artifacts.prepared import load_prepared
from hsicls.science.metrics import classification_report
from hsicls.stages.evaluate import evaluate
from hsicls.stages.preprocess import PreprocessOptions, preprocess
from hsicls.stages.train import TrainOptions, train

ROOT = Path(__file__).resolve().parents[1]


def svm(prepared) -> dict:
    from sklearn.svm import SVC

    p = load_prepared(prepared)
    x, y = p.cube, p.labels
    best = None
    for c in (1, 10, 100, 1000):
        for g in ("scale", 0.01, 0.1, 1.0):
            acc = (SVC(C=c, gamma=g).fit(x[p.train], y[p.train]).predict(x[p.val]) == y[p.val]).mean()
            if best is None or acc > best[0]:
                best = (acc, c, g)
    fit = p.train | p.val
    pred = SVC(C=best[1], gamma=best[2]).fit(x[fit], y[fit]).predict(x[p.test])
    return classification_report(y[p.test] - 1, pred - 1, p.n_classes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--patch", type=int, default=7)
    args = ap.parse_args()
    res = {"svm": [], "md2f-mamba": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            prep, model = Path(tmp) / f"p{seed}.h5", Path(tmp) / f"m{seed}.pt"
            preprocess(
                ROOT / "sample_data/sample_scene.tif",
                ROOT / "sample_data/sample_labels.tif",
                prep,
                PreprocessOptions(seed=seed),
                overwrite=True,
            )
            res["svm"].append(svm(prep))
            train(
                prep,
                model,
                TrainOptions(model="md2f-mamba", epochs=args.epochs, patch_size=args.patch, seed=seed, device="cpu"),
                overwrite=True,
            )
            res["md2f-mamba"].append(evaluate(model, prep, device="cpu"))
    print(f"sample scene, random stratified 5 % split (20 % of it validation), seeds 0-{args.seeds - 1}, test split")
    print("| method | OA % | AA % | kappa % |")
    print("|---|---|---|---|")
    for name, reps in res.items():
        cells = []
        for k in ("oa", "aa", "kappa"):
            v = 100 * np.array([r[k] for r in reps])
            cells.append(f"{v.mean():.2f} ± {v.std():.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
