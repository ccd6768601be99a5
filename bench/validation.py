"""[validation] Spatial validation and the guarded temperature, before and after.

    python bench/validation.py [--epochs 100] [--enmap-epochs 40] [--data-sets indian,enmap] [--tag NAME]

Protocols (named beside every number):

* **Indian Pines, spatially disjoint training mask** (``../shared/data/indian_pines/
  indianpines_disjoint_dset.mat`` as ``--split fixed --train-mask``; the test is every other labelled
  pixel), md2f-mamba with the defaults (13 x 13, ``--epochs``, seed 0), validation 0.2 of the training
  pixels. *Before*: ``--val-split random`` (scattered validation pixels, the old behaviour) with the old
  temperature (fitted on validation, no guard). *After*: the default ``--val-split auto`` (= spatial
  here) with the guarded temperature. Both runs keep the epoch with the best validation OA.
* **EnMAP Potsdam, 4 folds by tile** (``--split group --group-by scene --folds 4``, validation by
  tile, as ``bench/holdout.py``), md2f-mamba 7 x 7, ``--enmap-epochs``. Group splits already validate
  on whole tiles, so only the calibration changes: the test ECE at T = 1, at the old fitted T, and at
  the guarded T, from the same bundle.

Reports test OA / AA / kappa, validation OA, the validation-test OA gap, and the test ECE (15 bins)
before and after calibration. Writes bench/out/validation[-TAG].json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hsicls.artifacts.bundle import load_bundle
from hsicls.artifacts.prepared import load_prepared
from hsicls.config import PreprocessOptions, TrainOptions
from hsicls.engine.calibration import (
    calibration_report,
    fit_temperature,
    guarded_temperature,
    split_logits,
    validation_halves,
)
from hsicls.engine.inference import Runner
from hsicls.stages.preprocess import preprocess
from hsicls.stages.train import train

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HSICLS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def ece_rows(bundle_path: Path, prep_path: Path) -> dict:
    """Test metrics and test ECE at T = 1, the old fitted T (no guard) and the guarded T, all from one bundle."""
    from hsicls.science.metrics import classification_report

    bundle, prep = load_bundle(bundle_path), load_prepared(prep_path)
    runner = Runner.resolve("cpu", "fp32")
    vz, vy = split_logits(bundle, prep, prep.val, runner)
    tz, ty = split_logits(bundle, prep, prep.test, runner)
    rows, cols = np.nonzero(prep.val)
    t_old = fit_temperature(vz, vy)
    t_new, why = guarded_temperature(vz, vy, validation_halves(rows, cols, prep.val.shape))
    rep = classification_report(ty.numpy(), tz.argmax(1).numpy(), prep.n_classes)
    val_oa = float((vz.argmax(1) == vy).double().mean())
    return {
        "oa": rep["oa"],
        "aa": rep["aa"],
        "kappa": rep["kappa"],
        "val_oa": val_oa,
        "gap": val_oa - rep["oa"],
        "t_old": t_old,
        "t_new": t_new,
        "kept_t1": why,
        "ece_t1": calibration_report(tz, ty, None)["ece_before"],
        "ece_old": calibration_report(tz, ty, t_old)["ece_after"],
        "ece_new": calibration_report(tz, ty, t_new)["ece_after"],
        "val_pixels": int(vy.numel()),
        "split": prep.meta["split"].get("description"),
    }


def indian(args, tmp: Path) -> dict:
    d = DATA / "indian_pines"
    out = {}
    for rule in args.rules.split(","):
        prep = tmp / f"ip_{rule}.h5"
        popts = PreprocessOptions(split="fixed", train_mask=str(d / "indianpines_disjoint_dset.mat"), val_split=rule, seed=0)
        preprocess(d / "Indian_pines_corrected.npy", [d / "Indian_pines_gt.mat"], prep, popts, overwrite=True)
        bundle = tmp / f"ip_{rule}.pt"
        t0 = time.perf_counter()
        train(prep, bundle, TrainOptions(model="md2f-mamba", epochs=args.epochs, seed=0, device="cpu"), overwrite=True)
        row = ece_rows(bundle, prep)
        row["seconds"] = time.perf_counter() - t0
        row["validation"] = load_prepared(prep).meta["split"].get("validation")
        out[rule] = row
        print(f"indian {rule}: {json.dumps(row)}", flush=True)
    return out


def enmap(args, tmp: Path) -> list:
    d = DATA / "enmap_potsdam"
    tiles = sorted((d / "images").glob("*.tif"))
    out = []
    for fold in range(4):
        prep = tmp / f"enmap_f{fold}.h5"
        popts = PreprocessOptions(split="group", group_by="scene", folds=4, fold=fold, seed=0)
        preprocess(tiles, [d / "enmap_landcover_unstyled.tif"], prep, popts, overwrite=True)
        bundle = tmp / f"enmap_f{fold}.pt"
        t0 = time.perf_counter()
        train(
            prep,
            bundle,
            TrainOptions(model="md2f-mamba", epochs=args.enmap_epochs, patch_size=7, seed=fold, device="cpu"),
            overwrite=True,
        )
        row = ece_rows(bundle, prep)
        row["seconds"] = time.perf_counter() - t0
        out.append(row)
        print(f"enmap fold {fold}: {json.dumps(row)}", flush=True)
    return out


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--enmap-epochs", type=int, default=40)
    ap.add_argument("--data-sets", default="indian,enmap")
    ap.add_argument("--tag", default="")
    ap.add_argument("--rules", default="random,auto", help="Indian Pines: the --val-split values to run")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    res: dict = {"args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        if "indian" in args.data_sets:
            res["indian"] = indian(args, Path(tmp))
        if "enmap" in args.data_sets:
            res["enmap"] = enmap(args, Path(tmp))
    out = ROOT / "bench" / "out" / f"validation{'-' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    if "indian" in res:
        print(
            "\n| Indian Pines, disjoint mask | test OA | AA | kappa | val OA | val - test OA | T | test ECE T = 1 | test ECE calibrated |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for rule, name, t, e in (("random", "before (--val-split random, T unguarded)", "t_old", "ece_old"),
                                 ("auto", "after (spatial, T guarded)", "t_new", "ece_new")):  # fmt: skip
            if rule not in res["indian"]:
                continue
            r = res["indian"][rule]
            print(
                f"| {name} | {pct(r['oa'])} | {pct(r['aa'])} | {pct(r['kappa'])} | {pct(r['val_oa'])} | {pct(r['gap'])} | "
                f"{r[t]:.3f} | {r['ece_t1']:.4f} | {r[e]:.4f} |"
            )
    if "enmap" in res:
        print("\n| EnMAP fold | test OA | val OA | gap | T old / guarded | test ECE T = 1 | old T | guarded T |")
        print("|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(res["enmap"]):
            print(
                f"| {i} | {pct(r['oa'])} | {pct(r['val_oa'])} | {pct(r['gap'])} | {r['t_old']:.3f} / {r['t_new']:.3f} | "
                f"{r['ece_t1']:.4f} | {r['ece_old']:.4f} | {r['ece_new']:.4f} |"
            )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
