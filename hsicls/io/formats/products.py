"""What sensor products share: scaled pixels with fill values, quality layers, band records from metadata.

A product's cube is read through :class:`ProductPixels`, which turns the stored numbers into physical values
(``value = stored * gain + offset`` per band; the fill value becomes NaN) and sets the pixels its quality layers
flag to NaN, so that every stage treats them as nodata. Which flags mask is ``--mask``:

* ``none``: no quality layer is applied;
* ``clouds``: cloud, cirrus, cloud shadow and haze flags;
* ``all`` (the default): those and the product's bad-pixel flags.

The pixels a flag masks are counted apart from nodata (:class:`hsicls.io.cube.Quality`), for the map's summary.
Products are found by their own file names (:meth:`SensorProduct.claims`, before any suffix), or as the folder
that holds them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hsicls.errors import InputError, first_line
from hsicls.io.cube import Band, Quality
from hsicls.io.formats.base import FileFormat

MASK_LEVELS = ("all", "clouds", "none")
CLOUD_FLAGS = ("cloud", "cirrus", "cloud shadow", "haze")
BAD_PIXEL_FLAGS = ("bad pixel",)


def flags_for(level: str) -> tuple[str, ...]:
    """The quality flags ``--mask level`` applies."""
    if level not in MASK_LEVELS:
        raise InputError(f"--mask {level!r}: choose among {', '.join(MASK_LEVELS)}")
    return {"none": (), "clouds": CLOUD_FLAGS, "all": CLOUD_FLAGS + BAD_PIXEL_FLAGS}[level]


class ProductPixels:
    """A product's stored pixels as physical values: ``inner`` (any :class:`~hsicls.io.cube.Pixels`) read, the fill
    value set to NaN, ``stored * gain + offset`` per band (``gains``/``offsets`` indexed by band number - 1), and the
    pixels ``mask(r0, r1, c0, c1) -> (rows, cols) bool`` flags set to NaN."""

    def __init__(self, inner, shape: tuple[int, int], gains=None, offsets=None, fill: float | None = None, mask=None):
        self.inner, self.shape, self.fill, self.mask = inner, tuple(shape), fill, mask
        self.gains = None if gains is None else np.asarray(gains, np.float32)
        self.offsets = None if offsets is None else np.asarray(offsets, np.float32)

    def reader(self, numbers: list[int]):
        inner = self.inner.reader(numbers)
        idx = np.asarray(numbers) - 1
        g = None if self.gains is None else self.gains[idx]
        o = None if self.offsets is None else self.offsets[idx]

        def read(r0, r1, c0, c1):
            raw = np.asarray(inner(r0, r1, c0, c1), np.float32)
            out = raw * g if g is not None else raw.copy()
            if o is not None:
                out += o
            if self.fill is not None:
                out[raw == self.fill] = np.nan
            if self.mask is not None:
                out[self.mask(r0, r1, c0, c1)] = np.nan
            return out

        read.close = inner.close  # type: ignore[attr-defined]
        return read

    def nan_bands(self, numbers: list[int]) -> list[int]:
        """Bands that hold the fill value (or NaN) at every pixel: screened on every 16th row, confirmed whole."""
        read = self.inner.reader(numbers)
        try:
            probe = read(0, 1, 0, 1)
            h, w = self.shape
            rows = np.unique(np.linspace(0, h - 1, min(h, 16)).astype(int))
            sample = np.concatenate([np.asarray(read(r, r + 1, 0, w), np.float32) for r in rows], axis=0)
            empty = self._empty(sample)
            cand = [k for k in range(probe.shape[-1]) if empty[k]]
            if not cand:
                return []
            whole = np.asarray(read(0, h, 0, w), np.float32)[..., cand]
            return [k for j, k in enumerate(cand) if self._empty(whole)[j]]
        finally:
            read.close()

    def _empty(self, data: np.ndarray) -> np.ndarray:
        bad = np.isnan(data) | ((data == self.fill) if self.fill is not None else False)
        return bad.reshape(-1, data.shape[-1]).all(axis=0)


class QualityLayers:
    """Single-band flag rasters on the cube's grid, by flag name (a pixel is flagged where the layer is non-zero;
    a multi-band layer, e.g. a per-band defective-pixel mask, flags a pixel where any band is non-zero)."""

    def __init__(self, layers: dict[str, Path], shape: tuple[int, int], cube: Path):
        self.layers, self.shape = layers, shape
        for name, path in layers.items():
            with _open(path) as ds:
                if (ds.height, ds.width) != tuple(shape):
                    raise InputError(
                        f"{path}: the {name} layer is {ds.height}x{ds.width} px but the cube {cube.name} is {shape[0]}x{shape[1]}"
                    )

    def applied(self, level: str) -> dict[str, Path]:
        return {k: v for k, v in self.layers.items() if k in flags_for(level)}

    def mask_fn(self, level: str):
        """``(r0, r1, c0, c1) -> (rows, cols) bool`` of the flags ``level`` applies, or None when none is there."""
        use = self.applied(level)
        if not use:
            return None

        def mask(r0, r1, c0, c1):
            from rasterio.windows import Window

            out = np.zeros((r1 - r0, c1 - c0), bool)
            for path in use.values():
                with _open(path) as ds:
                    out |= (ds.read(window=Window(c0, r0, c1 - c0, r1 - r0)) != 0).any(axis=0)
            return out

        return mask

    def quality(self, level: str, valid_before) -> Quality:
        """The record of what ``level`` masks: flags applied and pixels masked among the otherwise valid ones."""
        fn = self.mask_fn(level)
        masked = 0
        if fn is not None:
            masked = int((fn(0, self.shape[0], 0, self.shape[1]) & valid_before()).sum())
        return Quality(level=level, flags=sorted(self.applied(level)), masked=masked, available=sorted(self.layers))


def _open(path: Path):
    from hsicls.io.formats.rasters import open_raster

    return open_raster(path)


def xml_root(path: Path):
    """The parsed XML metadata (no external entities: :mod:`xml.etree` resolves none), errors naming the file."""
    import xml.etree.ElementTree as ET

    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path}: unreadable metadata XML ({first_line(exc)})") from None


def number(el, tag: str, path: Path, where: str) -> float:
    """The number in child ``tag`` of ``el``; a missing or non-numeric field is an error naming it."""
    text = el.findtext(tag)
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {where}: field {tag} is {'missing' if text is None else repr(text)}, not a number") from None
    if not np.isfinite(v):
        raise InputError(f"{path}: {where}: field {tag} is {text!r}, not a finite number")
    return v


def check_count(path: Path, image: Path, in_image: int, in_metadata: int) -> None:
    if in_image != in_metadata:
        raise InputError(
            f"{path}: the metadata describes {in_metadata} bands but the image {image.name} has {in_image} (a truncated or "
            f"mismatched product)"
        )


def bands_from(wavelengths, fwhm, bad=None) -> list[Band]:
    bad = bad if bad is not None else [False] * len(wavelengths)
    return [
        Band(i + 1, f"{w:g} nm", float(w), None if f is None else float(f), bool(b))
        for i, (w, f, b) in enumerate(zip(wavelengths, fwhm, bad))
    ]


class SensorProduct(FileFormat):
    """A sensor product: found by its own names (:meth:`claims`), possibly given as its folder (:meth:`main_file`)."""

    patterns: tuple[str, ...] = ()  # regular expressions (case-insensitive) of the product's main file names

    def claims(self, path: Path) -> bool:
        if path.is_dir():
            return self.main_in(path) is not None
        return any(re.search(p, path.name, re.IGNORECASE) for p in self.patterns)

    def main_in(self, folder: Path) -> Path | None:
        """The product's main file inside ``folder`` (the one its patterns name), or None."""
        try:
            found = sorted(
                p for p in folder.iterdir() if p.is_file() and any(re.search(q, p.name, re.IGNORECASE) for q in self.patterns)
            )
        except OSError:
            return None
        return found[0] if found else None

    def main_file(self, path: Path) -> Path:
        if not path.is_dir():
            return path
        main = self.main_in(path)
        if main is None:
            raise InputError(f"{path}: no {self.description} in this folder")
        return main
