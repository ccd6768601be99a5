"""Vector files (GeoPackage, shapefile, GeoJSON, FlatGeobuf, GML, KML, and any other file OGR opens: a
GeoJSON named ``.json``, a zipped shapefile), read with fiona; rasterised onto a grid as labels."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsicls.errors import InputError, first_line
from hsicls.io.formats.base import FileFormat
from hsicls.io.grid import GeoGrid, geometry_bounds


@dataclass
class Features:
    """The features of one layer with a value in the class attribute ``field``."""

    layer: str
    field: str
    crs: str | None  # WKT
    items: list[tuple[dict, object]]  # (GeoJSON-like geometry, value)
    without: int  # features without a geometry or a value (skipped)


def _fiona(path: Path):
    try:
        import fiona
    except ImportError:
        raise InputError(f"{path}: reading vector files needs fiona (pip install 'hsicls[vector]')") from None
    return fiona


@contextmanager
def pick_vector_layer(
    fiona, path: Path, layers: list[str], layer: str | None, field: str | None, layer_flag: str, field_flag: str
):
    """Open the feature layer of a vector file (``layer``, or its only layer with geometry; QGIS's
    ``layer_styles`` table is not one) and choose the class attribute (``field``, or its only one);
    yields ``(collection, field)``. Ambiguity is one error naming ``layer_flag`` / ``field_flag``."""
    if layer is not None and layer not in layers:
        raise InputError(f"{path}: no layer '{layer}' (layers: {', '.join(layers)})")
    if layer is None and len(layers) > 1:
        spatial = [n for n in layers if n != "layer_styles" and _has_geometry(fiona, path, n)]
        if len(spatial) != 1:
            raise InputError(f"{path}: has {len(spatial)} feature layers ({', '.join(spatial)}); choose one with {layer_flag}")
        layer = spatial[0]
    with fiona.open(path, layer=layer, **_open_options(path)) as src:
        props = list(src.schema["properties"])
        if field is None:
            if len(props) != 1:
                raise InputError(f"{path}: choose the class attribute with {field_flag} (one of {', '.join(props)})")
            field = props[0]
        if field not in props:
            raise InputError(f"{path}: no attribute '{field}' (attributes: {', '.join(props)})")
        yield src, field


def _has_geometry(fiona, path: Path, layer: str) -> bool:
    with fiona.open(path, layer=layer, **_open_options(path)) as src:
        return src.schema.get("geometry") not in (None, "None")


CSV_OPTIONS = {  # a table of points (hsicls sample -o s.csv): coordinates in columns x and y, typed values
    "X_POSSIBLE_NAMES": "x,X,easting,lon,longitude",
    "Y_POSSIBLE_NAMES": "y,Y,northing,lat,latitude",
    "AUTODETECT_TYPE": "YES",
}


def _open_options(path: Path) -> dict:
    """OGR open options: a CSV's points from its x/y columns (its coordinates are in the map's CRS, as
    ``hsicls sample`` writes them; a CSV carries no CRS)."""
    return dict(CSV_OPTIONS) if Path(path).suffix.lower() == ".csv" else {}


def read_features(
    path: str | Path,
    field: str | None = None,
    layer: str | None = None,
    flags: tuple[str, str] = ("--label-layer", "--label-field"),
) -> Features:
    """The features of ``path`` with a geometry and a value in ``field`` (blank text is no value); ``flags`` name
    the layer and field options in messages."""
    path = Path(path)
    fiona = _fiona(path)
    try:
        layers = fiona.listlayers(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable vector file ({first_line(exc)})") from None
    try:
        with pick_vector_layer(fiona, path, layers, layer, field, *flags) as (src, field):
            crs = src.crs.to_wkt() if src.crs else None
            items, without = [], 0
            for f in src:
                value = f.properties[field]
                if f.geometry is None or value is None or (isinstance(value, str) and not value.strip()):
                    without += 1
                    continue
                items.append((dict(f.geometry.__geo_interface__), value))
            name = layer or src.name
    except fiona.errors.FionaError as exc:
        raise InputError(f"{path}: not a readable vector file ({first_line(exc)})") from None
    if not items:
        raise InputError(f"{path}: no feature has a geometry and a value in '{field}'")
    _check_geographic_range(path, crs, items)
    return Features(name, field, crs, items, without)


def _check_geographic_range(path: Path, crs: str | None, items: list) -> None:
    """Coordinates in a geographic CRS must be longitudes and latitudes. A GeoJSON file without a ``crs``
    member is WGS 84 (RFC 7946), so projected coordinates written without one land here: one line, and how
    to fix it, instead of a PROJ error."""
    if crs is None:
        return
    from rasterio.crs import CRS

    try:
        geographic = CRS.from_user_input(crs).is_geographic
    except Exception:
        return
    if not geographic:
        return
    for geom, _ in items:
        xmin, ymin, xmax, ymax = geometry_bounds(geom)
        if xmin < -360 or xmax > 360 or ymin < -90.000001 or ymax > 90.000001:
            raise InputError(
                f"{path}: coordinates such as ({xmin:.2f}, {ymin:.2f}) are not longitudes and latitudes, but the file's "
                f"CRS is geographic (a GeoJSON file without a 'crs' member is WGS 84, RFC 7946); give the file its "
                f"CRS (e.g. ogr2ogr -a_srs EPSG:32633 fixed.gpkg {path.name}) or write it in WGS 84"
            )


def read_vector_features(path: str | Path, field: str | None = None, layer: str | None = None):
    """``([(geometry dict, class code)], names, crs WKT)`` of a vector file's labelled features (whole numbers are
    codes; text values become codes 1..K in sorted order, ``names``)."""
    feats = read_features(path, field, layer)
    values = [v for _, v in feats.items]
    if all(isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer()) for v in values):
        codes, names = [int(v) for v in values], []
    else:
        names = sorted({str(v) for v in values})
        codes = [names.index(str(v)) + 1 for v in values]
    return [(g, c) for (g, _), c in zip(feats.items, codes)], names, feats.crs


def rasterize_vector_labels(path: str | Path, grid: GeoGrid, field: str | None = None, layer: str | None = None):
    """``(labels (H, W) int32, names)``: the points/polygons of a vector file burnt onto ``grid`` (reprojected
    if needed). ``field`` is the class attribute: whole numbers are class codes; text values become classes
    1..K in sorted order (their names are returned)."""
    from rasterio.features import rasterize

    path = Path(path)
    if grid.transform is None:
        raise InputError(f"{path}: vector labels need a georeferenced scene; the scene has no transform")
    feats, names, src_crs = read_vector_features(path, field, layer)
    geoms = grid.to_own_crs([g for g, _ in feats], src_crs)
    shapes = list(zip(geoms, [c for _, c in feats]))
    return rasterize(shapes, out_shape=grid.shape, transform=grid.affine, fill=0, dtype="int32"), names


VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".fgb", ".gml", ".kml")


class VectorFormat(FileFormat, name="vector", description="a vector file", suffixes=VECTOR_SUFFIXES, vector=True):
    """Points and polygons in any CRS; by suffix, or by content for any file OGR opens with a layer."""

    def probe(self, path: Path) -> bool:
        try:
            import fiona

            return len(fiona.listlayers(path)) > 0
        except Exception:  # fiona absent, or not a vector file
            return False

    def read_labels(self, path: Path, key: str | None, like: GeoGrid | None, field: str | None) -> np.ndarray:
        if like is None:
            raise InputError(f"{path}: vector labels need the scene's grid to be rasterised onto")
        return rasterize_vector_labels(path, like, field)[0]

    def label_metadata(self, path: Path):
        return {}, {}
