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
from hsicls.artifacts.outputs import OutputSet, atomic_output, output_lock, write_via_memory
from hsicls.artifacts.prepared import load_prepared
from hsicls.config import TrainOptions
from hsicls.engine.calibration import calibrate_bundle, measure_bf16_error
from hsicls.engine.distributed import RankFailed, World
from hsicls.engine.runtime import resolve_device, tune_allocator, uses_bf16
from hsicls.engine.training import DistributedTrainingRun, TrainingRun, augment_batch, batch_bounds, ema_update, seed_everything
from hsicls.errors import HsiclsError, InputError, Interrupted, OptionError
from hsicls.models import get_entry

__all__ = ["TrainOptions", "TrainResult", "train", "batch_bounds", "augment_batch", "ema_update", "dataset_defaults"]


@dataclass
class TrainResult:
    best_epoch: int
    val_oa: float | None
    selection: str
    seconds: float
    history: list[dict]

    def summary(self, output: Path) -> dict:
        return {
            "model": str(output),
            "best_epoch": self.best_epoch,
            "val_oa": self.val_oa,
            "selection": self.selection,
            "seconds": self.seconds,
            "history": self.history,
        }


def dataset_defaults(opts: TrainOptions, given: set[str], dataset: str) -> TrainOptions:
    """A registered scene's paper settings (patch size, learning rate) where the user set none."""
    from hsicls.datasets import get_dataset

    info = get_dataset(dataset)
    changes = {k: v for k, v in (("lr", info.lr), ("patch_size", info.patch_size)) if k not in given}
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
    if get_entry(options.model).fitted:
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
    ckpt = outputs["checkpoint"]
    if world.is_main:
        _check_checkpoint(ckpt, overwrite, resume)
    prep = load_prepared(prepared_path)
    if prep.n_classes < 2:
        raise InputError(f"{prepared_path}: holds a single class ({prep.class_names[0]}); classification needs at least 2")
    identity = prepared_identity(prep)
    state = _load_checkpoint(ckpt, identity, options) if resume else None
    device = world.device(resolve_device(options.device))
    seed_everything(options.seed)
    entry = get_entry(options.model)
    if entry.fitted:
        if not world.is_main:  # one fit, by rank 0
            return TrainResult(best_epoch=0, val_oa=None, selection="final", seconds=0.0, history=[])
        return _fit_classic(entry, prep, prepared_path, output, options, overwrite or resume)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    options, search = _search_patch(prep, prepared_path, options, device, world, resume)
    _check_prepared(prep, prepared_path, options)
    bf16 = uses_bf16(options.precision, device)
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
    stopped_early = _epochs(run, outputs, identity, on_epoch_end)
    seconds = time.perf_counter() - t0
    state, sel = run.result()
    record = {
        "device": device.type,
        "precision": "bf16" if run.use_bf16 else "fp32",
        **sel,
        "seconds": seconds,
        "epochs_run": run.epoch,
        "stopped_early": stopped_early,
        "history": run.history,
        "world_size": world.size,
        "global_batch_size": options.batch_size,
        "patch_search": search,
    }
    if not world.is_main:
        return TrainResult(
            best_epoch=sel["best_epoch"], val_oa=sel["val_oa"], selection=sel["selection"], seconds=seconds, history=run.history
        )
    _write_bundle(
        run.kept, prep, prepared_path, output, options, dict(options.model_options), options.patch_size, record, state, True
    )
    ckpt.unlink(missing_ok=True)
    val_oa, best_epoch = sel["val_oa"], sel["best_epoch"]
    picked = (
        f"epoch {best_epoch} (best validation OA {val_oa:.4f})"
        if val_oa is not None
        else f"final epoch {best_epoch} (no validation split)"
    )
    console.info(f"kept {picked}; {seconds:.1f} s; wrote {output} and {outputs['log'].name}")
    return TrainResult(best_epoch=best_epoch, val_oa=val_oa, selection=sel["selection"], seconds=seconds, history=run.history)


