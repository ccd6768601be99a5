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

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsicls.errors import InputError, first_line

MAT_SUFFIXES = {".mat"}
NPY_SUFFIXES = {".npy"}
ROI_SUFFIXES = {".txt"}
VECTOR_SUFFIXES = {".gpkg", ".shp", ".geojson", ".fgb", ".gml", ".kml"}
ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".envi")
# files whose suffix says they are rasters or arrays: never probed as vectors
_NOT_VECTOR = {".tif", ".tiff", ".vrt", ".hdr", ".jp2", ".nc", ".h5", ".he5", ".hdf", ".png", ".jpg", ".pt", *ENVI_DATA_SUFFIXES}


def is_vector(path: str | Path) -> bool:
    """A vector file, recognised by content as GDAL/OGR tools do: a known vector suffix, or any other
    file (a GeoJSON named ``.json``, a ``.zip``'d shapefile) that OGR opens with at least one layer."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in VECTOR_SUFFIXES:
        return True
    if suffix in _NOT_VECTOR | MAT_SUFFIXES | NPY_SUFFIXES | ROI_SUFFIXES or not path.is_file():
        return False
    try:
        import fiona

        return len(fiona.listlayers(path)) > 0
    except Exception:  # fiona absent, or not a vector file
        return False


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
    dropped_bands: list[int] = field(default_factory=list)  # 1-based bands flagged bad (bbl = 0), not read

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    def valid_mask(self) -> np.ndarray:
        """``(H, W)`` bool: False where any band is NaN/inf, equals nodata, or all bands are 0."""
        return valid_mask(self.data, self.nodata)


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(H, W)`` bool mask of usable pixels of an ``(H, W, B)`` cube: False where any band is
    NaN/inf, where every band equals the nodata value (GDAL's mask semantics), or where every
    band is 0 (a fill border)."""
    ok = np.isfinite(data).all(axis=-1)
    if nodata is not None and np.isfinite(nodata):
        ok &= ~(data == nodata).all(axis=-1)
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
    # scalars and strings come out of loadmat as 2-D arrays too: count numeric arrays only
    candidates = [k for k, v in arrays.items() if v.ndim == ndim and v.dtype.kind in "biuf" and min(v.shape) > 1]
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


def _unmixing_layout(path: Path, arrays: dict[str, np.ndarray], ndim: int) -> np.ndarray | None:
    """Unmixing-benchmark files (Jasper Ridge, Samson): ``Y`` (bands, pixels) with ``nRow``/``nCol``
    -> cube ``(nRow, nCol, bands)``; an endmember file's abundances ``A`` (classes, pixels) of a
    square scene -> labels = 1 + argmax. Pixels are stored column-major (MATLAB order)."""
    if ndim == 3 and "Y" in arrays and "nRow" in arrays and "nCol" in arrays and arrays["Y"].ndim == 2:
        y = arrays["Y"]
        rows, cols = int(np.ravel(arrays["nRow"])[0]), int(np.ravel(arrays["nCol"])[0])
        if y.shape[1] != rows * cols:
            raise InputError(f"{path}: Y has {y.shape[1]} pixels, not nRow x nCol = {rows * cols}")
        return y.T.reshape(cols, rows, y.shape[0]).transpose(1, 0, 2)
    if ndim == 2 and "A" in arrays and "M" in arrays and arrays["A"].ndim == 2:
        a = arrays["A"]
        side = int(round(np.sqrt(a.shape[1])))
        if side * side != a.shape[1]:
            raise InputError(f"{path}: abundances of {a.shape[1]} pixels do not form a square scene; give the labels another way")
        return (a.argmax(axis=0) + 1).reshape(side, side, order="F")
    return None


def _load_array(path: Path, key: str | None, ndim: int) -> np.ndarray:
    if path.suffix.lower() in MAT_SUFFIXES:
        arrays = _load_mat(path)
        if key is None:
            special = _unmixing_layout(path, arrays, ndim)
            if special is not None:
                return special
        return _pick_key(path, arrays, key, ndim)
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


def _wavelengths(ds, bands: list[int], key: str = "wavelength") -> list[float] | None:
    """Band centre wavelengths (or ``key="fwhm"`` widths) in nm from GDAL/ENVI metadata, when every band has one."""
    values = []
    for i in bands:
        tags = {k.lower(): v for k, v in ds.tags(i).items()}
        w = tags.get(key)
        if w is None:
            return None
        try:
            v = float(w)
        except ValueError:
            return None
        if not math.isfinite(v) or v <= 0:  # named and ignored: band matching then goes by count
            from hsicls import console

            console.warn(f"{ds.name}: band {i} has {key} {w!r} (not a positive finite number); the {key}s are ignored")
            return None
        units = tags.get("wavelength_units", "").lower()
        values.append(v * 1000.0 if units.startswith("micro") or units in ("um", "µm") else v)
    return values


