"""Stage ``predict-map``: scene + model bundle -> georeferenced class-map GeoTIFF.

Every pixel is classified, borders included (reflect padding). The scene is preprocessed with
the bundle's own standardisation + PCA; pixels that are nodata/NaN/all-zero in the input get
class 0 (nodata). This version holds the scene in memory; inference runs in batches of patches
gathered from the padded tensor.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import console
from .bundle import build_model, bundle_preprocessing, load_bundle
from .errors import InputError
from .fileutil import atomic_output, check_output
from .io import read_cube, write_class_map
from .runtime import tune_allocator
from .patches import pad_cube, predict_pixels, resolve_device


def predict_map(
    scene_path: str | Path,
    model_path: str | Path,
    output: str | Path,
    *,
    device: str = "auto",
    batch_size: int = 1024,
    key: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Write the class map; returns a summary (pixels, per-class counts, seconds, pixels/s)."""
    check_output(output, overwrite)
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    t0 = time.perf_counter()
    tune_allocator()
    bundle = load_bundle(model_path)
    scene = read_cube(scene_path, key=key)
    prep = bundle_preprocessing(bundle)
    h, w, b = scene.data.shape
    if b != prep.n_bands:
        raise InputError(f"{scene.path}: has {b} bands but the model {Path(model_path).name} expects {prep.n_bands}")
    if scene.crs is None:
        console.warn(f"{scene.path.name} has no CRS; the map is written on the pixel grid")
    patch = bundle["model"]["patch_size"]
    if h < patch or w < patch:
        raise InputError(f"{scene.path}: the scene is {h}x{w} px, smaller than one {patch}x{patch} patch")
    valid = scene.valid_mask()
    feats = np.zeros((h, w, prep.n_components), np.float32)
    feats[valid] = prep.apply(scene.data[valid])
    dev = resolve_device(device)
    model = build_model(bundle).to(dev)
    padded = pad_cube(torch.from_numpy(np.ascontiguousarray(feats.transpose(2, 0, 1))).to(dev), patch)
    rows, cols = np.nonzero(valid)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.long, device=dev)  # noqa: E731
    with console.progress() as bar:
        task = bar.add_task("predict", total=int(rows.size), status="") if bar else None
        step = (lambda k: bar.update(task, advance=k)) if bar else None
        pred = predict_pixels(model, padded, as_t(rows), as_t(cols), patch, batch_size=batch_size, on_batch=step)
    classes = np.zeros((h, w), np.uint16)
    classes[rows, cols] = pred.cpu().numpy().astype(np.uint16) + 1
    with atomic_output(output, overwrite) as tmp:
        write_class_map(
            tmp,
            classes,
            crs=scene.crs,
            transform=scene.transform,
            palette=[tuple(c) for c in bundle["palette"]],
            class_names=list(bundle["class_names"]),
        )
    seconds = time.perf_counter() - t0
    counts = np.bincount(classes.ravel(), minlength=len(bundle["class_names"]) + 1)
    summary = {
        "map": str(output),
        "pixels": int(h * w),
        "classified": int(rows.size),
        "nodata": int(h * w - rows.size),
        "per_class": {name: int(counts[k]) for k, name in enumerate(bundle["class_names"], start=1)},
        "seconds": seconds,
        "pixels_per_second": rows.size / seconds if seconds > 0 else None,
    }
    console.info(f"classified {rows.size} px in {seconds:.1f} s; wrote {output}")
    return summary
