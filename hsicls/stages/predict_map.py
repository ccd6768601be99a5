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
class 0 (nodata). Confidences and probabilities are ``softmax(logits / T)`` with the bundle's
temperature ``T`` (fitted on the validation split after training; 1 for bundles without one), so
they are calibrated; ``reject_below`` gives the reserved class ``K + 1`` ("unknown") to pixels
whose maximum probability is below the threshold.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import numpy as np
import torch

from hsicls import console
from hsicls.artifacts.bundle import Bundle, load_bundle
from hsicls.config import MapOptions
from hsicls.engine.inference import Runner
from hsicls.engine.patches import pad_sides
from hsicls.engine.runtime import tune_allocator
from hsicls.errors import HsiclsError, InputError
from hsicls.io.classtable import ClassTable, read_palette_file
from hsicls.io.cube import BandSet, CubeSource, valid_mask
from hsicls.io.maps import UNKNOWN, UNKNOWN_COLOUR, GltWriter, MapOutputs, MapWriter, write_sidecars
from hsicls.io.readers import open_cube
from hsicls.models import get_entry
from hsicls.science.scene_assembly import match_bands, resample_source

__all__ = ["MapOptions", "MapOutputs", "predict_map", "predict_maps"]


def _prefetch(source: CubeSource, units, halo: int):
    """Read windows (with halo, clipped to the scene) in a background thread, one ahead.

    ``units`` yields ``(tag, (r0, r1, c0, c1))``; this yields ``(tag, inner, outer, raw)``. A unit
    whose window is ``None`` (already done elsewhere) is passed through with ``raw`` ``None``,
    unread. Errors in the reader reach the consumer; if the consumer stops early (an error,
    Ctrl-C), the reader is told to stop and its file is closed."""
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
            for tag, win in units:
                if win is None:
                    if not put((tag, None, None, None)):
                        return
                    continue
                outer = source.grid.with_halo(*win, halo)
                if not put((tag, win, outer, read(*outer))):
                    return
        except BaseException as exc:  # hand errors to the consumer
            put(exc)
        finally:
            if read is not None:
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


def checkable_bf16(bundle: Bundle, need_probs: bool) -> float | None:
    """The bundle's bf16 error bound when ``--precision auto`` may run bf16 with the fp32 re-check:
    only for class maps (the re-check makes the classes equal fp32's; confidences and probabilities
    would carry bf16's rounding, so with them ``auto`` stays fp32)."""
    return None if need_probs else bundle.training.get("bf16_error")


def _open_scene(
    scene_path: Path, bundle: Bundle, key: str | None, nodata: float | None = None, mask: str = "all", resample: bool = False
) -> CubeSource:
    source = fit_bands(open_cube(scene_path, key, nodata, mask), bundle, resample)
    patch = bundle.model.patch_size
    if source.height < patch or source.width < patch:
        raise InputError(f"{scene_path}: the scene is {source.height}x{source.width} px, smaller than one {patch}x{patch} patch")
    if source.glt is None and source.grid.crs is None:
        console.warn(f"{scene_path.name} has no CRS; the map is written on the pixel grid")
    return source


def fit_bands(source: CubeSource, bundle: Bundle, resample: bool = False) -> CubeSource:
    """The scene's bands put in the model's order (matched by wavelength), or resampled to them (``resample``)."""
    model_bands = BandSet.from_dict(bundle.bands, bundle.n_bands) if bundle.bands else BandSet.numbered(bundle.n_bands)
    if resample:
        return resample_source(source, model_bands, bundle.path or Path("model"))
    order = match_bands(model_bands, source.bands, source.path, bundle.path or Path("model"))
    return source.select_bands(order) if order is not None else source