def _good_bands(ds) -> list[int]:
    """1-based indices of the bands not flagged bad (GDAL/ENVI per-band ``bbl = 0``)."""
    good = []
    for i in range(1, ds.count + 1):
        bbl = {k.lower(): v for k, v in ds.tags(i).items()}.get("bbl")
        if bbl is not None and bbl.strip() in ("0", "0.0"):
            continue
        good.append(i)
    return good or list(range(1, ds.count + 1))


def _envi_data_file(path: Path) -> Path:
    """The binary file that goes with an ENVI ``.hdr`` (GDAL opens the binary, not the header)."""
    for suffix in ENVI_DATA_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate != path and candidate.exists():
            return candidate
    raise InputError(
        f"{path}: ENVI header without its data file (looked for {', '.join(s or 'no suffix' for s in ENVI_DATA_SUFFIXES)})"
    )


@dataclass
class CubeSource:
    """An opened cube: its shape and georeferencing, read whole (:meth:`read`) or window by window
    (:meth:`reader`). GDAL rasters are read on demand; .mat/.npy arrays are held in memory."""

    path: Path
    height: int
    width: int
    bands: int  # bands read (those not flagged bad)
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    nodata: float | None = None
    good: list[int] | None = None  # 1-based bands read, for GDAL rasters
    raster_path: Path | None = None
    array: np.ndarray | None = None  # (H, W, B) float32 for .mat/.npy
    band_names: list[str] = field(default_factory=list)
    wavelengths: list[float] | None = None
    dropped_bands: list[int] = field(default_factory=list)
    fwhm: list[float] | None = None

    def reader(self):
        """A function ``(r0, r1, c0, c1) -> (rows, cols, B) float32``; one per thread (``.close()`` when done)."""
        if self.array is not None:
            arr = self.array
            return lambda r0, r1, c0, c1: arr[r0:r1, c0:c1]
        from rasterio.windows import Window

        ds = _open_raster(self.raster_path)

        def read(r0, r1, c0, c1):
            try:
                data = ds.read(self.good, window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype="float32")
            except Exception as exc:
                raise InputError(f"{self.path}: could not read pixels {r0}:{r1}, {c0}:{c1} ({first_line(exc)})") from None
            return data.transpose(1, 2, 0)

        read.close = ds.close  # type: ignore[attr-defined]
        return read

    def select_bands(self, order: list[int]) -> CubeSource:
        """The same cube with its bands taken in ``order`` (0-based indices of the bands read)."""
        import dataclasses

        pick = lambda xs: [xs[i] for i in order] if xs else xs
        if self.array is not None:
            return dataclasses.replace(
                self,
                array=np.ascontiguousarray(self.array[:, :, order]),
                bands=len(order),
                wavelengths=pick(self.wavelengths),
                fwhm=pick(self.fwhm),
            )
        return dataclasses.replace(
            self,
            good=pick(self.good),
            bands=len(order),
            band_names=pick(self.band_names),
            wavelengths=pick(self.wavelengths),
            fwhm=pick(self.fwhm),
        )

    def read(self) -> Scene:
        """The whole cube as a :class:`Scene` ``(H, W, B)`` float32."""
        if self.array is not None:
            data = self.array
        else:
            read = self.reader()
            try:
                data = np.ascontiguousarray(read(0, self.height, 0, self.width))
            finally:
                read.close()
        return Scene(
            data=data,
            path=self.path,
            crs=self.crs,
            transform=self.transform,
            nodata=self.nodata,
            band_names=self.band_names,
            wavelengths=self.wavelengths,
            dropped_bands=self.dropped_bands,
        )


def open_cube(path: str | Path, key: str | None = None, nodata: float | None = None) -> CubeSource:
    """Open a hyperspectral cube: ``.mat`` (key auto-detected: the only 3-D variable, or ``key``),
    ``.npy`` ``(H, W, B)``, or any GDAL raster (bands become the last axis; CRS, transform,
    nodata, band descriptions and wavelengths are kept; bands flagged ``bbl = 0`` are skipped).

    ``nodata`` (``--nodata``) replaces the file's nodata value. Bands that are NaN at every pixel
    are dropped with a warning naming them; a constant value framing the scene in every band
    without a nodata tag is named in a warning pointing at ``--nodata``."""
    source = _open_cube(Path(path), key)
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


