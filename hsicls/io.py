"""Reading hyperspectral cubes and label rasters; writing class maps.

Conventions used everywhere in hsicls:

* a cube is ``(H, W, B)`` float32 (rows, columns, bands), like the GIC ``.mat`` files;
* a label raster is ``(H, W)`` integer, ``0`` = unlabelled, ``1..K`` = classes;
* georeferencing is kept as a WKT string and a 6-tuple affine ``(a, b, c, d, e, f)``
  (rasterio's ``Affine`` order), or ``None`` for files that have none (.mat/.npy).

Formats: GeoTIFF and any other raster GDAL reads (rasterio), MATLAB v5 (scipy.io) and v7.3
(h5py), and NumPy ``.npy``. Every failure is an :class:`~hsicls.errors.InputError` naming the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

MAT_SUFFIXES = {".mat"}
NPY_SUFFIXES = {".npy"}


@dataclass
class Scene:
    """A hyperspectral cube with what is known of its geometry."""

    data: np.ndarray  # (H, W, B) float32
    path: Path
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    nodata: float | None = None
    band_names: list[str] = field(default_factory=list)
    wavelengths: list[float] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    def valid_mask(self) -> np.ndarray:
        """``(H, W)`` bool: False where any band is NaN/inf, equals nodata, or all bands are 0."""
        return valid_mask(self.data, self.nodata)


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(H, W)`` bool mask of usable pixels of an ``(H, W, B)`` cube."""
    ok = np.isfinite(data).all(axis=-1)
    if nodata is not None and np.isfinite(nodata):
        ok &= ~(data == nodata).any(axis=-1)
    ok &= (data != 0).any(axis=-1)
    return ok


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")


