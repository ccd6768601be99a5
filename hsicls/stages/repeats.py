"""``hsicls train --runs K``: K seeds, each with its own split, then mean ± std as papers report.

Run ``i`` uses seed ``seed + i`` for both the split and the network; its split is made by
re-running the prepared file's recorded preprocessing with that seed (a ``fixed`` split keeps
its masks, so only the network's seed changes). Files, named from the whole output name
(``m.pt`` -> ``m.pt.run<i>.h5``/``m.pt.run<i>.pt``) next to it; the summary goes to ``m.pt.runs.json``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from hsicls import console
from hsicls.artifacts.prepared import load_prepared
from hsicls.engine.distributed import RankFailed, World
from hsicls.errors import HsiclsError
from hsicls.io.atomic import atomic_output
from hsicls.io.disk import json_safe
from hsicls.io.guard import Declared, OutputSet
from hsicls.stages.evaluate import evaluate
from hsicls.stages.preprocess import PreprocessOptions, preprocess
from hsicls.stages.train import TrainOptions, train


def summarize(reports: list[dict]) -> dict:
    """Mean and (population) std over runs of OA, AA, kappa and every class's accuracy."""
    out = {}
    for k in ("oa", "aa", "kappa"):
        v = np.array([r[k] for r in reports], float)
        out[k] = {"mean": float(v.mean()), "std": float(v.std()), "runs": v.tolist()}
    import warnings

    pc = np.array([[np.nan if a is None else a for a in r["per_class"]] for r in reports], float)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["per_class"] = {
            "mean": [None if np.isnan(m) else float(m) for m in np.nanmean(pc, axis=0)] if pc.size else [],
            "std": [None if np.isnan(s) else float(s) for s in np.nanstd(pc, axis=0)] if pc.size else [],
        }
    return out


def declare_outputs(output: Path, count: int, kind: str) -> OutputSet:
    """What ``train --runs N`` (``kind`` ``run``) or ``train --folds-all`` (``fold``) writes: per run its prepared
    data and bundle (``OUTPUT.<kind><i>.h5`` / ``.pt``, roles ``<kind><i>.h5`` / ``.pt``), then the summary
    (``OUTPUT.runs.json``, role ``summary``; or ``OUTPUT.cv.json`` / ``.cv.md``, roles ``cv.json`` / ``cv.md``)."""
    output = Path(output)
    name = lambda suffix: Declared(suffix, output.with_name(f"{output.name}.{suffix}"))  # noqa: E731
    items = [name(f"{kind}{i}.{ext}") for i in range(count) for ext in ("h5", "pt")]
    summary = (
        [Declared("summary", output.with_name(f"{output.name}.runs.json"))] if kind == "run" else [name("cv.json"), name("cv.md")]
    )
    return OutputSet(*items, *summary)


def _pairs(outputs: OutputSet, count: int, kind: str) -> list[tuple[Path, Path]]:
    return [(outputs[f"{kind}{i}.h5"], outputs[f"{kind}{i}.pt"]) for i in range(count)]


def train_runs(
    prepared_path: Path,
    output: Path,
    options: TrainOptions,
    runs: int,
    overwrite: bool = False,
    world: World | None = None,
    parallel: bool = False,
) -> dict | None:
    """Train and evaluate the ``runs`` runs; the summary (written by rank 0, returned there; other
    ranks return ``None``). Under torchrun the runs are either spread over the ranks, one whole
    run per rank at a time (``parallel``), or trained one after another by all ranks together (DDP)."""
    if runs < 1:
        raise HsiclsError(f"--runs must be >= 1, got {runs}")
    world = world or World()
    base = load_prepared(prepared_path)
    rec = base.meta.get("options")
    if rec is None:
        raise HsiclsError(f"{prepared_path}: made by an older hsicls without its preprocessing record; preprocess again")
    outputs = declare_outputs(output, runs, "run")
    files, summary_path = _pairs(outputs, runs, "run"), outputs["summary"]
    _guard(world, outputs, prepared_path, overwrite)
    mine = [i for i in range(runs) if not parallel or i % world.size == world.rank]
    reports = [(i, _one_run(i, runs, base, rec, files[i], options, overwrite, None if parallel else world)) for i in mine]
    if parallel:
        reports = sorted((r for part in world.gather(reports) for r in part), key=lambda r: r[0])
    if not world.is_main:
        return None
    summary = {
        "model": options.model,
        "runs": runs,
        "seeds": [options.seed if rec.get("split") == "group" else options.seed + i for i in range(runs)],
        "protocol": f"{runs}-fold cross-validation by {rec.get('group_by')}"
        if rec.get("split") == "group"
        else f"{runs} seeds, own split each",
        "split": {k: v for k, v in base.meta.get("split", {}).items() if k != "seed"},
        **base.preprocessing_record(),
        "class_names": base.class_names,
        **summarize([r for _, r in reports]),
        "reports": [r for _, r in reports],
        "world_size": world.size,
        "runs_parallel": bool(parallel and world.distributed),
    }
    with atomic_output(summary_path, overwrite) as tmp:
        tmp.write_text(json.dumps(json_safe(summary), indent=2))
    return summary


