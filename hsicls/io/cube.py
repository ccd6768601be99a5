"""An opened hyperspectral cube: its grid, its bands (one record per band) and its pixels.

* :class:`Band`: the facts of one band kept together (number in the file, name, centre wavelength,
  FWHM, bad-band flag), so that dropping or reordering a band moves all of them at once.
* :class:`BandSet`: the bands of a scene, a prepared file or a model bundle (stored as parallel lists
  in the files, :meth:`BandSet.to_dict` / :meth:`BandSet.from_dict`).
* :class:`CubeSource`: one reading mode for every format: a pixel store (an in-memory array for
  .mat/.npy, a GDAL raster read on demand) answers windowed reads of the bands the source keeps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from hsicls.io.grid import GeoGrid, OnGrid


@dataclass(frozen=True)
class Band:
    """One band: ``number`` is its 1-based place in the file (GDAL's band number, or the array's last axis)."""

    number: int
    name: str = ""
    wavelength: float | None = None  # centre, nm
    fwhm: float | None = None  # full width at half maximum, nm
    bad: bool = False  # flagged bad in the file (ENVI/GDAL bbl = 0): listed, never read


@dataclass
class BandSet:
    """Bands in reading order; the bad ones (``bad=True``) are listed but not read."""

    all: list[Band] = field(default_factory=list)

    @classmethod
    def numbered(cls, count: int) -> BandSet:
        """``count`` bands known by number only."""
        return cls([Band(i, f"band {i}") for i in range(1, count + 1)])

    @property
    def read(self) -> list[Band]:
        """The bands that are read, in order."""
        return [b for b in self.all if not b.bad]

    @property
    def count(self) -> int:
        return len(self.read)

    @property
    def numbers(self) -> list[int]:
        return [b.number for b in self.read]

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.read]

    @property
    def wavelengths(self) -> list[float] | None:
        """Centre wavelengths (nm) of the bands read, when every one has one."""
        w = [b.wavelength for b in self.read]
        return None if not w or any(v is None for v in w) else w

    @property
    def fwhm(self) -> list[float] | None:
        f = [b.fwhm for b in self.read]
        return None if not f or any(v is None for v in f) else f

    @property
    def bad_bands(self) -> list[int]:
        """1-based numbers of the bands flagged bad."""
        return [b.number for b in self.all if b.bad]

    def keep(self, positions: list[int]) -> BandSet:
        """The bands read at ``positions`` (0-based, in that order), with the bad ones still listed."""
        read = self.read
        return BandSet([read[k] for k in positions] + [b for b in self.all if b.bad])

    def to_dict(self) -> dict:
        """The record kept in the prepared file and the bundle (parallel lists, as every earlier file has them)."""
        return {"count": self.count, "wavelengths": self.wavelengths, "fwhm": self.fwhm, "bad_bands": self.bad_bands or None}

    @classmethod
    def from_dict(cls, d: dict | None, count: int) -> BandSet:
        """The bands of a record (see :meth:`to_dict`; already checked to be consistent by the loader)."""
        d = d or {}
        count = int(d.get("count", count))
        wl, fw, bad = d.get("wavelengths"), d.get("fwhm"), set(d.get("bad_bands") or ())
        numbers = [n for n in range(1, count + len(bad) + 1) if n not in bad]
        bands = [
            Band(n, f"band {n}", wl[k] if wl else None, fw[k] if fw and len(fw) == count else None) for k, n in enumerate(numbers)
        ]
        return cls(sorted(bands + [Band(n, f"band {n}", bad=True) for n in bad], key=lambda b: b.number))


class Pixels(Protocol):
    """Where a cube's pixels are: windowed reads of some bands."""

    def reader(self, numbers: list[int]):
        """A function ``(r0, r1, c0, c1) -> (rows, cols, len(numbers))`` float32 (``.close()`` when done)."""

    def nan_bands(self, numbers: list[int]) -> list[int]:
        """Positions in ``numbers`` of the bands that are NaN at every pixel."""


