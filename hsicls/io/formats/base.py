"""The file-format registry: which reader opens a file, chosen once by :func:`format_of`.

A format is a named :class:`FileFormat` subclass (one module of this package; naming it registers it:
``class NpzFormat(ArrayFormat, name="npz", description="a NumPy archive", suffixes=(".npz",))``): the suffixes it claims,
whether its files carry georeferencing, and its readers (a cube, labels, class names and colours, the
grid). Every other module asks :func:`format_of` instead of testing suffixes itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from hsicls.errors import InputError
from hsicls.io.cube import CubeSource
from hsicls.io.grid import GeoGrid
from hsicls.registry import Registry

FORMATS: Registry[FileFormat] = Registry("file format", InputError)


class FileFormat:
    """One file format. Readers raise :class:`InputError` naming the file; ``key`` is ``--key`` (.mat variables)."""

    name: ClassVar[str]
    description: ClassVar[str]  # in messages: "<path>: <description> ..."
    suffixes: ClassVar[tuple[str, ...]] = ()
    georeferenced: ClassVar[bool] = True  # its files may carry a CRS / coordinates (else: pixel grids, paired by shape)
    vector: ClassVar[bool] = False  # features (points, polygons), rasterised onto a grid
    named_classes: ClassVar[bool] = False  # classes are names (ENVI ROIs): files are merged by name, not by code
    fallback: ClassVar[bool] = False  # the format of files that no suffix or content claims (GDAL rasters)

    def __init_subclass__(cls, name: str | None = None, description: str = "", suffixes=(), **flags: bool):
        """A subclass given a ``name`` is registered in :data:`FORMATS`; ``flags`` set the class's flags
        (``georeferenced``, ``vector``, ``named_classes``, ``fallback``)."""
        super().__init_subclass__()
        for flag, value in flags.items():
            if not isinstance(getattr(FileFormat, flag, None), bool):
                raise TypeError(f"{flag!r} is not a file-format flag")
            setattr(cls, flag, value)
        if name is not None:
            cls.name, cls.description, cls.suffixes = name, description, tuple(suffixes)
            FORMATS.add(name, cls())

    def probe(self, path: Path) -> bool:
        """Whether ``path``, whose suffix no format claims, is of this format by its content."""
        return False

    def claims(self, path: Path) -> bool:
        """Whether ``path`` (a file or a folder) is this format's by the product's own names, before any suffix
        (sensor products, :mod:`hsicls.io.formats.products`)."""
        return False

    def open_cube(self, path: Path, key: str | None, mask: str = "all") -> CubeSource:
        raise InputError(f"{path}: {self.description} holds labels, not a hyperspectral cube")

    def read_labels(self, path: Path, key: str | None, like: GeoGrid | None, field: str | None) -> np.ndarray:
        """Raw label values ``(H, W)`` (checked by :func:`hsicls.io.readers.read_labels`)."""
        raise InputError(f"{path}: {self.description} cannot hold labels")

    def label_metadata(self, path: Path) -> tuple[dict[int, str], dict[int, tuple[int, int, int]]]:
        """``({code: name}, {code: rgb})`` the file carries (empty when it carries none)."""
        return {}, {}

    def grid(self, path: Path) -> GeoGrid | None:
        """The file's grid when it is a georeferenced raster, else None."""
        return None

    def companions(self, path: Path) -> list[Path]:
        """Other files read together with ``path`` (an ENVI header beside its data file), those that exist."""
        try:
            found = [path.with_suffix(".hdr"), path.with_name(path.name + ".hdr")]
        except ValueError:  # no file name to derive from
            return []
        return [c for c in found if c.exists()]

    @staticmethod
    def no_key(path: Path, key: str | None) -> None:
        if key is not None:
            raise InputError(f"{path}: --key applies only to .mat files")


def format_of(path: str | Path, probe: bool = True) -> FileFormat:
    """The format of ``path``: a sensor product by its own names (its main file or its folder), by suffix, then by content (vector files under any name, as GDAL/OGR tools
    recognise them; ``probe=False``: suffix only, nothing opened), else a GDAL raster."""
    path = Path(path)
    if probe:
        for fmt in FORMATS.values():
            if fmt.claims(path):
                return fmt
    suffix = path.suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt
    if probe and path.is_file():
        for fmt in FORMATS.values():
            if fmt.probe(path):
                return fmt
    return next(fmt for fmt in FORMATS.values() if fmt.fallback)


def require_file(path: Path) -> None:
    """An input must be an existing regular file: a folder is refused, and so is a FIFO, socket or device,
    before anything opens it (reading a FIFO with no writer waits for ever)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        if any(fmt.claims(path) for fmt in FORMATS.values()):  # a sensor product's folder
            return
        raise InputError(f"{path}: is a directory, expected a file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (a FIFO, socket or device); give a file")