def _guard(world: World, outputs: OutputSet, prepared_path: Path, overwrite: bool) -> None:
    """Check every output before any work. In one process they are locked too; under torchrun rank 0
    checks them and locks the summary (the rank that writes a run's file locks it when it writes) and the ranks
    learn its verdict."""
    if not world.distributed:
        outputs.guard(overwrite, inputs=[prepared_path])
        return
    error = None
    if world.is_main:
        try:
            outputs.guard(overwrite, inputs=[prepared_path], lock={"summary"})
        except HsiclsError as exc:
            error = str(exc)
    error = world.broadcast(error)
    if error:
        raise HsiclsError(error) if world.is_main else RankFailed(error)


def _one_run(i: int, runs: int, base, rec: dict, files: tuple, options: TrainOptions, overwrite: bool, world: World | None):
    """Run ``i``: its own split (seed ``seed + i``, or fold ``i`` of a group split), its network, its
    evaluation on its own test split. ``world``: all ranks train it together (rank 0 prepares and evaluates)."""
    by_group = rec.get("split") == "group"
    seed = options.seed if by_group else options.seed + i  # folds: the fold changes, the network seed does not
    prep_i, model_i = files
    main = world is None or world.is_main
    # a group split runs its K folds (same grouping, fold i held out); other splits draw their own split per seed
    popts = PreprocessOptions(**{**rec, "fold": i, "folds": runs}) if by_group else PreprocessOptions(**{**rec, "seed": seed})
    console.info(f"run {i + 1}/{runs}: " + (f"fold {i} of {runs}, seed {seed}" if by_group else f"seed {seed}"))
    if main:
        sources = base.meta.get("sources") or [base.meta["source"]]
        label_sources = base.meta.get("labels_source", "").split(";")
        preprocess([Path(p) for p in sources], [Path(p) for p in label_sources], prep_i, popts, overwrite=overwrite)
    if world is not None:
        world.barrier()
    train(prep_i, model_i, replace(options, seed=seed), overwrite=overwrite, world=world)
    if not main:
        return None
    rep = evaluate(model_i, prep_i, device=options.device)
    rep.pop("split_masks", None)
    return rep


def render_summary(s: dict) -> None:
    from rich.table import Table

    desc = s["split"].get("description", s["split"].get("protocol", "?"))
    table = Table(
        title=f"{s['model']}: mean ± std over {s['runs']} runs (seeds {s['seeds'][0]}-{s['seeds'][-1]}, "
        f"{s.get('protocol', 'own split each')}; {desc.split(', seed')[0]}; preprocessing fitted on {s['fit_on']})"
    )
    table.add_column("")
    table.add_column("mean ± std %", justify="right")
    for name, m, sd in zip(s["class_names"], s["per_class"]["mean"], s["per_class"]["std"]):
        table.add_row(name, "-" if m is None else f"{100 * m:.2f} ± {100 * sd:.2f}")
    table.add_section()
    for k, label in (("oa", "OA"), ("aa", "AA"), ("kappa", "kappa")):
        table.add_row(label, f"{100 * s[k]['mean']:.2f} ± {100 * s[k]['std']:.2f}")
    console.show(table)


