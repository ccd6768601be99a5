"""The model bundle: one self-contained file, the hand-off between train, evaluate and predict-map.

Stored as a plain dict of tensors, strings, numbers and lists, so that it loads with
``torch.load(path, weights_only=True)`` (no pickled code); read and written only through the
typed :class:`Bundle` (and its :class:`ModelSpec`), which checks every part on load::

    format="hsicls-bundle", format_version=2, hsicls_version
    model         {name, options, in_bands, n_classes, patch_size, padding}
    state_dict    the weights
    preprocessing {mean, std, pca_components, pca_mean}  (tensors, float64)
    n_bands       bands of the raw scene the preprocessing expects (= len(mean))
    class_names, class_values (original label codes), palette
    training      {config (the effective train options), best_epoch, selection, val_oa, split, ...}
    split_masks   {train, val, test}: (H, W) bool tensors of the training scene
    temperature   confidence calibration (softmax(logits / T)); absent or None = not calibrated
    bands         {count, wavelengths, fwhm, bad_bands} of the training scenes; absent = unknown

Version 1 (before 2026-12) kept ``patch_size`` and ``padding`` in ``training`` too; they are
read from ``model`` (a missing ``padding`` means reflect) and dropped from the training record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .errors import InputError, first_line
from .patches import PAD_MODES
from .prepared import Preprocessing

FORMAT = "hsicls-bundle"
FORMAT_VERSION = 2


@dataclass
class ModelSpec:
    """What builds the network: registry name, options and the shapes it was trained for."""

    name: str
    options: dict[str, Any]
    in_bands: int
    n_classes: int
    patch_size: int
    padding: str = "reflect"

    def create(self) -> torch.nn.Module:
        from .models import create_model

        return create_model(
            self.name, in_bands=self.in_bands, n_classes=self.n_classes, patch_size=self.patch_size, **self.options
        )


@dataclass
class Bundle:
    model: ModelSpec
    state_dict: dict[str, torch.Tensor]
    preprocessing: Preprocessing
    class_names: list[str]
    class_values: list[int]
    palette: list[tuple[int, int, int]]
    training: dict[str, Any] = field(default_factory=dict)
    split_masks: dict[str, np.ndarray] = field(default_factory=dict)
    temperature: float | None = None
    bands: dict | None = None  # {count, wavelengths, fwhm, bad_bands} of the training scenes (None: unknown)
    hsicls_version: str = __version__
    path: Path | None = None  # where it was loaded from (not stored)

    @property
    def n_classes(self) -> int:
        return self.model.n_classes

    @property
    def n_bands(self) -> int:
        return self.preprocessing.n_bands

    def to_dict(self) -> dict[str, Any]:
        m = self.model
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "hsicls_version": __version__,
            "model": {
                "name": m.name,
                "options": {str(k): v for k, v in m.options.items()},
                "in_bands": int(m.in_bands),
                "n_classes": int(m.n_classes),
                "patch_size": int(m.patch_size),
                "padding": str(m.padding),
            },
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict.items()},
            "preprocessing": {
                k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in self.preprocessing.to_dict().items()
            },
            "n_bands": int(self.preprocessing.n_bands),
            "class_names": list(self.class_names),
            "class_values": [int(v) for v in self.class_values],
            "palette": [[int(c) for c in rgb] for rgb in self.palette],
            "training": self.training,
            "split_masks": {k: torch.from_numpy(np.asarray(v, dtype=bool)) for k, v in self.split_masks.items()},
            "temperature": None if self.temperature is None else float(self.temperature),
            "bands": self.bands,
        }

    def build_model(self) -> torch.nn.Module:
        """The network with its weights loaded, in eval mode."""
        where = self.path or "model bundle"
        model = self.model.create()
        try:
            model.load_state_dict(self.state_dict)
        except (KeyError, RuntimeError, TypeError) as exc:
            raise InputError(
                f"{where}: its weights do not fit this hsicls's '{self.model.name}' ({type(exc).__name__}: {first_line(exc)[:120]})"
            ) from None
        return model.eval()


def save_bundle(path: Path, bundle: Bundle) -> None:
    torch.save(bundle.to_dict(), path)


def load_bundle(path: str | Path) -> Bundle:
    """Load and check a bundle (``weights_only=True``: no code is unpickled); every problem is one
    :class:`InputError` naming the file and the part."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a model bundle file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise InputError(f"{path}: contains executable pickle data; refused (not an hsicls model bundle)") from None
        raise InputError(f"{path}: not an hsicls model bundle (unreadable: {type(exc).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputError(f"{path}: not an hsicls model bundle (train one with 'hsicls train')")
    version = raw.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"{path}: bundle format {version} is newer than this hsicls understands")
    return _from_dict(raw, path)


def _part(raw: dict, key: str, kind: type | tuple, path: Path, where: str = "") -> Any:
    if key not in raw:
        raise InputError(f"{path}: incomplete hsicls model bundle (missing '{where}{key}')")
    v = raw[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is int:
        raise InputError(f"{path}: damaged hsicls model bundle ('{where}{key}' is {type(v).__name__})")
    return v


def _from_dict(raw: dict, path: Path) -> Bundle:
    m = _part(raw, "model", dict, path)
    spec = ModelSpec(
        name=_part(m, "name", str, path, "model."),
        options=dict(_part(m, "options", dict, path, "model.")),
        in_bands=_part(m, "in_bands", int, path, "model."),
        n_classes=_part(m, "n_classes", int, path, "model."),
        patch_size=_part(m, "patch_size", int, path, "model."),
        padding=m.get("padding", "reflect"),
    )
    if spec.padding not in PAD_MODES:
        raise InputError(f"{path}: model bundle has an unknown padding mode {spec.padding!r}")
    pre = _part(raw, "preprocessing", dict, path)
    try:
        prep = Preprocessing.from_dict({k: pre[k].numpy() for k in ("mean", "std", "pca_components", "pca_mean")})
    except (KeyError, AttributeError, TypeError) as exc:
        raise InputError(f"{path}: damaged hsicls model bundle (preprocessing: {first_line(exc)})") from None
    names = [str(n) for n in _part(raw, "class_names", list, path)]
    values = [int(v) for v in raw.get("class_values", range(1, len(names) + 1))]
    palette = [tuple(int(c) for c in rgb) for rgb in _part(raw, "palette", list, path)]
    if not len(names) == len(values) == len(palette) == spec.n_classes:
        raise InputError(
            f"{path}: damaged hsicls model bundle ({spec.n_classes} classes in the model, {len(names)} names, {len(palette)} colours)"
        )
    if int(raw.get("n_bands", prep.n_bands)) != prep.n_bands:
        raise InputError(f"{path}: damaged hsicls model bundle (n_bands {raw['n_bands']} but {prep.n_bands} band means)")
    training = dict(raw.get("training") or {})
    if raw.get("format_version", 1) < 2:  # v1 kept these twice
        training.pop("patch_size", None)
        training.pop("padding", None)
    masks = {k: v.numpy().astype(bool) for k, v in (raw.get("split_masks") or {}).items()}
    temp = raw.get("temperature")
    return Bundle(
        model=spec,
        state_dict=_part(raw, "state_dict", dict, path),
        preprocessing=prep,
        class_names=names,
        class_values=values,
        palette=palette,
        training=training,
        split_masks=masks,
        temperature=None if temp is None else float(temp),
        bands=raw.get("bands") if isinstance(raw.get("bands"), dict) else None,
        hsicls_version=str(raw.get("hsicls_version", "")),
        path=path,
    )