# --------------------------------------------------------------------------- .mat / .npy
def _load_mat(path: Path) -> dict[str, np.ndarray]:
    """All array variables of a MATLAB file (v5 via scipy, v7.3 via h5py), in MATLAB order."""
    import h5py
    import scipy.io

    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except OSError:
        is_hdf5 = False
    try:
        if is_hdf5:
            raise NotImplementedError  # MATLAB v7.3
        raw = scipy.io.loadmat(str(path))
        return {k: v for k, v in raw.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        pass
    except Exception as exc:  # scipy raises ValueError/TypeError/... on corrupt files
        raise InputError(f"{path}: not a readable MATLAB file ({exc})") from None

    try:
        with h5py.File(path, "r") as f:
            out = {}
            for k, v in f.items():
                if isinstance(v, h5py.Dataset) and v.ndim >= 2:
                    out[k] = np.asarray(v).transpose()  # HDF5 stores MATLAB arrays transposed
            return out
    except OSError as exc:
        raise InputError(f"{path}: not a readable MATLAB v7.3 file ({exc})") from None


def _pick_key(path: Path, arrays: dict[str, np.ndarray], key: str | None, ndim: int) -> np.ndarray:
    if key is not None:
        if key not in arrays:
            raise InputError(f"{path}: no variable '{key}' (variables: {', '.join(sorted(arrays)) or 'none'})")
        return arrays[key]
    candidates = [k for k, v in arrays.items() if v.ndim == ndim]
    if len(candidates) == 1:
        return arrays[candidates[0]]
    what = "3-D cube" if ndim == 3 else "2-D label"
    if not candidates:
        raise InputError(f"{path}: no {what} variable found (variables: {', '.join(sorted(arrays)) or 'none'})")
    raise InputError(f"{path}: several {what} variables ({', '.join(sorted(candidates))}); choose one with --key")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy file ({exc})") from None


def _is_array_file(path: Path) -> bool:
    return path.suffix.lower() in MAT_SUFFIXES | NPY_SUFFIXES


def _load_array(path: Path, key: str | None, ndim: int) -> np.ndarray:
    if path.suffix.lower() in MAT_SUFFIXES:
        return _pick_key(path, _load_mat(path), key, ndim)
    if key is not None:
        raise InputError(f"{path}: --key applies only to .mat files")
    return _load_npy(path)


# --------------------------------------------------------------------------- rasters
def _open_raster(path: Path):
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning: handled by the caller
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(f"{path}: not a readable raster ({exc})") from None


def _georef(ds) -> tuple[str | None, tuple[float, ...] | None]:
    crs = ds.crs.to_wkt() if ds.crs else None
    t = ds.transform
    transform = None if (t.is_identity and crs is None) else (t.a, t.b, t.c, t.d, t.e, t.f)
    return crs, transform


def _wavelengths(ds) -> list[float] | None:
    """Band centre wavelengths from GDAL/ENVI metadata, when every band has one."""
    values = []
    for i in range(1, ds.count + 1):
        tags = {k.lower(): v for k, v in ds.tags(i).items()}
        w = tags.get("wavelength")
        if w is None:
            return None
        try:
            values.append(float(w))
        except ValueError:
            return None
    return values


def read_cube(path: str | Path, key: str | None = None) -> Scene:
    """Read a hyperspectral cube as ``(H, W, B)`` float32.

    ``.mat`` (key auto-detected: the only 3-D variable, or ``key``), ``.npy`` (``(H, W, B)``),
    or any GDAL raster (bands become the last axis; CRS, transform, nodata, band descriptions
    and wavelengths are kept).
    """
    path = Path(path)
    _require_file(path)
    if _is_array_file(path):
        arr = _load_array(path, key, 3)
        if arr.ndim != 3:
            raise InputError(f"{path}: expected a 3-D (rows, cols, bands) cube, got shape {arr.shape}")
        data = np.ascontiguousarray(arr, dtype=np.float32)
        return Scene(data=data, path=path)
    if key is not None:
        raise InputError(f"{path}: --key applies only to .mat files")
    ds = _open_raster(path)
    with ds:
        if ds.count < 2:
            raise InputError(f"{path}: has {ds.count} band; a hyperspectral cube needs several")
        try:
            bands = ds.read(out_dtype="float32")  # (B, H, W)
        except Exception as exc:
            raise InputError(f"{path}: could not read pixel data ({exc})") from None
        crs, transform = _georef(ds)
        nodata = ds.nodata
        names = [d or f"band {i + 1}" for i, d in enumerate(ds.descriptions)]
        wl = _wavelengths(ds)
    data = np.ascontiguousarray(bands.transpose(1, 2, 0))
    return Scene(data=data, path=path, crs=crs, transform=transform, nodata=nodata, band_names=names, wavelengths=wl)


def read_labels(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read a label raster as ``(H, W)`` int32 (0 = unlabelled).

    Accepts .mat (the only 2-D variable, or ``key``), .npy and single-band GDAL rasters
    (integer or whole-valued float, as in the EnMAP example labels).
    """
    path = Path(path)
    _require_file(path)
    if _is_array_file(path):
        arr = _load_array(path, key, 2)
    else:
        if key is not None:
            raise InputError(f"{path}: --key applies only to .mat files")
        ds = _open_raster(path)
        with ds:
            if ds.count != 1:
                raise InputError(f"{path}: a label raster must have 1 band, this one has {ds.count}")
            arr = ds.read(1)
            nodata = ds.nodata
        if nodata is not None and np.isfinite(nodata):
            arr = np.where(arr == nodata, 0, arr)
    arr = np.asarray(arr)
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
    labels = arr.astype(np.int32)
    if not (labels > 0).any():
        raise InputError(f"{path}: holds no labelled pixel (all values are 0)")
    return labels


def read_raster_georef(path: str | Path) -> tuple[str | None, tuple[float, ...] | None]:
    """CRS (WKT) and transform of a GDAL raster, ``(None, None)`` for .mat/.npy."""
    path = Path(path)
    if _is_array_file(path):
        return None, None
    ds = _open_raster(path)
    with ds:
        return _georef(ds)


# --------------------------------------------------------------------------- writing
def write_class_map(
    path: Path,
    classes: np.ndarray,
    *,
    crs: str | None,
    transform: tuple[float, ...] | None,
    palette: list[tuple[int, int, int]],
    class_names: list[str],
) -> None:
    """Write a ``(H, W)`` class map (0 = nodata, 1..K) as a tiled DEFLATE GeoTIFF.

    uint8 with the palette as colour table (index ``k`` = class ``k``); uint16 above 255 classes.
    Class names go into the band metadata (``CLASS_<k>=name``) and the band description.
    """
    import rasterio
    from rasterio.transform import Affine

    h, w = classes.shape
    dtype = "uint8" if len(class_names) <= 255 else "uint16"
    profile = dict(
        driver="GTiff",
        height=h,
        width=w,
        count=1,
        dtype=dtype,
        nodata=0,
        compress="deflate",
        tiled=True,
        blockxsize=256,
        blockysize=256,
    )
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = Affine(*transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning for pixel-grid maps
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(classes.astype(dtype), 1)
            if dtype == "uint8":
                cmap = {0: (0, 0, 0, 0)}
                for k, rgb in enumerate(palette, start=1):
                    cmap[k] = (int(rgb[0]), int(rgb[1]), int(rgb[2]), 255)
                dst.write_colormap(1, cmap)
            dst.update_tags(1, **{f"CLASS_{k}": n for k, n in enumerate(class_names, start=1)})
            dst.update_tags(CLASS_NAMES=";".join(class_names), SOFTWARE="hsicls")
            dst.set_band_description(1, "class")


def read_label_metadata(path: str | Path) -> tuple[dict[int, str], dict[int, tuple[int, int, int]]]:
    """Class names and colours stored in a label GeoTIFF (as hsicls writes them), else empty.

    Names come from band tags ``CLASS_<k>=name``; colours from the band's colour table.
    """
    path = Path(path)
    if _is_array_file(path):
        return {}, {}
    ds = _open_raster(path)
    names: dict[int, str] = {}
    colours: dict[int, tuple[int, int, int]] = {}
    with ds:
        for k, v in ds.tags(1).items():
            if k.upper().startswith("CLASS_") and k[6:].isdigit():
                names[int(k[6:])] = v
        try:
            cmap = ds.colormap(1)
            colours = {int(k): tuple(int(c) for c in v[:3]) for k, v in cmap.items() if int(k) > 0}
        except ValueError:  # no colour table
            pass
    return names, colours
