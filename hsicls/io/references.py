"""Class maps and reference labels for accuracy assessment, brought onto the map's grid.

* :func:`read_map`: any single-band class raster (hsicls's or another tool's): its codes, its valid pixels
  (GDAL's mask: the nodata value, an internal mask or alpha; NaN), its grid and the class names it carries
  (:func:`class_names_of`).
* :func:`read_reference`: reference labels as a list of samples ``(row, col, code)`` on the map grid:

  - a raster on any grid and CRS: warped nearest-neighbour onto the map grid (read as is when it is on that
    grid already); code 0 and the nodata value are unlabelled, as in hsicls label files;
  - points in a vector file, any CRS (reprojected): one sample per point, at the map pixel that contains it
    (two points in one pixel are two samples);
  - polygons (or lines): every map pixel whose centre the polygon contains (GDAL's rasterisation; where
    polygons overlap, the later one wins).

  A vector attribute of whole numbers gives class codes; text gives class names. References that fall outside
  the map are counted (``Reference.outside``), never silently dropped.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsicls import console
from hsicls.errors import InputError, first_line
from hsicls.io.formats import format_of, open_raster, read_features, require_file
from hsicls.io.grid import GeoGrid, geometry_bounds
from hsicls.io.readers import read_label_metadata, read_labels

CHUNK = 1_000_000  # reference pixels transformed per step when counting those outside the map


@dataclass
class ClassMap:
    """A class map: codes ``(H, W)`` int64, valid pixels ``(H, W)`` bool, its grid, and class names (code -> name)."""

    path: Path
    codes: np.ndarray
    valid: np.ndarray
    grid: GeoGrid
    nodata: float | None
    names: dict[int, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)  # type: ignore[return-value]


@dataclass
class Reference:
    """Reference samples on a map grid: ``rows``, ``cols``, ``codes`` ``(n,)``; ``names`` code -> name; ``text``:
    the codes only number text values (1..K in sorted order) and mean nothing by themselves."""

    path: Path
    kind: str  # "raster", "points", "polygons" or "points+polygons"
    rows: np.ndarray
    cols: np.ndarray
    codes: np.ndarray
    names: dict[int, str]
    text: bool
    read: int  # labelled reference pixels, or points / polygons with a class, that were read
    outside: int  # of those, outside the map (raster pixels and points: their centre; polygons: their extent)
    without_value: int = 0  # vector features without a class value or a geometry (skipped)
    empty: int = 0  # polygons inside the map's extent that cover no pixel centre
    field: str | None = None
    layer: str | None = None
    warped: bool = False  # a raster reference on another grid, resampled nearest-neighbour


# ------------------------------------------------------------------------------------------------- class names


def class_names_of(path: Path, ds) -> dict[int, str]:
    """Class names a single-band class raster carries, ``{code: name}`` (empty when it has none). In order:
    hsicls's band tags ``CLASS_<code>=name``; an ENVI classification header's ``class names`` (code = position);
    GDAL category names or a raster attribute table, which GDAL keeps for GeoTIFFs in the sidecar ``PATH.aux.xml``."""
    names = {int(k[6:]): v for k, v in ds.tags(1).items() if k.upper().startswith("CLASS_") and k[6:].isdigit()}
    if names:
        return names
    envi = ds.tags(ns="ENVI").get("class_names") if "ENVI" in (ds.tag_namespaces() or []) else None
    if envi:
        return {i: n.strip() for i, n in enumerate(envi.strip().strip("{}").split(",")) if n.strip()}
    return _pam_names(Path(str(path) + ".aux.xml"))


def _pam_names(aux: Path) -> dict[int, str]:
    """Names from GDAL's PAM file: band 1's ``<CategoryNames>`` (code = position) or ``<GDALRasterAttributeTable>``."""
    if not aux.is_file():
        return {}
    try:
        root = ET.parse(aux).getroot()
    except (ET.ParseError, OSError):
        return {}
    band = next((b for b in root.iter("PAMRasterBand") if b.get("band", "1") == "1"), None)
    if band is None:
        return {}
    cats = band.find("CategoryNames")
    if cats is not None:
        names = {i: (c.text or "").strip() for i, c in enumerate(cats.findall("Category"))}
        return {k: v for k, v in names.items() if v}
    rat = band.find("GDALRasterAttributeTable")
    return _rat_names(rat) if rat is not None else {}


def _rat_names(rat) -> dict[int, str]:
    """``{value: name}`` of a GDAL raster attribute table: the name column has usage GFU_Name (2) or is the first
    text column; the value comes from a GFU_MinMax (5) / "value" column, else from ``Row0Min + row x BinSize``."""
    defs = [
        (int(f.findtext("Type", "0")), int(f.findtext("Usage", "0")), (f.findtext("Name") or "").lower())
        for f in rat.findall("FieldDefn")
    ]
    name_col = next((i for i, (_, u, _) in enumerate(defs) if u == 2), None)
    if name_col is None:
        name_col = next((i for i, (t, _, _) in enumerate(defs) if t == 2), None)
    value_col = next((i for i, (t, u, n) in enumerate(defs) if t != 2 and (u == 5 or n == "value")), None)
    if name_col is None:
        return {}
    row0, size = float(rat.get("Row0Min", 0) or 0), float(rat.get("BinSize", 1) or 1)
    out = {}
    for i, row in enumerate(rat.findall("Row")):
        cells = [c.text or "" for c in row.findall("F")]
        try:
            value = float(cells[value_col]) if value_col is not None else row0 + int(row.get("index", i)) * size
        except (ValueError, IndexError):
            continue
        if name_col < len(cells) and cells[name_col].strip() and float(value).is_integer():
            out[int(value)] = cells[name_col].strip()
    return out


# ------------------------------------------------------------------------------------------------------- the map


def read_map(path: str | Path) -> ClassMap:
    """Read a single-band class map; pixels outside GDAL's mask (nodata, internal mask, alpha) or NaN are not valid.
    Codes must be whole numbers (a float band of whole values is accepted)."""
    path = Path(path)
    require_file(path)
    if format_of(path).vector:
        raise InputError(f"{path}: the map must be a raster (a single-band class map), not a vector file")
    data, mask, names, grid, nodata = _class_band(path, "a class map has 1 band, this raster has {}")
    valid = mask & (np.isfinite(data) if data.dtype.kind == "f" else True)
    if data.dtype.kind == "f" and not np.all(data[valid] == np.round(data[valid])):
        raise InputError(f"{path}: not a class map (its values are not whole numbers)")
    if data.dtype.kind not in "biuf":
        raise InputError(f"{path}: not a class map (pixel type {data.dtype})")
    codes = np.where(valid, data, 0).astype(np.int64)
    if not valid.any():
        raise InputError(f"{path}: every pixel of the map is nodata")
    return ClassMap(path, codes, np.asarray(valid, bool), grid, nodata, names)


# ------------------------------------------------------------------------------------------------- the reference


def distinct_maps(paths) -> None:
    """Each map once: the same file given twice (under any name) would count its pixels and samples twice."""
    seen: dict[str, Path] = {}
    for p in map(Path, paths):
        key = str(p.resolve())
        if key in seen:
            raise InputError(f"{p}: given twice (as {seen[key]}); give each map once")
        seen[key] = p


def read_reference(path: str | Path, cmap: ClassMap, field: str | None = None, layer: str | None = None) -> Reference:
    """Reference samples on the grid of ``cmap`` from a raster (any grid) or a vector file of points/polygons (any CRS)."""
    path = Path(path)
    require_file(path)
    fmt = format_of(path)
    if fmt.vector:
        return _vector_reference(path, cmap, field, layer)
    if field is not None or layer is not None:
        raise InputError(f"{path}: --reference-field and --reference-layer apply to vector references only")
    if not fmt.georeferenced:
        return _array_reference(path, cmap.grid)
    return _raster_reference(path, cmap.grid)


def _array_reference(path: Path, grid: GeoGrid) -> Reference:
    """Labels without georeferencing (.mat, .npy, ENVI ROI export): they must be on the map's own grid."""
    labels = read_labels(path)
    if labels.shape != grid.shape:
        raise InputError(
            f"{path}: {labels.shape[0]}x{labels.shape[1]} px without georeferencing; the map is "
            f"{grid.shape[0]}x{grid.shape[1]} px (such a reference must be on the map's own grid)"
        )
    rows, cols = np.nonzero(labels)
    names = read_label_metadata(path)[0]
    return Reference(path, "raster", rows, cols, labels[rows, cols].astype(np.int64), names, False, int(rows.size), 0)