def classify_source(
    source: CubeSource, bundle: Bundle, options: MapOptions, probabilities: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Every pixel of ``source`` classified in memory, no file written: ``(class codes (H, W) uint16, 0 = nodata;
    calibrated probabilities (K, H, W) float32, NaN at nodata, or None)``. The same windows, halo and network as
    :func:`predict_map`, so the classes equal the map's."""
    runner = Runner.resolve(
        options.device, options.precision, options.batch_size, checkable_bf16(bundle, probabilities),
        job_pixels=source.height * source.width, compile=options.compile,
    )  # fmt: skip
    classify = _Classifier(bundle, runner, options, probabilities, probabilities)
    lut = np.array([0, *bundle.class_values], np.uint16)
    codes = np.zeros(source.grid.shape, np.uint16)
    probs = np.full((bundle.n_classes, *source.grid.shape), np.nan, np.float32) if probabilities else None
    with torch.inference_mode():
        for _, inner, outer, raw in _prefetch(source, [(None, w) for w in source.grid.windows(options.window)], classify.halo):
            cls, _, p, _ = classify(raw, source.nodata, inner, outer)
            r0, r1, c0, c1 = inner
            codes[r0:r1, c0:c1] = lut[cls]
            if probs is not None:
                probs[:, r0:r1, c0:c1] = p
    return codes, probs


def check_clean_up(source: CubeSource, options: MapOptions) -> None:
    """``--majority`` and ``--sieve`` within the map's size (one line naming the scene otherwise)."""
    h, w = source.height, source.width
    if options.majority is not None and options.majority > 2 * max(h, w) - 1:
        raise InputError(
            f"{source.path}: --majority {options.majority} is wider than the map can use ({h} x {w} px: at most {2 * max(h, w) - 1})"
        )
    if options.sieve is not None and options.sieve > h * w:
        raise InputError(f"{source.path}: --sieve {options.sieve} is more than the map's {h * w} pixels ({h} x {w})")


class _Classifier:
    """Classifies one window: preprocessing, padding to the full halo, batched inference."""

    def __init__(self, bundle: Bundle, runner: Runner, options: MapOptions, need_probs: bool, want_probs: bool):
        self.bundle, self.runner, self.options = bundle, runner, options
        self.model = bundle.build_model().to(runner.device)
        self.patch, self.halo, self.k = bundle.model.patch_size, bundle.model.patch_size // 2, bundle.n_classes
        self.need_probs, self.want_probs = need_probs, want_probs
        self.temperature = 1.0 if bundle.temperature is None else float(bundle.temperature)

    def __call__(self, raw: np.ndarray, nodata, inner_box, outer_box):
        """``raw`` ``(R1-R0, C1-C0, B)`` of the window with its halo -> classes, confidence, probabilities of the window."""
        (r0, r1, c0, c1), (R0, R1, C0, C1) = inner_box, outer_box
        prep, halo, dev = self.bundle.preprocessing, self.halo, self.runner.device
        ok = valid_mask(raw, nodata)
        if (
            dev.type == "cuda"
        ):  # standardisation + PCA on the GPU, one matrix product (hsicls.artifacts.prepared.Preprocessing.apply_torch)
            raw_t, ok_t = torch.from_numpy(np.ascontiguousarray(raw)).to(dev), torch.from_numpy(ok).to(dev)
            feats_t = torch.zeros(raw.shape[:2] + (prep.n_components,), dtype=torch.float32, device=dev)
            feats_t[ok_t] = prep.apply_torch(raw_t[ok_t])
            x = feats_t.permute(2, 0, 1).contiguous()
        else:
            feats = np.zeros(raw.shape[:2] + (prep.n_components,), np.float32)
            feats[ok] = prep.apply(raw[ok])
            x = torch.from_numpy(np.ascontiguousarray(feats.transpose(2, 0, 1)))
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
                p = torch.softmax(logits / self.temperature, 1)  # calibrated (hsicls.engine.calibration)
                conf[rows[sl], cols[sl]] = p.max(1).values.cpu().numpy()
                if probs is not None:
                    probs[:, rows[sl], cols[sl]] = p.cpu().numpy().T
        if self.options.reject_below is not None:
            cls[(cls > 0) & (conf < self.options.reject_below)] = self.k + 1
        return cls, conf, probs, len(rows)


def predict_map(
    scene_path: str | Path,
    bundle: Bundle | str | Path,
    outputs: MapOutputs | str | Path,
    options: MapOptions = MapOptions(),
    overwrite: bool = False,
) -> dict:
    """Write the class map (and the optional confidence/probability rasters and preview); returns the summary.
    ``bundle``: the bundle's path, or the bundle loaded once for many scenes (:func:`predict_maps`)."""
    scene_path = Path(scene_path)
    bundle_path = bundle.path if isinstance(bundle, Bundle) else Path(bundle)
    outputs = outputs if isinstance(outputs, MapOutputs) else MapOutputs(Path(outputs))
    outputs.declared().guard(overwrite, inputs=[scene_path, bundle_path])
    options.validate()
    tune_allocator()
    t0 = time.perf_counter()
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle_path)
    source = _open_scene(scene_path, bundle, options.key, options.nodata, options.mask, options.resample_bands)
    check_clean_up(source, options)
    need_probs = outputs.needs_probabilities(options.reject_below)
    runner = Runner.resolve(
        options.device,
        options.precision,
        options.batch_size,
        checkable_bf16(bundle, need_probs),
        job_pixels=source.height * source.width,
        compile=options.compile,
    )
    console.debug(f"inference on {runner.device.type}, precision {runner.precision}, batch {runner.batch_size}")
    table = class_table(bundle, options)
    classify = _Classifier(bundle, runner, options, need_probs, outputs.probabilities is not None)
    if need_probs:
        _warn_about_confidence(bundle, classify.model)
    counts, classified = _run_windows(source, classify, outputs, table, options, overwrite)
    write_sidecars(outputs, table)
    seconds = time.perf_counter() - t0
    summary = _summary(source, outputs, table, counts, classified, seconds, runner, options)
    summary["temperature"] = bundle.temperature
    console.debug(f"precision {runner.precision}: {runner.precision_reason}")
    if runner.compile_reason:
        console.debug(f"compile: {runner.compile_reason}")
    console.info(f"classified {classified} px in {seconds:.1f} s ({summary['pixels_per_second']:,.0f} px/s); wrote {outputs.map}")
    return summary


