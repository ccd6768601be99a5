"""EnMAP L2A and DESIS L2A products: an image (GeoTIFF, or ENVI BSQ/BIL/BIP with its header) and a metadata XML.

EnMAP L2A (DLR, EN-PCV-ICD-2009-2): ``<id>-SPECTRAL_IMAGE.TIF`` (int16 reflectance), ``<id>-METADATA.XML`` with
``level_X/specific/bandCharacterisation/bandID[@number]/{wavelengthCenterOfBand, FWHMOfBand, GainOfBand,
OffsetOfBand}``, and the quality layers ``<id>-QL_QUALITY_{CLOUD,CIRRUS,HAZE,SNOW,CLOUDSHADOW}.TIF`` (0/1) and
``<id>-QL_PIXELMASK.TIF`` (defective pixels, one band per spectral band). Reflectance = stored * gain + offset.

DESIS L2A (DLR/Teledyne): ``DESIS-HSI-L2A-<id>-SPECTRAL_IMAGE.tif`` and ``-METADATA.xml`` with ``band`` elements
``{bandNumber, wavelengthCenterOfBand, wavelengthWidthOfBand, gainOfBand, offsetOfBand}``; its quality layers are
not read (``--mask`` has no effect on it, said once).

Either is opened by its image, its metadata file or its folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from hsicls import console
from hsicls.errors import InputError
from hsicls.io.cube import BandSet, CubeSource
from hsicls.io.formats.products import (
    ProductPixels,
    QualityLayers,
    SensorProduct,
    bands_from,
    check_count,
    number,
    xml_root,
)
from hsicls.io.formats.rasters import ENVI_DATA_SUFFIXES, RasterPixels, open_raster
from hsicls.io.grid import GeoGrid

IMAGE_SUFFIXES = (".tif", ".tiff", ".bsq", ".bil", ".bip")


class XmlProduct(SensorProduct):
    """An image beside a metadata XML, both named ``<id>-<PART>``."""

    image_part = "SPECTRAL_IMAGE"
    metadata_part = "METADATA"
    product: str = ""
    default_fill: float | None = None
    quality_parts: dict[str, tuple[str, ...]] = {}

    def claims(self, path: Path) -> bool:
        if path.is_dir():
            return self.main_in(path) is not None
        stem = self._stem(path)
        return (
            stem is not None and self._metadata(path.parent, stem) is not None and self.is_mine(self._metadata(path.parent, stem))
        )

    def is_mine(self, metadata: Path) -> bool:  # the XML's own content says which product it is
        return True

    def _stem(self, path: Path) -> str | None:
        m = re.match(rf"(.+)-({self.image_part}|{self.metadata_part})(\.[A-Za-z]+)?$", path.name, re.IGNORECASE)
        return m.group(1) if m else None

    def _metadata(self, folder: Path, stem: str) -> Path | None:
        for p in sorted(folder.glob(f"{stem}-*")):
            if re.fullmatch(rf"{re.escape(stem)}-{self.metadata_part}\.xml", p.name, re.IGNORECASE):
                return p
        return None

    def _image(self, folder: Path, stem: str, where: Path) -> Path:
        for p in sorted(folder.glob(f"{stem}-*")):
            m = re.fullmatch(rf"{re.escape(stem)}-{self.image_part}(\.[A-Za-z]+)?", p.name, re.IGNORECASE)
            if (
                m
                and (m.group(1) or "").lower() in (*IMAGE_SUFFIXES, *ENVI_DATA_SUFFIXES)
                and (m.group(1) or "").lower() != ".hdr"
            ):
                return p
        raise InputError(f"{where}: the {self.product} image {stem}-{self.image_part}.* is missing")

    def main_in(self, folder: Path) -> Path | None:
        try:
            for p in sorted(folder.iterdir()):
                stem = self._stem(p)
                if stem and re.search(rf"-{self.metadata_part}\.xml$", p.name, re.IGNORECASE) and self.is_mine(p):
                    return p
        except OSError:
            return None
        return None

    def open_cube(self, path: Path, key: str | None, mask: str = "all") -> CubeSource:
        self.no_key(path, key)
        given = path
        path = self.main_file(path)
        stem = self._stem(path)
        metadata = self._metadata(path.parent, stem)
        if metadata is None:
            raise InputError(f"{given}: the {self.product} metadata {stem}-{self.metadata_part}.XML is missing")
        image = self._image(path.parent, stem, given)
        wl, fwhm, gains, offsets = self.band_table(metadata)
        with open_raster(image) as ds:
            check_count(metadata, image, ds.count, len(wl))
            grid = GeoGrid.of(ds)
            fill = ds.nodata if ds.nodata is not None else self.default_fill
        bands = BandSet(bands_from(wl, fwhm))
        layers = self._quality_layers(path.parent, stem, grid, image)
        pixels = ProductPixels(RasterPixels(image, given), grid.shape, gains, offsets, fill)
        source = CubeSource(given, grid, pixels, bands, None, product=self.product)
        if layers is not None:
            source.quality = layers.quality(mask, lambda: _not_fill(image, fill))
            pixels.mask = layers.mask_fn(mask)
        elif mask != "none":
            console.info(f"{given.name}: no quality layer of this {self.product} product is read; --mask has no effect")
        return source

    def _quality_layers(self, folder: Path, stem: str, grid: GeoGrid, image: Path) -> QualityLayers | None:
        found = {}
        for flag, parts in self.quality_parts.items():
            for part in parts:
                hits = [p for p in folder.glob(f"{stem}-{part}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
                if hits:
                    found[flag] = sorted(hits)[0]
                    break
        return QualityLayers(found, grid.shape, image) if found else None

    band_fields: tuple[str, str, str, str] = ()  # the XML fields of (wavelength, FWHM, gain, offset) in a band entry

    def find_bands(self, root) -> list:
        """The band entries of the metadata."""
        raise NotImplementedError

    def band_label(self, b, i: int) -> str:
        """How band entry ``b`` (the ``i``-th) is named in messages."""
        raise NotImplementedError

    def band_table(self, metadata: Path) -> tuple[list[float], list[float], list[float], list[float]]:
        """``(wavelengths, FWHMs, gains, offsets)`` of the metadata's band entries (a missing offset is 0); a missing or
        non-numeric field is an error naming the band and the field."""
        bands = self.find_bands(xml_root(metadata))
        if not bands:
            raise InputError(f"{metadata}: no band entries with {self.band_fields[0]} (not a {self.product} metadata file?)")
        *needed, offset = self.band_fields
        rows = []
        for i, b in enumerate(bands):
            where = f"band {self.band_label(b, i)}"
            values = [number(b, tag, metadata, where) for tag in needed]
            rows.append((*values, number(b, offset, metadata, where) if b.find(offset) is not None else 0.0))
        return tuple(list(c) for c in zip(*rows))

    def grid(self, path: Path) -> GeoGrid | None:
        path = self.main_file(path)
        with open_raster(self._image(path.parent, self._stem(path), path)) as ds:
            return GeoGrid.of(ds)

    def companions(self, path: Path) -> list[Path]:
        stem = self._stem(path)
        return sorted(path.parent.glob(f"{stem}-*")) if stem else []


def _not_fill(image: Path, fill: float | None):
    """``(H, W)`` bool: pixels whose first band is not the fill value (where quality flags count as masking)."""
    import numpy as np

    with open_raster(image) as ds:
        b1 = ds.read(1)
    return np.ones(b1.shape, bool) if fill is None else b1 != fill


class EnmapL2A(XmlProduct, name="enmap-l2a", description="an EnMAP L2A product"):
    product = "EnMAP L2A"
    default_fill = -32768.0
    quality_parts = {
        "cloud": ("QL_QUALITY_CLOUD",),
        "cirrus": ("QL_QUALITY_CIRRUS",),
        "haze": ("QL_QUALITY_HAZE",),
        "snow": ("QL_QUALITY_SNOW",),
        "cloud shadow": ("QL_QUALITY_CLOUDSHADOW",),
        "bad pixel": ("QL_PIXELMASK",),
    }

    def is_mine(self, metadata: Path) -> bool:
        return metadata.name.upper().startswith("ENMAP")

    band_fields = ("wavelengthCenterOfBand", "FWHMOfBand", "GainOfBand", "OffsetOfBand")

    def find_bands(self, root) -> list:
        return root.findall(".//specific/bandCharacterisation/bandID")

    def band_label(self, b, i: int) -> str:
        return str(b.get("number", i + 1))


class DesisL2A(XmlProduct, name="desis-l2a", description="a DESIS L2A product"):
    product = "DESIS L2A"
    default_fill = 0.0  # DESIS marks pixels outside the swath with 0 in every band

    def is_mine(self, metadata: Path) -> bool:
        return metadata.name.upper().startswith("DESIS")

    band_fields = ("wavelengthCenterOfBand", "wavelengthWidthOfBand", "gainOfBand", "offsetOfBand")

    def find_bands(self, root) -> list:
        return [b for b in root.iter("band") if b.find("wavelengthCenterOfBand") is not None]

    def band_label(self, b, i: int) -> str:
        return b.findtext("bandNumber") or str(i + 1)