def _search_patch(prep, prepared_path, options: TrainOptions, device, world: World, resume: bool):
    """``--patch-search``: a short run per candidate patch size on the training split, scored on the
    validation split only; returns the options with the chosen size, and the record of the search."""
    if not options.patch_search:
        return options, None
    if resume:
        raise HsiclsError("--patch-search cannot resume: give the chosen --patch-size with --resume")
    if not prep.val.any():
        raise HsiclsError(f"{prepared_path}: --patch-search needs a validation split (--val-ratio > 0)")
    split = prep.meta.get("split", {})
    cap = int(split["patch_size"]) if split.get("protocol") == "disjoint" else 101
    sizes = sorted({int(p) for p in options.patch_search if int(p) <= cap})
    if not sizes:
        raise HsiclsError(f"{prepared_path}: its disjoint split guards {cap}x{cap} footprints; no --patch-search size fits")
    epochs = min(options.search_epochs, options.epochs)
    scores = {}
    for p in sizes:
        seed_everything(options.seed)
        trial = options.replace(patch_size=p, epochs=epochs, early_stopping=0, patch_search=None)
        bf16 = uses_bf16(options.precision, device)
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
    split = prep.meta.get("split", {})
    if split.get("protocol") == "disjoint" and options.patch_size > int(split.get("patch_size", options.patch_size)):
        raise HsiclsError(
            f"{prepared_path}: its disjoint split guards {split['patch_size']}x{split['patch_size']} footprints; training on "
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


def _epochs(run: TrainingRun, outputs: OutputSet, identity: str, on_epoch_end) -> bool:
    """Run the remaining epochs with a checkpoint and a log after each; True if stopped early."""
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
                if run.world.is_main:  # rank 0 alone writes
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


def _write_bundle(
    model,
    prep,
    prepared_path,
    output,
    options: TrainOptions,
    model_options: dict,
    patch_size: int,
    record: dict,
    state,
    overwrite: bool,
) -> None:
    spec = ModelSpec(
        options.model,
        model_options,
        prep.cube.shape[2],
        prep.n_classes,
        patch_size,
        options.padding if patch_size > 1 else "reflect",
    )
    training = {
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
    weights = state if state is not None else model.state_dict()
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise HsiclsError(f"{prepared_path}: training gave non-finite weights ({bad[0]}); no bundle written (try a smaller --lr)")
    bundle = Bundle(
        model=spec,
        state_dict=weights,
        preprocessing=prep.preprocessing,
        class_names=prep.class_names,
        class_values=prep.class_values,
        palette=prep.palette,
        training=training,
        split_masks={"train": prep.train, "val": prep.val, "test": prep.test},
        bands=prep.meta.get("bands"),
    )
    device = "cpu" if get_entry(options.model).fitted else options.device
    calibrate_bundle(bundle, prep, device, options.precision, log=console.info)
    if not get_entry(options.model).fitted:
        measure_bf16_error(bundle, prep, log=console.debug)
    with atomic_output(output, overwrite) as tmp:
        save_bundle(tmp, bundle)


def _fit_classic(entry, prep, prepared_path, output, options: TrainOptions, overwrite: bool) -> TrainResult:
    """Spectral-only baselines: fit on the centre pixels' features (patch size 1)."""
    if options.model_options:
        raise HsiclsError(f"model '{options.model}' takes no --model-opt")
    x_tr, y_tr = prep.cube[prep.train], prep.labels[prep.train] - 1
    x_val, y_val = prep.cube[prep.val], prep.labels[prep.val] - 1
    if len(np.unique(y_tr)) < prep.n_classes:
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
    _write_bundle(model, prep, prepared_path, output, options, fitted, 1, record, None, overwrite)
    console.info(f"{seconds:.1f} s; wrote {output}")
    return TrainResult(best_epoch=0, val_oa=val_oa, selection=selection, seconds=seconds, history=[])