def _warn_about_confidence(bundle: Bundle, model: torch.nn.Module) -> None:
    """Say when confidences are not probabilities (old SVM bundles: votes) or not calibrated (no temperature)."""
    if not (get_entry(bundle.model.name).probabilistic and getattr(model, "probabilistic", True)):
        console.warn(
            f"this {bundle.model.name} bundle outputs one-vs-one votes, not probabilities (trained before Platt scaling): "
            "its confidence is a softmax of votes; retrain it for probabilities"
        )
    elif bundle.temperature is None:
        console.info(
            "the bundle has no temperature (no validation split, or trained before calibration): confidences are uncalibrated"
        )


def class_table(bundle: Bundle, options: MapOptions) -> ClassTable:
    """The map's classes in the labels' own codes (``--palette`` may rename and recolour them); with
    ``--reject-below`` an ``unknown`` class one code above the largest."""
    table = ClassTable(list(bundle.class_values), list(bundle.class_names), [tuple(c) for c in bundle.palette])
    if options.palette is not None:
        table = table.override(read_palette_file(options.palette))
    if options.reject_below is not None:
        table = ClassTable(table.codes + [max(table.codes) + 1], table.names + [UNKNOWN], table.colours + [UNKNOWN_COLOUR])
    return table


def _run_windows(
    source: CubeSource, classify: _Classifier, outputs: MapOutputs, table: ClassTable, options: MapOptions, overwrite
):
    h, w = source.height, source.width
    names = table.names
    lut = np.array([0] + table.codes, np.uint16)  # class index (0 = nodata, 1..K, K+1 unknown) -> code
    counts = np.zeros(len(names) + 1, np.int64)
    classified = 0
    writer = map_writer(outputs, source, table, classify.k, options, overwrite)
    from rasterio.windows import Window

    with writer, console.progress() as bar, torch.inference_mode():
        task = bar.add_task("predict", total=h * w, status="") if bar else None
        units = [(None, win) for win in source.grid.windows(options.window)]
        for _, inner, outer, raw in _prefetch(source, units, classify.halo):
            cls, conf, probs, n = classify(raw, source.nodata, inner, outer)
            r0, r1, c0, c1 = inner
            writer.write(Window(c0, r0, c1 - c0, r1 - r0), lut[cls], conf, probs)
            counts += np.bincount(cls.ravel(), minlength=len(names) + 1)[: len(names) + 1]
            classified += n
            if bar:
                bar.update(task, advance=(r1 - r0) * (c1 - c0))
        if classified == 0:  # inside the writer: no all-nodata map is left behind
            raise InputError(
                f"{source.path}: every pixel is nodata (NaN or inf in a band, the nodata value in every band, or zero in "
                f"every band); no map written"
            )
    return cleaned_counts(writer, table, counts), classified


def map_writer(outputs: MapOutputs, source: CubeSource, table: ClassTable, k: int, options: MapOptions, overwrite: bool):
    o = options
    grid = source.glt.grid if source.glt is not None else source.grid
    writer = MapWriter(
        outputs, grid, table, k, o.confidence_dtype, o.cog, overwrite,
        majority=o.majority, sieve=o.sieve, tags=product_tags(source),
    )  # fmt: skip
    return GltWriter(writer, source.glt, source.grid.shape) if source.glt is not None else writer


def product_tags(source: CubeSource) -> dict:
    """What the map's GeoTIFF records of a sensor product: the product, the quality masking, the band resampling."""
    tags = {}
    if source.product:
        tags["SOURCE_PRODUCT"] = source.product
    if source.quality is not None:
        tags["QUALITY_MASK"] = (
            f"{source.quality.level} ({', '.join(source.quality.flags) or 'no flag'}; {source.quality.masked} px masked)"
        )
    if source.resampled is not None:
        tags["RESAMPLED_BANDS"] = source.resampled["description"]
    return tags


