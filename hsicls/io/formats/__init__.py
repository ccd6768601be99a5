"""File formats, one module each, in a registry (:data:`FORMATS`); :func:`format_of` picks one per file.

``mat``, ``npy`` (:mod:`.arrays`), ``envi-roi`` (:mod:`.roi`), ``vector`` (:mod:`.vectors`), ``envi`` headers
and ``gdal`` rasters, the fallback (:mod:`.rasters`). Adding a format is adding a module here with a named
:class:`FileFormat` subclass (it is imported below with the others).
"""

from hsicls.io.formats.base import FORMATS, FileFormat, format_of, require_file
from hsicls.registry import import_modules

# The order of registration is the order in which suffixes are looked up.
# isort: off
from hsicls.io.formats.arrays import MatFormat, NpyFormat
from hsicls.io.formats.roi import read_envi_roi
from hsicls.io.formats.vectors import Features, pick_vector_layer, rasterize_vector_labels, read_features, read_vector_features
from hsicls.io.formats.rasters import ENVI_DATA_SUFFIXES, open_raster
# isort: on

import_modules(__name__, __path__)

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
    "require_file",
]
