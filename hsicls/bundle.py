"""The model bundle: one self-contained file, the hand-off between train, evaluate and predict-map.

A plain dict of tensors, strings, numbers and lists, so that it loads with
``torch.load(path, weights_only=True)`` (no pickled code)::

    format="hsicls-bundle", format_version=1, hsicls_version
    model        {name, options, in_bands, n_classes, patch_size, padding}  (padding: reflect | zero;
                 bundles without it were trained with reflect padding)
    state_dict   the weights
    preprocessing {mean, std, pca_components, pca_mean}  (tensors, float64)
    n_bands      bands of the raw scene the preprocessing expects
    class_names, class_values, palette
    training     {epochs, best_epoch, selection, val_oa, lr, batch_size, seed, split, source, fit_on, ...}
    split_masks  {train, val, test}: (H, W) bool tensors of the training scene
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .errors import InputError, first_line
from .models import create_model
from .patches import PAD_MODES
from .prepared import Preprocessing

FORMAT = "hsicls-bundle"
FORMAT_VERSION = 1


def make_bundle(
    model: torch.nn.Module,
    *,
    model_name: str,
    options: dict[str, Any],
    in_bands: int,
    n_classes: int,
    patch_size: int,
    padding: str = "reflect",
    preprocessing: Preprocessing,
    class_names: list[str],
    class_values: list[int],
    palette: list[tuple[int, int, int]],
    training: dict[str, Any],
    split_masks: dict[str, np.ndarray] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    sd = state_dict if state_dict is not None else model.state_dict()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hsicls_version": __version__,
        "model": {
            "name": model_name,
            "options": {str(k): v for k, v in options.items()},
            "in_bands": int(in_bands),
            "n_classes": int(n_classes),
            "patch_size": int(patch_size),
            "padding": str(padding),
        },
        "state_dict": {k: v.detach().cpu().clone() for k, v in sd.items()},
        "preprocessing": {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in preprocessing.to_dict().items()},
        "n_bands": int(preprocessing.n_bands),
        "class_names": list(class_names),
        "class_values": [int(v) for v in class_values],
        "palette": [[int(c) for c in rgb] for rgb in palette],
        "training": training,
        "split_masks": {k: torch.from_numpy(np.asarray(v, dtype=bool)) for k, v in (split_masks or {}).items()},
    }


def save_bundle(path: Path, bundle: dict[str, Any]) -> None:
    torch.save(bundle, path)


def load_bundle(path: str | Path) -> dict[str, Any]:
    """Load and check a bundle (``weights_only=True``: no code is unpickled)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable hsicls model bundle ({first_line(exc)})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise InputError(f"{path}: not an hsicls model bundle (train one with 'hsicls train')")
    if bundle.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"{path}: bundle format {bundle['format_version']} is newer than this hsicls understands")
    return bundle


def bundle_preprocessing(bundle: dict[str, Any]) -> Preprocessing:
    return Preprocessing.from_dict({k: v.numpy() for k, v in bundle["preprocessing"].items()})


def bundle_padding(bundle: dict[str, Any]) -> str:
    """How the model's patches are padded beyond the scene border (``reflect`` or ``zero``)."""
    mode = bundle["model"].get("padding", "reflect")
    if mode not in PAD_MODES:
        raise InputError(f"model bundle has an unknown padding mode {mode!r}")
    return mode


def build_model(bundle: dict[str, Any]) -> torch.nn.Module:
    """The bundle's network with its weights loaded, in eval mode."""
    try:
        m = bundle["model"]
        model = create_model(
            m["name"], in_bands=m["in_bands"], n_classes=m["n_classes"], patch_size=m["patch_size"], **m["options"]
        )
        model.load_state_dict(bundle["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise InputError(
            f"model bundle does not match this hsicls's '{bundle.get('model', {}).get('name')}' ({type(exc).__name__}: "
            f"{first_line(exc)[:120]})"
        ) from None
    return model.eval()