def cleaned_counts(writer: MapWriter, table: ClassTable, counts: np.ndarray) -> np.ndarray:
    """Pixels per class index (0 = nodata, 1..K, K+1 unknown) of the map as written: after --majority / --sieve."""
    if writer.cleaned is None:
        return counts
    index = {c: i for i, c in enumerate(table.codes, start=1)}
    out = np.zeros_like(counts)
    codes, n = np.unique(writer.cleaned, return_counts=True)
    for c, m in zip(codes.tolist(), n.tolist()):
        out[index.get(c, 0)] += m
    return out


def _summary(
    source: CubeSource, outputs: MapOutputs, table: ClassTable, counts, classified, seconds, runner: Runner, options: MapOptions
) -> dict:
    grid = source.glt.grid if source.glt is not None else source.grid  # the grid the map is written on
    h, w = grid.shape
    masked = _masked_on(source)
    if source.glt is not None:
        classified = int(sum(counts[1:]))  # map pixels, counted on the grid (a swath pixel may show twice)
    names = table.names
    area, unit = grid.pixel_area()
    ha = area / 1e4 if unit == "m²" else None  # hectares from a CRS in metres
    summary = {
        "scene": str(source.path),
        "classes": {
            str(c): {
                "name": n,
                "pixels": int(counts[i]),
                "area": float(counts[i] * area),
                "hectares": None if ha is None else float(counts[i] * ha),
            }
            for i, (c, n) in enumerate(zip(table.codes, names), start=1)
        },
        "map": str(outputs.map),
        "pixels": int(h * w),
        "classified": int(classified),
        "nodata": int(h * w - classified - masked),
        "masked": masked,  # pixels a quality flag made nodata (--mask), apart from nodata
        "quality": None if source.quality is None else source.quality.to_dict(),
        "product": source.product,
        "resampled": source.resampled,
        "per_class": {n: int(counts[i]) for i, n in enumerate(names, start=1)},
        "area_unit": unit,
        "area_note": None
        if ha is not None
        else f"no hectares: the map's grid is in {unit} (no CRS in metres); areas are in {unit}",
        "per_class_area": {n: float(counts[i] * area) for i, n in enumerate(names, start=1)},
        "seconds": seconds,
        "pixels_per_second": (h * w) / seconds if seconds > 0 else None,
        "window": options.window,
        "batch_size": runner.batch_size,
        "device": runner.device.type,
        "precision": runner.precision,
        "rechecked_fraction": runner.rechecked_fraction,  # bf16-checked: pixels recomputed in fp32
        "precision_reason": runner.precision_reason,  # what --precision auto chose and why (its timed probe)
        "compiled": runner.compiled,  # --compile: the network ran compiled (hsicls.engine.compiled)
        "compile_reason": runner.compile_reason,
        "config": options.to_record(),
    }
    if options.reject_below is not None:
        summary["rejected"] = int(counts[len(names)])
    return summary


def _masked_on(source: CubeSource) -> int:
    """Pixels of the written map masked by a quality flag (on the GLT grid for a swath product)."""
    q = source.quality
    if q is None or not q.masked:
        return 0
    if source.glt is None:
        return int(q.masked)
    swath = getattr(source.pixels, "mask", None)
    return int(source.glt.to_grid(swath.astype(np.uint8)).sum()) if swath is not None else int(q.masked)


def predict_maps(
    scenes: list,
    bundle_path,
    template: MapOutputs,
    options: MapOptions = MapOptions(),
    overwrite: bool = False,
    many: bool = False,
):
    """One map per scene (``{stem}`` in the output names is the scene's file stem). With one scene and
    ``many`` False this is :func:`predict_map`. Otherwise a scene whose map exists is skipped unless
    ``overwrite``, a failing scene is reported and the others go on; returns ``{"maps", "skipped", "failed"}``."""
    scenes = [Path(p) for p in scenes]
    if not many:
        return predict_map(scenes[0], bundle_path, template.for_stem(scenes[0].stem, False), options, overwrite)
    options.validate()
    bundle = load_bundle(bundle_path)  # checked and loaded once for every scene
    stems = [p.stem for p in scenes]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise HsiclsError(f"scenes need distinct file stems for their map names: {', '.join(dup)} given twice")
    out = {"maps": [], "skipped": [], "failed": []}
    for p in scenes:
        outputs = template.for_stem(p.stem, True)
        if outputs.map.exists() and not overwrite:
            console.info(f"{p.name}: {outputs.map} exists; skipped (--overwrite to redo)")
            out["skipped"].append(str(p))
            continue
        try:
            out["maps"].append(predict_map(p, bundle, outputs, options, overwrite))
        except HsiclsError as exc:
            console.error(str(exc) if str(exc).startswith((str(p), p.name)) else f"{p.name}: {exc}")  # named once
            out["failed"].append({"scene": str(p), "error": str(exc)})
    done = len(out["maps"])
    console.info(f"{done} maps written, {len(out['skipped'])} skipped, {len(out['failed'])} failed")
    return out
