"""Stage ``train``: prepared HDF5 -> model bundle.

Checks the options and the prepared file, then either fits a classic model (registry entries
with ``fit``: svm, rf) on the centre pixels, or runs a :class:`~hsicls.engine.training.TrainingRun`
epoch by epoch with a checkpoint after each (``<output>.ckpt``, removed on success; ``--resume``
continues from it to the same weights). The bundle keeps the epoch with the best validation OA,
or the final epoch when there is no validation split; a temperature is then fitted on the
validation split (:func:`hsicls.engine.calibration.calibrate_bundle`) and kept in the bundle. The test
split is never looked at.

Side files are named from the whole output name (``a.pt`` -> ``a.pt.ckpt``, ``a.pt.log.jsonl``),
so ``a.pt`` and ``a.pth`` never share one. A checkpoint records the prepared file's identity and
the options: ``--resume`` refuses another's, and a run without ``--resume`` refuses to start over
an existing checkpoint unless ``--overwrite``. A loss that stops being finite ends the run with an
error instead of a bundle of NaN weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hsicls import console
from hsicls.artifacts.bundle import Bundle, ModelSpec, guard_training_outputs, save_bundle
from hsicls.artifacts.bundle import training_outputs as declare_outputs
from hsicls.artifacts.prepared import load_prepared
from hsicls.config import TrainOptions
from hsicls.engine.calibration import calibrate_bundle, measure_bf16_error
from hsicls.engine.distributed import RankFailed, World
from hsicls.engine.runtime import resolve_device, training_precision, tune_allocator
from hsicls.engine.training import DistributedTrainingRun, TrainingRun, augment_batch, batch_bounds, ema_update, seed_everything
from hsicls.errors import HsiclsError, InputError, Interrupted, OptionError
from hsicls.io.atomic import atomic_output
from hsicls.io.disk import write_via_memory
from hsicls.io.guard import OutputSet
from hsicls.io.locks import output_lock
from hsicls.models import get_entry
from hsicls.science.splits import guarded_footprint

AUTO = "auto"  # --model auto: candidates trained, the choice made on validation (hsicls.stages.auto)

__all__ = ["TrainOptions", "TrainResult", "train", "batch_bounds", "augment_batch", "ema_update", "dataset_defaults"]


@dataclass
class TrainResult:
    best_epoch: int
    val_oa: float | None
    selection: str
    seconds: float
    history: list[dict]
    world_size: int | None = None  # under torchrun: the ranks that trained it together
    global_batch_size: int | None = None

    def summary(self, output: Path) -> dict:
        """The JSON that ``train --json`` prints."""
        out = {
            "model": str(output),
            "best_epoch": self.best_epoch,
            "val_oa": self.val_oa,
            "selection": self.selection,
            "seconds": self.seconds,
            "history": self.history,
        }
        if self.world_size is not None:
            out.update(world_size=self.world_size, global_batch_size=self.global_batch_size)
        return out


def dataset_defaults(opts: TrainOptions, given: set[str], dataset: str) -> TrainOptions:
    """A registered scene's paper settings (md2f-mamba, its patch size and learning rate) where the user set none."""
    from hsicls.datasets import get_dataset

    info = get_dataset(dataset)
    changes = {k: v for k, v in (("lr", info.lr), ("patch_size", info.patch_size), ("model", "md2f-mamba")) if k not in given}
    return opts.replace(**changes)


def prepared_identity(prep) -> str:
    """sha256 of the labels, the split masks and the preprocessing (shapes included): what a
    checkpoint must be resumed on."""
    h = hashlib.sha256()
    for a in (prep.labels, prep.train, prep.val, prep.test, *prep.preprocessing.to_dict().values()):
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def train(
    prepared_path: str | Path,
    output: str | Path,
    options: TrainOptions = TrainOptions(),
    overwrite: bool = False,
    resume: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
    world: World | None = None,
) -> TrainResult:
    """Train and write the bundle; ``on_epoch_end(epoch)`` is called after each checkpoint. With a
    distributed ``world`` (torchrun) the ranks train one network together
    (:class:`~hsicls.engine.training.DistributedTrainingRun`) and rank 0 alone writes the files."""
    output = Path(output)
    if world is not None and world.distributed:
        return _train_ranks(prepared_path, output, options, overwrite, resume, on_epoch_end, world)
    guard_training_outputs(output, resume, overwrite, inputs=[prepared_path])
    check_for_model(options.validate())
    with output_lock(output):  # the checkpoint and the log belong to this run until it ends
        return _train(prepared_path, output, options, overwrite, resume, on_epoch_end)


