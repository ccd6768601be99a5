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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import console
from .bundle import build_model, bundle_padding, bundle_preprocessing, load_bundle
from .errors import HsiclsError, InputError
from .fileutil import atomic_output, check_output
from .io import _envi_data_file, _georef, _good_bands, _open_raster, read_cube, valid_mask
from .patches import check_precision, gather_patches, inference_batch_size, pad_sides, resolve_device, uses_bf16
from .runtime import tune_allocator

UNKNOWN = "unknown"
UNKNOWN_COLOUR = (128, 128, 128)


@dataclass
class MapOptions:
    device: str = "auto"
    batch_size: int | None = None  # None: 256 on the CPU, 4096 on a GPU
    window: int = 256
    key: str | None = None
    cog: bool = False
    confidence: Path | None = None
    confidence_dtype: str = "float32"  # float32 | uint8 (0-255)
    probabilities: Path | None = None
    reject_below: float | None = None
    preview: Path | None = None
    precision: str = "auto"  # auto (bf16 on GPU) | fp32 | bf16


class _Source:
    """Windowed access to a scene: a GDAL raster (read on demand) or an in-memory array."""

    def __init__(self, path: Path, key: str | None):
        self.path = path
        suffix = path.suffix.lower()
        if suffix in (".mat", ".npy"):
            scene = read_cube(path, key=key)
            self.array: np.ndarray | None = scene.data
            self.height, self.width, self.bands = scene.data.shape
            self.crs, self.transform, self.nodata = None, None, None
            self.good = None
            self.raster_path = None
        else:
            if key is not None:
                raise InputError(f"{path}: --key applies only to .mat files")
            self.raster_path = _envi_data_file(path) if suffix == ".hdr" else path
            ds = _open_raster(self.raster_path)
            with ds:
                if ds.count < 2:
                    raise InputError(f"{path}: has {ds.count} band; a hyperspectral cube needs several")
                self.good = _good_bands(ds)
                self.height, self.width, self.bands = ds.height, ds.width, len(self.good)
                self.nodata = ds.nodata
                self.crs, self.transform = _georef(ds)
            self.array = None

    def reader(self):
        """A function ``(r0, r1, c0, c1) -> (rows, cols, B) float32``; one per thread."""
        if self.array is not None:
            arr = self.array
            return lambda r0, r1, c0, c1: arr[r0:r1, c0:c1]
        from rasterio.windows import Window

        ds = _open_raster(self.raster_path)

        def read(r0, r1, c0, c1):
            try:
                data = ds.read(self.good, window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype="float32")
            except Exception as exc:
                raise InputError(f"{self.path}: could not read pixels {r0}:{r1}, {c0}:{c1} ({type(exc).__name__})") from None
            return data.transpose(1, 2, 0)

        read.close = ds.close  # type: ignore[attr-defined]
        return read


def _windows(h: int, w: int, size: int):
    for r0 in range(0, h, size):
        for c0 in range(0, w, size):
            yield r0, min(r0 + size, h), c0, min(c0 + size, w)


def _prefetch(source: _Source, wins: list, halo: int):
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


def _profile(h, w, dtype, count, crs, transform, nodata):
    from rasterio.transform import Affine

    p = dict(
        driver="GTiff",
        height=h,
        width=w,
        count=count,
        dtype=dtype,
        compress="deflate",
        tiled=True,
        blockxsize=256,
        blockysize=256,
        BIGTIFF="IF_SAFER",
    )
    if nodata is not None:
        p["nodata"] = nodata
    if crs is not None:
        p["crs"] = crs
    if transform is not None:
        p["transform"] = Affine(*transform)
    return p


def _pixel_area(transform, crs) -> tuple[float, str]:
    if transform is None:
        return 1.0, "pixels"
    a, b, _, d, e, _ = transform
    area = abs(a * e - b * d)
    unit = "map units²"
    if crs is not None:
        from rasterio.crs import CRS

        c = CRS.from_wkt(crs)
        if c.is_projected:
            unit = f"{(c.linear_units or 'unit')}²".replace("metre²", "m²").replace("meter²", "m²")
        elif c.is_geographic:
            unit = "deg²"
    return area, unit