def _open_cube(path: Path, key: str | None) -> CubeSource:
    _require_file(path)
    if _is_array_file(path):
        arr = _load_array(path, key, 3)
        if arr.ndim != 3:
            raise InputError(f"{path}: expected a 3-D (rows, cols, bands) cube, got shape {arr.shape}")
        data = np.ascontiguousarray(arr, dtype=np.float32)
        h, w, b = data.shape
        return CubeSource(path, h, w, b, array=data)
    if key is not None:
        raise InputError(f"{path}: --key applies only to .mat files")
    raster = _envi_data_file(path) if path.suffix.lower() == ".hdr" else path
    with _open_raster(raster) as ds:
        if ds.count < 2:
            raise InputError(f"{path}: has {ds.count} band; a hyperspectral cube needs several")
        good = _good_bands(ds)
        crs, transform = _georef(ds)
        return CubeSource(
            path,
            ds.height,
            ds.width,
            len(good),
            crs,
            transform,
            ds.nodata,
            good,
            raster,
            band_names=[ds.descriptions[i - 1] or f"band {i}" for i in good],
            wavelengths=_wavelengths(ds, good),
            dropped_bands=sorted(set(range(1, ds.count + 1)) - set(good)),
            fwhm=_wavelengths(ds, good, "fwhm"),
        )


def read_cube(path: str | Path, key: str | None = None, nodata: float | None = None) -> Scene:
    """Read a whole hyperspectral cube as ``(H, W, B)`` float32 (see :func:`open_cube`)."""
    return open_cube(path, key, nodata).read()


def _nan_bands(source: CubeSource) -> list[int]:
    """Positions (among the bands read) of the bands that are NaN at every pixel. GDAL rasters:
    float bands only, screened on a decimated read and confirmed on the whole band."""
    if source.array is not None:
        return np.flatnonzero(np.isnan(source.array).all(axis=(0, 1))).tolist()
    from rasterio.enums import Resampling

    try:
        with _open_raster(source.raster_path) as ds:
            floats = [k for k, i in enumerate(source.good) if np.dtype(ds.dtypes[i - 1]).kind == "f"]
            if not floats:
                return []
            shape = (len(floats), min(source.height, 64), min(source.width, 64))
            sample = ds.read([source.good[k] for k in floats], out_shape=shape, resampling=Resampling.nearest)
            candidates = [k for j, k in enumerate(floats) if np.isnan(sample[j]).all()]
            return [k for k in candidates if np.isnan(ds.read(source.good[k])).all()]
    except Exception:  # unreadable pixels: the real read reports them
        return []


def _drop_nan_bands(source: CubeSource) -> CubeSource:
    """Drop the all-NaN bands (they would make every pixel nodata), naming them in a warning."""
    drop = _nan_bands(source)
    if not drop:
        return source
    if len(drop) == source.bands:
        raise InputError(f"{source.path}: every band is NaN at every pixel")
    from hsicls import console

    numbers = [source.good[k] if source.good else k + 1 for k in drop]
    named = [
        f"{n} ({source.band_names[k]})" if source.band_names and source.band_names[k] != f"band {n}" else str(n)
        for n, k in zip(numbers, drop)
    ]
    console.warn(
        f"{source.path.name}: band {', '.join(named)} is NaN at every pixel; dropped, {source.bands - len(drop)} bands kept"
    )
    keep = [k for k in range(source.bands) if k not in set(drop)]
    source.bands = len(keep)
    if source.array is not None:
        source.array = np.ascontiguousarray(source.array[..., keep])
    if source.good:
        source.good = [source.good[k] for k in keep]
    if source.band_names:
        source.band_names = [source.band_names[k] for k in keep]
    if source.wavelengths:
        source.wavelengths = [source.wavelengths[k] for k in keep]
    if source.fwhm:  # each band's facts go together: its FWHM leaves with it
        source.fwhm = [source.fwhm[k] for k in keep]
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
        if hasattr(read, "close"):
            read.close()
    values = np.concatenate([np.asarray(s).reshape(-1) for s in strips])
    v = values[0]
    return float(v) if np.isfinite(v) and v != 0 and bool((values == v).all()) else None