def _class_band(path: Path, one_band: str):
    """``(data, GDAL's valid mask, class names, grid, nodata)`` of a single-band class raster
    (a map or a reference); ``one_band`` is the message for another band count (``{}``: the count)."""
    with open_raster(path) as ds:
        if ds.count != 1:
            raise InputError(f"{path}: " + one_band.format(ds.count))
        try:
            data, mask = ds.read(1), ds.read_masks(1) > 0
        except Exception as exc:
            raise InputError(f"{path}: could not read pixel data ({first_line(exc)})") from None
        return data, mask, class_names_of(path, ds), GeoGrid.of(ds), ds.nodata


def _raster_reference(path: Path, grid: GeoGrid) -> Reference:
    data, mask, names, own, _ = _class_band(path, "a reference raster has 1 band, this one has {}")
    labelled = mask & (np.isfinite(data) if data.dtype.kind == "f" else True)
    labelled &= np.where(labelled, data, 0) != 0
    values = data[labelled]
    if data.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise InputError(f"{path}: reference labels must be whole numbers")
    if not labelled.any():
        raise InputError(f"{path}: holds no labelled pixel (all 0 or nodata)")
    src = np.where(labelled, data, 0).astype(np.int64)
    placement = grid.placement(own)
    if placement is None:
        raise InputError(
            f"{path}: has no georeferencing and is {src.shape[0]}x{src.shape[1]} px, not the map's {grid.shape[0]}x{grid.shape[1]}; "
            "a reference without georeferencing must be on the map's own grid"
        )
    if placement == "same":
        rows, cols = np.nonzero(labelled)
        return Reference(path, "raster", rows, cols, src[rows, cols], names, False, int(rows.size), 0)
    if src.min() < np.iinfo(np.int32).min or src.max() > np.iinfo(np.int32).max:
        raise InputError(f"{path}: reference codes do not fit 32-bit integers")
    warped = grid.warp_codes(src, own).astype(np.int64)
    rows, cols = np.nonzero(warped)
    outside = _count_outside(labelled, own, grid)
    return Reference(path, "raster", rows, cols, warped[rows, cols], names, False, int(labelled.sum()), outside, warped=True)