def check_for_model(options: TrainOptions) -> None:
    """Options that the chosen model would silently ignore are refused: a fitted model (rf, svm) sees
    centre pixels and no loss, so neither ``--patch-search`` nor ``--class-weighting`` applies to it."""
    if options.model == AUTO:
        if options.model_options:
            raise OptionError("--model-opt does not apply to --model auto (it trains several models); pick one --model for it")
        return
    entry = get_entry(options.model)
    if not entry.trainable:
        raise OptionError(f"--model {options.model} is made by --model auto from trained members; it is not trained alone")
    if entry.fitted:
        for flag, given in (
            ("--patch-search", bool(options.patch_search)),
            ("--class-weighting", options.class_weighting != "none"),
        ):
            if given:
                raise OptionError(
                    f"{flag} does not apply to --model {options.model} (fitted on centre pixels, no loss); leave it out"
                )


def _train_ranks(prepared_path, output: Path, options: TrainOptions, overwrite, resume, on_epoch_end, world: World):
    """Rank 0 checks the outputs and holds their lock; every rank learns its verdict before any work."""
    check_for_model(options.validate())
    error = None
    if world.is_main:
        try:
            guard_training_outputs(output, resume, overwrite, inputs=[prepared_path])
        except HsiclsError as exc:
            error = str(exc)
    error = world.broadcast(error)
    if error:
        raise HsiclsError(error) if world.is_main else RankFailed(error)
    with output_lock(output) if world.is_main else contextlib.nullcontext():
        return _train(prepared_path, output, options, overwrite, resume, on_epoch_end, world)


def _train(
    prepared_path, output: Path, options: TrainOptions, overwrite: bool, resume: bool, on_epoch_end, world: World = World()
) -> TrainResult:
    tune_allocator()
    outputs = declare_outputs(output, resume)
    if world.is_main:
        _check_checkpoint(outputs["checkpoint"], overwrite, resume)
    prep = load_prepared(prepared_path)
    if prep.n_classes < 2:
        raise InputError(f"{prepared_path}: holds a single class ({prep.class_names[0]}); classification needs at least 2")
    if options.model == AUTO:
        bundle, result = train_auto(prep, prepared_path, outputs, options, resume, on_epoch_end, world)
    else:
        bundle, result = train_model(prep, prepared_path, outputs, options, resume, on_epoch_end, world)
    if bundle is None:  # ranks other than 0
        return result
    with atomic_output(output, overwrite or resume) as tmp:
        save_bundle(tmp, bundle)
    outputs["checkpoint"].unlink(missing_ok=True)
    if result.best_epoch and options.model != AUTO:
        picked = (
            f"epoch {result.best_epoch} (best validation OA {result.val_oa:.4f})"
            if result.val_oa is not None
            else f"final epoch {result.best_epoch} (no validation split)"
        )
        console.info(f"kept {picked}; {result.seconds:.1f} s; wrote {output} and {outputs['log'].name}")
    else:
        console.info(f"{result.seconds:.1f} s; wrote {output}")
    return result