def predict_map(
    scene_path: str | Path,
    model_path: str | Path,
    output: str | Path,
    options: MapOptions = MapOptions(),
    overwrite: bool = False,
) -> dict:
    """Write the class map (and the optional confidence/probability rasters and preview)."""
    import rasterio
    from rasterio.windows import Window

    scene_path, output = Path(scene_path), Path(output)
    outputs = [output] + [p for p in (options.confidence, options.probabilities, options.preview) if p is not None]
    resolved = [p.resolve() for p in outputs]
    if len(set(resolved)) != len(resolved):
        raise HsiclsError("the map, --confidence, --probabilities and --preview need different file names")
    if set(resolved) & {scene_path.resolve(), Path(model_path).resolve()}:
        raise HsiclsError("an output file name is the scene's or the model's")
    check_precision(options.precision)
    for p in outputs:
        check_output(p, overwrite)
    if options.batch_size is not None and options.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {options.batch_size}")
    if options.window < 16:
        raise InputError(f"--window must be >= 16, got {options.window}")
    if options.reject_below is not None and not 0 <= options.reject_below <= 1:
        raise InputError(f"--reject-below must be in [0, 1], got {options.reject_below}")
    if options.confidence_dtype not in ("float32", "uint8"):
        raise InputError(f"--confidence-dtype must be float32 or uint8, got {options.confidence_dtype!r}")
    if not scene_path.exists():
        raise InputError(f"{scene_path}: no such file")
    tune_allocator()
    t0 = time.perf_counter()
    bundle = load_bundle(model_path)
    prep = bundle_preprocessing(bundle)
    source = _Source(scene_path, options.key)
    h, w = source.height, source.width
    if source.bands != prep.n_bands:
        raise InputError(f"{scene_path}: has {source.bands} bands but the model {Path(model_path).name} expects {prep.n_bands}")
    patch = int(bundle["model"]["patch_size"])
    if h < patch or w < patch:
        raise InputError(f"{scene_path}: the scene is {h}x{w} px, smaller than one {patch}x{patch} patch")
    if source.crs is None:
        console.warn(f"{scene_path.name} has no CRS; the map is written on the pixel grid")
    dev = resolve_device(options.device)
    use_bf16 = uses_bf16(options.precision, dev)
    batch_size = inference_batch_size(options.batch_size, dev)
    model = build_model(bundle).to(dev)
    if bundle["model"]["name"] == "svm" and (options.confidence or options.probabilities or options.reject_below is not None):
        console.warn("the svm baseline outputs one-vs-one votes, not probabilities: its confidence is a softmax of votes")
    names = list(bundle["class_names"])
    palette = [tuple(c) for c in bundle["palette"]]
    k = len(names)
    if options.reject_below is not None:
        names, palette = names + [UNKNOWN], palette + [UNKNOWN_COLOUR]
    dtype = "uint8" if len(names) <= 255 else "uint16"
    need_probs = options.confidence is not None or options.probabilities is not None or options.reject_below is not None
    halo = patch // 2
    padding = bundle_padding(bundle)
    counts = np.zeros(len(names) + 1, np.int64)
    classified = 0
    wins = list(_windows(h, w, options.window))

    with (
        atomic_output(output, overwrite) as tmp_map,
        _maybe_atomic(options.confidence, overwrite) as tmp_conf,
        _maybe_atomic(options.probabilities, overwrite) as tmp_prob,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning for pixel-grid outputs
        map_path = tmp_map.with_name(tmp_map.name + ".gtiff") if options.cog else tmp_map
        dst = conf_dst = prob_dst = None
        try:
            dst = rasterio.open(map_path, "w", **_profile(h, w, dtype, 1, source.crs, source.transform, 0))
            _finish_map(dst, names, palette, dtype)  # the colour table must precede the pixel data
            if tmp_conf is not None:
                cd = options.confidence_dtype
                conf_dst = rasterio.open(
                    tmp_conf, "w", **_profile(h, w, cd, 1, source.crs, source.transform, 0 if cd == "uint8" else float("nan"))
                )
            if tmp_prob is not None:
                prob_dst = rasterio.open(
                    tmp_prob, "w", **_profile(h, w, "float32", k, source.crs, source.transform, float("nan"))
                )
            with console.progress() as bar, torch.inference_mode():
                task = bar.add_task("predict", total=h * w, status="") if bar else None
                for (r0, r1, c0, c1), (R0, R1, C0, C1), raw in _prefetch(source, wins, halo):
                    ok = valid_mask(raw, source.nodata)
                    feats = np.zeros(raw.shape[:2] + (prep.n_components,), np.float32)
                    feats[ok] = prep.apply(raw[ok])
                    x = torch.from_numpy(np.ascontiguousarray(feats.transpose(2, 0, 1))).to(dev)
                    pads = (halo - (c0 - C0), halo - (C1 - c1), halo - (r0 - R0), halo - (R1 - r1))
                    x = pad_sides(x, pads, padding)  # now (C, (r1-r0)+2h, (c1-c0)+2h): window + full halo
                    inner = ok[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0]
                    rows, cols = np.nonzero(inner)
                    cls = np.zeros(inner.shape, np.uint16)
                    conf = np.full(inner.shape, np.nan, np.float32)
                    probs = np.full((k,) + inner.shape, np.nan, np.float32) if prob_dst is not None else None
                    rr = torch.as_tensor(rows, device=dev)
                    cc = torch.as_tensor(cols, device=dev)
                    for s in range(0, len(rows), batch_size):
                        sl = slice(s, s + batch_size)
                        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                            logits = model(gather_patches(x, rr[sl], cc[sl], patch)).float()
                        pred = logits.argmax(1)
                        cls[rows[sl], cols[sl]] = pred.cpu().numpy() + 1
                        if need_probs:
                            p = torch.softmax(logits, 1)
                            top = p.max(1).values.cpu().numpy()
                            conf[rows[sl], cols[sl]] = top
                            if probs is not None:
                                probs[:, rows[sl], cols[sl]] = p.cpu().numpy().T
                    if options.reject_below is not None:
                        cls[(cls > 0) & (conf < options.reject_below)] = k + 1
                    win = Window(c0, r0, c1 - c0, r1 - r0)
                    dst.write(cls.astype(dtype), 1, window=win)
                    if conf_dst is not None:
                        out = (
                            conf
                            if options.confidence_dtype == "float32"
                            else np.where(np.isnan(conf), 0, np.clip(np.round(conf * 254) + 1, 1, 255)).astype(np.uint8)
                        )
                        conf_dst.write(out, 1, window=win)
                    if prob_dst is not None:
                        prob_dst.write(probs, window=win)
                    counts += np.bincount(cls.ravel(), minlength=len(names) + 1)[: len(names) + 1]
                    classified += len(rows)
                    if bar:
                        bar.update(task, advance=(r1 - r0) * (c1 - c0))
            if conf_dst is not None:
                conf_dst.set_band_description(
                    1, "confidence (max softmax)" + (" x 254 + 1" if options.confidence_dtype == "uint8" else "")
                )
            if prob_dst is not None:
                for i, n in enumerate(bundle["class_names"], start=1):
                    prob_dst.set_band_description(i, f"P({n})")
        finally:
            for ds in (dst, conf_dst, prob_dst):
                if ds is not None:
                    ds.close()
            if options.cog and map_path.exists() and not tmp_map.exists():
                try:
                    _to_cog(map_path, tmp_map)
                finally:
                    map_path.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    if options.preview is not None:
        write_preview(output, options.preview, names, palette, overwrite)
    area, unit = _pixel_area(source.transform, source.crs)
    summary = {
        "map": str(output),
        "pixels": int(h * w),
        "classified": int(classified),
        "nodata": int(h * w - classified),
        "per_class": {n: int(counts[i]) for i, n in enumerate(names, start=1)},
        "area_unit": unit,
        "per_class_area": {n: float(counts[i] * area) for i, n in enumerate(names, start=1)},
        "seconds": seconds,
        "pixels_per_second": (h * w) / seconds if seconds > 0 else None,
        "window": options.window,
        "batch_size": batch_size,
        "device": dev.type,
        "precision": "bf16" if use_bf16 else "fp32",
    }
    if options.reject_below is not None:
        summary["rejected"] = int(counts[k + 1])
    console.info(f"classified {classified} px in {seconds:.1f} s ({summary['pixels_per_second']:,.0f} px/s); wrote {output}")
    return summary


class _NullCtx:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def _maybe_atomic(path: Path | None, overwrite: bool):
    return atomic_output(path, overwrite) if path is not None else _NullCtx()


def _finish_map(dst, names, palette, dtype) -> None:
    if dtype == "uint8":
        cmap = {0: (0, 0, 0, 0)}
        for i, rgb in enumerate(palette, start=1):
            cmap[i] = (int(rgb[0]), int(rgb[1]), int(rgb[2]), 255)
        dst.write_colormap(1, cmap)
    dst.update_tags(1, **{f"CLASS_{i}": n for i, n in enumerate(names, start=1)})
    dst.update_tags(CLASS_NAMES=";".join(names), SOFTWARE="hsicls")
    dst.set_band_description(1, "class")


def _to_cog(src: Path, dst: Path) -> None:
    """Cloud-Optimized GeoTIFF (GDAL's COG driver) with overviews built by mode resampling,
    the right choice for class maps (no invented classes at coarse zoom)."""
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling

    with rasterio.open(src, "r+") as ds:
        factors = [f for f in (2, 4, 8, 16, 32, 64) if min(ds.height, ds.width) // f >= 8] or [2]
        ds.build_overviews(factors, Resampling.mode)
    rasterio.shutil.copy(
        src, dst, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=256, OVERVIEWS="FORCE_USE_EXISTING", BIGTIFF="IF_SAFER"
    )


def write_preview(map_path: Path, png: Path, names: list[str], palette: list[tuple[int, int, int]], overwrite: bool) -> None:
    """A quicklook PNG of the map with a legend of class names and colours (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    with rasterio.open(map_path) as ds:
        step = max(1, max(ds.height, ds.width) // 2000)
        data = ds.read(
            1, out_shape=(max(1, ds.height // step), max(1, ds.width // step)), resampling=rasterio.enums.Resampling.mode
        )
    colours = [(0, 0, 0, 0)] + [(r / 255, g / 255, b / 255, 1) for r, g, b in palette]
    h, w = data.shape
    fig_w = 8.0
    fig, ax = plt.subplots(figsize=(fig_w + 3, max(3.0, fig_w * h / max(w, 1))))
    ax.imshow(data, cmap=ListedColormap(colours), vmin=0, vmax=len(colours) - 1, interpolation="nearest")
    ax.set_axis_off()
    ax.legend(
        handles=[Patch(color=colours[i], label=n) for i, n in enumerate(names, start=1)],
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=8,
        frameon=False,
    )
    ax.set_title(map_path.name, fontsize=9)
    fig.tight_layout()
    with atomic_output(png, overwrite) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
