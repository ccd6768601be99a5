"""Spatial hold-out: whole EnMAP Potsdam tiles held out (group K-fold over the 18 tiles, validation by
tile), and Indian Pines with its spatially disjoint split beside it.

    python bench/holdout.py [--folds 4] [--epochs 60] [--patch 7] [--models md2f-mamba,ssftt,svm,rf]
        [--augment] [--ema 0] [--data-sets enmap,indian] [--tag NAME]
    python bench/holdout.py --models auto,rf,svm --defaults [--folds 4] [--data-sets enmap,indian]

``--keep DIR`` keeps the prepared files and bundles; ``--keep DIR --reuse`` scores them again without training
(after a change of the ensemble rule: today's default rule is applied to the kept members).
``--defaults``: every model with hsicls's own defaults (no --epochs / --patch given), as a user gets them.
``auto``: one ``train --model auto`` per fold; beside the bundle (what the user gets) every member alone and every
ensemble rule (:data:`hsicls.science.ensembles.RULES`) are scored on the test tiles from the same trained members
(the rules use the validation tiles only). Rows are paired with ``rf`` per fold (differences) and by McNemar's test
on the pooled test pixels.

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
        if not (args.reuse and prep.exists()):
            preprocess(tiles, [d / "enmap_landcover_unstyled.tif"], prep, popts, overwrite=True)
        for model in args.models:
            collect(out, model, one_run(args, prep, tmp, model, args.patch, seed=fold))
    return out


def indian_runs(args, tmp: Path) -> dict:
    d = DATA / "indian_pines"
    out: dict = {}
    for seed in range(args.folds):
        prep = tmp / f"ip_s{seed}.h5"
        popts = PreprocessOptions(split="disjoint", seed=seed, patch_size=13)
        if not (args.reuse and prep.exists()):
            preprocess(d / "Indian_pines_corrected.npy", [d / "Indian_pines_gt.mat"], prep, popts, overwrite=True)
        for model in args.models:
            collect(out, model, one_run(args, prep, tmp, model, 13, seed=seed))
    return out


def indian_fixed_runs(args, tmp: Path) -> dict:
    """Indian Pines with its official spatially disjoint training mask (``--split fixed``), network seeds 0..K-1."""
    d = DATA / "indian_pines"
    out: dict = {}
    prep = tmp / "ipfixed.h5"
    popts = PreprocessOptions(split="fixed", train_mask=str(d / "indianpines_disjoint_dset.mat"), seed=0)
    if not (args.reuse and prep.exists()):
        preprocess(d / "Indian_pines_corrected.npy", [d / "Indian_pines_gt.mat"], prep, popts, overwrite=True)
    for seed in range(args.folds):
        for model in args.models:
            collect(out, model, one_run(args, prep, tmp, model, 13, seed=seed, tag=f"_s{seed}"))
    return out


def one_run(args, prep: Path, tmp: Path, model: str, patch: int, seed: int, tag: str = "") -> dict:
    search = args.patch_search.split(",") if args.patch_search and model not in ("svm", "rf") else None
    if args.defaults:
        opts = TrainOptions(model=model, seed=seed, device=args.device)
    else:
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
    bundle = tmp / f"{prep.stem}{tag}_{model}.pt"
    t0 = time.perf_counter()
    if args.reuse and bundle.exists():  # --keep DIR --reuse: score the bundles of an earlier run again
        from types import SimpleNamespace

        from hsicls.artifacts.bundle import load_bundle

        tr = load_bundle(bundle).training
        res = SimpleNamespace(best_epoch=tr.get("best_epoch"), val_oa=tr.get("val_oa"), seconds=tr.get("seconds"))
    else:
        res = train(prep, bundle, opts, overwrite=True)
    rep = evaluate(bundle, prep, device=args.device)
    seconds = res.seconds if args.reuse else time.perf_counter() - t0  # reused: the recorded training time
    if model == "auto":
        return auto_rows(bundle, prep, rep, seconds)
    row = {
        "oa": rep["oa"],
        "aa": rep["aa"],
        "kappa": rep["kappa"],
        "best_epoch": res.best_epoch,
        "val_oa": res.val_oa,
        "seconds": seconds,
        "split": rep["split"]["description"],
        "patch_size": rep.get("training_config", {}).get("patch_size"),
        "correct": test_correct(bundle, prep),
    }
    print(
        f"{prep.stem} {model}: OA {rep['oa']:.4f} AA {rep['aa']:.4f} kappa {rep['kappa']:.4f} (val OA {res.val_oa})", flush=True
    )
    return row


def test_correct(bundle_path: Path, prep_path: Path, weights=None, tau=None) -> list[int]:
    """1/0 per test pixel (row-major), from the bundle's network (an ensemble with other ``weights``/``tau``)."""
    import copy

    from hsicls.artifacts.bundle import load_bundle
    from hsicls.artifacts.prepared import load_prepared
    from hsicls.engine.calibration import split_logits
    from hsicls.engine.inference import Runner

    b = load_bundle(bundle_path)
    if weights is not None:
        b = copy.copy(b)
        b.model = copy.deepcopy(b.model)
        b.model.options.update(weights=list(weights), tau=float(tau or 0.0))
    prep = load_prepared(prep_path).features_for(b.preprocessing)
    logits, y = split_logits(b, prep, prep.test, Runner.resolve("cpu", "fp32"))
    return (logits.argmax(1) == y).int().tolist()


