"""GDAL rasters (GeoTIFF and any other format GDAL reads, through rasterio) and ENVI headers.

A cube keeps GDAL's band numbers, descriptions, ENVI/GDAL ``wavelength`` / ``fwhm`` metadata (nm; micrometres
converted) and ``bbl`` bad-band flags, one :class:`~hsicls.io.cube.Band` per band; its pixels are read window by
window (:class:`RasterPixels`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from hsicls.errors import InputError, first_line
from hsicls.io.cube import Band, BandSet, CubeSource
from hsicls.io.formats.base import FileFormat
from hsicls.io.grid import GeoGrid

ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".envi")


def open_raster(path: Path):
    """``rasterio.open(path)``, an unreadable file being one :class:`InputError` naming it."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning: handled by the caller
            return rasterio.open(path)
    except RasterioIOError as exc:
        if path.suffix.lower() == ".json":  # a .json that OGR found no layer in: not GeoJSON
            raise InputError(
                f"{path}: neither GeoJSON (no 'type': 'FeatureCollection' with features OGR can read) nor a raster"
            ) from None
        raise InputError(f"{path}: not a readable raster ({exc})") from None


def _band_value(ds, tags: dict, key: str, i: int) -> tuple[float | None, bool]:
    """``(value in nm or None, valid)`` of a band's ``wavelength`` / ``fwhm`` tag; ``valid`` is False for a value
    that is not a positive finite number."""
    w = tags.get(key)
    if w is None:
        return None, True
    try:
        v = float(w)
    except ValueError:
        return None, True
    if not math.isfinite(v) or v <= 0:
        from hsicls import console

        console.warn(f"{ds.name}: band {i} has {key} {w!r} (not a positive finite number); the {key}s are ignored")
        return None, False
    units = tags.get("wavelength_units", "").lower()
    return (v * 1000.0 if units.startswith("micro") or units in ("um", "µm") else v), True


def _envi_lists(ds, tags: list[dict]) -> None:
    """An ENVI header's ``fwhm`` / ``bbl`` / ``wavelength`` lists (GDAL keeps them in the dataset's ENVI domain and
    gives only the wavelength per band) copied into the band tags that lack them (AVIRIS-NG / AVIRIS-3 L2 files)."""
    try:
        envi = {k.lower(): v for k, v in ds.tags(ns="ENVI").items()}
    except Exception:
        return
    for key in ("wavelength", "fwhm", "bbl"):
        text = envi.get(key)
        if not text or any(key in t for t in tags):
            continue
        values = [v.strip() for v in text.strip().strip("{}").split(",")]
        if len(values) != len(tags):
            continue
        for t, v in zip(tags, values):
            t[key] = v
        if key == "wavelength" and "wavelength_units" in envi:
            for t in tags:
                t.setdefault("wavelength_units", envi["wavelength_units"])


def raster_bands(ds) -> BandSet:
    """Every band of a GDAL dataset with its facts; bands flagged ``bbl = 0`` are bad (all read when every one is).
    A wavelength or FWHM that is not a positive finite number is named in a warning and that quantity is dropped
    for every band (band matching then goes by count)."""
    tags = [{k.lower(): v for k, v in ds.tags(i).items()} for i in range(1, ds.count + 1)]
    _envi_lists(ds, tags)
    bad = [t.get("bbl") is not None and t["bbl"].strip() in ("0", "0.0") for t in tags]
    if all(bad):
        bad = [False] * ds.count
    values = {}
    for key in ("wavelength", "fwhm"):
        values[key] = [None] * ds.count
        for k in (k for k in range(ds.count) if not bad[k]):
            v, valid = _band_value(ds, tags[k], key, k + 1)
            if not valid:
                values[key] = [None] * ds.count
                break
            values[key][k] = v
    return BandSet(
        [
            Band(i + 1, ds.descriptions[i] or f"band {i + 1}", values["wavelength"][i], values["fwhm"][i], bad[i])
            for i in range(ds.count)
        ]
    )


