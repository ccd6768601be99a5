"""The raster grid that scenes, prepared scenes, class maps and references live on: :class:`GeoGrid`.

A grid is ``height x width`` pixels, a CRS (WKT, or None) and an affine transform (a 6-tuple in
rasterio's ``Affine`` order ``(a, b, c, d, e, f)``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``,
or None for files without georeferencing, such as .mat/.npy). Grids without georeferencing are pixel
grids: two of them are the same grid when their shapes agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

SAME_TRANSFORM_RTOL = 1e-6  # transforms equal within this share of a pixel side are one grid


@dataclass(frozen=True)
class GeoGrid:
    """``height`` x ``width`` pixels with an optional CRS (WKT) and affine transform (6-tuple)."""

    height: int
    width: int
    crs: str | None = None
    transform: tuple[float, ...] | None = None

    @classmethod
    def of(cls, ds) -> GeoGrid:
        """The grid of an open rasterio dataset (an identity transform without CRS is no georeferencing)."""
        crs = ds.crs.to_wkt() if ds.crs else None
        t = ds.transform
        transform = None if (t.is_identity and crs is None) else (t.a, t.b, t.c, t.d, t.e, t.f)
        return cls(int(ds.height), int(ds.width), crs, transform)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and self.transform is not None

    @property
    def affine(self):
        """The transform as a rasterio ``Affine`` (the identity for a pixel grid)."""
        from rasterio.transform import Affine

        return Affine(*self.transform) if self.transform is not None else Affine.identity()

    def window(self, r0: int, r1: int, c0: int, c1: int) -> GeoGrid:
        """The sub-grid of rows ``r0:r1`` and columns ``c0:c1`` (its transform moved to the window's corner)."""
        t = self.transform
        if t is not None:
            a, b, c, d, e, f = t
            t = (a, b, a * c0 + b * r0 + c, d, e, d * c0 + e * r0 + f)
        return GeoGrid(r1 - r0, c1 - c0, self.crs, t)

    def windows(self, size: int) -> Iterator[tuple[int, int, int, int]]:
        """``(r0, r1, c0, c1)`` of ``size x size`` windows covering the grid in row-major order (clipped at the edges)."""
        for r0 in range(0, self.height, size):
            for c0 in range(0, self.width, size):
                yield r0, min(r0 + size, self.height), c0, min(c0 + size, self.width)

    def with_halo(self, r0: int, r1: int, c0: int, c1: int, halo: int) -> tuple[int, int, int, int]:
        """The window grown by ``halo`` pixels on every side, clipped to the grid."""
        return max(0, r0 - halo), min(self.height, r1 + halo), max(0, c0 - halo), min(self.width, c1 + halo)

    def same_crs(self, crs: str | None) -> bool:
        """Whether ``crs`` (WKT) is this grid's CRS (compared as CRSs, not as text)."""
        if crs is None or self.crs is None:
            return crs is None and self.crs is None
        if crs == self.crs:
            return True
        from rasterio.crs import CRS

        return CRS.from_wkt(crs) == CRS.from_wkt(self.crs)

    def placement(self, other: GeoGrid) -> str | None:
        """How data on ``other`` comes onto this grid: ``"same"`` (read as is), ``"warp"`` (another
        georeferenced grid: resample) or None (no georeferencing on one side and another shape: it cannot be placed)."""
        if not (self.georeferenced and other.georeferenced):
            return "same" if other.shape == self.shape else None
        tol = SAME_TRANSFORM_RTOL * max(1.0, abs(self.transform[0]))
        close = np.allclose(other.transform, self.transform, rtol=0, atol=tol)
        return "same" if other.shape == self.shape and close and self.same_crs(other.crs) else "warp"

    def warp_codes(self, codes: np.ndarray, source: GeoGrid) -> np.ndarray:
        """Class codes ``(h, w)`` on ``source`` resampled nearest-neighbour onto this grid: ``(H, W)`` int32,
        0 (unlabelled) where the source has none."""
        from rasterio.warp import Resampling, reproject

        out = np.zeros(self.shape, np.int32)
        reproject(
            source=np.asarray(codes, np.int32),
            destination=out,
            src_transform=source.affine,
            src_crs=source.crs,
            dst_transform=self.affine,
            dst_crs=self.crs,
            src_nodata=0,
            dst_nodata=0,
            resampling=Resampling.nearest,
        )
        return out

    def bounds(self, crs: str | None = None) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the grid's corners, in ``crs`` (default: its own)."""
        a, b, c, d, e, f = self.transform
        corners = [
            (a * col + b * row + c, d * col + e * row + f)
            for col, row in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height))
        ]
        xs, ys = zip(*corners)
        box = (min(xs), min(ys), max(xs), max(ys))
        if crs and not self.same_crs(crs):
            from rasterio.warp import transform_bounds

            return transform_bounds(self.crs, crs, *box)
        return box

    def rowcol(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(inside, row, col)`` of the pixels holding map coordinates ``xs, ys`` (row/col 0 where outside)."""
        inv = ~self.affine
        c = np.floor(inv.a * xs + inv.b * ys + inv.c)
        r = np.floor(inv.d * xs + inv.e * ys + inv.f)
        ok = np.isfinite(r) & np.isfinite(c) & (r >= 0) & (r < self.height) & (c >= 0) & (c < self.width)
        return ok, np.where(ok, r, 0).astype(np.int64), np.where(ok, c, 0).astype(np.int64)

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of the centres of pixels ``rows, cols`` (pixel coordinates on a pixel grid)."""
        t = self.affine
        a, b, c, d, e, f = t.a, t.b, t.c, t.d, t.e, t.f
        r, k = rows + 0.5, cols + 0.5
        return a * k + b * r + c, d * k + e * r + f

    def to_own_crs(self, geoms: list[dict], crs: str | None) -> list[dict]:
        """GeoJSON-like geometries in ``crs`` reprojected into this grid's CRS (as they are when ``crs`` is None or the same)."""
        if crs is None or self.same_crs(crs):
            return geoms
        from rasterio.warp import transform_geom

        return [transform_geom(crs, self.crs, g) for g in geoms]

    def pixel_area(self) -> tuple[float, str]:
        """Area of one pixel and its unit: the CRS's linear unit squared (``m²``), ``deg²`` in a geographic CRS,
        ``map units²`` without a CRS, ``pixels`` on a pixel grid."""
        if self.transform is None:
            return 1.0, "pixels"
        a, b, _, d, e, _ = self.transform
        area = abs(a * e - b * d)
        unit = "map units²"
        if self.crs is not None:
            from rasterio.crs import CRS

            c = CRS.from_wkt(self.crs)
            if c.is_projected:
                unit = f"{(c.linear_units or 'unit')}²".replace("metre²", "m²").replace("meter²", "m²")
            elif c.is_geographic:
                unit = "deg²"
        return area, unit

    def profile(self) -> dict:
        """The grid's entries of a rasterio profile (``height``, ``width``, and ``crs`` / ``transform`` when known)."""
        p: dict = {"height": self.height, "width": self.width}
        if self.crs is not None:
            p["crs"] = self.crs
        if self.transform is not None:
            p["transform"] = self.affine
        return p


class OnGrid:
    """Mixin for records that carry a ``grid`` (:class:`GeoGrid`): its ``height`` and ``width``."""

    @property
    def height(self) -> int:
        return self.grid.height  # type: ignore[attr-defined]

    @property
    def width(self) -> int:
        return self.grid.width  # type: ignore[attr-defined]


def geometry_points(coords) -> Iterator:
    """Every ``(x, y)`` of a GeoJSON ``coordinates`` nesting (points, lines, polygons, multi-parts)."""
    if len(coords) and isinstance(coords[0], (int, float)):
        yield coords[:2]
        return
    for part in coords:
        yield from geometry_points(part)


def geometry_bounds(geom: dict) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of a GeoJSON-like geometry."""
    a = np.asarray(list(geometry_points(geom["coordinates"])), np.float64).reshape(-1, 2)
    return float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 0].max()), float(a[:, 1].max())
