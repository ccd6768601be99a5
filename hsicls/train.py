"""Stage ``train``: prepared HDF5 -> model bundle.

Adam on cross-entropy over the training pixels' patches, gathered on the fly from one padded
tensor (on the training device). After every epoch the model is scored on the validation pixels
(carved from the training pixels); the bundle keeps the epoch with the best validation OA, or
the final epoch when there is no validation split. The test split is never looked at here.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from . import console
from .bundle import make_bundle, save_bundle
from .errors import HsiclsError
from .fileutil import atomic_output, check_output
from .models import create_model, get_entry
from .patches import (
    check_padding,
    check_patch_size,
    check_precision,
    gather_patches,
    inference_batch_size,
    pad_cube,
    predict_pixels,
    resolve_device,
    uses_bf16,
)
from .prepared import load_prepared
from .runtime import tune_allocator


@dataclass
class TrainOptions:
    model: str = "md2f-mamba"
    model_options: dict[str, str] = field(default_factory=dict)
    patch_size: int = 13
    epochs: int = 100
    batch_size: int = 64
    lr: float = 0.002
    seed: int = 0
    device: str = "auto"
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine | step (x0.1 at 50 % and 75 % of the epochs)
    early_stopping: int = 0  # stop after this many epochs without a better validation OA (0 = off)
    label_smoothing: float = 0.0
    augment: bool = False  # random flips / transposition of each patch (the 8 dihedral symmetries)
    precision: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | fp32 | bf16
    padding: str = "reflect"  # patches beyond the scene border: reflect | zero (recorded in the bundle)
    ema: float = 0.0  # decay per step of an exponential moving average of the weights (0 = off); validated and kept


SCHEDULES = ("constant", "cosine", "step")


@dataclass
class TrainResult:
    best_epoch: int
    val_oa: float | None
    selection: str
    seconds: float
    history: list[dict]


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges covering ``n`` samples; a lone last sample joins the previous batch
    (BatchNorm cannot train on a batch of one)."""
    bounds = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2] = (bounds[-2][0], n)
        bounds.pop()
    return bounds


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _pixels(mask: np.ndarray, labels: np.ndarray, device: torch.device):
    rows, cols = np.nonzero(mask)
    y = labels[rows, cols] - 1
    as_t = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
    return as_t(rows), as_t(cols), as_t(y)


def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".ckpt")


def log_path(output: Path) -> Path:
    return output.with_name(output.stem + ".log.jsonl")


def _check_options(o: TrainOptions) -> None:
    check_patch_size(o.patch_size)
    if o.epochs < 1:
        raise HsiclsError(f"--epochs must be >= 1, got {o.epochs}")
    if o.batch_size < 2:
        raise HsiclsError(f"--batch-size must be >= 2 (BatchNorm needs two samples), got {o.batch_size}")
    if not o.lr > 0:
        raise HsiclsError(f"--lr must be > 0, got {o.lr}")
    if o.seed < 0:
        raise HsiclsError(f"--seed must be >= 0, got {o.seed}")
    if o.lr_schedule not in SCHEDULES:
        raise HsiclsError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {o.lr_schedule!r}")
    check_precision(o.precision)
    check_padding(o.padding)
    if not 0 <= o.label_smoothing < 1:
        raise HsiclsError(f"--label-smoothing must be in [0, 1), got {o.label_smoothing}")
    if not 0 <= o.ema < 1:
        raise HsiclsError(f"--ema must be in [0, 1) (0 = off), got {o.ema}")
    if o.weight_decay < 0 or o.early_stopping < 0:
        raise HsiclsError("--weight-decay and --early-stopping must be >= 0")


def augment_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random horizontal flip, vertical flip and transposition: ``(N, C, P, P)``."""
    flips = torch.rand(3, x.shape[0], generator=gen).to(x.device) < 0.5
    x = torch.where(flips[0, :, None, None, None], x.flip(3), x)
    x = torch.where(flips[1, :, None, None, None], x.flip(2), x)
    return torch.where(flips[2, :, None, None, None], x.transpose(2, 3), x)


def ema_update(decay: float):
    """Bias-corrected exponential moving average for ``AveragedModel(multi_avg_fn=...)``.

    After ``n`` optimiser steps the average is ``sum_t d^(n-t) w_t / sum_t d^(n-t)`` (t = 1..n):
    step ``n`` enters with weight ``(1 - d) / (1 - d^n)`` (1 on the first step, then 1/(1+d), ...,
    tending to ``1 - d``). Unlike an average started from the first step's weights, a short run
    is averaged over its own trajectory (horizon about ``1 / (1 - d)`` steps), not held near its
    start. Integer buffers (BN's step count) take the current value."""

    @torch.no_grad()
    def update(averaged: list, current: list, num_averaged) -> None:
        n = int(num_averaged) + 1  # steps averaged once this one is in (the first one is copied)
        weight = (1 - decay) / (1 - decay**n)
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c, weight)
            else:
                a.copy_(c)

    return update


