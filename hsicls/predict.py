"""Stage ``predict-map``: scene + model bundle -> georeferenced class map, streamed window by window.

The scene is read in square windows of ``window`` pixels plus a halo of ``P // 2`` pixels
(padded with the bundle's mode, reflect or zero, where the halo leaves the scene, exactly as if
the whole scene had been padded), each window is preprocessed with the bundle's
standardisation + PCA, its patches are gathered on the compute device from the window tensor (one vectorised index per
batch), the model runs in batches of ``batch_size`` (bf16 autocast on GPU), and the result is
written into the output GeoTIFF with a windowed write. A background thread reads the next
window while the current one is classified.

The class map does not depend on the window size: every pixel sees the same patch as with a
single window covering the scene (batches differ, so confidences may differ in the last float
bits). Peak memory is bounded by the window, not the scene:
about ``(window + P)^2 x (B + C) x 4`` bytes for the raw and reduced window, plus one batch
(``batch_size x C x P^2 x 4`` bytes of patches and roughly 20x that in activations).

Pixels that are NaN/inf in any band, equal to nodata in every band, or zero in every band get
class 0 (nodata). ``reject_below`` gives the reserved class ``K + 1`` ("unknown") to pixels
whose maximum softmax probability is below the threshold.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import numpy as np
import torch

from . import console
from .bundle import Bundle, load_bundle
from .config import MapOptions
from .errors import HsiclsError, InputError
from .fileutil import check_output
from .inference import Runner
from .io import CubeSource, open_cube, valid_mask
from .mapwrite import UNKNOWN, UNKNOWN_COLOUR, MapOutputs, MapWriter, pixel_area
from .models import get_entry
from .patches import pad_sides
from .runtime import tune_allocator

__all__ = ["MapOptions", "MapOutputs", "predict_map"]


def _windows(h: int, w: int, size: int):
    for r0 in range(0, h, size):
        for c0 in range(0, w, size):
            yield r0, min(r0 + size, h), c0, min(c0 + size, w)


def _prefetch(source: CubeSource, wins: list, halo: int):
    """Read windows (with halo, clipped to the scene) in a background thread, one ahead.

    Errors in the reader reach the consumer; if the consumer stops early (an error, Ctrl-C),
    the reader is told to stop and its file is closed."""
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        read = None
        try:
            read = source.reader()
            for r0, r1, c0, c1 in wins:
                R0, R1 = max(0, r0 - halo), min(source.height, r1 + halo)
                C0, C1 = max(0, c0 - halo), min(source.width, c1 + halo)
                if not put(((r0, r1, c0, c1), (R0, R1, C0, C1), read(R0, R1, C0, C1))):
                    return
        except BaseException as exc:  # hand errors to the consumer
            put(exc)
        finally:
            if read is not None and hasattr(read, "close"):
                read.close()
            put(None)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def _check_inputs(scene_path: Path, model_path: Path, outputs: MapOutputs, overwrite: bool) -> None:
    resolved = [p.resolve() for p in outputs.all()]
    if len(set(resolved)) != len(resolved):
        raise HsiclsError("the map, --confidence, --probabilities and --preview need different file names")
    if set(resolved) & {scene_path.resolve(), model_path.resolve()}:
        raise HsiclsError("an output file name is the scene's or the model's")
    for p in outputs.all():
        check_output(p, overwrite)
    if not scene_path.exists():
        raise InputError(f"{scene_path}: no such file")


def _open_scene(scene_path: Path, bundle: Bundle, key: str | None, nodata: float | None = None) -> CubeSource:
    source = open_cube(scene_path, key, nodata)
    if source.bands != bundle.n_bands:
        raise InputError(f"{scene_path}: has {source.bands} bands but the model {bundle.path.name} expects {bundle.n_bands}")
    patch = bundle.model.patch_size
    if source.height < patch or source.width < patch:
        raise InputError(f"{scene_path}: the scene is {source.height}x{source.width} px, smaller than one {patch}x{patch} patch")
    if source.crs is None:
        console.warn(f"{scene_path.name} has no CRS; the map is written on the pixel grid")
    return source


class _Classifier:
    """Classifies one window: preprocessing, padding to the full halo, batched inference."""

    def __init__(self, bundle: Bundle, runner: Runner, options: MapOptions, need_probs: bool, want_probs: bool):
        self.bundle, self.runner, self.options = bundle, runner, options
        self.model = bundle.build_model().to(runner.device)
        self.patch, self.halo, self.k = bundle.model.patch_size, bundle.model.patch_size // 2, bundle.n_classes
        self.need_probs, self.want_probs = need_probs, want_probs

    def __call__(self, raw: np.ndarray, nodata, inner_box, outer_box):
        """``raw`` ``(R1-R0, C1-C0, B)`` of the window with its halo -> classes, confidence, probabilities of the window."""
        (r0, r1, c0, c1), (R0, R1, C0, C1) = inner_box, outer_box
        prep, halo, dev = self.bundle.preprocessing, self.halo, self.runner.device
        ok = valid_mask(raw, nodata)
        feats = np.zeros(raw.shape[:2] + (prep.n_components,), np.float32)
        feats[ok] = prep.apply(raw[ok])
        x = torch.from_numpy(np.ascontiguousarray(feats.transpose(2, 0, 1))).to(dev)
        pads = (halo - (c0 - C0), halo - (C1 - c1), halo - (r0 - R0), halo - (R1 - r1))
        x = pad_sides(x, pads, self.bundle.model.padding)  # (C, (r1-r0)+2h, (c1-c0)+2h): window + full halo
        inner = ok[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0]
        rows, cols = np.nonzero(inner)
        cls = np.zeros(inner.shape, np.uint16)
        conf = np.full(inner.shape, np.nan, np.float32)
        probs = np.full((self.k,) + inner.shape, np.nan, np.float32) if self.want_probs else None
        rr, cc = torch.as_tensor(rows, device=dev), torch.as_tensor(cols, device=dev)
        for sl, logits in self.runner.logits(self.model, x, rr, cc, self.patch):
            cls[rows[sl], cols[sl]] = logits.argmax(1).cpu().numpy() + 1
            if self.need_probs:
                p = torch.softmax(logits, 1)
                conf[rows[sl], cols[sl]] = p.max(1).values.cpu().numpy()
                if probs is not None:
                    probs[:, rows[sl], cols[sl]] = p.cpu().numpy().T
        if self.options.reject_below is not None:
            cls[(cls > 0) & (conf < self.options.reject_below)] = self.k + 1
        return cls, conf, probs, len(rows)


def predict_map(
    scene_path: str | Path,
    model_path: str | Path,
    outputs: MapOutputs | str | Path,
    options: MapOptions = MapOptions(),
    overwrite: bool = False,
) -> dict:
    """Write the class map (and the optional confidence/probability rasters and preview); returns the summary."""
    scene_path, model_path = Path(scene_path), Path(model_path)
    outputs = outputs if isinstance(outputs, MapOutputs) else MapOutputs(Path(outputs))
    _check_inputs(scene_path, model_path, outputs, overwrite)
    options.validate()
    tune_allocator()
    t0 = time.perf_counter()
    bundle = load_bundle(model_path)
    source = _open_scene(scene_path, bundle, options.key, options.nodata)
    runner = Runner.resolve(options.device, options.precision, options.batch_size)
    need_probs = outputs.confidence is not None or outputs.probabilities is not None or options.reject_below is not None
    if need_probs and not get_entry(bundle.model.name).probabilistic:
        console.warn(
            f"the {bundle.model.name} baseline outputs one-vs-one votes, not probabilities: its confidence is a softmax of votes"
        )
    names, palette = list(bundle.class_names), [tuple(c) for c in bundle.palette]
    if options.reject_below is not None:
        names, palette = names + [UNKNOWN], palette + [UNKNOWN_COLOUR]
    classify = _Classifier(bundle, runner, options, need_probs, outputs.probabilities is not None)
    counts, classified = _run_windows(source, classify, outputs, names, palette, options, overwrite)
    seconds = time.perf_counter() - t0
    summary = _summary(source, outputs, names, counts, classified, seconds, runner, options)
    console.info(f"classified {classified} px in {seconds:.1f} s ({summary['pixels_per_second']:,.0f} px/s); wrote {outputs.map}")
    return summary


def _run_windows(source: CubeSource, classify: _Classifier, outputs: MapOutputs, names, palette, options: MapOptions, overwrite):
    h, w = source.height, source.width
    counts = np.zeros(len(names) + 1, np.int64)
    classified = 0
    writer = MapWriter(
        outputs, h, w, source.crs, source.transform, names, palette, classify.k, options.confidence_dtype, options.cog, overwrite
    )
    from rasterio.windows import Window

    with writer, console.progress() as bar, torch.inference_mode():
        task = bar.add_task("predict", total=h * w, status="") if bar else None
        for inner, outer, raw in _prefetch(source, list(_windows(h, w, options.window)), classify.halo):
            cls, conf, probs, n = classify(raw, source.nodata, inner, outer)
            r0, r1, c0, c1 = inner
            writer.write(Window(c0, r0, c1 - c0, r1 - r0), cls, conf, probs)
            counts += np.bincount(cls.ravel(), minlength=len(names) + 1)[: len(names) + 1]
            classified += n
            if bar:
                bar.update(task, advance=(r1 - r0) * (c1 - c0))
        if classified == 0:  # inside the writer: no all-nodata map is left behind
            raise InputError(
                f"{source.path}: every pixel is nodata (NaN or inf in a band, the nodata value in every band, or zero in "
                f"every band); no map written"
            )
    return counts, classified


def _summary(
    source: CubeSource, outputs: MapOutputs, names, counts, classified, seconds, runner: Runner, options: MapOptions
) -> dict:
    h, w = source.height, source.width
    area, unit = pixel_area(source.transform, source.crs)
    summary = {
        "map": str(outputs.map),
        "pixels": int(h * w),
        "classified": int(classified),
        "nodata": int(h * w - classified),
        "per_class": {n: int(counts[i]) for i, n in enumerate(names, start=1)},
        "area_unit": unit,
        "per_class_area": {n: float(counts[i] * area) for i, n in enumerate(names, start=1)},
        "seconds": seconds,
        "pixels_per_second": (h * w) / seconds if seconds > 0 else None,
        "window": options.window,
        "batch_size": runner.batch_size,
        "device": runner.device.type,
        "precision": runner.precision,
        "config": options.to_record(),
    }
    if options.reject_below is not None:
        summary["rejected"] = int(counts[len(names)])
    return summary