class RasterPixels:
    """The pixels of a GDAL raster, read on demand; ``label`` names the cube in messages."""

    def __init__(self, path: Path, label: Path):
        self.path, self.label = path, label

    def reader(self, numbers: list[int]):
        from rasterio.windows import Window

        ds = open_raster(self.path)

        def read(r0, r1, c0, c1):
            try:
                data = ds.read(numbers, window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype="float32")
            except Exception as exc:
                raise InputError(f"{self.label}: could not read pixels {r0}:{r1}, {c0}:{c1} ({first_line(exc)})") from None
            return data.transpose(1, 2, 0)

        read.close = ds.close  # type: ignore[attr-defined]
        return read

    def nan_bands(self, numbers: list[int]) -> list[int]:
        """Float bands only, screened on a decimated read and confirmed on the whole band."""
        from rasterio.enums import Resampling

        try:
            with open_raster(self.path) as ds:
                floats = [k for k, n in enumerate(numbers) if np.dtype(ds.dtypes[n - 1]).kind == "f"]
                if not floats:
                    return []
                shape = (len(floats), min(ds.height, 64), min(ds.width, 64))
                sample = ds.read([numbers[k] for k in floats], out_shape=shape, resampling=Resampling.nearest)
                candidates = [k for j, k in enumerate(floats) if np.isnan(sample[j]).all()]
                return [k for k in candidates if np.isnan(ds.read(numbers[k])).all()]
        except Exception:  # unreadable pixels: the real read reports them
            return []


GDAL_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".nc", ".h5", ".he5", ".hdf", ".png", ".jpg", ".pt", *ENVI_DATA_SUFFIXES)


class GdalFormat(FileFormat, name="gdal", description="a raster", suffixes=GDAL_SUFFIXES, fallback=True):
    """Any raster GDAL reads (GeoTIFF, VRT, JPEG 2000, netCDF, HDF, ENVI data files, ...): the fallback."""

    def raster(self, path: Path) -> Path:
        """The file GDAL opens for ``path``."""
        return path

    def open_cube(self, path: Path, key: str | None, mask: str = "all") -> CubeSource:
        self.no_key(path, key)
        raster = self.raster(path)
        with open_raster(raster) as ds:
            if ds.count < 2:
                raise InputError(f"{path}: has {ds.count} band; a hyperspectral cube needs several")
            return CubeSource(path, GeoGrid.of(ds), RasterPixels(raster, path), raster_bands(ds), ds.nodata)

    def read_labels(self, path: Path, key: str | None, like: GeoGrid | None, field: str | None) -> np.ndarray:
        self.no_key(path, key)
        with open_raster(self.raster(path)) as ds:
            if ds.count != 1:
                raise InputError(f"{path}: a label raster must have 1 band, this one has {ds.count}")
            try:
                arr = ds.read(1)
            except Exception as exc:
                raise InputError(f"{path}: could not read pixel data ({first_line(exc)})") from None
            nodata = ds.nodata
        if nodata is not None and np.isfinite(nodata):
            arr = np.where(arr == nodata, 0, arr)
        return arr

    def label_metadata(self, path: Path):
        """Names from band tags ``CLASS_<k>=name`` (as hsicls writes them), colours from the band's colour table."""
        names: dict[int, str] = {}
        colours: dict[int, tuple[int, int, int]] = {}
        with open_raster(self.raster(path)) as ds:
            for k, v in ds.tags(1).items():
                if k.upper().startswith("CLASS_") and k[6:].isdigit():
                    names[int(k[6:])] = v
            try:
                cmap = ds.colormap(1)
                colours = {int(k): tuple(int(c) for c in v[:3]) for k, v in cmap.items() if int(k) > 0}
            except ValueError:  # no colour table
                pass
        return names, colours

    def grid(self, path: Path) -> GeoGrid | None:
        with open_raster(self.raster(path)) as ds:
            return GeoGrid.of(ds)


class EnviHeaderFormat(GdalFormat, name="envi", description="an ENVI header", suffixes=[".hdr"], fallback=False):
    """An ENVI header (``.hdr``) named instead of its data file: GDAL opens the data file beside it."""

    def raster(self, path: Path) -> Path:
        for suffix in ENVI_DATA_SUFFIXES:
            candidate = path.with_suffix(suffix)
            if candidate != path and candidate.exists():
                return candidate
        looked = ", ".join(s or "no suffix" for s in ENVI_DATA_SUFFIXES)
        raise InputError(f"{path}: ENVI header without its data file (looked for {looked})")

    def companions(self, path: Path) -> list[Path]:
        return [c for s in ENVI_DATA_SUFFIXES if (c := path.with_suffix(s)) != path and c.exists()]