# --------------------------------------------------------------------------- cross-validation by group
def fold_prepared(base, fold: int, folds: int):
    """The prepared data of ``fold`` of a group split, from the stored groups (no scene is read again). The
    preprocessing is refitted on the fold's training and validation pixels (:func:`_refit`), unless it was fitted on
    all valid pixels (``--fit-on all``), which is then the same for every fold. The seed of the split is the file's."""
    import dataclasses

    from hsicls.science.splits import group_names, group_split, guard_pixels

    rec = base.meta.get("options") or {}
    split = dict(base.meta.get("split", {}))
    if split.get("protocol") != "group" or base.groups is None:
        raise HsiclsError("--folds-all needs a prepared file with a group split (preprocess --split group --folds K)")
    refit = base.meta.get("fit_on", rec.get("fit_on", "all")) != "all"
    if refit and base.spectra is None:
        raise HsiclsError(
            "--folds-all with the preprocessing fitted on the training groups refits it per fold from the full spectra, "
            "which this prepared file does not keep: preprocess with --spectra keep (or --fit-on all, transductive)"
        )
    by = split.get("group_by", "scene")
    guard = guard_pixels(by, int(split.get("patch_size", 0)))
    train, val, test = group_split(
        base.labels, base.groups, float(split["val_ratio"]), int(split["seed"]), folds, fold, None, guard
    )
    split.update(
        fold=fold, folds=folds, description=f"hold-out by {by}, fold {fold} of {folds}, validation by {by}, seed {split['seed']}"
    )
    split.update(
        test_groups=group_names(base.groups, test, base.scenes, by),
        validation_groups=group_names(base.groups, val, base.scenes, by),
    )
    fp = dataclasses.replace(base, train=train, val=val, test=test, meta={**base.meta, "split": split})
    return _refit(fp, rec) if refit else fp


def _refit(p, rec: dict):
    """The fold's own preprocessing: standardisation and PCA fitted again on its training and validation pixels, from
    the raw spectra (``spectra * std + mean``: the stored spectra are the first fold's standardisation of them), so
    that no fold's preprocessing sees its test groups."""
    import dataclasses

    from hsicls.stages.preprocess import fit_preprocessing

    old = p.preprocessing
    raw = p.spectra[p.valid].astype(np.float64) * old.std + old.mean  # (N, B)
    fit = (p.train | p.val)[p.valid]
    new = fit_preprocessing(raw[fit], None, int(rec.get("components", 30)), int(rec.get("seed", 0)),
                            bool(rec.get("whiten", False)), bool(rec.get("standardize", True)))  # fmt: skip
    cube = np.zeros(p.valid.shape + (new.n_components,), np.float32)
    cube[p.valid] = new.apply(raw)
    spectra = np.zeros_like(p.spectra)
    spectra[p.valid] = new.standardisation().apply(raw)
    return dataclasses.replace(p, cube=cube, spectra=spectra, preprocessing=new)