def _make_scheduler(opt, o: TrainOptions):
    if o.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=o.epochs)
    if o.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=[max(1, o.epochs // 2), max(1, (3 * o.epochs) // 4)], gamma=0.1
        )
    return None


def _write_log(path: Path, history: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
    os.replace(tmp, path)


def train(
    prepared_path: str | Path,
    output: str | Path,
    options: TrainOptions = TrainOptions(),
    overwrite: bool = False,
    resume: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train and write the bundle. A checkpoint ``<output>.ckpt`` is written after every epoch
    (atomically) and removed on success; ``resume`` continues from it to the same result as an
    uninterrupted run. ``on_epoch_end(epoch)`` is called after each checkpoint."""
    output = Path(output)
    check_output(output, overwrite or resume)
    _check_options(options)
    tune_allocator()
    prep = load_prepared(prepared_path)
    device = resolve_device(options.device)
    seed_everything(options.seed)
    entry = get_entry(options.model)
    if entry.kind == "classic":
        return _train_classic(entry, prep, prepared_path, output, options, overwrite or resume)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    use_bf16 = uses_bf16(options.precision, device)

    cube = torch.from_numpy(np.ascontiguousarray(prep.cube.transpose(2, 0, 1))).to(device)  # (C, H, W)
    padded = pad_cube(cube, options.patch_size, options.padding)
    split = prep.meta.get("split", {})
    if split.get("protocol") == "disjoint" and options.patch_size > int(split.get("patch_size", options.patch_size)):
        raise HsiclsError(
            f"{prepared_path}: its disjoint split guards {split['patch_size']}x{split['patch_size']} footprints; training on "
            f"{options.patch_size}x{options.patch_size} patches would see test pixels (preprocess with --patch-size {options.patch_size})"
        )
    tr_rows, tr_cols, tr_y = _pixels(prep.train, prep.labels, device)
    va_rows, va_cols, va_y = _pixels(prep.val, prep.labels, device)
    if tr_rows.numel() < 2:
        raise HsiclsError(f"{prepared_path}: the training split holds {tr_rows.numel()} pixel(s); at least 2 are needed")
    if options.early_stopping and va_rows.numel() == 0:
        console.warn("--early-stopping needs a validation split (--val-ratio > 0); it is ignored")
    n_classes, in_bands = prep.n_classes, prep.cube.shape[2]
    model = create_model(
        options.model, in_bands=in_bands, n_classes=n_classes, patch_size=options.patch_size, **options.model_options
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    # EMA of the weights and BN statistics (torch's AveragedModel): the averaged network is the one
    # validated and kept; the raw one is the one trained.
    ema = AveragedModel(model, multi_avg_fn=ema_update(options.ema), use_buffers=True) if options.ema else None
    kept = ema.module if ema is not None else model
    sched = _make_scheduler(opt, options)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=options.label_smoothing)
    order_gen = torch.Generator(device="cpu").manual_seed(options.seed)
    aug_gen = torch.Generator(device="cpu").manual_seed(options.seed + 1)
    n = tr_rows.numel()
    bounds = batch_bounds(n, options.batch_size)
    missing = sorted(set(range(n_classes)) - set(tr_y.unique().tolist()))
    if missing:
        console.warn(f"{prepared_path}: no training pixel for class(es) {', '.join(prep.class_names[c] for c in missing)}")

    best: dict = {"oa": -1.0, "epoch": 0, "state": None}
    history: list[dict] = []
    start_epoch, stale = 1, 0
    ckpt = checkpoint_path(output)
    if resume:
        if not ckpt.exists():
            raise HsiclsError(f"{ckpt}: no checkpoint to resume from")
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise HsiclsError(f"{ckpt}: unreadable checkpoint ({type(exc).__name__})") from None
        # options a checkpoint predates count at their defaults
        saved = {k: v for k, v in {**asdict(TrainOptions()), **state.get("options", {})}.items() if k != "device"}
        mine = {k: v for k, v in asdict(options).items() if k != "device"}
        if saved != mine:
            diff = ", ".join(
                f"{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in sorted(set(saved) | set(mine)) if saved.get(k) != mine.get(k)
            )
            raise HsiclsError(f"{ckpt}: was written with other options ({diff}); resume with the same ones")
        model.load_state_dict(state["model"])  # copies onto the model's device
        if ema is not None:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])  # casts the moments to the parameters' device
        if sched is not None and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        order_gen.set_state(state["order_gen"])
        aug_gen.set_state(state["aug_gen"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(list(state["cuda_rng"]))
        best_state = state.get("best_state")
        best = {
            "oa": state["best_oa"],
            "epoch": state["best_epoch"],
            "state": {k: v.to(device) for k, v in best_state.items()} if best_state else None,
        }
        history, stale = list(state["history"]), int(state["stale"])
        start_epoch = int(state["epoch"]) + 1
        console.info(f"resuming from epoch {start_epoch - 1} of {options.epochs} ({ckpt})")

    console.info(
        f"training {options.model} on {device.type}{' (bf16 autocast)' if use_bf16 else ''}: {n} training px, "
        f"{va_rows.numel()} validation px, {n_classes} classes, {in_bands} bands, "
        f"{options.patch_size}x{options.patch_size} patches"
    )
    t0 = time.perf_counter()
    report_every = max(1, options.epochs // 10)
    val_batch = min(1024, inference_batch_size(None, device))  # training memory is still held on a GPU
    stopped_early = False
    try:
        with console.progress() as bar:
            task = bar.add_task("train", total=options.epochs, completed=start_epoch - 1, status="") if bar else None
            for epoch in range(start_epoch, options.epochs + 1):
                te = time.perf_counter()
                model.train()
                order = torch.randperm(n, generator=order_gen).to(device)
                total = 0.0
                lr_now = opt.param_groups[0]["lr"]
                for lo, hi in bounds:
                    idx = order[lo:hi]
                    x = gather_patches(padded, tr_rows[idx], tr_cols[idx], options.patch_size)
                    if options.augment:
                        x = augment_batch(x, aug_gen)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        loss = loss_fn(model(x).float(), tr_y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    total += float(loss.detach()) * idx.numel()
                if sched is not None:
                    sched.step()
                mean_loss = total / n
                val_oa = None
                if va_rows.numel():
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        pred = predict_pixels(kept, padded, va_rows, va_cols, options.patch_size, batch_size=val_batch)
                    val_oa = float((pred == va_y).float().mean())
                    if val_oa > best["oa"]:
                        best = {
                            "oa": val_oa,
                            "epoch": epoch,
                            "state": {k: v.detach().clone() for k, v in kept.state_dict().items()},
                        }
                        stale = 0
                    else:
                        stale += 1
                rec = {"epoch": epoch, "loss": mean_loss, "val_oa": val_oa, "lr": lr_now, "seconds": time.perf_counter() - te}
                history.append(rec)
                _save_checkpoint(ckpt, model, ema, opt, sched, order_gen, aug_gen, best, history, stale, epoch, options)
                _write_log(log_path(output), history)
                status = f"loss {mean_loss:.4f}" + (f"  val OA {val_oa:.4f}" if val_oa is not None else "")
                if bar:
                    bar.update(task, advance=1, status=status)
                elif epoch % report_every == 0 or epoch == options.epochs:
                    console.info(f"epoch {epoch}/{options.epochs}  {status}")
                if on_epoch_end is not None:
                    on_epoch_end(epoch)
                if options.early_stopping and va_rows.numel() and stale >= options.early_stopping:
                    console.info(f"early stopping after epoch {epoch}: no better validation OA for {stale} epochs")
                    stopped_early = True
                    break
    except KeyboardInterrupt:
        done = history[-1]["epoch"] if history else start_epoch - 1
        if ckpt.exists():
            console.error(f"interrupted after epoch {done}; continue with the same command and --resume ({ckpt})")
        else:
            console.error("interrupted before the first epoch ended; nothing to resume")
        raise
    seconds = time.perf_counter() - t0

    if best["state"] is None:
        selection, best_epoch, val_oa, state = "final", history[-1]["epoch"], None, None
    else:
        selection, best_epoch, val_oa, state = "validation", best["epoch"], best["oa"], best["state"]
    _write_bundle(
        kept,
        prep,
        prepared_path,
        output,
        options,
        dict(options.model_options),
        options.patch_size,
        {
            "device": device.type,
            "precision": "bf16" if use_bf16 else "fp32",
            "best_epoch": best_epoch,
            "selection": selection,
            "val_oa": val_oa,
            "seconds": seconds,
            "epochs_run": history[-1]["epoch"],
            "stopped_early": stopped_early,
            "history": history,
        },
        state,
        True,
    )
    ckpt.unlink(missing_ok=True)
    picked = (
        f"epoch {best_epoch} (best validation OA {val_oa:.4f})"
        if val_oa is not None
        else f"final epoch {best_epoch} (no validation split)"
    )
    console.info(f"kept {picked}; {seconds:.1f} s; wrote {output} and {log_path(output).name}")
    return TrainResult(best_epoch=best_epoch, val_oa=val_oa, selection=selection, seconds=seconds, history=history)


def _save_checkpoint(path, model, ema, opt, sched, order_gen, aug_gen, best, history, stale, epoch, options) -> None:
    state = {
        "format": "hsicls-checkpoint",
        "epoch": epoch,
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else None,
        "order_gen": order_gen.get_state(),
        "aug_gen": aug_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "best_oa": best["oa"],
        "best_epoch": best["epoch"],
        "best_state": best["state"],
        "history": history,
        "stale": stale,
        "options": asdict(options),
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise HsiclsError(f"{path}: cannot write the checkpoint ({exc})") from None


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
    bundle = make_bundle(
        model,
        model_name=options.model,
        options=model_options,
        in_bands=prep.cube.shape[2],
        n_classes=prep.n_classes,
        patch_size=patch_size,
        padding=options.padding if patch_size > 1 else "reflect",
        preprocessing=prep.preprocessing,
        class_names=prep.class_names,
        class_values=prep.class_values,
        palette=prep.palette,
        training={
            **{k: v for k, v in asdict(options).items() if k != "model_options"},
            "patch_size": patch_size,
            **record,
            "split": prep.meta.get("split", {}),
            **prep.preprocessing_record(),
            "source": prep.meta.get("source", ""),
            "prepared": str(prepared_path),
            "train_pixels": int(prep.train.sum()),
            "val_pixels": int(prep.val.sum()),
        },
        split_masks={"train": prep.train, "val": prep.val, "test": prep.test},
        state_dict=state,
    )
    with atomic_output(output, overwrite) as tmp:
        save_bundle(tmp, bundle)


def _train_classic(entry, prep, prepared_path, output, options: TrainOptions, overwrite: bool) -> TrainResult:
    """Spectral-only baselines: fit on the centre pixels' features (patch size 1)."""
    if options.model_options:
        raise HsiclsError(f"model '{options.model}' takes no --model-opt")
    x_tr, y_tr = prep.cube[prep.train], prep.labels[prep.train] - 1
    x_val, y_val = prep.cube[prep.val], prep.labels[prep.val] - 1
    if len(np.unique(y_tr)) < prep.n_classes:
        raise HsiclsError(f"{prepared_path}: some classes have no training pixel; '{options.model}' needs every class")
    console.info(f"fitting {options.model}: {len(y_tr)} training px, {len(y_val)} validation px, {prep.n_classes} classes")
    t0 = time.perf_counter()
    try:
        model, fitted = entry.fit(x_tr, y_tr, x_val, y_val, prep.n_classes, options.seed, log=console.info)
    except ValueError as exc:
        raise HsiclsError(f"{prepared_path}: cannot fit '{options.model}' ({exc})") from None
    seconds = time.perf_counter() - t0
    val_oa = fitted.pop("val_oa", None)
    selection = "validation" if options.model == "svm" else "final"
    _write_bundle(
        model,
        prep,
        prepared_path,
        output,
        options,
        fitted,
        1,
        {"device": "cpu", "best_epoch": None, "selection": selection, "val_oa": val_oa, "seconds": seconds},
        None,
        overwrite,
    )
    console.info(f"{seconds:.1f} s; wrote {output}")
    return TrainResult(best_epoch=0, val_oa=val_oa, selection=selection, seconds=seconds, history=[])
