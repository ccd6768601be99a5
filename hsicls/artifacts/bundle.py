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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hsicls import __version__

if TYPE_CHECKING:
    import torch
from hsicls.artifacts.prepared import Preprocessing
from hsicls.errors import HsiclsError, InputError, OutputExistsError, first_line
from hsicls.io.disk import write_via_memory
from hsicls.io.guard import Declared, OutputSet, note_input

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
        from hsicls.models import create_model

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
        import torch

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
        try:
            model = self.model.create()
        except (HsiclsError, ValueError, TypeError) as exc:
            raise InputError(f"{where}: cannot build its '{self.model.name}' network ({first_line(exc)[:160]})") from None
        try:
            model.load_state_dict(self.state_dict)
        except (KeyError, RuntimeError, TypeError) as exc:
            raise InputError(
                f"{where}: its weights do not fit this hsicls's '{self.model.name}' ({type(exc).__name__}: {first_line(exc)[:120]})"
            ) from None
        return model.eval()


def _band_record(bands, path) -> dict | None:
    """The training scenes' band record, checked: ``count`` a positive integer, ``wavelengths`` and
    ``fwhm`` absent or ``count`` finite numbers, ``bad_bands`` absent or 1-based band numbers."""
    if bands is None:
        return None
    where = f"{path}: damaged hsicls model bundle (band record"
    if not isinstance(bands, dict):
        raise InputError(f"{where} is a {type(bands).__name__}, not a table)")
    count = bands.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError(f"{where}: count {count!r} is not a positive integer)")
    out = dict(bands)
    for key in ("wavelengths", "fwhm"):
        v = bands.get(key)
        if v is None:
            continue
        ok = isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        if not ok or not all(math.isfinite(x) for x in v):
            raise InputError(f"{where}: {key} must be finite numbers)")
        if len(v) != count:
            if key == "wavelengths":
                raise InputError(f"{where}: {len(v)} wavelengths for {count} bands)")
            out["fwhm"] = None  # bundles of cubes with an all-NaN band kept one FWHM too many: unknown
    bad = bands.get("bad_bands")
    if bad is not None and not (isinstance(bad, (list, tuple)) and all(isinstance(b, int) and b >= 1 for b in bad)):
        raise InputError(f"{where}: bad_bands must be 1-based band numbers)")
    return out


def save_bundle(path: Path, bundle: Bundle) -> None:
    """Serialised in memory, then written with one checked write (a full disk is a clean ENOSPC)."""
    import torch

    write_via_memory(Path(path), lambda buf: torch.save(bundle.to_dict(), buf))


# What a file that is not a bundle is, from its first bytes (arguments swapped, a wrong file).
_MAGIC = (
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file; a prepared file from 'hsicls preprocess'?"),
    (b"II*\x00", "a TIFF raster"),
    (b"MM\x00*", "a TIFF raster"),
    (b"II+\x00", "a BigTIFF raster"),
    (b"MM\x00+", "a BigTIFF raster"),
    (b"\x93NUMPY", "a NumPy array"),
    (b"MATLAB", "a MATLAB file"),
    (b"\x89PNG", "a PNG image"),
    (b"{", "a text/JSON file"),
)
# Modules a weights-only torch file may name; any other global in a pickle is code to run.
_SAFE_MODULES = ("torch", "collections", "_codecs")


def _pickle_of(path: Path, head: bytes) -> bytes | None:
    """The pickle stream of a torch file (its ``data.pkl`` member) or of a bare pickle."""
    import zipfile

    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                return zf.read(member) if member else None
        except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
            return None
    return path.read_bytes() if head[:1] == b"\x80" else None


def _pickled_code(data: bytes | None) -> bool:
    """True if the pickle names a callable outside torch's own (``os.system``, ``builtins.eval``...);
    read with :mod:`pickletools`, which parses the stream without running any of it."""
    import pickletools

    if not data:
        return False
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                strings.append(arg)
            if op.name in ("GLOBAL", "INST"):
                module = str(arg).split(" ")[0]
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                module = strings[-2]
            else:
                continue
            if module.split(".")[0] not in _SAFE_MODULES:
                return True
    except Exception:  # garbage after a valid start: judge what was read
        pass
    return False