def _count_outside(labelled: np.ndarray, own: GeoGrid, grid: GeoGrid) -> int:
    """How many labelled reference pixels (on the grid ``own``) have their centre outside the map ``grid``."""
    from rasterio.warp import transform as warp_xy

    rows, cols = np.nonzero(labelled)
    outside = 0
    for lo in range(0, rows.size, CHUNK):
        xs, ys = own.centres(rows[lo : lo + CHUNK], cols[lo : lo + CHUNK])
        if not grid.same_crs(own.crs):
            xs, ys = (np.asarray(v) for v in warp_xy(own.crs, grid.crs, xs, ys))
        outside += int((~grid.rowcol(xs, ys)[0]).sum())
    return outside


# ------------------------------------------------------------------------------------------------------- vectors


def _vector_reference(path: Path, cmap: ClassMap, field: str | None, layer: str | None) -> Reference:
    """Points (one sample each) and polygons (the pixels whose centre they contain), reprojected onto the map."""
    grid = cmap.grid
    if grid.transform is None:
        raise InputError(f"{cmap.path}: the map has no georeferencing; a vector reference cannot be placed on it")
    feats = read_features(path, field, layer, ("--reference-layer", "--reference-field"))
    items, without = feats.items, feats.without
    codes, names, text = _feature_codes(path, [v for _, v in items])
    if not text and (codes == 0).any():  # code 0 = unlabelled, as in label rasters
        without += int((codes == 0).sum())
        items, codes = [f for f, c in zip(items, codes) if c != 0], codes[codes != 0]
        if not items:
            raise InputError(f"{path}: every feature has class 0 (unlabelled)")
    if feats.crs is None:
        console.warn(f"{path.name} has no CRS; its coordinates are taken to be in the map's CRS")
    geoms = grid.to_own_crs([g for g, _ in items], feats.crs)
    is_point = np.array([g["type"] in ("Point", "MultiPoint") for g in geoms], bool)
    rows, cols, out_codes, outside, read = _point_samples([g for g, p in zip(geoms, is_point) if p], codes[is_point], grid)
    empty = 0
    if (~is_point).any():
        pr, pc, pcodes, p_out, empty = _polygon_samples([g for g, p in zip(geoms, is_point) if not p], codes[~is_point], grid)
        rows, cols, out_codes = np.concatenate([rows, pr]), np.concatenate([cols, pc]), np.concatenate([out_codes, pcodes])
        outside, read = outside + p_out, read + int((~is_point).sum())
    kind = "points" if is_point.all() else "polygons" if not is_point.any() else "points+polygons"
    return Reference(path, kind, rows, cols, out_codes, names, text, read, outside, without, empty, feats.field, feats.layer)


