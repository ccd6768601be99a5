"""Writing class maps: GeoTIFF profiles, colour tables and class names, COGs, previews, areas.

:class:`MapWriter` opens the class map and the optional confidence and probability rasters
under temporary names, takes them window by window, and on success turns them into COGs when
asked, renders the preview, and moves them all under their final names together
(:func:`hsicls.artifacts.outputs.atomic_outputs`); on any failure no file is left under a final name.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from hsicls.errors import HsiclsError
from hsicls.io.atomic import atomic_output, atomic_outputs, write_texts
from hsicls.io.classtable import ClassTable, pam_xml, qgis_style
from hsicls.io.disk import native_errors, write_via_memory
from hsicls.io.grid import GeoGrid
from hsicls.io.guard import Declared, OutputSet

UNKNOWN = "unknown"
UNKNOWN_COLOUR = (128, 128, 128)


@dataclass
class MapOutputs:
    """The files one predict-map run writes, declared here once: each field is one output (its flag is
    ``--<field>``), :data:`PER_PIXEL` says which need the class probabilities, and from these follow the guard's
    declaration (:meth:`declared`), the probability need (:meth:`needs_probabilities`), what the part files of a
    torchrun job depend on (:meth:`fingerprint`), the per-scene names (:meth:`for_stem`) and the writer's files
    (:meth:`all`, :class:`MapWriter`)."""

    map: Path
    confidence: Path | None = None
    probabilities: Path | None = None
    preview: Path | None = None

    # field -> computed from the class probabilities (per pixel, on the model's side of the run)
    PER_PIXEL: ClassVar[dict[str, bool]] = {"map": False, "confidence": True, "probabilities": True, "preview": False}

    def all(self) -> list[Path]:
        return [Path(getattr(self, f)) for f, on in self.asked().items() if on]

    def asked(self) -> dict[str, bool]:
        """Which outputs this run writes, by field."""
        return {f: getattr(self, f) is not None for f in self.PER_PIXEL}

    def needs_probabilities(self, reject_below: float | None = None) -> bool:
        """Whether the classifier must return calibrated probabilities: an output computed from them, or
        ``--reject-below`` (a confidence threshold)."""
        return reject_below is not None or any(self.PER_PIXEL[f] and on for f, on in self.asked().items())

    def fingerprint(self, reject_below: float | None = None) -> dict:
        """What part files hold for these outputs (a torchrun job's parts are reused only when it matches)."""
        return {
            "confidence": self.confidence is not None or reject_below is not None,
            "probabilities": self.probabilities is not None,
        }

    def for_stem(self, stem: str, many: bool) -> MapOutputs:
        """The names for one scene: ``{stem}`` replaced (required in every name when there are several scenes)."""

        def one(p: Path | None) -> Path | None:
            if p is None:
                return None
            if many and "{stem}" not in str(p):
                raise HsiclsError(f"{p}: with several scenes every output name needs '{{stem}}' (e.g. maps/{{stem}}_conf.tif)")
            return Path(str(p).replace("{stem}", stem))

        return MapOutputs(**{f: one(getattr(self, f)) for f in self.PER_PIXEL})

    def declared(self) -> OutputSet:
        """Every file of the map, in one place: the rasters, the preview and the sidecars that carry the class
        names (``.aux.xml`` for GDAL, ``.qml`` for QGIS), replaced with the map."""
        aux, qml = sidecar_paths(self.map)
        return OutputSet(
            *(Declared(f, getattr(self, f)) for f in self.PER_PIXEL),
            Declared("aux.xml", aux, sidecar=True),
            Declared("qml", qml, sidecar=True),
        )


TILED_DEFLATE = dict(compress="deflate", tiled=True, blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")


def profile(grid: GeoGrid, dtype, count, nodata) -> dict:
    """A tiled, DEFLATE-compressed GeoTIFF profile on ``grid``."""
    p = dict(driver="GTiff", count=count, dtype=dtype, **TILED_DEFLATE)
    if nodata is not None:
        p["nodata"] = nodata
    return {**p, **grid.profile()}


def write_class_metadata(dst, table: ClassTable, dtype) -> None:
    """Colour table keyed by class code (uint8 maps; it must precede the pixel data), class names as
    band tags ``CLASS_<code>``; category names go to the ``.aux.xml`` (:func:`write_sidecars`)."""
    if dtype == "uint8":
        cmap = {0: (0, 0, 0, 0)}
        for c, rgb in zip(table.codes, table.colours):
            cmap[int(c)] = (int(rgb[0]), int(rgb[1]), int(rgb[2]), 255)
        dst.write_colormap(1, cmap)
    dst.update_tags(1, **{f"CLASS_{c}": n for c, n in zip(table.codes, table.names)})
    dst.update_tags(CLASS_NAMES=";".join(table.names), CLASS_CODES=";".join(map(str, table.codes)), SOFTWARE="hsicls")
    dst.set_band_description(1, "class")


def sidecar_paths(map_path: Path) -> tuple[Path, Path]:
    """``(<map>.aux.xml, <map stem>.qml)``: GDAL's category names and QGIS's style."""
    map_path = Path(map_path)
    return map_path.with_name(map_path.name + ".aux.xml"), map_path.with_suffix(".qml")


def write_sidecars(outputs: MapOutputs, table: ClassTable) -> None:
    """Category names for GDAL (``gdalinfo`` lists ``Categories:``) and a QGIS paletted style, next to the map."""
    write_texts(outputs.declared(), {"aux.xml": pam_xml(table), "qml": qgis_style(table)}, overwrite=True)


def majority_filter(codes: np.ndarray, size: int, nodata: int = 0) -> np.ndarray:
    """Each classified pixel takes the most frequent class of its ``size x size`` neighbourhood (nodata
    pixels neither vote nor change; a tie keeps the pixel's own class when it is among the most frequent)."""
    from scipy.ndimage import uniform_filter

    valid = codes != nodata
    out, best, own = codes.copy(), np.zeros(codes.shape, np.int32), np.zeros(codes.shape, np.int32)
    for c in np.unique(codes[valid]).tolist():
        is_c = codes == c
        count = np.rint(uniform_filter(is_c.astype(np.float32), size=size, mode="constant") * size * size).astype(np.int32)
        better = count > best
        out[better], best[better] = c, count[better]
        own[is_c] = count[is_c]
    keep = valid & (own >= best)
    out[keep] = codes[keep]
    out[~valid] = nodata
    return out


def sieve_filter(codes: np.ndarray, pixels: int, nodata: int = 0) -> np.ndarray:
    """Minimum mapping unit: no 8-connected region of one class smaller than ``pixels`` remains unless it has
    no neighbour. Regions are merged smallest first, each into its largest neighbouring region (ties: the
    lower class code); a merge joins the neighbours of the new class that now touch it, and the merged
    region is checked again. Nodata stays nodata and is no neighbour.

    GDAL's sieve (``rasterio.features.sieve``) merges a small region only into a neighbour that is already
    at least ``pixels`` large, so with a threshold above every region's size it changes nothing, and its
    result depends on the order it meets the regions in; this one keeps its promise for every threshold
    and gives GDAL's result where GDAL's leaves no small region (tests/stages/test_map_cleanup.py)."""
    import heapq

    from scipy import ndimage

    valid = codes != nodata
    regions = np.zeros(codes.shape, np.int64)
    classes = [0]
    eight = np.ones((3, 3), bool)
    for c in np.unique(codes[valid]).tolist():
        lab, n = ndimage.label(codes == c, structure=eight)
        regions[lab > 0] = lab[lab > 0] + len(classes) - 1
        classes += [c] * n
    n = len(classes) - 1
    size = np.bincount(regions.ravel(), minlength=n + 1).astype(np.int64)
    size[0] = 0
    cls = np.asarray(classes, np.int64)
    # region adjacency (8-connected): every pair of different regions side by side or corner to corner
    pairs = []
    for a, b in (
        (regions[:, :-1], regions[:, 1:]),
        (regions[:-1, :], regions[1:, :]),
        (regions[:-1, :-1], regions[1:, 1:]),
        (regions[:-1, 1:], regions[1:, :-1]),
    ):
        keep = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([a[keep], b[keep]], 1))
    edges = np.unique(np.sort(np.concatenate(pairs), 1), axis=0) if pairs else np.zeros((0, 2), np.int64)
    nbrs: dict[int, set[int]] = {}
    for a, b in edges.tolist():
        nbrs.setdefault(a, set()).add(b)
        nbrs.setdefault(b, set()).add(a)
    parent = np.arange(n + 1)

    def find(r: int) -> int:
        root = r
        while parent[root] != root:
            root = parent[root]
        while parent[r] != root:
            parent[r], r = root, parent[r]
        return root

    heap = [(int(size[r]), r) for r in range(1, n + 1) if size[r] < pixels]
    heapq.heapify(heap)
    while heap:
        s, r = heapq.heappop(heap)
        if parent[r] != r or size[r] != s or s >= pixels:
            continue  # merged away, or grown since it was queued
        around = {find(t) for t in nbrs.get(r, ())} - {r}
        if not around:
            continue  # no neighbour: it stays
        target = max(around, key=lambda t: (size[t], -cls[t]))
        joined = [r] + [t for t in around if t != target and cls[t] == cls[target]]
        merged = set(nbrs.pop(target, set()))
        for m in joined:
            parent[m] = target
            size[target] += size[m]
            merged |= nbrs.pop(m, set())
        nbrs[target] = {find(t) for t in merged} - {target}
        if size[target] < pixels:
            heapq.heappush(heap, (int(size[target]), target))
    roots = np.array([find(r) for r in range(n + 1)], np.int64)
    out = cls[roots][regions].astype(codes.dtype)
    out[~valid] = nodata
    return out


def clean_map(path: Path, majority: int | None, sieve: int | None) -> np.ndarray:
    """Apply ``--majority`` then ``--sieve`` to the class map file in place (the whole map at once, so the
    result does not depend on the window size) and record them in its metadata; the cleaned codes."""
    import rasterio

    with rasterio.open(path, "r+") as ds:
        codes = ds.read(1)
        if majority:
            codes = majority_filter(codes, majority)
        if sieve:
            codes = sieve_filter(codes, sieve)
        ds.write(codes, 1)
        ds.update_tags(**{k: str(v) for k, v in (("MAJORITY_FILTER", majority), ("SIEVE_PIXELS", sieve)) if v})
    return codes


def to_cog(src: Path, dst: Path, resampling: str = "mode") -> None:
    """Cloud-Optimized GeoTIFF (GDAL's COG driver) with overviews; ``mode`` resampling for class
    maps (no invented classes at coarse zoom), ``average`` for confidences and probabilities."""
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling

    with rasterio.open(src, "r+") as ds:
        factors = [f for f in (2, 4, 8, 16, 32, 64) if min(ds.height, ds.width) // f >= 8] or [2]
        ds.build_overviews(factors, Resampling[resampling])
    rasterio.shutil.copy(
        src, dst, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=256, OVERVIEWS="FORCE_USE_EXISTING", BIGTIFF="IF_SAFER"
    )


class MapWriter:
    """Context manager: ``write(window, classes, confidence, probabilities)`` per window.

    The map, the optional confidence and probability rasters and the preview are one group of
    :func:`~hsicls.artifacts.outputs.atomic_outputs`: all of them or none reach their final names. GDAL
    and libtiff run under :func:`~hsicls.artifacts.outputs.native_errors`, so a disk error they only
    print (a full disk met while flushing blocks on close) still fails the run."""

    def __init__(
        self,
        outputs: MapOutputs,
        grid: GeoGrid,
        table: ClassTable,
        n_classes: int,
        confidence_dtype: str = "float32",
        cog: bool = False,
        overwrite: bool = False,
        majority: int | None = None,
        sieve: int | None = None,
        tags: dict | None = None,
    ):
        self.outputs, self.grid, self.tags = outputs, grid, dict(tags or {})
        self.table, self.names, self.k = table, table.names, n_classes
        self.dtype = "uint8" if max(table.codes) <= 255 else "uint16"
        self.confidence_dtype, self.cog, self.overwrite = confidence_dtype, cog, overwrite
        self.files: list[tuple[object, Path, Path, str]] = []  # (dataset, written, final tmp, resampling)
        self.majority, self.sieve = majority, sieve
        self.cleaned: np.ndarray | None = None  # the class codes after --majority / --sieve

    def _open(self, final_tmp: Path, resampling: str, **prof):
        import rasterio

        path = final_tmp.with_name(final_tmp.name + ".gtiff") if self.cog else final_tmp
        with native_errors(path):
            ds = rasterio.open(path, "w", **profile(self.grid, **prof))
        self.files.append((ds, path, final_tmp, resampling))
        return ds

    def __enter__(self) -> MapWriter:
        self.stack = ExitStack()
        self.stack.__enter__()
        self.stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning for pixel-grid outputs
        o = self.outputs
        try:
            tmps = dict(zip(["map", "confidence", "probabilities", "preview"], [None] * 4))
            wanted = [k for k in tmps if getattr(o, k) is not None]
            for k, t in zip(wanted, self.stack.enter_context(atomic_outputs([getattr(o, k) for k in wanted], self.overwrite))):
                tmps[k] = t
            self.preview_tmp = tmps["preview"]
            self._open_all(tmps)
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _open_all(self, tmps: dict) -> None:
        with native_errors(tmps["map"]):
            self.map = self._open(tmps["map"], "mode", dtype=self.dtype, count=1, nodata=0)
            write_class_metadata(self.map, self.table, self.dtype)
            if self.tags:
                self.map.update_tags(**self.tags)
        self.conf = self.prob = None
        if tmps["confidence"] is not None:
            cd = self.confidence_dtype
            nodata = 0 if cd == "uint8" else float("nan")
            self.conf = self._open(tmps["confidence"], "average", dtype=cd, count=1, nodata=nodata)
            self.conf.set_band_description(1, "confidence (max softmax)" + (" x 254 + 1" if cd == "uint8" else ""))
        if tmps["probabilities"] is not None:
            self.prob = self._open(tmps["probabilities"], "average", dtype="float32", count=self.k, nodata=float("nan"))
            for i, n in enumerate(self.names[: self.k], start=1):
                self.prob.set_band_description(i, f"P({n})")

    def write(self, window, classes: np.ndarray, confidence: np.ndarray | None, probabilities: np.ndarray | None) -> None:
        """``classes`` ``(h, w)`` class codes (0 = nodata), ``confidence`` ``(h, w)`` in [0, 1] or NaN, ``probabilities`` ``(K, h, w)``."""
        with native_errors(self.files[0][1]):
            self.map.write(classes.astype(self.dtype), 1, window=window)
        if self.conf is not None:
            c = confidence
            if self.confidence_dtype == "uint8":
                c = np.where(np.isnan(c), 0, np.clip(np.round(c * 254) + 1, 1, 255)).astype(np.uint8)
            with native_errors(self.files[1][1]):
                self.conf.write(c, 1, window=window)
        if self.prob is not None:
            with native_errors(self.files[-1][1]):
                self.prob.write(probabilities, window=window)

    def _finish(self) -> None:
        """Close every raster (GDAL flushes its blocks here), make the COGs, render the preview."""
        for ds, path, _, _ in self.files:
            with native_errors(path):
                ds.close()
        if self.majority or self.sieve:
            with native_errors(self.files[0][1]):
                self.cleaned = clean_map(self.files[0][1], self.majority, self.sieve)
        if self.cog:
            for _, path, final_tmp, resampling in self.files:
                with native_errors(final_tmp):
                    to_cog(path, final_tmp, resampling)
        if self.preview_tmp is not None:
            render_preview(self.files[0][2], self.preview_tmp, self.table, self.outputs.map.name)

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._finish()
            else:
                for ds, _, _, _ in self.files:
                    with contextlib.suppress(Exception), native_errors():
                        ds.close()
        except BaseException:
            self._cleanup()
            self.stack.__exit__(*sys.exc_info())  # removes the temporary files; may raise a clearer error
            raise
        self._cleanup()
        return bool(self.stack.__exit__(exc_type, exc, tb))

    def _cleanup(self) -> None:
        if self.cog:
            for _, path, _, _ in self.files:
                path.unlink(missing_ok=True)


class GltWriter:
    """A :class:`MapWriter` for a swath cube with a GLT (EMIT): the windows of the swath are kept in memory; on a
    clean exit the map (and its confidence and probabilities) are written on the GLT's grid, each map pixel taking
    the values of the swath pixel the GLT names (nodata where it names none). ``cleaned`` is the map as written."""

    def __init__(self, writer: MapWriter, glt, shape: tuple[int, int]):
        self.writer, self.glt, self.shape = writer, glt, shape
        self.classes = np.zeros(shape, np.uint16)
        self.conf = self.prob = None
        self.cleaned: np.ndarray | None = None

    def __enter__(self) -> GltWriter:
        return self

    def write(self, window, classes, confidence, probabilities) -> None:
        rows, cols = window.toslices()
        self.classes[rows, cols] = classes
        if confidence is not None:
            if self.conf is None:
                self.conf = np.full(self.shape, np.nan, np.float32)
            self.conf[rows, cols] = confidence
        if probabilities is not None:
            if self.prob is None:
                self.prob = np.full((probabilities.shape[0], *self.shape), np.nan, np.float32)
            self.prob[:, rows, cols] = probabilities

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            return False
        from rasterio.windows import Window

        g = self.glt
        with self.writer as w:
            for win in g.grid.windows(512):
                r0, r1, c0, c1 = win
                part = g.window(r0, r1, c0, c1)
                w.write(
                    Window(c0, r0, c1 - c0, r1 - r0),
                    part.to_grid(self.classes, 0),
                    None if self.conf is None else part.to_grid(self.conf, np.nan),
                    None if self.prob is None else part.to_grid(self.prob, np.nan),
                )
        self.cleaned = self.writer.cleaned if self.writer.cleaned is not None else g.to_grid(self.classes)
        return False


def render_preview(map_path: Path, png: Path, table: ClassTable, title: str) -> None:
    """A quicklook PNG of the map (values = class codes) with a legend of class names and colours
    (matplotlib), rendered in memory and written to ``png`` in one checked write."""
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
    top = max(table.codes)
    colours = [(0, 0, 0, 0)] * (top + 1)
    for c, (r, g, b) in zip(table.codes, table.colours):
        colours[c] = (r / 255, g / 255, b / 255, 1)
    h, w = data.shape
    fig_w = 8.0
    fig, ax = plt.subplots(figsize=(fig_w + 3, max(3.0, fig_w * h / max(w, 1))))
    ax.imshow(data, cmap=ListedColormap(colours), vmin=0, vmax=top, interpolation="nearest")
    ax.set_axis_off()
    handles = [Patch(color=colours[c], label=f"{c} {n}") for c, n in zip(table.codes, table.names)]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        write_via_memory(png, lambda buf: fig.savefig(buf, dpi=100, format="png"))
    finally:
        plt.close(fig)


def write_preview(map_path: Path, png: Path, table: ClassTable, overwrite: bool) -> None:
    """The preview of an existing map file (see :func:`render_preview`), written atomically."""
    with atomic_output(png, overwrite) as tmp:
        render_preview(map_path, tmp, table, Path(map_path).name)