def _refusal(path: Path) -> InputError | None:
    """What the file plainly is when it cannot be a bundle, from its bytes alone (no unpickling,
    no torch): missing, a folder, empty, another format, or a pickle that names code to run."""
    if not path.exists():
        return InputError(f"{path}: no such file")
    if path.is_dir():
        return InputError(f"{path}: is a directory, expected a model bundle file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        if not head:
            return InputError(f"{path}: not an hsicls model bundle (the file is empty)")
        for magic, what in _MAGIC:
            if head.startswith(magic):
                return InputError(f"{path}: not an hsicls model bundle (it is {what})")
        if _pickled_code(_pickle_of(path, head)):
            return InputError(f"{path}: contains executable pickle data; refused (not an hsicls model bundle)")
    except OSError as exc:
        return InputError(f"{path}: cannot read ({exc.strerror or exc})")
    return None


def training_outputs(output: str | Path, resume: bool = False) -> OutputSet:
    """What ``train`` writes (the stage's declaration, kept here so the CLI checks it before torch is imported):
    the bundle; its log ``OUTPUT.log.jsonl`` (an earlier run's log is that run's record: replaced only with
    ``--overwrite``, or continued with ``--resume``); the checkpoint ``OUTPUT.ckpt``, replaced every epoch (an
    interrupted run's is kept unless ``--resume`` or ``--overwrite``)."""
    output = Path(output)
    return OutputSet(
        Declared("bundle", output),
        Declared("log", output.with_name(output.name + ".log.jsonl"), sidecar=resume),
        Declared("checkpoint", output.with_name(output.name + ".ckpt"), sidecar=True),
    )


def guard_training_outputs(output: str | Path, resume: bool, overwrite: bool, inputs: list) -> OutputSet:
    """:func:`training_outputs` checked: where an interrupted run's checkpoint lies beside the output, the
    refusal names ``--resume`` (following a bare "pass --overwrite" would throw the checkpoint away)."""
    declared = training_outputs(output, resume)
    try:
        return declared.guard(overwrite or resume, inputs=inputs)
    except OutputExistsError as exc:
        ckpt = declared["checkpoint"]
        if ckpt.exists() and not resume:
            raise OutputExistsError(
                f"{ckpt}: an interrupted run's checkpoint is here; continue it with the same command and --resume, "
                f"or pass --overwrite to start over"
            ) from None
        raise exc from None


def _unreadable(path: Path) -> InputError:
    """Why ``torch.load(weights_only=True)`` refused ``path``, in hsicls's words (never torch's
    advice to load it with ``weights_only=False``)."""
    refusal = _refusal(path)
    if refusal is not None:
        return refusal
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    kind = "a damaged or truncated torch file" if zipped else "unknown format"
    return InputError(f"{path}: not an hsicls model bundle ({kind})")


def load_bundle(path: str | Path) -> Bundle:
    """Load and check a bundle (``weights_only=True``: no code is unpickled); every problem is one
    :class:`InputError` naming the file and what it is or lacks."""
    import warnings

    path = Path(path)
    refusal = _refusal(path)  # what is plainly not a bundle, refused before torch is imported
    if refusal is not None:
        raise refusal
    import torch

    note_input(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are not for our users
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise _unreadable(path) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputError(f"{path}: not an hsicls model bundle (train one with 'hsicls train')")
    version = raw.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"{path}: bundle format {version} is newer than this hsicls understands")
    try:
        return _from_dict(raw, path)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise InputError(f"{path}: damaged hsicls model bundle ({type(exc).__name__}: {first_line(exc)[:100]})") from None


def _part(raw: dict, key: str, kind: type | tuple, path: Path, where: str = "") -> Any:
    if key not in raw:
        raise InputError(f"{path}: incomplete hsicls model bundle (missing '{where}{key}')")
    v = raw[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is int:
        raise InputError(f"{path}: damaged hsicls model bundle ('{where}{key}' is {type(v).__name__})")
    return v


def _check_model(spec: ModelSpec, path: Path) -> None:
    from hsicls.models import list_models

    if spec.name not in list_models():
        raise InputError(
            f"{path}: made with model '{spec.name}', which this hsicls does not have (known: {', '.join(list_models())})"
        )
    if spec.n_classes < 2:
        raise InputError(f"{path}: a model of {spec.n_classes} class cannot classify (at least 2 are needed)")
    if spec.in_bands < 1 or spec.patch_size < 1:
        raise InputError(f"{path}: damaged hsicls model bundle ({spec.in_bands} bands, patch {spec.patch_size})")


def _from_dict(raw: dict, path: Path) -> Bundle:
    from hsicls.engine.patches import PAD_MODES

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
    _check_model(spec, path)
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
    import torch

    masks = {k: v.numpy().astype(bool) for k, v in (raw.get("split_masks") or {}).items()}
    temp = raw.get("temperature")
    weights = _part(raw, "state_dict", dict, path)
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise InputError(f"{path}: damaged hsicls model bundle ('state_dict' holds something other than tensors)")
    return Bundle(
        model=spec,
        state_dict=weights,
        preprocessing=prep,
        class_names=names,
        class_values=values,
        palette=palette,
        training=training,
        split_masks=masks,
        temperature=None if temp is None else float(temp),
        bands=_band_record(raw.get("bands"), path),
        hsicls_version=str(raw.get("hsicls_version", "")),
        path=path,
    )