class ArrayPixels:
    """A cube held in memory ``(H, W, B)`` float32 (.mat/.npy): band ``n`` is ``array[..., n - 1]``."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def reader(self, numbers: list[int]):
        arr = self.array
        if numbers == list(range(1, arr.shape[2] + 1)):
            read = lambda r0, r1, c0, c1: arr[r0:r1, c0:c1]  # noqa: E731 - a view, no copy
        else:
            idx = np.asarray(numbers) - 1
            read = lambda r0, r1, c0, c1: arr[r0:r1, c0:c1][..., idx]  # noqa: E731
        read.close = lambda: None  # type: ignore[attr-defined]
        return read

    def nan_bands(self, numbers: list[int]) -> list[int]:
        empty = np.isnan(self.array).all(axis=(0, 1))
        return [k for k, n in enumerate(numbers) if empty[n - 1]]


@dataclass
class Scene:
    """A whole cube read into memory: ``data`` ``(H, W, B)`` float32 with its grid and bands."""

    data: np.ndarray
    path: Path
    grid: GeoGrid
    nodata: float | None = None
    bands: BandSet = field(default_factory=BandSet)

    @property
    def wavelengths(self) -> list[float] | None:
        return self.bands.wavelengths

    @property
    def dropped_bands(self) -> list[int]:
        """1-based bands flagged bad (bbl = 0), not read."""
        return self.bands.bad_bands

    def valid_mask(self) -> np.ndarray:
        """``(H, W)`` bool: False where any band is NaN/inf, equals nodata, or all bands are 0."""
        return valid_mask(self.data, self.nodata)


@dataclass
class Quality:
    """A sensor product's quality layers as applied (``--mask``): the flags that made pixels nodata and how many
    pixels they masked that were otherwise valid (counted apart from nodata in a map's summary)."""

    level: str  # none | clouds | all
    flags: list[str]  # applied, e.g. ["cirrus", "cloud", "cloud shadow", "haze"]
    masked: int
    available: list[str] = field(default_factory=list)  # every flag layer the product has

    def to_dict(self) -> dict:
        return {"mask": self.level, "flags": self.flags, "masked_pixels": self.masked, "available": self.available}


@dataclass
class Glt:
    """A geometry lookup table (EMIT): the north-up ``grid`` whose pixel ``(r, c)`` shows the swath pixel
    ``(rows[r, c], cols[r, c])`` (0-based; -1 where it shows none). A swath cube carries it to be mapped onto that grid."""

    grid: GeoGrid
    rows: np.ndarray  # (H, W) int64
    cols: np.ndarray  # (H, W) int64

    @property
    def shown(self) -> np.ndarray:
        """``(H, W)`` bool: the grid pixels that show a swath pixel."""
        return self.rows >= 0

    def to_grid(self, swath: np.ndarray, fill=0) -> np.ndarray:
        """``(..., h, w)`` swath values -> ``(..., H, W)`` on the grid (``fill`` where the GLT names none)."""
        ok = self.shown
        out = np.full(swath.shape[:-2] + self.rows.shape, fill, dtype=swath.dtype)
        out[..., ok] = swath[..., self.rows[ok], self.cols[ok]]
        return out

    def window(self, r0: int, r1: int, c0: int, c1: int) -> Glt:
        """The GLT of the grid window ``rows r0:r1, cols c0:c1`` (its ``grid`` is the window's shape, ungeoreferenced)."""
        return Glt(GeoGrid(r1 - r0, c1 - c0), self.rows[r0:r1, c0:c1], self.cols[r0:r1, c0:c1])

    def to_swath(self, values: np.ndarray, shape: tuple[int, int], fill=0) -> np.ndarray:
        """``(H, W)`` values on the grid -> ``(h, w)`` on the swath: each swath pixel takes the value of a grid pixel that
        shows it (``fill`` where none does)."""
        ok = self.shown
        out = np.full(shape, fill, dtype=values.dtype)
        out[self.rows[ok], self.cols[ok]] = values[ok]
        return out


@dataclass
class CubeSource(OnGrid):
    """An opened cube: its grid and bands, read whole (:meth:`read`) or window by window (:meth:`reader`)."""

    path: Path
    grid: GeoGrid
    pixels: Pixels
    bands: BandSet
    nodata: float | None = None
    quality: Quality | None = None  # a sensor product's quality masking (None: a plain raster)
    product: str | None = None  # the product read (e.g. "EnMAP L2A"), None for a plain file
    resampled: dict | None = None  # --resample-bands: how the bands were made (see science.scene_assembly)
    glt: Glt | None = None  # a swath cube's place on a north-up grid (EMIT); None: the grid is the map's

    def reader(self):
        """A function ``(r0, r1, c0, c1) -> (rows, cols, B) float32`` of the bands read; one per thread (``.close()``)."""
        return self.pixels.reader(self.bands.numbers)

    def select_bands(self, order: list[int]) -> CubeSource:
        """The same cube with its bands taken in ``order`` (0-based positions among the bands read)."""
        return dataclasses.replace(self, bands=self.bands.keep(order))

    def read(self) -> Scene:
        """The whole cube as a :class:`Scene` ``(H, W, B)`` float32."""
        read = self.reader()
        try:
            data = np.ascontiguousarray(read(0, self.height, 0, self.width))
        finally:
            read.close()
        return Scene(data, self.path, self.grid, self.nodata, self.bands)


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(H, W)`` bool mask of usable pixels of an ``(H, W, B)`` cube: False where any band is
    NaN/inf, where every band equals the nodata value (GDAL's mask semantics), or where every
    band is 0 (a fill border)."""
    ok = np.isfinite(data).all(axis=-1)
    if nodata is not None and np.isfinite(nodata):
        ok &= ~(data == nodata).all(axis=-1)
    ok &= (data != 0).any(axis=-1)
    return ok