def member_probs(bundle_path: Path, prep_path: Path, mask_name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Each member's calibrated probabilities on the pixels of a split, and the true classes."""
    import copy

    import torch

    from hsicls.artifacts.bundle import load_bundle
    from hsicls.artifacts.prepared import load_prepared
    from hsicls.engine.calibration import split_logits
    from hsicls.engine.inference import Runner

    b = load_bundle(bundle_path)
    prep = load_prepared(prep_path).features_for(b.preprocessing)
    m = len(b.model.options["members"])
    out, y = [], None
    for i in range(m):
        bi = copy.copy(b)
        bi.model = copy.deepcopy(b.model)
        bi.model.options.update(weights=[1.0 if j == i else 0.0 for j in range(m)], tau=0.0)
        logits, y = split_logits(bi, prep, getattr(prep, mask_name), Runner.resolve("cpu", "fp32"))
        out.append(torch.softmax(logits.double(), 1).numpy())
    return out, y.numpy()


def auto_rows(bundle: Path, prep_path: Path, rep: dict, seconds: float) -> dict:
    """The bundle's own row ('auto'), each member alone, and every rule applied to the same members."""
    from hsicls.artifacts.bundle import load_bundle
    from hsicls.artifacts.prepared import load_prepared
    from hsicls.science.ensembles import RULES, choose, combine, prior_of, scores
    from hsicls.stages.train import validation_regions

    b = load_bundle(bundle)
    auto = b.training["auto"]
    names = [m["name"] for m in auto["members"]]
    prep = load_prepared(prep_path)
    k = prep.n_classes
    pv, yv = member_probs(bundle, prep_path, "val")
    pt, yt = member_probs(bundle, prep_path, "test")
    prior = np.asarray(b.model.options["prior"])
    assert np.allclose(prior, prior_of(prep.labels[prep.train] - 1, k))
    rows = {"auto": {"oa": rep["oa"], "aa": rep["aa"], "kappa": rep["kappa"], "val_oa": b.training.get("val_oa"),
                     "seconds": seconds, "chosen": auto["chosen"], "rule": auto["rule"], "weights": auto["weights"],
                     "tau": auto["tau"], "correct": test_correct(bundle, prep_path),
                     "member_seconds": {m["name"]: m["seconds"] for m in auto["members"]}}}  # fmt: skip
    now = choose(TrainOptions().ensemble_rule, names, pv, yv, prior, validation_regions(prep), k)
    if (now.rule, now.weights, now.tau) != (auto["rule"], auto["weights"], auto["tau"]):
        # a bundle kept from a run of an earlier rule (--reuse): what today's default rule makes of the same members
        # (training is bit-identical on the CPU, so a fresh 'train' would make exactly these members)
        sc = combine(pt, now.weights, now.tau, prior)
        rows["auto"].update(**scores(sc, yt, k), chosen=now.chosen, rule=now.rule, weights=now.weights, tau=now.tau,
                            correct=(sc.argmax(1) == yt).astype(int).tolist(), rebuilt_from_members=True)  # fmt: skip
    for i, n in enumerate(names):
        one = [1.0 if j == i else 0.0 for j in range(len(names))]
        s = scores(combine(pt, one, 0.0, prior), yt, k)
        rows[f"{n} (auto member)"] = {**s, "val_oa": auto["members"][i]["val_oa"], "seconds": auto["members"][i]["seconds"],
                                      "correct": (combine(pt, one, 0.0, prior).argmax(1) == yt).astype(int).tolist()}  # fmt: skip
    for rule in RULES:
        c = choose(rule, names, pv, yv, prior, validation_regions(prep), k)
        sc = combine(pt, c.weights, c.tau, prior)
        row = {**scores(sc, yt, k), "val_oa": next(r["oa"] for r in c.table if r["candidate"] == c.chosen),
               "chosen": c.chosen, "weights": c.weights, "tau": c.tau, "correct": (sc.argmax(1) == yt).astype(int).tolist()}  # fmt: skip
        rows[f"rule {rule}"] = row
    ew = [1.0 / len(names)] * len(names)
    sc = combine(pt, ew, 0.0, prior)
    rows["equal weights, tau 0"] = {**scores(sc, yt, k), "val_oa": None, "correct": (sc.argmax(1) == yt).astype(int).tolist()}
    for name, r in rows.items():
        print(f"{prep_path.stem} {name}: OA {r['oa']:.4f} AA {r['aa']:.4f} kappa {r['kappa']:.4f}", flush=True)
    return {"__auto__": rows}


def collect(out: dict, model: str, row: dict) -> None:
    """Append a run's row(s) under their names (an auto run gives several)."""
    if "__auto__" in row:
        for name, r in row["__auto__"].items():
            out.setdefault(name, []).append(r)
    else:
        out.setdefault(model, []).append(row)


def mcnemar(a: list[int], b: list[int]) -> float:
    from hsicls.science.ensembles import mcnemar_p

    return mcnemar_p(np.asarray(a, bool), np.asarray(b, bool))


def paired_table(title: str, res: dict, base: str = "rf") -> str:
    """Mean ± std, per fold, the paired per-fold difference against ``base`` and McNemar on the pooled test pixels."""
    lines = [f"**{title}**", "", "| model | OA % | AA % | kappa % | per-fold OA | ΔOA / ΔAA / Δkappa vs " + base + " (mean, per fold OA) | McNemar p (pooled) | train s / fold |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    ref = res.get(base)
    for model, rows in res.items():
        cells = []
        for k in ("oa", "aa", "kappa"):
            v = np.array([r[k] for r in rows], float) * 100
            cells.append(f"{v.mean():.2f} ± {v.std():.2f}")
        cells.append(" / ".join(f"{100 * r['oa']:.2f}" for r in rows))
        if ref and model != base and len(ref) == len(rows):
            d = {k: np.array([r[k] - q[k] for r, q in zip(rows, ref)]) * 100 for k in ("oa", "aa", "kappa")}
            cells.append(f"{d['oa'].mean():+.2f} / {d['aa'].mean():+.2f} / {d['kappa'].mean():+.2f} ("
                         + ", ".join(f"{v:+.2f}" for v in d["oa"]) + ")")  # fmt: skip
            if all("correct" in r for r in rows + ref):
                cells.append(f"{mcnemar(sum((r['correct'] for r in rows), []), sum((q['correct'] for q in ref), [])):.3g}")
            else:
                cells.append("-")
        else:
            cells += ["-", "-"]
        secs = [r["seconds"] for r in rows if r.get("seconds") is not None]
        cells.append(f"{np.mean(secs):.0f}" if secs else "-")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    ap.add_argument("--keep", default="", help="keep the prepared files and bundles in this folder")
    ap.add_argument("--reuse", action="store_true", help="with --keep: reuse the files found there (score again, no training)")
    ap.add_argument("--defaults", action="store_true", help="hsicls's defaults for every model (what a user gets)")
    args = ap.parse_args()
    args.models = args.models.split(",")
    results = {"args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "enmap" in args.data_sets.split(","):
            results["enmap"] = enmap_runs(args, work)
        if "indian" in args.data_sets.split(","):
            results["indian"] = indian_runs(args, work)
        if "indian-fixed" in args.data_sets.split(","):
            results["indian-fixed"] = indian_fixed_runs(args, work)
    out = ROOT / "bench" / "out" / f"holdout{'-' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    if args.defaults:
        for key, title in (("enmap", f"EnMAP Potsdam, {args.folds}-fold hold-out by tile, defaults"),
                           ("indian", f"Indian Pines, disjoint split, seeds 0-{args.folds - 1}, defaults"),
                           ("indian-fixed", f"Indian Pines, official disjoint training mask, network seeds 0-{args.folds - 1}, defaults")):  # fmt: skip
            if key in results:
                print(paired_table(title, results[key]))
    elif "enmap" in results:
        print(
            table(
                f"EnMAP Potsdam, {args.folds}-fold hold-out by tile, {args.patch}x{args.patch} patches, {args.epochs} epochs",
                results["enmap"],
            )
        )
    if "indian" in results and not args.defaults:
        print(table(f"Indian Pines, disjoint split, seeds 0-{args.folds - 1}, {args.epochs} epochs", results["indian"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