def train_model(
    prep, prepared_path, outputs: OutputSet, options: TrainOptions, resume: bool, on_epoch_end, world: World = World(),
    checkpoint: bool = True,
) -> tuple[Bundle | None, TrainResult]:  # fmt: skip
    """Train one registered model on ``prep``'s features; the bundle (calibrated; None on ranks other than 0) and the
    result. ``checkpoint``: save ``outputs["checkpoint"]`` and the log after every epoch (and resume from it)."""
    ckpt = outputs["checkpoint"]
    identity = prepared_identity(prep)
    state = _load_checkpoint(ckpt, identity, options) if resume and checkpoint else None
    device = world.device(resolve_device(options.device))
    seed_everything(options.seed)
    entry = get_entry(options.model)
    if entry.fitted:
        if not world.is_main:  # one fit, by rank 0
            return None, TrainResult(best_epoch=0, val_oa=None, selection="final", seconds=0.0, history=[])
        return _fit_classic(entry, prep, prepared_path, options)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    options, search = _search_patch(prep, prepared_path, options, device, world, resume)
    _check_prepared(prep, prepared_path, options)
    bf16, why = training_precision(options.precision, device)
    console.debug(f"training precision: {why}")
    run = (
        DistributedTrainingRun(prep, options, device, bf16, world)
        if world.distributed
        else TrainingRun(prep, options, device, bf16)
    )
    if run.n_train < 2:
        raise HsiclsError(f"{prepared_path}: the training split holds {run.n_train} pixel(s); at least 2 are needed")
    _warn_about(run, prep, prepared_path)
    if state is not None:
        run.load_state_dict(state)
        console.info(f"resuming from epoch {run.epoch} of {options.epochs} ({ckpt})")
    console.info(
        f"training {options.model} on {device.type}{' (bf16 autocast)' if run.use_bf16 else ''}: {run.n_train} training px, "
        f"{run.n_val} validation px, {run.n_classes} classes, {run.in_bands} bands, {options.patch_size}x{options.patch_size} patches"
    )
    t0 = time.perf_counter()
    stopped_early = _epochs(run, outputs, identity, on_epoch_end, checkpoint)
    seconds = time.perf_counter() - t0
    state, sel = run.result()
    record = {
        "device": device.type,
        "precision": "bf16" if run.use_bf16 else "fp32",
        "precision_reason": why,
        **sel,
        "seconds": seconds,
        "epochs_run": run.epoch,
        "stopped_early": stopped_early,
        "history": run.history,
        "world_size": world.size,
        "global_batch_size": options.batch_size,
        "patch_search": search,
    }
    result = TrainResult(
        best_epoch=sel["best_epoch"], val_oa=sel["val_oa"], selection=sel["selection"], seconds=seconds, history=run.history
    )
    if not world.is_main:
        return None, result
    bundle = make_bundle(run.kept, prep, prepared_path, options, dict(options.model_options), options.patch_size, record, state)
    return bundle, result


def _search_patch(prep, prepared_path, options: TrainOptions, device, world: World, resume: bool):
    """``--patch-search``: a short run per candidate patch size on the training split, scored on the
    validation split only; returns the options with the chosen size, and the record of the search."""
    if not options.patch_search:
        return options, None
    if resume:
        raise HsiclsError("--patch-search cannot resume: give the chosen --patch-size with --resume")
    if not prep.val.any():
        raise HsiclsError(f"{prepared_path}: --patch-search needs a validation split (--val-ratio > 0)")
    cap = guarded_footprint(prep.meta.get("split", {}))
    sizes = sorted({int(p) for p in options.patch_search if cap is None or int(p) <= cap})
    if not sizes:
        raise HsiclsError(f"{prepared_path}: its split guards {cap}x{cap} footprints; no --patch-search size fits")
    epochs = min(options.search_epochs, options.epochs)
    scores = {}
    for p in sizes:
        seed_everything(options.seed)
        trial = options.replace(patch_size=p, epochs=epochs, early_stopping=0, patch_search=None)
        bf16, _ = training_precision(options.precision, device)
        run = (
            DistributedTrainingRun(prep, trial, device, bf16, world)
            if world.distributed
            else TrainingRun(prep, trial, device, bf16)
        )
        while run.epoch < epochs:
            run.step()
        scores[p] = run.best["oa"]
        console.info(f"patch search: {p}x{p}, best validation OA {scores[p]:.4f} in {epochs} epochs")
    best = max(sizes, key=lambda p: (scores[p], -p))
    console.info(f"patch search: {best}x{best} chosen on the validation split")
    seed_everything(options.seed)
    record = {"chosen": best, "validation_oa": {str(p): scores[p] for p in sizes}, "epochs": epochs, "on": "validation split"}
    return options.replace(patch_size=best), record


def _check_prepared(prep, prepared_path, options: TrainOptions) -> None:
    cap = guarded_footprint(prep.meta.get("split", {}))
    if cap is not None and options.patch_size > cap:
        raise HsiclsError(
            f"{prepared_path}: its split guards {cap}x{cap} footprints; training on "
            f"{options.patch_size}x{options.patch_size} patches would see test pixels (preprocess with --patch-size {options.patch_size})"
        )


