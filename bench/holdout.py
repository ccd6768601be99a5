"""Spatial hold-out: whole EnMAP Potsdam tiles held out (group K-fold over the 18 tiles, validation by
tile), and Indian Pines with its spatially disjoint split beside it.

    python bench/holdout.py [--folds 4] [--epochs 60] [--patch 7] [--models md2f-mamba,ssftt,svm,rf]
        [--augment] [--ema 0] [--data-sets enmap,indian] [--tag NAME]

Protocol (named beside every number):

* EnMAP Potsdam: the 18 tiles of ../shared/data/enmap_potsdam (218 good bands, 32 x 32 px, 30 m)
  with labels warped from the full-extent raster ``enmap_landcover_unstyled.tif`` (classes 1-6);
  ``--split group --group-by scene --folds K``: fold i holds out about 1/K of the tiles (stratified
  by class, scikit-learn's StratifiedGroupKFold, seed 0), validation is one fold of the remaining
  tiles (by tile), so the kept epoch is chosen on held-out tiles; PCA to 30 components fitted on all
  pixels; deep models: Adam lr 0.002, batch 64, ``--epochs``, ``--patch`` x ``--patch`` patches,
  the epoch with the best validation OA kept; SVM: C and gamma on the validation tiles; RF: 200
  trees. Mean ± std of OA / AA / kappa over the K folds (each fold its own test tiles).
* Indian Pines: ``--split disjoint`` (5 % of each class in 13-px blocks, footprints guarded), seeds
  0..K-1, validation 0.2 of training, same training settings (13 x 13 patches).

Writes bench/out/holdout[-TAG].json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from hsicls.config import PreprocessOptions, TrainOptions
from hsicls.stages.evaluate import evaluate
from hsicls.stages.preprocess import preprocess
from hsicls.stages.train import train

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HSICLS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def enmap_runs(args, tmp: Path) -> dict:
    d = DATA / "enmap_potsdam"
    tiles = sorted((d / "images").glob("*.tif"))
    out: dict = {}
    for fold in range(args.folds):
        prep = tmp / f"enmap_f{fold}.h5"
        popts = PreprocessOptions(split="group", group_by="scene", folds=args.folds, fold=fold, seed=0)
        preprocess(tiles, [d / "enmap_landcover_unstyled.tif"], prep, popts, overwrite=True)
        for model in args.models:
            out.setdefault(model, []).append(one_run(args, prep, tmp, model, args.patch, seed=fold))
    return out


def indian_runs(args, tmp: Path) -> dict:
    d = DATA / "indian_pines"
    out: dict = {}
    for seed in range(args.folds):
        prep = tmp / f"ip_s{seed}.h5"
        popts = PreprocessOptions(split="disjoint", seed=seed, patch_size=13)
        preprocess(d / "Indian_pines_corrected.npy", [d / "Indian_pines_gt.mat"], prep, popts, overwrite=True)
        for model in args.models:
            out.setdefault(model, []).append(one_run(args, prep, tmp, model, 13, seed=seed))
    return out


def one_run(args, prep: Path, tmp: Path, model: str, patch: int, seed: int) -> dict:
    search = args.patch_search.split(",") if args.patch_search and model not in ("svm", "rf") else None
    opts = TrainOptions(
        model=model,
        epochs=args.epochs,
        **({} if search else {"patch_size": patch}),  # a patch search chooses the patch size itself
        seed=seed,
        device=args.device,
        augment=args.augment,
        ema=args.ema,
        patch_search=search,
        search_epochs=args.search_epochs,
        class_weighting=args.class_weighting if model not in ("svm", "rf") else "none",
    )
    bundle = tmp / f"{prep.stem}_{model}.pt"
    t0 = time.perf_counter()
    res = train(prep, bundle, opts, overwrite=True)
    rep = evaluate(bundle, prep, device=args.device)
    row = {
        "oa": rep["oa"],
        "aa": rep["aa"],
        "kappa": rep["kappa"],
        "best_epoch": res.best_epoch,
        "val_oa": res.val_oa,
        "seconds": time.perf_counter() - t0,
        "split": rep["split"]["description"],
        "patch_size": rep.get("training_config", {}).get("patch_size"),
    }
    print(
        f"{prep.stem} {model}: OA {rep['oa']:.4f} AA {rep['aa']:.4f} kappa {rep['kappa']:.4f} (val OA {res.val_oa})", flush=True
    )
    return row


def table(title: str, res: dict) -> str:
    lines = [f"**{title}**", "", "| model | OA % | AA % | kappa % | validation OA % |", "|---|---|---|---|---|"]
    for model, rows in res.items():
        cells = []
        for k in ("oa", "aa", "kappa", "val_oa"):
            v = np.array([r[k] for r in rows if r[k] is not None], float) * 100
            cells.append(f"{v.mean():.2f} ± {v.std():.2f}" if v.size else "-")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--patch", type=int, default=7, help="patch size on the 32-px EnMAP tiles")
    ap.add_argument("--models", default="md2f-mamba,ssftt,svm,rf")
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--patch-search", default="", help="e.g. 3,5,7: the patch size chosen per fold on the validation tiles")
    ap.add_argument("--search-epochs", type=int, default=15)
    ap.add_argument("--class-weighting", default="none", choices=["none", "balanced"])
    ap.add_argument("--ema", type=float, default=0.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-sets", default="enmap,indian")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    args.models = args.models.split(",")
    results = {"args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        if "enmap" in args.data_sets:
            results["enmap"] = enmap_runs(args, Path(tmp))
        if "indian" in args.data_sets:
            results["indian"] = indian_runs(args, Path(tmp))
    out = ROOT / "bench" / "out" / f"holdout{'-' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    if "enmap" in results:
        print(
            table(
                f"EnMAP Potsdam, {args.folds}-fold hold-out by tile, {args.patch}x{args.patch} patches, {args.epochs} epochs",
                results["enmap"],
            )
        )
    if "indian" in results:
        print(table(f"Indian Pines, disjoint split, seeds 0-{args.folds - 1}, {args.epochs} epochs", results["indian"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
