"""The Python API: one function per command, a model you can call on arrays, the registered scenes.

Everything here is importable from the package itself (``import hsicls; hsicls.train(...)``). Each command
function takes the same option dataclass its CLI flags are derived from (:mod:`hsicls.config`), or keyword
arguments checked the same way (``hsicls.train("p.h5", "m.pt", epochs=50)``), returns a result (a dataclass, or the
JSON-ready dict the CLI prints with ``--json``) and raises the tool's error kinds (:class:`hsicls.HsiclsError` and
its subclasses: ``InputError``, ``OptionError``, ``OutputExistsError`` ...), never ``SystemExit``. Nothing is printed
to stdout; logs go to stderr as in the CLI (``hsicls.console``).

    import hsicls
    hsicls.preprocess("scene.tif", "labels.gpkg", "p.h5", split="group", group_by="scene")
    result = hsicls.train("p.h5", "model.pt")                  # --model auto
    report = hsicls.evaluate("model.pt", "p.h5")               # {"oa": ..., "aa": ..., "kappa": ..., ...}
    model = hsicls.load_model("model.pt")
    pred = model.predict(cube)                                 # cube: (H, W, B) array, a path or a rasterio dataset
    pred.classes, pred.probabilities                           # (H, W) label codes, (K, H, W) calibrated
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsicls.config import AssessOptions, EvaluateOptions, MapOptions, PreprocessOptions, SampleOptions, TrainOptions
from hsicls.errors import InputError, OptionError

__all__ = [
    "Model",
    "Prediction",
    "assess",
    "list_datasets",
    "evaluate",
    "load_model",
    "predict_map",
    "preprocess",
    "sample",
    "train",
]


def _options(cls, options, overrides: dict):
    """``options`` (or the defaults) with ``overrides`` applied, checked as the CLI checks its flags."""
    if options is not None and not isinstance(options, cls):
        raise OptionError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    return (options or cls()).replace(**overrides).validate()


def preprocess(scene, labels, output, options: PreprocessOptions | None = None, *, overwrite: bool = False, **overrides):
    """``hsicls preprocess``: scene(s) + labels -> a prepared HDF5 file; returns the :class:`~hsicls.artifacts.prepared.Prepared`
    data written. ``scene`` and ``labels`` may be lists (several scenes, several label files)."""
    from hsicls.stages.preprocess import preprocess as run

    return run(scene, labels, output, _options(PreprocessOptions, options, overrides), overwrite=overwrite)


def train(prepared, output, options: TrainOptions | None = None, *, overwrite: bool = False, resume: bool = False, **overrides):
    """``hsicls train``: a prepared file -> a model bundle; returns the :class:`~hsicls.stages.train.TrainResult`
    (kept epoch, validation OA, seconds, history)."""
    from hsicls.stages.train import train as run

    return run(prepared, output, _options(TrainOptions, options, overrides), overwrite=overwrite, resume=resume)


def evaluate(model, prepared, options: EvaluateOptions | None = None, **overrides) -> dict:
    """``hsicls evaluate``: OA, AA, kappa, per class, confusion matrix, calibration, provenance (the ``--json`` dict)."""
    from hsicls.stages.evaluate import evaluate as run

    return run(model, prepared, _options(EvaluateOptions, options, overrides))


def predict_map(scene, model, output, options: MapOptions | None = None, *, overwrite: bool = False, confidence=None,
                probabilities=None, preview=None, **overrides) -> dict:  # fmt: skip
    """``hsicls predict-map`` of one scene: the class map GeoTIFF (and the optional rasters); returns the summary."""
    from hsicls.io.maps import MapOutputs
    from hsicls.stages.predict_map import predict_map as run

    outputs = MapOutputs(Path(output), *(None if p is None else Path(p) for p in (confidence, probabilities, preview)))
    return run(scene, model, outputs, _options(MapOptions, options, overrides), overwrite=overwrite)


def assess(maps, reference, options: AssessOptions | None = None, **overrides) -> dict:
    """``hsicls assess``: error matrix, accuracies and area estimates of one map or several (the ``--json`` dict)."""
    from hsicls.stages.assess import assess_maps

    maps = [maps] if isinstance(maps, (str, Path)) else list(maps)
    return assess_maps(maps, reference, _options(AssessOptions, options, overrides))


def sample(maps, output, options: SampleOptions | None = None, *, overwrite: bool = False, **overrides) -> dict:
    """``hsicls sample``: a stratified reference sample of map(s) written to ``output``; returns its summary."""
    from hsicls.stages.sample import sample_maps

    maps = [maps] if isinstance(maps, (str, Path)) else list(maps)
    return sample_maps(maps, output, _options(SampleOptions, options, overrides), overwrite=overwrite)


def list_datasets() -> list:
    """The registered benchmark scenes (``hsicls.datasets`` is the subpackage that holds them, so the function is named
    for what it does) (:class:`~hsicls.datasets.registry.DatasetInfo`: name, classes, sizes, files)."""
    from hsicls.datasets import list_datasets

    return list_datasets()


@dataclass
class Prediction:
    """Classes and calibrated probabilities of every pixel, in memory."""

    classes: np.ndarray  # (H, W) the labels' own codes, 0 = nodata
    probabilities: np.ndarray | None  # (K, H, W) float32, NaN at nodata; None when not asked for
    class_values: list[int]
    class_names: list[str]


@dataclass
class Model:
    """A trained model bundle, loaded (:func:`load_model`): call :meth:`predict` on arrays, files or open rasters."""

    bundle: Any  # hsicls.artifacts.bundle.Bundle

    @property
    def class_names(self) -> list[str]:
        return list(self.bundle.class_names)

    @property
    def class_values(self) -> list[int]:
        return list(self.bundle.class_values)

    @property
    def name(self) -> str:
        return self.bundle.model.name

    def predict(
        self, cube, *, probabilities: bool = True, wavelengths=None, options: MapOptions | None = None, **overrides
    ) -> Prediction:
        """Classify every pixel of ``cube``, writing nothing: an ``(H, W, B)`` array (bands matched by count, or by
        ``wavelengths`` in nm), a file or product path, or an open rasterio dataset. ``overrides`` are predict-map's
        options (``device``, ``batch_size``, ``precision``, ``mask``, ``resample_bands``, ``window`` ...). The classes
        equal those of ``hsicls predict-map`` on the same scene."""
        from hsicls.stages.predict_map import classify_source, fit_bands

        o = _options(MapOptions, options, overrides)
        source = fit_bands(_source(cube, wavelengths, o), self.bundle, o.resample_bands)
        if source.height < self.bundle.model.patch_size or source.width < self.bundle.model.patch_size:
            p = self.bundle.model.patch_size
            raise InputError(f"{source.path}: the cube is {source.height}x{source.width} px, smaller than one {p}x{p} patch")
        classes, probs = classify_source(source, self.bundle, o, probabilities)
        return Prediction(classes, probs, self.class_values, self.class_names)


def _source(cube, wavelengths, o: MapOptions):
    """A :class:`~hsicls.io.cube.CubeSource` of what :meth:`Model.predict` was given."""
    from hsicls.io.cube import ArrayPixels, Band, BandSet, CubeSource
    from hsicls.io.grid import GeoGrid
    from hsicls.io.readers import open_cube

    if isinstance(cube, (str, Path)):
        return open_cube(cube, o.key, o.nodata, o.mask)
    if hasattr(cube, "name") and hasattr(cube, "read") and hasattr(cube, "count"):  # an open rasterio dataset
        return open_cube(cube.name, o.key, o.nodata, o.mask)
    arr = np.asarray(cube)
    if arr.ndim != 3:
        raise InputError(f"<array>: expected an (H, W, B) cube, got shape {arr.shape}")
    b = arr.shape[2]
    if wavelengths is not None and len(wavelengths) != b:
        raise InputError(f"<array>: {len(wavelengths)} wavelengths for {b} bands")
    bands = BandSet([Band(i + 1, f"band {i + 1}", None if wavelengths is None else float(wavelengths[i])) for i in range(b)])
    return CubeSource(
        Path("<array>"), GeoGrid(arr.shape[0], arr.shape[1]), ArrayPixels(arr.astype(np.float32, copy=False)), bands, o.nodata
    )


def load_model(path) -> Model:
    """Load and check a model bundle (``torch.load(weights_only=True)``; a damaged or foreign file is an ``InputError``)."""
    from hsicls.artifacts.bundle import load_bundle

    return Model(load_bundle(path))
