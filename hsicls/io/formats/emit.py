"""EMIT L2A reflectance (NASA JPL, ``EMIT_L2A_RFL_<id>.nc``, netCDF-4 read with h5py) and its L2A mask file.

Layout (EMIT L2A product user guide)::

    reflectance                         (downtrack, crosstrack, bands) float32, _FillValue -9999
    sensor_band_parameters/wavelengths  (bands,) nm;  fwhm (bands,);  good_wavelengths (bands,) 1 = good, 0 = bad
    location/glt_x, location/glt_y      (rows, cols) int32 of the orthorectified grid: the 1-based crosstrack /
                                        downtrack index of the swath pixel each map pixel shows; 0 = none
    attributes of /: geotransform (GDAL order: x0, dx, 0, y0, 0, dy), spatial_ref (WKT)
    EMIT_L2A_MASK_<id>.nc: mask (downtrack, crosstrack, flags), sensor_band_parameters/mask_bands (flag names)

The cube is the **swath**: training and mapping see the instrument's real pixels and their real neighbours. Its
:class:`~hsicls.io.cube.Glt` places it on the north-up grid: labels drawn on a map are pulled back onto the swath
pixels the grid names, and a map is written on the grid, each map pixel taking the class (and probabilities) of
the swath pixel the GLT names. Bad bands (``good_wavelengths`` 0) are listed, never read.
Quality flags from the mask file (same granule, ``RFL`` -> ``MASK``): ``clouds``: Cloud, Cirrus and Dilated Cloud
flags; ``all``: those and the Spacecraft flag.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hsicls.errors import InputError, first_line
from hsicls.io.cube import BandSet, CubeSource, Glt, Quality
from hsicls.io.formats.products import SensorProduct, bands_from, flags_for
from hsicls.io.grid import GeoGrid

FILL = -9999.0
MASK_FLAGS = {"cloud flag": "cloud", "cirrus flag": "cirrus", "dilated cloud flag": "cloud", "spacecraft flag": "bad pixel"}


def _h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable netCDF-4/HDF5 file ({first_line(exc)}; truncated?)") from None


def _dataset(f, name: str, path: Path):
    if name not in f:
        raise InputError(f"{path}: the EMIT variable {name} is missing")
    return f[name]


class SwathPixels:
    """Windows of ``reflectance`` (downtrack, crosstrack, bands); fill -> NaN; flagged pixels -> NaN."""

    def __init__(self, path: Path, mask=None):
        self.path, self.mask = path, mask

    def reader(self, numbers: list[int]):
        f = _h5(self.path)
        ds = f["reflectance"]
        idx = np.asarray(numbers) - 1

        def read(r0, r1, c0, c1):
            try:
                block = np.asarray(ds[r0:r1, c0:c1, :], np.float32)[..., idx]
            except (OSError, ValueError) as exc:
                raise InputError(f"{self.path}: could not read pixels {r0}:{r1}, {c0}:{c1} ({first_line(exc)})") from None
            block[block == FILL] = np.nan
            if self.mask is not None:
                block[self.mask[r0:r1, c0:c1]] = np.nan
            return block

        read.close = f.close  # type: ignore[attr-defined]
        return read

    def nan_bands(self, numbers: list[int]) -> list[int]:
        return []


class EmitL2A(SensorProduct, name="emit-l2a", description="an EMIT L2A reflectance granule"):
    patterns = (r"^EMIT_L2A_RFL_.*\.nc$",)

    def open_cube(self, path: Path, key: str | None, mask: str = "all") -> CubeSource:
        self.no_key(path, key)
        given, path = path, self.main_file(path)
        with _h5(path) as f:
            shape = _dataset(f, "reflectance", path).shape
            if len(shape) != 3:
                raise InputError(f"{path}: reflectance has shape {shape}, expected (downtrack, crosstrack, bands)")
            wl = np.asarray(_dataset(f, "sensor_band_parameters/wavelengths", path)[...], np.float64)
            fwhm = np.asarray(_dataset(f, "sensor_band_parameters/fwhm", path)[...], np.float64)
            good = (
                f["sensor_band_parameters/good_wavelengths"][...]
                if "sensor_band_parameters/good_wavelengths" in f
                else np.ones(len(wl))
            )
            for name, v in (("wavelengths", wl), ("fwhm", fwhm), ("good_wavelengths", good)):
                if len(v) != shape[2]:
                    raise InputError(f"{path}: sensor_band_parameters/{name} lists {len(v)} bands but reflectance has {shape[2]}")
            glt = self._glt(f, path, shape)
        bands = BandSet(bands_from(wl, fwhm, [not bool(g) for g in good]))
        flags, quality = self._mask(path, shape[:2], mask)
        swath = GeoGrid(int(shape[0]), int(shape[1]))
        source = CubeSource(given, swath, SwathPixels(path, flags), bands, None, quality=quality, product="EMIT L2A")
        source.glt = glt
        return source

    def _glt(self, f, path: Path, shape) -> Glt:
        gx = np.asarray(_dataset(f, "location/glt_x", path)[...], np.int64)
        gy = np.asarray(_dataset(f, "location/glt_y", path)[...], np.int64)
        if gx.shape != gy.shape or gx.ndim != 2:
            raise InputError(f"{path}: location/glt_x is {gx.shape} but location/glt_y is {gy.shape}")
        for name in ("geotransform", "spatial_ref"):
            if name not in f.attrs:
                raise InputError(f"{path}: the global attribute {name} is missing (no map grid for the GLT)")
        gt = [float(v) for v in np.asarray(f.attrs["geotransform"]).ravel()]
        if len(gt) != 6:
            raise InputError(f"{path}: geotransform holds {len(gt)} numbers, expected 6")
        wkt = f.attrs["spatial_ref"]
        wkt = wkt.decode() if isinstance(wkt, bytes) else str(wkt)
        valid = (gx > 0) & (gy > 0)
        if (gy[valid] > shape[0]).any() or (gx[valid] > shape[1]).any():
            raise InputError(f"{path}: the GLT names swath pixels beyond the {shape[0]}x{shape[1]} reflectance")
        grid = GeoGrid(int(gx.shape[0]), int(gx.shape[1]), wkt, (gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]))
        return Glt(grid=grid, rows=np.where(valid, gy - 1, -1), cols=np.where(valid, gx - 1, -1))

    def _mask(self, path: Path, shape, level: str) -> tuple[np.ndarray | None, Quality | None]:
        want = flags_for(level)
        mask_path = path.with_name(re.sub("_RFL_", "_MASK_", path.name, flags=re.IGNORECASE))
        if mask_path == path or not mask_path.exists():
            if level != "none":
                from hsicls import console

                console.info(f"{path.name}: no L2A mask file {mask_path.name} beside it; --mask has no effect")
            return None, None
        with _h5(mask_path) as f:
            m = _dataset(f, "mask", mask_path)
            names = [
                n.decode() if isinstance(n, bytes) else str(n)
                for n in _dataset(f, "sensor_band_parameters/mask_bands", mask_path)[...]
            ]
            if m.shape[:2] != tuple(shape) or m.shape[2] != len(names):
                raise InputError(
                    f"{mask_path}: mask is {m.shape} but the reflectance is {tuple(shape)} with {len(names)} flag names"
                )
            data = m[...]
        available = sorted({MASK_FLAGS[n.lower()] for n in names if n.lower() in MASK_FLAGS})
        out = np.zeros(shape, bool)
        used = set()
        for k, n in enumerate(names):
            flag = MASK_FLAGS.get(n.lower())
            if flag in want:
                out |= data[..., k] > 0
                used.add(flag)
        with _h5(path) as f:
            valid = f["reflectance"][:, :, 0] != FILL
        return (out if used else None), Quality(level, sorted(used), int((out & valid).sum()), available)

    def grid(self, path: Path) -> GeoGrid | None:
        return self.open_cube(path, None, "none").glt.grid
