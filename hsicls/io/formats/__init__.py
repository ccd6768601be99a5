"""File formats, one module each, in a registry (:data:`FORMATS`); :func:`format_of` picks one per file.

``mat``, ``npy`` (:mod:`.arrays`), ``envi-roi`` (:mod:`.roi`), ``vector`` (:mod:`.vectors`), ``envi`` headers
and ``gdal`` rasters, the fallback (:mod:`.rasters`). Adding a format is adding a module here that registers a
:class:`FileFormat` (it is imported below with the others).
"""

import importlib
import pkgutil

from hsicls.io.formats.base import FORMATS, FileFormat, format_of, register, require_file

# The order of registration is the order in which suffixes are looked up.
# isort: off
from hsicls.io.formats.arrays import MatFormat, NpyFormat
from hsicls.io.formats.roi import read_envi_roi
from hsicls.io.formats.vectors import Features, pick_vector_layer, rasterize_vector_labels, read_features, read_vector_features
from hsicls.io.formats.rasters import ENVI_DATA_SUFFIXES, open_raster
# isort: on

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = [
    "ENVI_DATA_SUFFIXES",
    "FORMATS",
    "Features",
    "FileFormat",
    "MatFormat",
    "NpyFormat",
    "format_of",
    "open_raster",
    "pick_vector_layer",
    "rasterize_vector_labels",
    "read_envi_roi",
    "read_features",
    "read_vector_features",
    "register",
    "require_file",
]
