"""PRISMA L2D products (ASI): one HDF-EOS5 file, ``PRS_L2D_*.he5``, read with h5py.

Layout (PRISMA Products Specification, L2D ``PRS_L2D_HCO`` swath)::

    /HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields/VNIR_Cube   (rows, bands, cols) uint16, band-interleaved-by-line
    /HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields/SWIR_Cube   (rows, bands, cols) uint16
    attributes of /: List_Cw_Vnir, List_Fwhm_Vnir, List_Cw_Swir, List_Fwhm_Swir (nm; 0 = band not delivered),
                     L2ScaleVnirMin/Max, L2ScaleSwirMin/Max, Epsg_Code, Product_ULcorner_easting/northing

Reflectance = Min + DN (Max - Min) / 65535 per cube; DN 0 is fill. The grid is the product's map grid: EPSG code,
the upper-left corner of the upper-left pixel, 30 m pixels.

**VNIR and SWIR are joined** into one band set in wavelength order. They overlap (VNIR reaches about 1010 nm,
SWIR starts about 920 nm); the overlap is split once at its midpoint: VNIR bands below it, SWIR bands from it on,
so no wavelength is read twice and each side keeps the bands where its detector is at its best.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsicls.errors import InputError, first_line
from hsicls.io.cube import BandSet, CubeSource
from hsicls.io.formats.products import ProductPixels, SensorProduct, bands_from
from hsicls.io.grid import GeoGrid

FIELDS = "HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields"
PIXEL = 30.0


class He5Pixels:
    """Windows of the VNIR and SWIR cubes (``(rows, bands, cols)`` in the file), joined: band ``n`` of the joined set
    is band ``picks[n - 1] = (cube, index)`` of the file."""

    def __init__(self, path: Path, picks: list[tuple[str, int]]):
        self.path, self.picks = path, picks

    def reader(self, numbers: list[int]):
        import h5py

        f = h5py.File(self.path, "r")
        wanted = [self.picks[n - 1] for n in numbers]

        def read(r0, r1, c0, c1):
            out = np.empty((r1 - r0, c1 - c0, len(wanted)), np.float32)
            try:
                for cube in ("VNIR_Cube", "SWIR_Cube"):
                    at = [k for k, (c, _) in enumerate(wanted) if c == cube]
                    if at:
                        block = f[f"{FIELDS}/{cube}"][r0:r1, :, c0:c1]  # (rows, bands, cols)
                        out[..., at] = block[:, [wanted[k][1] for k in at], :].transpose(0, 2, 1)
            except (OSError, KeyError, ValueError) as exc:
                raise InputError(f"{self.path}: could not read pixels {r0}:{r1}, {c0}:{c1} ({first_line(exc)})") from None
            return out

        read.close = f.close  # type: ignore[attr-defined]
        return read

    def nan_bands(self, numbers: list[int]) -> list[int]:
        return []


def join_bands(cw_v, fw_v, cw_s, fw_s) -> tuple[list[tuple[str, int]], list[float], list[float]]:
    """``(picks, wavelengths, fwhm)`` of the joined band set, in wavelength order (see the module docstring)."""
    v = [(w, f, "VNIR_Cube", i) for i, (w, f) in enumerate(zip(cw_v, fw_v)) if w > 0]
    s = [(w, f, "SWIR_Cube", i) for i, (w, f) in enumerate(zip(cw_s, fw_s)) if w > 0]
    if v and s:
        lo, hi = min(w for w, *_ in s), max(w for w, *_ in v)
        if lo <= hi:
            cut = (lo + hi) / 2
            v = [b for b in v if b[0] < cut]
            s = [b for b in s if b[0] >= cut]
    joined = sorted(v + s, key=lambda b: b[0])
    return [(c, i) for _, _, c, i in joined], [w for w, *_ in joined], [f for _, f, *_ in joined]


class PrismaL2D(SensorProduct, name="prisma-l2d", description="a PRISMA L2D product"):
    patterns = (r"^PRS_L2D_.*\.he5$",)

    def open_cube(self, path: Path, key: str | None, mask: str = "all") -> CubeSource:
        import h5py

        self.no_key(path, key)
        given, path = path, self.main_file(path)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(f"{path}: not a readable HDF5 file ({first_line(exc)}; truncated?)") from None
        with f:
            a = f.attrs

            def attr(name: str):
                if name not in a:
                    raise InputError(f"{path}: the PRISMA attribute {name} is missing")
                return np.atleast_1d(np.asarray(a[name], np.float64))

            cubes = {}
            for cube in ("VNIR_Cube", "SWIR_Cube"):
                if f"{FIELDS}/{cube}" not in f:
                    raise InputError(f"{path}: the PRISMA dataset {FIELDS}/{cube} is missing")
                cubes[cube] = f[f"{FIELDS}/{cube}"].shape  # (rows, bands, cols)
            cw_v, fw_v, cw_s, fw_s = (attr(n) for n in ("List_Cw_Vnir", "List_Fwhm_Vnir", "List_Cw_Swir", "List_Fwhm_Swir"))
            for cube, cw in (("VNIR_Cube", cw_v), ("SWIR_Cube", cw_s)):
                if len(cw) != cubes[cube][1]:
                    raise InputError(f"{path}: {cube} has {cubes[cube][1]} bands but List_Cw_{cube[:4].title()} lists {len(cw)}")
            if cubes["VNIR_Cube"][0::2] != cubes["SWIR_Cube"][0::2]:
                raise InputError(
                    f"{path}: the VNIR cube is {cubes['VNIR_Cube'][0::2]} px but the SWIR cube {cubes['SWIR_Cube'][0::2]}"
                )
            scale = {
                c: (float(attr(f"L2Scale{c[:4].title()}Min")[0]), float(attr(f"L2Scale{c[:4].title()}Max")[0])) for c in cubes
            }
            epsg = int(attr("Epsg_Code")[0])
            x0, y0 = float(attr("Product_ULcorner_easting")[0]), float(attr("Product_ULcorner_northing")[0])
        picks, wl, fwhm = join_bands(cw_v, fw_v, cw_s, fw_s)
        if not picks:
            raise InputError(f"{path}: lists no band with a centre wavelength")
        gains = [(scale[c][1] - scale[c][0]) / 65535.0 for c, _ in picks]
        offsets = [scale[c][0] for c, _ in picks]
        h, _, w = cubes["VNIR_Cube"]
        from rasterio.crs import CRS

        grid = GeoGrid(int(h), int(w), CRS.from_epsg(epsg).to_wkt(), (PIXEL, 0.0, x0, 0.0, -PIXEL, y0))
        pixels = ProductPixels(He5Pixels(path, picks), grid.shape, gains, offsets, fill=0.0)
        if mask != "none":
            from hsicls import console

            console.info(f"{path.name}: PRISMA L2D carries no cloud layer hsicls reads; --mask has no effect")
        return CubeSource(given, grid, pixels, BandSet(bands_from(wl, fwhm)), None, product="PRISMA L2D")

    def grid(self, path: Path) -> GeoGrid | None:
        return self.open_cube(path, None, "none").grid