def read_labels(path: str | Path, key: str | None = None, like: Scene | None = None, field: str | None = None) -> np.ndarray:
    """Read labels as ``(H, W)`` int32 (0 = unlabelled).

    Accepts .mat (the only 2-D variable, or ``key``), .npy, single-band GDAL rasters (integer
    or whole-valued float, as in the EnMAP example labels), ENVI ROI ASCII exports (``.txt``,
    e.g. Houston 2013's), and point/polygon vector files rasterised onto the grid of ``like``
    (``field`` names the class attribute).
    """
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    if suffix in ROI_SUFFIXES:
        arr = read_envi_roi(path)[0]
    elif is_vector(path):
        if like is None:
            raise InputError(f"{path}: vector labels need the scene's grid to be rasterised onto")
        arr = rasterize_vector_labels(path, like, field)[0]
    elif _is_array_file(path):
        arr = _load_array(path, key, 2)
    else:
        if key is not None:
            raise InputError(f"{path}: --key applies only to .mat files")
        ds = _open_raster(path)
        with ds:
            if ds.count != 1:
                raise InputError(f"{path}: a label raster must have 1 band, this one has {ds.count}")
            try:
                arr = ds.read(1)
            except Exception as exc:
                raise InputError(f"{path}: could not read pixel data ({first_line(exc)})") from None
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
    if arr.size and arr.max() >= 65535:
        raise InputError(
            f"{path}: label value {arr.max():.0f} is too large for a class code (a fill value without a nodata tag?)"
        )
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


def read_label_metadata(path: str | Path) -> tuple[dict[int, str], dict[int, tuple[int, int, int]]]:
    """Class names and colours stored in a label GeoTIFF (as hsicls writes them), else empty.

    Names come from band tags ``CLASS_<k>=name``; colours from the band's colour table.
    """
    path = Path(path)
    if path.suffix.lower() in ROI_SUFFIXES:
        _, names_list, colours_list = read_envi_roi(path)
        return ({k: n for k, n in enumerate(names_list, 1)}, {k: c for k, c in enumerate(colours_list, 1) if c})
    if _is_array_file(path) or is_vector(path):
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