def _check_checkpoint(ckpt: Path, overwrite: bool, resume: bool) -> None:
    """Never start over an interrupted run's checkpoint silently: say how to resume it."""
    if resume and not ckpt.exists():
        raise HsiclsError(f"{ckpt}: no checkpoint to resume from")
    if resume or not ckpt.exists():
        return
    if not overwrite:
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            where = f" (epoch {int(state['epoch'])} of {int(state['options']['epochs'])})"
        except Exception:
            where = ""
        raise HsiclsError(
            f"{ckpt}: an interrupted run's checkpoint{where} is here; continue it with the same command and --resume, "
            f"or pass --overwrite to start over"
        )
    ckpt.unlink()
    console.info(f"removed the checkpoint {ckpt.name} (--overwrite): starting over")


def _warn_about(run: TrainingRun, prep, prepared_path) -> None:
    if run.options.early_stopping and not run.n_val:
        console.warn("--early-stopping needs a validation split (--val-ratio > 0); it is ignored")
    _warn_few_pixels(np.bincount(run.tr[2].cpu().numpy(), minlength=run.n_classes), prep.class_names, prepared_path)


def _warn_few_pixels(counts: np.ndarray, names: list[str], prepared_path) -> None:
    """Classes with no, or a single, training pixel: the model can hardly learn them."""
    for n, what in ((0, "no training pixel"), (1, "a single training pixel")):
        few = [names[c] for c in np.flatnonzero(counts == n)]
        if few:
            console.warn(f"{prepared_path}: {what} for class(es) {', '.join(few)} (fewer than 2 per class)")


def _load_checkpoint(ckpt: Path, identity: str, options: TrainOptions) -> dict:
    """The state to continue from; it must come from the same options and the same prepared file."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HsiclsError(f"{ckpt}: unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != "hsicls-checkpoint":
        raise HsiclsError(f"{ckpt}: not an hsicls checkpoint; not resumed")
    if "prepared_id" not in state:
        raise HsiclsError(f"{ckpt}: records no prepared-file identity (an older hsicls wrote it); cannot check it, not resumed")
    if state["prepared_id"] != identity:
        raise HsiclsError(
            f"{ckpt}: was written while training on another prepared file (other split or preprocessing); not resumed"
        )
    # options a checkpoint predates count at their defaults
    saved = {k: v for k, v in {**TrainOptions().to_record(), **state.get("options", {})}.items() if k != "device"}
    mine = {k: v for k, v in options.to_record().items() if k != "device"}
    if saved != mine:
        diff = ", ".join(
            f"{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in sorted(set(saved) | set(mine)) if saved.get(k) != mine.get(k)
        )
        raise HsiclsError(f"{ckpt}: was written with other options ({diff}); resume with the same ones")
    return state


def _epochs(run: TrainingRun, outputs: OutputSet, identity: str, on_epoch_end, checkpoint: bool = True) -> bool:
    """Run the remaining epochs with a checkpoint and a log after each (``checkpoint``); True if stopped early."""
    ckpt, log_file = outputs["checkpoint"], outputs["log"]
    epochs = run.options.epochs
    report_every = max(1, epochs // 10)
    try:
        with console.progress() as bar:
            task = bar.add_task("train", total=epochs, completed=run.epoch, status="") if bar else None
            batches = bar.add_task("epoch", total=len(run.bounds), status="batches") if bar else None
            while run.epoch < epochs:
                if bar:  # progress within the epoch too: a long epoch (a large scene set) is not silent
                    bar.reset(batches, total=len(run.bounds))
                rec = run.step(on_batch=(lambda: bar.advance(batches)) if bar else None)
                _check_finite(rec, run, ckpt)
                if run.world.is_main and checkpoint:  # rank 0 alone writes
                    _save_checkpoint(ckpt, {**run.state_dict(), "prepared_id": identity})
                    _write_log(log_file, run.history)
                status = f"loss {rec['loss']:.4f}" + (f"  val OA {rec['val_oa']:.4f}" if rec["val_oa"] is not None else "")
                if bar:
                    bar.update(task, advance=1, status=status)
                elif run.epoch % report_every == 0 or run.epoch == epochs:
                    console.info(f"epoch {run.epoch}/{epochs}  {status}")
                if on_epoch_end is not None:
                    on_epoch_end(run.epoch)
                if run.should_stop():
                    console.info(f"early stopping after epoch {run.epoch}: no better validation OA for {run.stale} epochs")
                    return True
    except KeyboardInterrupt:
        if ckpt.exists():
            raise Interrupted(
                f"interrupted after epoch {run.epoch}; continue with the same command and --resume ({ckpt})"
            ) from None
        raise Interrupted("interrupted before the first epoch ended; nothing to resume") from None
    return False


def _check_finite(rec: dict, run: TrainingRun, ckpt: Path) -> None:
    """A NaN/inf loss (a learning rate far too high) ends the run: its checkpoint cannot help."""
    if math.isfinite(rec["loss"]):
        return
    ckpt.unlink(missing_ok=True)
    raise HsiclsError(
        f"training diverged at epoch {run.epoch}: the loss is {rec['loss']} (--lr {run.options.lr:g} is too high? try a smaller one)"
    )


def _write_log(path: Path, history: list[dict]) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        write_via_memory(tmp, lambda buf: buf.write("".join(json.dumps(h) + "\n" for h in history).encode()))


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        write_via_memory(tmp, lambda buf: torch.save(state, buf))


def training_record(prep, prepared_path, options: TrainOptions, record: dict) -> dict:
    """What a bundle keeps of its training: the options, the run's record, the split and the preprocessing."""
    return {
        **{k: v for k, v in options.to_record().items() if k not in ("model_options", "patch_size", "padding")},
        "config": options.to_record(),
        **record,
        "split": prep.meta.get("split", {}),
        **prep.preprocessing_record(),
        "source": prep.meta.get("source", ""),
        "prepared": str(prepared_path),
        "scenes": [{"name": sc.name, "height": sc.height, "width": sc.width} for sc in prep.scenes],
        "train_pixels": int(prep.train.sum()),
        "val_pixels": int(prep.val.sum()),
    }


