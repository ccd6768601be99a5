"""Stage ``evaluate``: model bundle + prepared HDF5 -> OA, AA, kappa, per-class accuracy, confusion matrix.

Scores the test split only. The bundle must match the prepared file: same classes, same
preprocessing (bands and PCA), otherwise the numbers would be meaningless and it is an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import console
from .bundle import build_model, bundle_preprocessing, load_bundle
from .errors import HsiclsError
from .metrics import classification_report
from .runtime import tune_allocator
from .patches import pad_cube, predict_pixels, resolve_device
from .prepared import load_prepared


def check_compatible(bundle: dict, prep, model_path, prepared_path) -> None:
    if list(bundle["class_names"]) != list(prep.class_names):
        raise HsiclsError(
            f"{model_path}: the model's classes ({len(bundle['class_names'])}: {', '.join(bundle['class_names'][:4])}...) "
            f"differ from those of {prepared_path} ({len(prep.class_names)})"
        )
    mine = bundle_preprocessing(bundle)
    theirs = prep.preprocessing
    if mine.n_bands != theirs.n_bands or mine.components.shape != theirs.components.shape:
        raise HsiclsError(
            f"{model_path}: the model expects {mine.n_bands} bands reduced to {mine.n_components}, "
            f"but {prepared_path} has {theirs.n_bands} bands reduced to {theirs.n_components}"
        )
    same = all(np.allclose(a, b) for a, b in [(mine.mean, theirs.mean), (mine.std, theirs.std),
                                              (mine.components, theirs.components), (mine.pca_mean, theirs.pca_mean)])
    if not same:
        raise HsiclsError(f"{model_path}: {prepared_path} was preprocessed differently from the model's training data")
    masks = bundle.get("split_masks") or {}
    seen = None
    for k in ("train", "val"):
        if k in masks and tuple(masks[k].shape) == prep.test.shape:
            m = masks[k].numpy()
            seen = m if seen is None else (seen | m)
    if seen is not None and (seen & prep.test).any():
        raise HsiclsError(
            f"{prepared_path}: its test split holds {int((seen & prep.test).sum())} pixels the model {model_path} "
            f"was trained or selected on; evaluate on the prepared file it was trained from"
        )


def evaluate(model_path: str | Path, prepared_path: str | Path, device: str = "auto", batch_size: int = 1024) -> dict:
    """Returns a JSON-ready report: metrics plus what produced them (split protocol, seeds, counts)."""
    tune_allocator()
    if batch_size < 1:
        raise HsiclsError(f"--batch-size must be >= 1, got {batch_size}")
    bundle = load_bundle(model_path)
    prep = load_prepared(prepared_path)
    check_compatible(bundle, prep, model_path, prepared_path)
    dev = resolve_device(device)
    model = build_model(bundle).to(dev)
    patch = bundle["model"]["patch_size"]
    cube = torch.from_numpy(np.ascontiguousarray(prep.cube.transpose(2, 0, 1))).to(dev)
    padded = pad_cube(cube, patch)
    rows, cols = np.nonzero(prep.test)
    if rows.size == 0:
        raise HsiclsError(f"{prepared_path}: the test split is empty")
    y_true = prep.labels[rows, cols] - 1
    as_t = lambda a: torch.as_tensor(a, dtype=torch.long, device=dev)  # noqa: E731
    pred = predict_pixels(model, padded, as_t(rows), as_t(cols), patch, batch_size=batch_size).cpu().numpy()
    report = classification_report(y_true, pred, prep.n_classes)
    training = bundle.get("training", {})
    report.update(
        {
            "model": str(model_path),
            "model_name": bundle["model"]["name"],
            "prepared": str(prepared_path),
            "class_names": list(prep.class_names),
            "test_pixels": int(rows.size),
            "train_pixels_per_class": np.bincount(prep.labels[prep.train], minlength=prep.n_classes + 1)[1:].astype(int).tolist(),
            "split": prep.meta.get("split", {}),
            "fit_on": prep.meta.get("fit_on", "all"),
            "selection": training.get("selection"),
            "best_epoch": training.get("best_epoch"),
        }
    )
    return report


def render_report(report: dict) -> None:
    """The metrics as a rich table on stderr."""
    from rich.table import Table

    split = report.get("split", {})
    proto = f"{split.get('protocol', '?')} split, train ratio {split.get('train_ratio', '?')}, seed {split.get('seed', '?')}"
    table = Table(title=f"{report['model_name']} on the test split ({report['test_pixels']} px; {proto})")
    table.add_column("class")
    table.add_column("train px", justify="right")
    table.add_column("test px", justify="right")
    table.add_column("accuracy", justify="right")
    for name, ntr, sup, acc in zip(report["class_names"], report["train_pixels_per_class"], report["support"], report["per_class"]):
        table.add_row(name, str(ntr), str(sup), "-" if acc is None else f"{100 * acc:.2f}")
    table.add_section()
    table.add_row("OA", "", "", f"{100 * report['oa']:.2f}")
    table.add_row("AA", "", "", f"{100 * report['aa']:.2f}")
    table.add_row("kappa", "", "", f"{100 * report['kappa']:.2f}")
    console.err_console().print(table)
