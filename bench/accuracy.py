"""Accuracy of the registered models on Indian Pines (real data from ../shared/data).

    python bench/accuracy.py [--seeds 5] [--epochs 100] [--models md2f-mamba,ssftt,svm,rf]
        [--device cpu|cuda] [--jobs N] [--train-opt KEY=VALUE ...] [--model-opt KEY=VALUE ...]
        [--lr 0.002] [--tag NAME]

Protocol (named beside every number): random stratified split with 5 % of each class's
labelled pixels for training, a different split per seed (seeds 0..N-1); PCA to 30 components
fitted on all pixels (the paper family's habit); deep models: Adam lr 0.002, batch 64,
``--epochs`` epochs, 13 x 13 patches, **final epoch kept** (``--val-ratio 0``: no model
selection at all, so the test split is never looked at); SVM: C and gamma by 3-fold CV on the
training pixels; RF: 200 trees. Metrics on the remaining 95 % (test split), mean ± std over seeds.
``--train-opt`` sets any other ``TrainOptions`` field (``lr_schedule=cosine``, ``augment=true``,
``precision=fp32``, ...), ``--model-opt`` a model option; both are recorded in the output.
``--jobs N`` runs N (seed, model) trainings in parallel processes (one thread each; useful on
a GPU machine). Writes bench/out/accuracy[-TAG].json and prints a Markdown table.

``--split ssftt-code`` replaces the per-seed random split by the one split SSFTT's published
training script draws for every run: ``sklearn.model_selection.train_test_split`` of the
labelled pixels in row-major order, stratified, ``random_state=345``, here with a test share of
95 % (``hsicls preprocess --split fixed --train-mask``). The seeds then vary the network's
initialisation and batch order only, as repeated runs of that script do.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from hsicls.models import get_entry
from hsicls.models.complexity import model_info
from hsicls.stages.evaluate import evaluate
from hsicls.stages.preprocess import PreprocessOptions, preprocess
from hsicls.stages.train import TrainOptions, train

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HSICLS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "indian_pines"


def parse_kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def train_options(args, name: str, seed: int) -> TrainOptions:
    fields = {f.name: f.type for f in dataclasses.fields(TrainOptions)}
    extra = {}
    fixed = {"model", "model_options", "patch_size", "epochs", "batch_size", "lr", "seed", "device"}
    for key, value in parse_kv(args.train_opt).items():
        if key not in fields or key in fixed:
            raise SystemExit(f"--train-opt {key!r}: unknown, or set by its own argument")
        default = getattr(TrainOptions(), key)
        if isinstance(default, bool):
            if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise SystemExit(f"--train-opt {key}: expected true/false, got {value!r}")
            extra[key] = value.lower() in ("1", "true", "yes")
        else:
            extra[key] = type(default)(value)
    return TrainOptions(
        model=name,
        patch_size=args.patch,
        epochs=args.epochs,
        batch_size=64,
        lr=args.lr,
        seed=seed,
        device=args.device,
        model_options=parse_kv(args.model_opt) if name == "md2f-mamba" else {},
        **extra,
    )


def ssftt_code_train_mask(gt_path: Path, test_size: float, random_state: int = 345) -> np.ndarray:
    """The training pixels of SSFTT's published script: its labelled pixels in row-major order,
    split by ``train_test_split(..., test_size, random_state=345, stratify=y)``; ``(H, W)`` uint8."""
    from sklearn.model_selection import train_test_split

    gt = np.load(gt_path)
    rows, cols = np.nonzero(gt)  # row-major, as the script's createImageCubes(removeZeroLabels=True)
    train_idx, _ = train_test_split(np.arange(rows.size), test_size=test_size, random_state=random_state, stratify=gt[rows, cols])
    mask = np.zeros(gt.shape, np.uint8)
    mask[rows[train_idx], cols[train_idx]] = 1
    return mask


def run_one(task) -> tuple[str, int, dict]:
    """Preprocess one seed's split, train one model on it and evaluate it on the test split."""
    args, seed, name = task
    if args.jobs > 1:
        import torch

        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        prep = Path(tmp) / f"ip{seed}.h5"
        split = {}
        if args.split == "ssftt-code":
            mask = Path(tmp) / "train_mask.npy"
            np.save(mask, ssftt_code_train_mask(DATA / "Indian_pines_gt.npy", test_size=0.95))
            split = {"split": "fixed", "train_mask": str(mask)}
        preprocess(
            DATA / "Indian_pines_corrected.npy",
            DATA / "Indian_pines_gt.mat",
            prep,
            PreprocessOptions(
                components=30,
                train_ratio=0.05,
                val_ratio=0.0,
                seed=seed,
                whiten=args.whiten,
                standardize=not args.raw_pca,
                **split,
            ),
            overwrite=True,
        )
        out = Path(tmp) / f"{name}{seed}.pt"
        t0 = time.perf_counter()
        res = train(prep, out, train_options(args, name, seed), overwrite=True)
        seconds = time.perf_counter() - t0
        rep = evaluate(out, prep, device=args.device)
    rep["train_seconds"] = seconds
    rep["seconds_per_epoch"] = (sum(h["seconds"] for h in res.history) / len(res.history)) if res.history else None
    print(f"seed {seed} {name}: OA {100 * rep['oa']:.2f}  ({seconds:.0f} s)", flush=True)
    return name, seed, rep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--patch", type=int, default=13)
    ap.add_argument("--models", default="md2f-mamba,ssftt,svm,rf")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--train-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE", help="md2f-mamba option")
    ap.add_argument("--whiten", action="store_true", help="PCA whitening (unit-variance components)")
    ap.add_argument("--raw-pca", action="store_true", help="PCA of the raw band values, no per-band standardisation")
    ap.add_argument(
        "--split",
        choices=("random", "ssftt-code"),
        default="random",
        help="random: a stratified 5 %% split per seed; ssftt-code: SSFTT's script's one split (random_state=345)",
    )
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    models = args.models.split(",")
    tasks = [(args, seed, name) for seed in range(args.seeds) for name in models]
    train_options(args, models[0], 0)  # fail fast on a bad option
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            done = pool.map(run_one, tasks, chunksize=1)
    else:
        done = [run_one(t) for t in tasks]
    results: dict[str, list] = {m: [r for n, _, r in sorted(done, key=lambda d: d[1]) if n == m] for m in models}
    rows = []
    for name in models:
        reps = results[name]
        row = {"model": name}
        for k in ("oa", "aa", "kappa"):
            v = 100 * np.array([r[k] for r in reps])
            row[k] = [float(v.mean()), float(v.std())]
        row["per_class_mean"] = np.nanmean(
            np.array([[np.nan if a is None else a for a in r["per_class"]] for r in reps], float), 0
        ).tolist()
        if get_entry(name).kind == "deep":
            info = model_info(name, 30, args.patch, 16, parse_kv(args.model_opt) if name == "md2f-mamba" else None)
            row.update(
                params=info["params"],
                macs=info["macs"],
                flops=info["flops"],
                seconds_per_epoch=float(np.mean([r["seconds_per_epoch"] for r in reps])),
            )
        row["seeds"] = list(range(args.seeds))
        row["reports"] = [{k: v for k, v in r.items() if k != "split_masks"} for r in reps]
        rows.append(row)
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    name = f"accuracy-{args.tag}.json" if args.tag else "accuracy.json"
    (ROOT / "bench" / "out" / name).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(
        f"[{args.tag or 'default'}] device {args.device}, lr {args.lr}, whiten {args.whiten}, raw PCA {args.raw_pca}, train options {args.train_opt}, model options {args.model_opt}"
    )
    split_name = (
        "SSFTT script's split (train_test_split stratified, random_state=345, 5 % train), the same for every seed"
        if args.split == "ssftt-code"
        else f"random stratified 5 % training split per class, seeds 0-{args.seeds - 1} (own split each)"
    )
    print(f"Indian Pines, {split_name}, final epoch ({args.epochs} epochs), test = remaining 95 %")
    print("| model | OA % | AA % | kappa % | params | MACs | s/epoch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = " | ".join(f"{r[k][0]:.2f} ± {r[k][1]:.2f}" for k in ("oa", "aa", "kappa"))
        extra = f"{r['params']:,} | {r['macs'] / 1e6:.2f}M | {r['seconds_per_epoch']:.2f}" if "params" in r else "- | - | -"
        print(f"| {r['model']} | {cells} | {extra} |")


if __name__ == "__main__":
    main()
