"""Label files onto a scene's grid: rasters on any grid (warped nearest-neighbour), vector points and
polygons in any CRS (reprojected, rasterised), ENVI ROI exports and arrays (same grid).

A *scene* here is anything with ``path`` and ``grid`` (a :class:`~hsicls.io.grid.GeoGrid`), such as a
:class:`~hsicls.io.cube.CubeSource`. Labels that fall on no scene are counted (:func:`count_outside`) so
preprocess can say how many were lost, per file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsicls.errors import InputError
from hsicls.io.formats import format_of, rasterize_vector_labels, read_vector_features
from hsicls.io.grid import geometry_bounds
from hsicls.io.readers import read_label_metadata, read_labels


def labels_on_grid(path: Path, scene, key: str | None = None, field: str | None = None, layer: str | None = None) -> np.ndarray:
    """``(H, W)`` int32 label codes of ``path`` on ``scene.grid`` (0 = unlabelled). A swath cube with a GLT (EMIT)
    gets the labels drawn on its map grid, each swath pixel taking the label of a map pixel that shows it."""
    glt = getattr(scene, "glt", None)
    if glt is not None:
        from types import SimpleNamespace

        on_map = labels_on_grid(path, SimpleNamespace(grid=glt.grid, path=scene.path), key, field, layer)
        return glt.to_swath(on_map, scene.grid.shape)
    path, grid = Path(path), scene.grid
    fmt = format_of(path)
    if fmt.vector:
        return rasterize_vector_labels(path, grid, field, layer)[0]
    own = fmt.grid(path) if fmt.georeferenced else None
    if own is not None and own.georeferenced and grid.georeferenced and grid.placement(own) == "warp":
        return grid.warp_codes(read_labels(path), own)  # nodata -> 0 before warping
    lab = read_labels(path, key=key)
    if lab.shape != grid.shape:
        raise InputError(
            f"{path}: labels are {lab.shape[0]}x{lab.shape[1]} but the cube {Path(scene.path).name} is "
            f"{grid.height}x{grid.width} (rows x cols)"
        )
    return lab


def count_outside(path: Path, scenes: list, field: str | None = None, layer: str | None = None) -> tuple[int, int]:
    """``(labelled, on no scene)``: features (vector) or labelled pixels (raster) of ``path`` outside every scene."""
    path, grids = Path(path), [s.glt.grid if getattr(s, "glt", None) is not None else s.grid for s in scenes]
    if not all(g.georeferenced for g in grids):
        return 0, 0
    fmt = format_of(path)
    if fmt.vector:
        feats, _, crs = read_vector_features(path, field, layer)
        boxes = [g.bounds(crs) for g in grids]
        outside = 0
        for geom, _ in feats:
            x0, y0, x1, y1 = geometry_bounds(geom)
            if not any(x0 < b[2] and x1 > b[0] and y0 < b[3] and y1 > b[1] for b in boxes):
                outside += 1
        return len(feats), outside
    own = fmt.grid(path) if fmt.georeferenced else None
    if own is None or own.crs is None:
        return 0, 0
    lab = read_labels(path)
    covered = np.zeros(lab.shape, bool)
    for g in grids:  # each scene's footprint warped onto the label raster's grid
        covered |= own.warp_codes(np.ones(g.shape, np.int32), g) > 0
    labelled = lab > 0
    return int(labelled.sum()), int((labelled & ~covered).sum())


def label_names_and_colours(path: Path, field: str | None = None, layer: str | None = None):
    """``({code: name}, {code: rgb})`` carried by a label file (raster tags/colour table, ROI names,
    or a vector field's text values)."""
    path = Path(path)
    if format_of(path).vector:
        _, names, _ = read_vector_features(path, field, layer)
        return {k: n for k, n in enumerate(names, start=1)}, {}
    return read_label_metadata(path)
