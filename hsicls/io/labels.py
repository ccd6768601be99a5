"""Label files onto a scene's grid: rasters on any grid (warped nearest-neighbour), vector points and
polygons in any CRS (reprojected, rasterised), ENVI ROI exports and arrays (same grid).

A *grid* is anything with ``path``, ``height``, ``width``, ``crs`` (WKT or None) and ``transform``
(6-tuple or None): a :class:`hsicls.io.readers.Scene` or :class:`hsicls.io.readers.CubeSource`. Labels that fall on
no scene are counted (:func:`count_outside`) so preprocess can say how many were lost, per file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsicls.errors import InputError
from hsicls.io.readers import ROI_SUFFIXES, is_vector, read_label_metadata, read_labels, read_raster_georef, read_vector_features


def is_georeferenced(grid) -> bool:
    return grid.crs is not None and grid.transform is not None


def _same_grid(a_crs, a_t, a_shape, grid) -> bool:
    from rasterio.crs import CRS

    if a_shape != (grid.height, grid.width):
        return False
    if a_crs is None or a_t is None or not is_georeferenced(grid):
        return True  # no georeferencing on one side: same shape means same grid, as before
    tol = 1e-6 * max(1.0, abs(grid.transform[0]))
    return CRS.from_wkt(a_crs) == CRS.from_wkt(grid.crs) and np.allclose(a_t, grid.transform, rtol=0, atol=tol)


def _warp_raster(path: Path, grid) -> np.ndarray:
    """A single-band label raster resampled nearest-neighbour onto ``grid`` (0 where it has no data)."""
    import rasterio
    from rasterio.transform import Affine
    from rasterio.warp import Resampling, reproject

    arr = read_labels(path)  # (h, w) int32, nodata -> 0
    with rasterio.open(path) as ds:
        src_crs, src_t = ds.crs, ds.transform
    out = np.zeros((grid.height, grid.width), np.int32)
    reproject(
        arr,
        out,
        src_transform=src_t,
        src_crs=src_crs,
        dst_transform=Affine(*grid.transform),
        dst_crs=grid.crs,
        src_nodata=0,
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    return out


def labels_on_grid(path: Path, grid, key: str | None = None, field: str | None = None, layer: str | None = None) -> np.ndarray:
    """``(H, W)`` int32 label codes of ``path`` on ``grid`` (0 = unlabelled)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if is_vector(path):
        from hsicls.io.readers import rasterize_vector_labels

        return rasterize_vector_labels(path, grid, field, layer)[0]
    if suffix in ROI_SUFFIXES or suffix in (".mat", ".npy"):
        lab = read_labels(path, key=key)
    else:
        crs, transform = read_raster_georef(path)
        lab = None
        if crs is not None and transform is not None and is_georeferenced(grid):
            import rasterio

            with rasterio.open(path) as ds:
                shape = (ds.height, ds.width)
            if not _same_grid(crs, transform, shape, grid):
                return _warp_raster(path, grid)
        lab = read_labels(path, key=key)
    if lab.shape != (grid.height, grid.width):
        raise InputError(
            f"{path}: labels are {lab.shape[0]}x{lab.shape[1]} but the cube {Path(grid.path).name} is "
            f"{grid.height}x{grid.width} (rows x cols)"
        )
    return lab


def _bounds(grid, crs_wkt: str | None):
    """``(xmin, ymin, xmax, ymax)`` of ``grid`` in ``crs_wkt`` (its own CRS when None)."""
    from rasterio.transform import Affine, array_bounds
    from rasterio.warp import transform_bounds

    west, south, east, north = array_bounds(grid.height, grid.width, Affine(*grid.transform))
    if crs_wkt and crs_wkt != grid.crs:
        return transform_bounds(grid.crs, crs_wkt, west, south, east, north)
    return west, south, east, north


def _coords(geom) -> np.ndarray:
    c = np.asarray(_flatten(geom["coordinates"]), float).reshape(-1, 2)
    return c[:, :2]


def _flatten(x):
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], (int, float)):
        return [x[:2]]
    out = []
    for y in x:
        out += _flatten(y)
    return out


def count_outside(path: Path, grids: list, field: str | None = None, layer: str | None = None) -> tuple[int, int]:
    """``(labelled, on no scene)``: features (vector) or labelled pixels (raster) of ``path`` outside every grid."""
    path = Path(path)
    if not all(is_georeferenced(g) for g in grids):
        return 0, 0
    if is_vector(path):
        feats, _, crs = read_vector_features(path, field, layer)
        boxes = [_bounds(g, crs) for g in grids]
        outside = 0
        for geom, _ in feats:
            c = _coords(geom)
            lo, hi = c.min(0), c.max(0)
            if not any(lo[0] < b[2] and hi[0] > b[0] and lo[1] < b[3] and hi[1] > b[1] for b in boxes):
                outside += 1
        return len(feats), outside
    if path.suffix.lower() in ROI_SUFFIXES or path.suffix.lower() in (".mat", ".npy"):
        return 0, 0
    return _raster_outside(path, grids)


def _raster_outside(path: Path, grids: list) -> tuple[int, int]:
    """Labelled pixels of a label raster whose centre lies on no grid (each grid warped onto the raster's)."""
    import rasterio
    from rasterio.transform import Affine
    from rasterio.warp import Resampling, reproject

    lab = read_labels(path)
    with rasterio.open(path) as ds:
        crs, t = ds.crs, ds.transform
    if crs is None:
        return 0, 0
    covered = np.zeros(lab.shape, np.uint8)
    for g in grids:
        cov = np.zeros(lab.shape, np.uint8)
        reproject(
            np.ones((g.height, g.width), np.uint8),
            cov,
            src_transform=Affine(*g.transform),
            src_crs=g.crs,
            dst_transform=t,
            dst_crs=crs,
            src_nodata=0,
            dst_nodata=0,
            resampling=Resampling.nearest,
        )
        covered |= cov
    labelled = lab > 0
    return int(labelled.sum()), int((labelled & (covered == 0)).sum())


def label_names_and_colours(path: Path, grid=None, field: str | None = None, layer: str | None = None):
    """``({code: name}, {code: rgb})`` carried by a label file (raster tags/colour table, ROI names,
    or a vector field's text values)."""
    path = Path(path)
    if is_vector(path):
        _, names, _ = read_vector_features(path, field, layer)
        return {k: n for k, n in enumerate(names, start=1)}, {}
    return read_label_metadata(path)
