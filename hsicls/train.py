"""Stage ``train``: prepared HDF5 -> model bundle.

Adam on cross-entropy over the training pixels' patches, gathered on the fly from one padded
tensor (on the training device). After every epoch the model is scored on the validation pixels
(carved from the training pixels); the bundle keeps the epoch with the best validation OA, or
the final epoch when there is no validation split. The test split is never looked at here.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import console
from .bundle import make_bundle, save_bundle
from .errors import HsiclsError
from .fileutil import atomic_output, check_output
from .models import create_model, get_entry
from .runtime import tune_allocator
from .patches import check_patch_size, gather_patches, pad_cube, predict_pixels, resolve_device
from .prepared import load_prepared


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


def train(prepared_path: str | Path, output: str | Path, options: TrainOptions = TrainOptions(), overwrite: bool = False) -> TrainResult:
    check_output(output, overwrite)
    check_patch_size(options.patch_size)
    if options.epochs < 1:
        raise HsiclsError(f"--epochs must be >= 1, got {options.epochs}")
    if options.batch_size < 1:
        raise HsiclsError(f"--batch-size must be >= 1, got {options.batch_size}")
    if not options.lr > 0:
        raise HsiclsError(f"--lr must be > 0, got {options.lr}")
    if options.seed < 0:
        raise HsiclsError(f"--seed must be >= 0, got {options.seed}")
    tune_allocator()
    prep = load_prepared(prepared_path)
    device = resolve_device(options.device)
    seed_everything(options.seed)
    entry = get_entry(options.model)
    if entry.kind == "classic":
        return _train_classic(entry, prep, prepared_path, output, options, overwrite)

    cube = torch.from_numpy(np.ascontiguousarray(prep.cube.transpose(2, 0, 1))).to(device)  # (C, H, W)
    padded = pad_cube(cube, options.patch_size)
    tr_rows, tr_cols, tr_y = _pixels(prep.train, prep.labels, device)
    va_rows, va_cols, va_y = _pixels(prep.val, prep.labels, device)
    if tr_rows.numel() == 0:
        raise HsiclsError(f"{prepared_path}: the training split is empty")
    n_classes, in_bands = prep.n_classes, prep.cube.shape[2]
    try:
        model = create_model(
            options.model, in_bands=in_bands, n_classes=n_classes, patch_size=options.patch_size, **options.model_options
        ).to(device)
    except ValueError as exc:
        raise HsiclsError(f"model '{options.model}': {exc}") from None
    opt = torch.optim.Adam(model.parameters(), lr=options.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator(device="cpu").manual_seed(options.seed)
    n = tr_rows.numel()
    bounds = batch_bounds(n, options.batch_size)
    missing = sorted(set(range(n_classes)) - set(tr_y.unique().tolist()))
    if missing:
        console.warn(f"{prepared_path}: no training pixel for class(es) {', '.join(prep.class_names[c] for c in missing)}")
    console.info(
        f"training {options.model} on {device.type}: {n} training px, {va_rows.numel()} validation px, "
        f"{n_classes} classes, {in_bands} bands, {options.patch_size}x{options.patch_size} patches"
    )

    best: dict = {"oa": -1.0, "epoch": 0, "state": None}
    history: list[dict] = []
    t0 = time.perf_counter()
    report_every = max(1, options.epochs // 10)
    with console.progress() as bar:
        task = bar.add_task("train", total=options.epochs, status="") if bar else None
        for epoch in range(1, options.epochs + 1):
            te = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=gen).to(device)
            total = 0.0
            for lo, hi in bounds:
                idx = order[lo:hi]
                x = gather_patches(padded, tr_rows[idx], tr_cols[idx], options.patch_size)
                loss = loss_fn(model(x), tr_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * idx.numel()
            mean_loss = total / n
            val_oa = None
            if va_rows.numel():
                pred = predict_pixels(model, padded, va_rows, va_cols, options.patch_size, batch_size=1024)
                val_oa = float((pred == va_y).float().mean())
                if val_oa > best["oa"]:
                    best = {"oa": val_oa, "epoch": epoch, "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            rec = {"epoch": epoch, "loss": mean_loss, "val_oa": val_oa, "seconds": time.perf_counter() - te}
            history.append(rec)
            status = f"loss {mean_loss:.4f}" + (f"  val OA {val_oa:.4f}" if val_oa is not None else "")
            if bar:
                bar.update(task, advance=1, status=status)
            elif epoch % report_every == 0 or epoch == options.epochs:
                console.info(f"epoch {epoch}/{options.epochs}  {status}")
    seconds = time.perf_counter() - t0

    if best["state"] is None:
        selection, best_epoch, val_oa, state = "final", options.epochs, None, None
    else:
        selection, best_epoch, val_oa, state = "validation", best["epoch"], best["oa"], best["state"]
    _write_bundle(model, prep, prepared_path, output, options, dict(options.model_options), options.patch_size,
                  {"device": device.type, "best_epoch": best_epoch, "selection": selection, "val_oa": val_oa,
                   "seconds": seconds}, state, overwrite)
    picked = f"epoch {best_epoch} (best validation OA {val_oa:.4f})" if val_oa is not None else f"final epoch {best_epoch} (no validation split)"
    console.info(f"kept {picked}; {seconds:.1f} s; wrote {output}")
    return TrainResult(best_epoch=best_epoch, val_oa=val_oa, selection=selection, seconds=seconds, history=history)


def _write_bundle(model, prep, prepared_path, output, options: TrainOptions, model_options: dict, patch_size: int,
                  record: dict, state, overwrite: bool) -> None:
    bundle = make_bundle(
        model,
        model_name=options.model,
        options=model_options,
        in_bands=prep.cube.shape[2],
        n_classes=prep.n_classes,
        patch_size=patch_size,
        preprocessing=prep.preprocessing,
        class_names=prep.class_names,
        class_values=prep.class_values,
        palette=prep.palette,
        training={
            **{k: v for k, v in asdict(options).items() if k != "model_options"},
            "patch_size": patch_size,
            **record,
            "split": prep.meta.get("split", {}),
            "fit_on": prep.meta.get("fit_on", "all"),
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
    _write_bundle(model, prep, prepared_path, output, options, fitted, 1,
                  {"device": "cpu", "best_epoch": None, "selection": selection, "val_oa": val_oa, "seconds": seconds},
                  None, overwrite)
    console.info(f"{seconds:.1f} s; wrote {output}")
    return TrainResult(best_epoch=0, val_oa=val_oa, selection=selection, seconds=seconds, history=[])