def read_envi_roi(path: str | Path) -> tuple[np.ndarray, list[str], list[tuple[int, int, int] | None]]:
    """Rasterise an ENVI "Output of ROIs" ASCII file (as Houston 2013's official samples).

    Header lines start with ``;`` and give ``File Dimension: <cols> x <rows>`` and, per ROI,
    ``ROI name``, ``ROI rgb value`` and ``ROI npts``; then each ROI's points follow as rows
    ``ID X Y ...`` (1-based column X, row Y), blocks separated by blank lines, in ROI order.
    Returns labels ``(rows, cols)`` with ROI k -> class k, the ROI names and colours.
    """
    import re

    path = Path(path)
    _require_file(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if not lines or "ROI" not in lines[0]:
        raise InputError(f"{path}: not an ENVI ROI ASCII export (first line: {lines[0][:60] if lines else 'empty file'})")
    names: list[str] = []
    colours: list[tuple[int, int, int] | None] = []
    npts: list[int] = []
    dims = None
    for ln in lines:
        if not ln.startswith(";"):
            continue
        m = re.match(r";\s*File Dimension:\s*(\d+)\s*x\s*(\d+)", ln)
        if m:
            dims = (int(m.group(2)), int(m.group(1)))  # rows, cols
        m = re.match(r";\s*ROI name:\s*(.*)", ln)
        if m:
            names.append(m.group(1).strip())
            colours.append(None)
        m = re.match(r";\s*ROI rgb value:\s*\{\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\}", ln)
        if m and colours:
            colours[-1] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        m = re.match(r";\s*ROI npts:\s*(\d+)", ln)
        if m:
            npts.append(int(m.group(1)))
    if dims is None or not names or len(npts) != len(names):
        raise InputError(f"{path}: incomplete ENVI ROI header (need File Dimension, ROI names and npts)")
    points = []
    for ln in lines:
        if ln.startswith(";") or not ln.strip():
            continue
        parts = ln.split()
        try:
            points.append((int(parts[1]), int(parts[2])))
        except (IndexError, ValueError):
            raise InputError(f"{path}: malformed point row '{ln.strip()[:40]}'") from None
    if len(points) != sum(npts):
        raise InputError(f"{path}: header announces {sum(npts)} points but the file holds {len(points)} (truncated?)")
    labels = np.zeros(dims, np.int32)
    start = 0
    for k, n in enumerate(npts, start=1):
        block = np.array(points[start : start + n]).reshape(-1, 2)
        cols, rows = block[:, 0] - 1, block[:, 1] - 1
        if (rows < 0).any() or (rows >= dims[0]).any() or (cols < 0).any() or (cols >= dims[1]).any():
            raise InputError(f"{path}: ROI '{names[k - 1]}' has points outside the {dims[1]} x {dims[0]} image")
        labels[rows, cols] = k
        start += n
    return labels, names, colours


def rasterize_vector_labels(
    path: str | Path, like, field: str | None = None, layer: str | None = None
) -> tuple[np.ndarray, list[str]]:
    """Burn points/polygons of a vector file onto the grid of ``like`` (reprojected if needed).

    ``field`` is the class attribute: whole numbers are used as class codes; text values
    become classes 1..K in sorted order (their names are returned). Needs ``fiona``
    (``pip install hsicls[vector]``).
    """
    path = Path(path)
    from rasterio.features import rasterize
    from rasterio.transform import Affine
    from rasterio.warp import transform_geom

    if like.transform is None:
        raise InputError(f"{path}: vector labels need a georeferenced scene; {like.path.name} has no transform")
    feats, names, src_crs = read_vector_features(path, field, layer)
    codes = [c for _, c in feats]
    geoms = [g for g, _ in feats]
    if src_crs and like.crs and src_crs != like.crs:
        geoms = [transform_geom(src_crs, like.crs, g) for g in geoms]
    h, w = like.height, like.width
    labels = rasterize(list(zip(geoms, codes)), out_shape=(h, w), transform=Affine(*like.transform), fill=0, dtype="int32")
    return labels, names


@contextmanager
def pick_vector_layer(
    fiona, path: Path, layers: list[str], layer: str | None, field: str | None, layer_flag: str, field_flag: str
):
    """Open the feature layer of a vector file (``layer``, or its only layer with geometry; QGIS's
    ``layer_styles`` table is not one) and choose the class attribute (``field``, or its only one);
    yields ``(collection, field)``. Ambiguity is one error naming ``layer_flag`` / ``field_flag``."""
    if layer is not None and layer not in layers:
        raise InputError(f"{path}: no layer '{layer}' (layers: {', '.join(layers)})")
    if layer is None and len(layers) > 1:
        spatial = [n for n in layers if n != "layer_styles" and _has_geometry(fiona, path, n)]
        if len(spatial) != 1:
            raise InputError(f"{path}: has {len(spatial)} feature layers ({', '.join(spatial)}); choose one with {layer_flag}")
        layer = spatial[0]
    with fiona.open(path, layer=layer) as src:
        props = list(src.schema["properties"])
        if field is None:
            if len(props) != 1:
                raise InputError(f"{path}: choose the class attribute with {field_flag} (one of {', '.join(props)})")
            field = props[0]
        if field not in props:
            raise InputError(f"{path}: no attribute '{field}' (attributes: {', '.join(props)})")
        yield src, field


def _has_geometry(fiona, path: Path, layer: str) -> bool:
    with fiona.open(path, layer=layer) as src:
        return src.schema.get("geometry") not in (None, "None")


def read_vector_features(path: str | Path, field: str | None = None, layer: str | None = None):
    """``([(geometry dict, class code)], names, crs WKT)`` of a vector file's features with a value in
    ``field`` (whole numbers are codes; text values become codes 1..K in sorted order, ``names``)."""
    path = Path(path)
    try:
        import fiona
    except ImportError:
        raise InputError(f"{path}: reading vector labels needs fiona (pip install 'hsicls[vector]')") from None
    try:
        layers = fiona.listlayers(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable vector file ({first_line(exc)})") from None
    try:
        with pick_vector_layer(fiona, path, layers, layer, field, "--label-layer", "--label-field") as (src, field):
            src_crs = src.crs.to_wkt() if src.crs else None
            feats = [(f.geometry, f.properties[field]) for f in src if f.geometry is not None and f.properties[field] is not None]
    except fiona.errors.FionaError as exc:
        raise InputError(f"{path}: not a readable vector file ({exc})") from None
    if not feats:
        raise InputError(f"{path}: no feature has a value in '{field}'")
    values = [v for _, v in feats]
    if all(isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer()) for v in values):
        codes = [int(v) for v in values]
        names = []
    else:
        names = sorted({str(v) for v in values})
        codes = [names.index(str(v)) + 1 for v in values]
    geoms = [dict(g.__geo_interface__) if hasattr(g, "__geo_interface__") else g for g, _ in feats]
    return list(zip(geoms, codes)), names, src_crs