def finish_bundle(bundle: Bundle, prep, device: str, precision: str, bf16: bool) -> Bundle:
    """Non-finite weights refused; the temperature fitted on validation; the bf16 error bound measured (``bf16``)."""
    bad = [k for k, v in bundle.state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise HsiclsError(
            f"{bundle.training.get('prepared')}: training gave non-finite weights ({bad[0]}); no bundle written (try a smaller --lr)"
        )
    calibrate_bundle(bundle, prep, device, precision, log=console.info)
    if bf16:
        measure_bf16_error(bundle, prep, log=console.debug)
    return bundle


def new_bundle(spec: ModelSpec, state: dict, features, prep, prepared_path, options: TrainOptions, record: dict) -> Bundle:
    """A bundle of ``spec`` with weights ``state``, fed ``features`` (``prep`` or its spectral view: their preprocessing
    and records), with ``prep``'s classes, split and bands."""
    return Bundle(
        model=spec,
        state_dict=state,
        preprocessing=features.preprocessing,
        class_names=prep.class_names,
        class_values=prep.class_values,
        palette=prep.palette,
        training=training_record(features, prepared_path, options, record),
        split_masks={"train": prep.train, "val": prep.val, "test": prep.test},
        bands=prep.meta.get("bands"),
    )


def make_bundle(
    model, prep, prepared_path, options: TrainOptions, model_options: dict, patch_size: int, record: dict, state
) -> Bundle:
    """The bundle of one trained model on ``prep``'s features (calibrated, its bf16 bound measured)."""
    spec = ModelSpec(
        options.model,
        model_options,
        prep.cube.shape[2],
        prep.n_classes,
        patch_size,
        options.padding if patch_size > 1 else "reflect",
    )
    bundle = new_bundle(spec, state if state is not None else model.state_dict(), prep, prep, prepared_path, options, record)
    fitted = get_entry(options.model).fitted
    return finish_bundle(bundle, prep, "cpu" if fitted else options.device, options.precision, bf16=not fitted)


def _fit_classic(entry, prep, prepared_path, options: TrainOptions) -> tuple[Bundle, TrainResult]:
    """Spectral-only baselines: fit on the centre pixels' features (patch size 1)."""
    if options.model_options:
        raise HsiclsError(f"model '{options.model}' takes no --model-opt")
    x_tr, y_tr = prep.cube[prep.train], prep.labels[prep.train] - 1
    x_val, y_val = prep.cube[prep.val], prep.labels[prep.val] - 1
    if len(np.unique(y_tr)) < prep.n_classes and entry.every_class:
        raise HsiclsError(f"{prepared_path}: some classes have no training pixel; '{options.model}' needs every class")
    _warn_few_pixels(np.bincount(y_tr, minlength=prep.n_classes), prep.class_names, prepared_path)
    console.info(f"fitting {options.model}: {len(y_tr)} training px, {len(y_val)} validation px, {prep.n_classes} classes")
    t0 = time.perf_counter()
    try:
        model, fitted = entry.fit(x_tr, y_tr, x_val, y_val, prep.n_classes, options.seed, log=console.info)
    except ValueError as exc:
        raise HsiclsError(f"{prepared_path}: cannot fit '{options.model}' ({exc})") from None
    seconds = time.perf_counter() - t0
    val_oa = fitted.pop("val_oa", None)
    selection = "validation" if entry.selects_on_validation else "final"
    record = {"device": "cpu", "best_epoch": None, "selection": selection, "val_oa": val_oa, "seconds": seconds}
    bundle = make_bundle(model, prep, prepared_path, options, fitted, 1, record, None)
    return bundle, TrainResult(best_epoch=0, val_oa=val_oa, selection=selection, seconds=seconds, history=[])


# --------------------------------------------------------------------------- --model auto
AUTO_SPECTRAL_AUGMENT = ["brightness", "noise", "mix"]


def auto_candidates(options: TrainOptions) -> list[tuple[str, TrainOptions, str]]:
    """``(name, options, features)`` of each candidate of ``--model auto``, cheapest first (the long md2f-mamba run
    last, with the checkpoint): the forest and the spectral network on the full spectra, md2f-mamba on the PCA axes
    with the user's options."""
    base = dict(patch_search=None, model_options={})
    return [
        ("rf", options.replace(model="rf", patch_size=1, class_weighting="none", spectral_augment=None, **base), "spectra"),
        (
            "spectral-cnn",
            options.replace(
                model="spectral-cnn",
                patch_size=1,
                augment=False,
                spectral_augment=options.spectral_augment or AUTO_SPECTRAL_AUGMENT,
                **base,
            ),
            "spectra",
        ),
        ("md2f-mamba", options.replace(model="md2f-mamba", spectral_augment=None), "pca"),
    ]


def train_auto(
    prep, prepared_path, outputs: OutputSet, options: TrainOptions, resume: bool, on_epoch_end, world: World
) -> tuple[Bundle | None, TrainResult]:
    """``--model auto``: train every candidate, choose among them and their ensemble on the validation split only
    (:func:`hsicls.science.ensembles.choose`, rule ``--ensemble-rule``), and return one ensemble bundle holding every
    member (a member that wins alone has weight 1, the others 0 and are not run)."""
    if not prep.val.any():
        raise HsiclsError(
            f"{prepared_path}: --model auto chooses among its candidates on the validation split, and this file has none "
            f"(preprocess with --val-ratio > 0, or train one --model)"
        )
    spectral = _spectral_features(prep, prepared_path)
    t0 = time.perf_counter()
    members, results = [], []
    candidates = auto_candidates(options)
    for i, (name, opts, feats) in enumerate(candidates):
        view = spectral if feats == "spectra" else prep
        console.info(
            f"--model auto: candidate {i + 1}/{len(candidates)}, {name} ({'full spectra' if view is not prep else 'PCA axes'})"
        )
        long_run = name == "md2f-mamba"
        bundle, result = train_model(
            view,
            prepared_path,
            outputs,
            opts,
            resume and long_run,
            on_epoch_end if long_run else None,
            world,
            checkpoint=long_run,
        )
        members.append((name, bundle, view))
        results.append(result)
    if not world.is_main:
        return None, results[-1]
    choice, prior = _choose(prep, members, options.ensemble_rule)
    seconds = time.perf_counter() - t0
    record = {
        "device": members[-1][1].training.get("device", "cpu"),
        "best_epoch": results[-1].best_epoch,
        "selection": "validation",
        "val_oa": next(r["oa"] for r in choice.table if r["candidate"] == choice.chosen),
        "seconds": seconds,
        "auto": {
            **choice.record(),
            "members": [_member_record(n, b, v is not prep, r) for (n, b, v), r in zip(members, results)],
        },
    }
    spec = _ensemble_spec(prep, spectral, members, choice, prior)
    bundle = new_bundle(spec, _ensemble_state(prep, spectral, members), spectral, prep, prepared_path, options, record)
    finish_bundle(bundle, spectral, options.device, options.precision, bf16=True)
    result = TrainResult(
        best_epoch=results[-1].best_epoch, val_oa=record["val_oa"], selection="validation", seconds=seconds, history=[]
    )
    return bundle, result


def _spectral_features(prep, prepared_path):
    """The full standardised spectra of ``prep`` (the PCA cube, with a warning, when the file keeps none)."""
    if prep.spectra is None and prep.preprocessing.projects:
        console.warn(
            f"{prepared_path}: keeps no full spectra (preprocessed with --spectra drop, or by an older hsicls): the "
            f"spectral network and the forest see the PCA axes"
        )
        return prep
    return prep.spectral_view()


def _choose(prep, members, rule: str):
    """The rule applied to the members' calibrated validation probabilities; ``(choice, training prior)``."""
    from hsicls.engine.calibration import probabilities, split_logits
    from hsicls.engine.inference import Runner
    from hsicls.science.ensembles import choose, describe, prior_of

    runner = Runner.resolve("cpu", "fp32")
    probs, y = [], None
    for _, b, view in members:
        logits, y = split_logits(b, view, prep.val, runner)
        probs.append(probabilities(logits, b.temperature).numpy())
    k = prep.n_classes
    prior = prior_of(prep.labels[prep.train] - 1, k)
    choice = choose(rule, [m[0] for m in members], probs, y.numpy(), prior, validation_regions(prep), k)
    console.info(f"--model auto: {describe(choice)}")
    _log_validation_table(choice)
    return choice, prior


def _member_record(name: str, b: Bundle, spectra: bool, r: TrainResult) -> dict:
    return {"name": name, "features": "full spectra" if spectra else "PCA axes", "seconds": r.seconds, "best_epoch": r.best_epoch,
            "val_oa": r.val_oa, "calibration": b.training.get("calibration"), "config": b.training.get("config"),
            "history": b.training.get("history")}  # fmt: skip


def _ensemble_spec(prep, spectral, members, choice, prior) -> ModelSpec:
    from hsicls.models.ensemble import member_spec

    specs = [
        member_spec(n, b.model.options, b.model.in_bands, b.model.patch_size, b.temperature, v is prep and spectral is not prep)
        for n, b, v in members
    ]
    deep = [b for _, b, _ in members if b.model.patch_size > 1]
    return ModelSpec(
        "ensemble",
        {"members": specs, "weights": choice.weights, "tau": choice.tau, "prior": [float(v) for v in prior]},
        spectral.cube.shape[2],
        prep.n_classes,
        max(b.model.patch_size for _, b, _ in members),
        deep[0].model.padding if deep else "reflect",
    )


def _ensemble_state(prep, spectral, members) -> dict:
    """The members' weights under ``members.<i>.net.`` (a fitted member inside its float32 wrapper), and the PCA
    projection of the members fed the PCA axes."""
    state = {}
    for i, (name, b, view) in enumerate(members):
        inner = "net.net." if get_entry(name).fitted else "net."
        state.update({f"members.{i}.{inner}{k}": v for k, v in b.state_dict.items()})
        if view is prep and spectral is not prep:
            state[f"members.{i}.components"] = torch.as_tensor(prep.preprocessing.components, dtype=torch.float32)
            state[f"members.{i}.center"] = torch.as_tensor(prep.preprocessing.pca_mean, dtype=torch.float32)
    return state


def validation_regions(prep) -> np.ndarray:
    """A region id per validation pixel ``(N,)`` (row-major order): its group on group splits, else its connected
    patch of validation pixels (8-connectivity)."""
    from scipy import ndimage

    if prep.groups is not None and (prep.meta.get("split") or {}).get("protocol") == "group":
        return prep.groups[prep.val]
    lab, _ = ndimage.label(prep.val, structure=np.ones((3, 3), bool))
    return lab[prep.val]


def _log_validation_table(choice) -> None:
    for r in choice.table:
        w = "" if r["candidate"] != "ensemble" else f"  weights {', '.join(f'{v:.2f}' for v in r['weights'])}, tau {r['tau']:g}"
        console.info(
            f"  validation {r['candidate']:<13} OA {100 * r['oa']:.2f}  AA {100 * r['aa']:.2f}  kappa {100 * r['kappa']:.2f}{w}"
        )
