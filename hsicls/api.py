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

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsicls import console
from hsicls.config import AssessOptions, EvaluateOptions, MapOptions, PreprocessOptions, SampleOptions, TrainOptions
from hsicls.errors import InputError, OptionError

if TYPE_CHECKING:  # numpy is imported when an array is met: the CLI starts without it
    import numpy as np

__all__ = [
    "Model",
    "Prediction",
    "assess",
    "download",
    "evaluate",
    "list_datasets",
    "list_models",
    "model_info",
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


@contextmanager
def _command():
    """One command's scope (:func:`hsicls.io.guard.command_scope`: the inputs that outputs may not be, the output
    locks); the CLI's when it called us."""
    from hsicls.io.guard import command_scope, in_command

    if in_command():
        yield
        return
    with command_scope():
        yield


def _paths(p) -> list:
    return [] if p is None else [p] if isinstance(p, (str, Path)) else list(p)


def preprocess(
    scene=None,
    labels=None,
    output=None,
    options: PreprocessOptions | None = None,
    *,
    dataset: str | None = None,
    data_dir=None,
    overwrite: bool = False,
    **overrides,
):
    """``hsicls preprocess``: scene(s) + labels, or a registered ``dataset``, -> a prepared HDF5 file ``output``;
    returns the :class:`~hsicls.artifacts.prepared.Prepared` data written. ``scene`` and ``labels`` may be lists
    (several scenes, several label files)."""
    from hsicls.io.guard import check_folder, note_input
    from hsicls.stages.preprocess import declare_outputs, scene_inputs
    from hsicls.stages.preprocess import preprocess as run

    if output is None:
        raise OptionError("preprocess needs the output file (-o/--output)")
    o = _options(PreprocessOptions, options, overrides)
    scenes, label_files = _paths(scene), _paths(labels)
    with _command():
        declare_outputs(Path(output)).guard(overwrite, inputs=[*scenes, *label_files, o.train_mask, o.test_mask])
        data_dir = check_folder(data_dir, "--data-dir")
        scene_path, label_paths, o = scene_inputs(scene, label_files, dataset, data_dir, o)
        note_input(*(scene_path if isinstance(scene_path, list) else [scene_path]), *label_paths, o.train_mask, o.test_mask)
        return run(scene_path, label_paths, output, o, overwrite=overwrite)


def train(
    prepared=None,
    output=None,
    options: TrainOptions | None = None,
    *,
    dataset: str | None = None,
    data_dir=None,
    runs: int = 1,
    runs_parallel: bool | None = None,
    folds_all: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    **overrides,
):
    """``hsicls train``: a prepared file (or a registered ``dataset``) -> a model bundle ``output``. Returns the
    :class:`~hsicls.stages.train.TrainResult` (kept epoch, validation OA, seconds, history); with ``runs > 1`` or
    ``folds_all`` the summary dict (mean ± std, per-run reports); under torchrun ``None`` on ranks other than 0.
    With ``dataset`` and no ``options``, the scene's paper settings (patch size, learning rate, md2f-mamba) apply
    where no keyword argument sets them; ``options`` given are used as they are."""
    from hsicls.stages.jobs import train_job

    if output is None:
        raise OptionError("train needs the output bundle (-o/--output)")
    o = _options(TrainOptions, options, overrides)
    if dataset is not None:
        from hsicls.datasets import get_dataset
        from hsicls.stages.train import dataset_defaults

        get_dataset(dataset)  # an unknown name fails here
        if options is None:
            o = dataset_defaults(o, set(overrides), dataset).validate()
    with _command():
        return train_job(prepared, output, o, dataset=dataset, data_dir=data_dir, runs=runs, runs_parallel=runs_parallel,
                         folds_all=folds_all, resume=resume, overwrite=overwrite)  # fmt: skip


def evaluate(
    bundle, prepared, options: EvaluateOptions | None = None, *, report=None, plot=None, overwrite: bool = False, **overrides
) -> dict:
    """``hsicls evaluate``: OA, AA, kappa, per class, confusion matrix, calibration, provenance (the ``--json`` dict,
    with the split masks). ``report``: also write ``REPORT.json/.csv/.md``; ``plot``: the confusion matrix PNG and
    the reliability diagram beside it."""
    from hsicls.stages.evaluate import declare_outputs, plot_confusion, plot_reliability, write_report_files
    from hsicls.stages.evaluate import evaluate as run

    o = _options(EvaluateOptions, options, overrides)
    report, plot = (None if p is None else Path(p) for p in (report, plot))
    with _command():
        outputs = declare_outputs(report, plot).guard(overwrite, inputs=[bundle, prepared])
        result = run(bundle, prepared, o)
        if report is not None:
            for p in write_report_files(result, outputs, overwrite):
                console.info(f"wrote {p}")
        if plot is not None:
            plot_confusion(result, outputs["plot"], overwrite)
            plot_reliability(result, outputs["reliability"], overwrite)
            console.info(f"wrote {outputs['plot']} and {outputs['reliability']}")
        return result


def predict_map(scene, bundle, output=None, options: MapOptions | None = None, *, out_dir=None, confidence=None,
                probabilities=None, preview=None, overwrite: bool = False, **overrides) -> dict | None:  # fmt: skip
    """``hsicls predict-map``: the class map GeoTIFF ``output`` of one scene (and the optional confidence,
    probabilities and preview), or one map per scene (several scenes, or ``out_dir``: ``DIR/<stem>_map.tif``; names
    with ``{stem}``). Returns the summary (several scenes: ``{"maps", "skipped", "failed"}``); under torchrun the
    ranks share the work and ranks other than 0 return ``None``."""
    from hsicls.stages.jobs import map_job

    o = _options(MapOptions, options, overrides)
    with _command():
        return map_job(_paths(scene), bundle, o, output=output, out_dir=out_dir, confidence=confidence,
                       probabilities=probabilities, preview=preview, overwrite=overwrite)  # fmt: skip


def assess(maps, reference, options: AssessOptions | None = None, *, report=None, overwrite: bool = False, **overrides) -> dict:
    """``hsicls assess``: error matrix, accuracies and area estimates of one map or several (the ``--json`` dict);
    ``report``: also write ``REPORT.json/.csv/.md``."""
    from hsicls.stages.assess import assess_maps, declare_outputs, write_assessment_files

    maps, o = _paths(maps), _options(AssessOptions, options, overrides)
    report = None if report is None else Path(report)
    with _command():  # never over the reference or a map (a GeoJSON reference named REPORT.json)
        outputs = declare_outputs(report).guard(overwrite, inputs=[*maps, reference])
        result = assess_maps(maps, reference, o)
        if report is not None:
            for p in write_assessment_files(result, outputs, overwrite):
                console.info(f"wrote {p}")
        return result


def sample(maps, output, options: SampleOptions | None = None, *, overwrite: bool = False, **overrides) -> dict:
    """``hsicls sample``: a stratified reference sample of map(s) written to ``output``; returns its summary."""
    from hsicls.stages.sample import declare_outputs, sample_maps

    maps, o = _paths(maps), _options(SampleOptions, options, overrides)
    with _command():
        declare_outputs(Path(output)).guard(overwrite, inputs=maps)
        return sample_maps(maps, output, o, overwrite=overwrite)


def download(name: str, data_dir=None, *, timeout: float = 60.0, retries: int = 3, sources=()) -> list[Path]:
    """``hsicls download``: fetch a registered scene's files into ``data_dir`` (default ``$HSICLS_DATA`` or
    ``~/.cache/hsicls``), each sha256-checked, resuming; ``sources``: import files or folders obtained by hand
    instead (no network). Returns the files."""
    import math

    from hsicls.datasets import default_data_dir, download_dataset, get_dataset, import_file, import_folder
    from hsicls.io.guard import check_folder, note_input

    if not math.isfinite(timeout) or timeout <= 0:
        raise OptionError(f"--timeout must be a finite number of seconds > 0, got {timeout}")
    if retries < 0:
        raise OptionError(f"--retries must be >= 0, got {retries}")
    with _command():
        note_input(*sources)
        info = get_dataset(name)
        root = check_folder(data_dir, "--data-dir") or check_folder(default_data_dir(), "$HSICLS_DATA")
        if not sources:
            return list(download_dataset(info, root, timeout=timeout, retries=retries))
        out = []
        for src in map(Path, sources):
            out += import_folder(info, src, root) if src.is_dir() else [import_file(info, src, root)]
        return out


def list_datasets() -> list:
    """The registered benchmark scenes (``hsicls.datasets`` is the subpackage that holds them, so the function is named
    for what it does) (:class:`~hsicls.datasets.catalogue.DatasetInfo`: name, classes, sizes, files)."""
    from hsicls.datasets import list_datasets

    return list_datasets()


def list_models(bands: int = 30, patch_size: int = 13, classes: int = 16) -> list[dict]:
    """The registered models (``hsicls models``): name, kind, parameter count at the given sizes (None for fitted
    models and ensembles), description; ``auto`` (the default of :func:`train`) first."""
    from hsicls.models import create_model, get_entry
    from hsicls.models import list_models as names
    from hsicls.models.complexity import count_params

    rows = [{"name": "auto", "kind": "auto", "params": None,
             "description": "The default of 'train': rf, spectral-cnn and md2f-mamba, trained and averaged (chosen on validation)"}]  # fmt: skip
    for name in names():
        entry = get_entry(name)
        made = entry.fitted or not entry.trainable  # fitted, or assembled from trained members: no size of its own
        net = None if made else create_model(name, in_bands=bands, n_classes=classes, patch_size=patch_size)
        rows.append({"name": name, "kind": entry.kind, "params": None if net is None else count_params(net),
                     "description": entry.description})  # fmt: skip
    return rows


def model_info(model: str = "md2f-mamba", bands: int = 30, patch_size: int = 13, classes: int = 16, model_options=None) -> dict:
    """``hsicls model-info``: parameters per component, MACs and FLOPs per sample (``torch.utils.flop_counter``)."""
    from hsicls.errors import HsiclsError
    from hsicls.models.complexity import model_info as run

    try:
        return run(model, bands, patch_size, classes, dict(model_options or {}))
    except ValueError as exc:
        raise HsiclsError(f"model '{model}': {exc}") from None


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
    import numpy as np

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
