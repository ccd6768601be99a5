"""The class table of a map: the labels' own codes, their names and colours, as GIS tools read them.

* :func:`read_palette_file`: ``--palette FILE``: JSON ``{code: {"color": "#rrggbb" | [r, g, b], "name": ...}}``
  (or ``{code: "#rrggbb"}``), a GDAL colour file ``.clr`` (``code r g b [a] [name]`` per line), or a
  QGIS style ``.qml`` (``paletteEntry value/color/label``).
* :func:`pam_xml`: GDAL's persistent auxiliary metadata (``<map>.aux.xml``) with the band's
  ``CategoryNames`` (value ``v`` = entry ``v``), so ``gdalinfo`` lists ``Categories:``; GeoTIFF keeps
  category names there, as GDAL itself does.
* :func:`qgis_style`: a QGIS paletted-renderer style (``<map stem>.qml``), loaded by QGIS with the map.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from hsicls.errors import InputError


@dataclass
class ClassTable:
    codes: list[int]
    names: list[str]
    colours: list[tuple[int, int, int]]

    def override(self, entries: dict[int, tuple[tuple[int, int, int] | None, str | None]]) -> ClassTable:
        colours, names = list(self.colours), list(self.names)
        for i, c in enumerate(self.codes):
            rgb, name = entries.get(c, (None, None))
            colours[i] = rgb or colours[i]
            names[i] = name or names[i]
        return ClassTable(list(self.codes), names, colours)


def _rgb(v, path: Path) -> tuple[int, int, int]:
    if isinstance(v, str):
        m = re.fullmatch(r"#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?", v.strip())
        if not m:
            raise InputError(f"{path}: colour {v!r} is not #rrggbb")
        h = m.group(1)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    if isinstance(v, (list, tuple)) and len(v) >= 3 and all(isinstance(x, (int, float)) for x in v[:3]):
        return tuple(int(x) for x in v[:3])  # type: ignore[return-value]
    raise InputError(f"{path}: colour {v!r} is neither #rrggbb nor [r, g, b]")


def read_palette_file(path: str | Path) -> dict[int, tuple[tuple[int, int, int] | None, str | None]]:
    """``{code: (rgb or None, name or None)}`` from a JSON, GDAL .clr or QGIS .qml file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such palette file")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix.lower() == ".qml":
            return _from_qml(text, path)
        if path.suffix.lower() == ".json":
            return _from_json(text, path)
        return _from_clr(text, path)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, SyntaxError) as exc:  # SyntaxError: XML ParseError
        raise InputError(f"{path}: not a readable palette ({type(exc).__name__}: {exc})") from None


def _from_json(text: str, path: Path):
    out = {}
    table = json.loads(text)
    if not isinstance(table, dict):
        raise ValueError("expected a JSON object {code: colour or {color, name}}")
    for k, v in table.items():
        if isinstance(v, dict):
            out[int(k)] = (_rgb(v["color"], path) if "color" in v else None, v.get("name"))
        else:
            out[int(k)] = (_rgb(v, path), None)
    return out


def _from_clr(text: str, path: Path):
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 4:
            raise ValueError(f"line {line.strip()!r}: expected 'code r g b [a] [name]'")
        code, rgb = int(float(parts[0])), tuple(int(float(x)) for x in parts[1:4])
        rest = parts[5:] if len(parts) > 4 and parts[4].isdigit() else parts[4:]
        out[code] = (rgb, " ".join(rest) or None)
    if not out:
        raise ValueError("no 'code r g b' line")
    return out


def _from_qml(text: str, path: Path):
    import xml.etree.ElementTree as ET

    out = {}
    for e in ET.fromstring(text).iter("paletteEntry"):
        out[int(float(e.get("value")))] = (_rgb(e.get("color"), path), e.get("label") or None)
    if not out:
        raise ValueError("no paletteEntry")
    return out


def pam_xml(table: ClassTable) -> str:
    """``<map>.aux.xml``: category names indexed by pixel value (0 = nodata, gaps empty)."""
    names = [""] * (max(table.codes) + 1)
    for c, n in zip(table.codes, table.names):
        names[c] = n
    cats = "".join(f"      <Category>{escape(n)}</Category>\n" for n in names)
    return f'<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n{cats}    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n'


def qgis_style(table: ClassTable) -> str:
    """A QGIS paletted renderer with the class names as labels."""
    entries = "".join(
        f'        <paletteEntry value="{c}" color="#{r:02x}{g:02x}{b:02x}" label="{escape(n, {chr(34): "&quot;"})}" alpha="255"/>\n'
        for c, n, (r, g, b) in zip(table.codes, table.names, table.colours)
    )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28" styleCategories="AllStyleCategories">\n  <pipe>\n'
        '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1">\n      <colorPalette>\n'
        f"{entries}      </colorPalette>\n    </rasterrenderer>\n  </pipe>\n</qgis>\n"
    )


def gdal_category_names(path: str | Path) -> list[str] | None:
    """Category names of band 1 as GDAL reports them (``GDALGetRasterCategoryNames`` through the
    libgdal that rasterio ships), or None when GDAL's C library cannot be reached."""
    import ctypes
    import glob
    import os

    import rasterio

    libdir = os.path.join(os.path.dirname(os.path.dirname(rasterio.__file__)), "rasterio.libs")
    libs = sorted(glob.glob(os.path.join(libdir, "libgdal*.so*")))
    if not libs:
        return None
    gdal = ctypes.CDLL(libs[0])
    gdal.GDALAllRegister()
    gdal.GDALOpen.restype = ctypes.c_void_p
    gdal.GDALGetRasterBand.restype = ctypes.c_void_p
    gdal.GDALGetRasterBand.argtypes = [ctypes.c_void_p, ctypes.c_int]
    gdal.GDALGetRasterCategoryNames.restype = ctypes.POINTER(ctypes.c_char_p)
    gdal.GDALGetRasterCategoryNames.argtypes = [ctypes.c_void_p]
    gdal.GDALClose.argtypes = [ctypes.c_void_p]
    gdal.GDALOpen.restype = ctypes.c_void_p
    gdal.GDALOpen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    gdal.GDALGetMetadata.restype = ctypes.c_void_p
    gdal.GDALGetMetadata.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ds = gdal.GDALOpen(str(path).encode(), 0)
    if not ds:
        return None
    try:
        band = gdal.GDALGetRasterBand(ds, 1)
        gdal.GDALGetMetadata(band, None)  # loads the .aux.xml, as gdalinfo does before listing Categories
        names = gdal.GDALGetRasterCategoryNames(band)
        out, i = [], 0
        while names and names[i] is not None:
            out.append(names[i].decode())
            i += 1
        return out
    finally:
        gdal.GDALClose(ds)
