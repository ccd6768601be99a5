"""Reading hyperspectral cubes and label files, whatever their format (:mod:`hsicls.io.formats`).

Conventions used everywhere in hsicls:

* a cube is ``(H, W, B)`` float32 (rows, columns, bands), like the GIC ``.mat`` files;
* a label raster is ``(H, W)`` integer, ``0`` = unlabelled, ``1..K`` = classes;
* a grid is a :class:`~hsicls.io.grid.GeoGrid` (CRS as WKT, affine 6-tuple, or None for .mat/.npy).

Every failure is an :class:`~hsicls.errors.InputError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsicls.errors import InputError
from hsicls.io.cube import BandSet, CubeSource, Scene, valid_mask
from hsicls.io.formats import format_of, rasterize_vector_labels, read_envi_roi, require_file
from hsicls.io.formats.products import flags_for
from hsicls.io.grid import GeoGrid

__all__ = [
    "CubeSource",
    "Scene",
    "open_cube",
    "rasterize_vector_labels",
    "read_cube",
    "read_envi_roi",
    "read_label_metadata",
    "read_labels",
    "valid_mask",
]


def open_cube(path: str | Path, key: str | None = None, nodata: float | None = None, mask: str = "all") -> CubeSource:
    """Open a hyperspectral cube: ``.mat`` (key auto-detected: the only 3-D variable, or ``key``),
    ``.npy`` ``(H, W, B)``, or any GDAL raster (bands become the last axis; CRS, transform,
    nodata, band descriptions and wavelengths are kept; bands flagged ``bbl = 0`` are skipped).

    A sensor product (EnMAP, DESIS, PRISMA, EMIT: :mod:`hsicls.io.formats.products`) is read as physical values with
    its band record, given as its main file or its folder; ``mask`` (``--mask``) says which quality flags make
    pixels nodata. ``nodata`` (``--nodata``) replaces the file's nodata value. Bands that are NaN at every pixel
    are dropped with a warning naming them; a constant value framing the scene in every band
    without a nodata tag is named in a warning pointing at ``--nodata``."""
    path = Path(path)
    fmt = format_of(path) if path.is_dir() else None  # a sensor product's folder
    if fmt is None or not fmt.claims(path):
        require_file(path)
        fmt = format_of(path)
    flags_for(mask)
    source = fmt.open_cube(path, key, mask)
    if nodata is not None:
        source.nodata = float(nodata)
    source = _drop_nan_bands(source)
    if source.nodata is None:
        frame = _fill_frame(source)
        if frame is not None:
            from hsicls import console

            console.warn(
                f"{source.path.name}: every band holds {frame:g} all around the scene's border and the file has no nodata "
                f"tag; if it is a fill value, pass --nodata {frame:g} (now it is used as spectra)"
            )
    return source


def read_cube(path: str | Path, key: str | None = None, nodata: float | None = None) -> Scene:
    """Read a whole hyperspectral cube as ``(H, W, B)`` float32 (see :func:`open_cube`)."""
    return open_cube(path, key, nodata).read()


def _drop_nan_bands(source: CubeSource) -> CubeSource:
    """Drop the all-NaN bands (they would make every pixel nodata), naming them in a warning; each band leaves
    with all its facts (name, wavelength, FWHM)."""
    read = source.bands.read
    drop = source.pixels.nan_bands([b.number for b in read])
    if not drop:
        return source
    if len(drop) == len(read):
        raise InputError(f"{source.path}: every band is NaN at every pixel")
    from hsicls import console

    named = [
        f"{read[k].number} ({read[k].name})" if read[k].name != f"band {read[k].number}" else str(read[k].number) for k in drop
    ]
    console.warn(
        f"{source.path.name}: band {', '.join(named)} is NaN at every pixel; dropped, {len(read) - len(drop)} bands kept"
    )
    gone = {read[k] for k in drop}
    source.bands = BandSet([b for b in source.bands.all if b not in gone])
    return source


def _fill_frame(source: CubeSource) -> float | None:
    """The value every band holds on the scene's whole border (first and last rows, sampled first
    and last columns), when it is one finite, non-zero constant: a fill frame without a nodata tag."""
    h, w = source.height, source.width
    if h < 3 or w < 3:
        return None
    read = source.reader()
    try:
        rows = np.unique(np.linspace(0, h - 1, min(h, 32)).astype(int))
        strips = [read(0, 1, 0, w), read(h - 1, h, 0, w)]
        strips += [read(r, r + 1, c, c + 1) for r in rows for c in (0, w - 1)]
    except Exception:  # unreadable pixels: the real read reports them
        return None
    finally:
        read.close()
    values = np.concatenate([np.asarray(s).reshape(-1) for s in strips])
    v = values[0]
    return float(v) if np.isfinite(v) and v != 0 and bool((values == v).all()) else None


def read_labels(path: str | Path, key: str | None = None, like: GeoGrid | None = None, field: str | None = None) -> np.ndarray:
    """Read labels as ``(H, W)`` int32 (0 = unlabelled).

    Accepts .mat (the only 2-D variable, or ``key``), .npy, single-band GDAL rasters (integer
    or whole-valued float, as in the EnMAP example labels; the nodata value is unlabelled), ENVI
    ROI ASCII exports (``.txt``, e.g. Houston 2013's), and point/polygon vector files rasterised
    onto the grid ``like`` (``field`` names the class attribute).
    """
    path = Path(path)
    require_file(path)
    arr = np.asarray(format_of(path).read_labels(path, key, like, field))
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2-D label raster, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            arr = np.where(np.isfinite(arr), arr, 0)
        if not np.all(arr == np.round(arr)):
            raise InputError(f"{path}: labels must be whole numbers")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{path}: labels must be numeric, got {arr.dtype}")
    if (arr < 0).any():
        raise InputError(f"{path}: labels must be >= 0 (0 = unlabelled)")
    if arr.size and arr.max() >= 65535:
        raise InputError(
            f"{path}: label value {arr.max():.0f} is too large for a class code (a fill value without a nodata tag?)"
        )
    labels = arr.astype(np.int32)
    if not (labels > 0).any():
        raise InputError(f"{path}: holds no labelled pixel (all values are 0)")
    return labels


def read_label_metadata(path: str | Path) -> tuple[dict[int, str], dict[int, tuple[int, int, int]]]:
    """``({code: name}, {code: rgb})`` a label file carries: a label GeoTIFF's band tags ``CLASS_<k>=name`` (as
    hsicls writes them) and colour table, an ENVI ROI export's names and colours; else empty."""
    path = Path(path)
    return format_of(path).label_metadata(path)