def train_folds(
    prepared_path: Path,
    output: Path,
    options: TrainOptions,
    overwrite: bool = False,
    world: World | None = None,
    resume: bool = False,
) -> dict | None:
    """Every fold of a group split (``preprocess --split group --folds K``): one bundle per fold
    (``OUTPUT.fold<i>.pt``, its data ``OUTPUT.fold<i>.h5``), the same network seed for every fold, and the
    cross-validation summary ``OUTPUT.cv.json`` / ``.md`` (per fold: held-out groups, OA / AA / kappa; then mean
    ± std). Under torchrun the folds are spread over the ranks. ``resume``: a fold whose bundle exists (bundles are
    written whole) is kept if it was trained with the same options, a fold with a checkpoint continues from it,
    the others are trained."""
    from hsicls.artifacts.prepared import save_prepared

    world = world or World()
    base = load_prepared(prepared_path)
    folds = int((base.meta.get("split") or {}).get("folds") or 0)
    if folds < 2:
        raise HsiclsError(f"{prepared_path}: not a group split with --folds K (K >= 2); preprocess with --split group --folds K")
    outputs = declare_outputs(output, folds, "fold")
    files, cv_json, cv_md = _pairs(outputs, folds, "fold"), outputs["cv.json"], outputs["cv.md"]
    if resume and not any(p.exists() or _ckpt(p).exists() for pair in files for p in pair[1:]):
        raise HsiclsError(f"{output}: no fold of an earlier --folds-all run to resume (no {output.name}.fold<i>.pt or .ckpt)")
    if world.is_main:
        outputs.guard(overwrite or resume, inputs=[prepared_path], lock=False)
    world.barrier()
    rows = []
    for i in [i for i in range(folds) if i % world.size == world.rank]:
        prep_i, model_i = files[i]
        fp = fold_prepared(base, i, folds)
        if resume and model_i.exists() and _trained_with(model_i, options, i):
            console.info(f"fold {i + 1}/{folds}: finished by the earlier run; kept")
        else:
            console.info(f"fold {i + 1}/{folds} (network seed {options.seed})")
            with atomic_output(prep_i, overwrite or resume) as tmp:
                save_prepared(tmp, fp)
            again = resume and _ckpt(model_i).exists()
            train(prep_i, model_i, options, overwrite=overwrite or resume, resume=again)
        rep = evaluate(model_i, prep_i, device=options.device)
        rows.append({"fold": i, "held_out": fp.meta["split"]["test_groups"], "validation": fp.meta["split"]["validation_groups"],
                     "oa": rep["oa"], "aa": rep["aa"], "kappa": rep["kappa"], "test_pixels": rep["test_pixels"], "bundle": str(model_i)})  # fmt: skip
    rows = sorted((r for part in world.gather(rows) for r in part), key=lambda r: r["fold"])
    if not world.is_main:
        return None
    summary = _cv_summary(base, options, rows, folds)
    with atomic_output(cv_json, overwrite or resume) as tmp:
        tmp.write_text(json.dumps(json_safe(summary), indent=2))
    with atomic_output(cv_md, overwrite or resume) as tmp:
        tmp.write_text(cv_markdown(summary))
    return summary


def _ckpt(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + ".ckpt")


def _trained_with(bundle: Path, options: TrainOptions, fold: int) -> bool:
    """A finished fold's bundle was trained with these options (the patch size aside when it was searched);
    another's is an error, not silently kept."""
    from hsicls.artifacts.bundle import load_bundle

    config = dict(load_bundle(bundle).training.get("config") or {})
    want = options.to_record()
    if options.patch_search:
        config.pop("patch_size", None)
        want.pop("patch_size", None)
    if config != want:
        raise HsiclsError(
            f"{bundle}: fold {fold}'s bundle was trained with other options; resume with the same options, or "
            f"start over with --overwrite and without --resume"
        )
    return True


def _cv_summary(base, options: TrainOptions, rows: list[dict], folds: int) -> dict:
    split = base.meta.get("split", {})
    out = {
        "model": options.model,
        "protocol": f"{folds}-fold cross-validation by {split.get('group_by')} (StratifiedGroupKFold), validation by "
        f"{split.get('group_by')}, network seed {options.seed} for every fold",
        "folds": rows,
        "patch_size": options.patch_size,
        "class_names": base.class_names,
    }
    for k in ("oa", "aa", "kappa"):
        v = np.array([r[k] for r in rows], float)
        out[k] = {"mean": float(v.mean()), "std": float(v.std()), "folds": v.tolist()}
    return out


def cv_markdown(s: dict) -> str:
    lines = [
        f"**{s['model']}**, {s['protocol']}; patch {s['patch_size']}.",
        "",
        "| fold | held-out | test px | OA % | AA % | kappa % |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for r in s["folds"]:
        held = ", ".join(map(str, r["held_out"]))
        lines.append(
            f"| {r['fold']} | {held} | {r['test_pixels']} | {100 * r['oa']:.2f} | {100 * r['aa']:.2f} | {100 * r['kappa']:.2f} |"
        )
    m = {k: f"{100 * s[k]['mean']:.2f} ± {100 * s[k]['std']:.2f}" for k in ("oa", "aa", "kappa")}
    lines.append(f"| **mean ± std** | | | {m['oa']} | {m['aa']} | {m['kappa']} |")
    return "\n".join(lines) + "\n"