_INT = re.compile(r"\s*[+-]?\d+\s*")


def _feature_codes(path: Path, values: list) -> tuple[np.ndarray, dict[int, str], bool]:
    """Whole numbers (or text that spells them) are codes; any other text are class names, numbered 1..K sorted."""

    def whole(v) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, (int, np.integer)):
            return True
        if isinstance(v, float):
            return math.isfinite(v) and v.is_integer()
        return isinstance(v, str) and bool(_INT.fullmatch(v))

    if all(whole(v) for v in values):
        return np.array([int(float(v)) for v in values], np.int64), {}, False
    if any(isinstance(v, float) for v in values) and not any(isinstance(v, str) for v in values):
        raise InputError(f"{path}: the class attribute holds fractional numbers; class codes must be whole numbers")
    names = sorted({str(v).strip() for v in values})
    index = {n: k for k, n in enumerate(names, start=1)}
    return np.array([index[str(v).strip()] for v in values], np.int64), dict(enumerate(names, start=1)), True


def _point_samples(geoms: list[dict], codes: np.ndarray, grid: GeoGrid):
    """``(rows, cols, codes, outside, points read)``: every point of Point/MultiPoint features, at its map pixel."""
    xy, pc = [], []
    for g, code in zip(geoms, codes):
        pts = [g["coordinates"]] if g["type"] == "Point" else list(g["coordinates"])
        xy += [(p[0], p[1]) for p in pts]
        pc += [code] * len(pts)
    if not xy:
        return (np.zeros(0, np.int64),) * 3 + (0, 0)
    a = np.asarray(xy, np.float64)
    ok, r, c = grid.rowcol(a[:, 0], a[:, 1])
    return r[ok], c[ok], np.asarray(pc, np.int64)[ok], int((~ok).sum()), int(a.shape[0])


def _polygon_samples(geoms: list[dict], codes: np.ndarray, grid: GeoGrid):
    """``(rows, cols, codes, outside, empty)``: the pixels whose centre each polygon contains; polygons whose extent
    misses the map are ``outside``; those within it that cover no pixel centre are ``empty``."""
    from rasterio.features import rasterize

    burnt = rasterize(
        [(g, i + 1) for i, g in enumerate(geoms)], out_shape=grid.shape, transform=grid.affine, fill=0, dtype="int32"
    )
    rows, cols = np.nonzero(burnt)
    feature = burnt[rows, cols] - 1
    hit = np.bincount(feature, minlength=len(geoms)) > 0
    x0, y0, x1, y1 = grid.bounds()
    outside = 0
    for g, h in zip(geoms, hit):
        if not h:
            gx0, gy0, gx1, gy1 = geometry_bounds(g)
            outside += int(gx1 < x0 or gx0 > x1 or gy1 < y0 or gy0 > y1)
    return rows.astype(np.int64), cols.astype(np.int64), codes[feature], outside, int((~hit).sum()) - outside
