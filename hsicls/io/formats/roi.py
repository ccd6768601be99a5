"""ENVI "Output of ROIs" ASCII exports (``.txt``, as Houston 2013's official samples): labels with class names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hsicls.errors import InputError
from hsicls.io.formats.base import FileFormat, require_file
from hsicls.io.grid import GeoGrid


def read_envi_roi(path: str | Path) -> tuple[np.ndarray, list[str], list[tuple[int, int, int] | None]]:
    """Rasterise an ENVI "Output of ROIs" ASCII file (as Houston 2013's official samples).

    Header lines start with ``;`` and give ``File Dimension: <cols> x <rows>`` and, per ROI,
    ``ROI name``, ``ROI rgb value`` and ``ROI npts``; then each ROI's points follow as rows
    ``ID X Y ...`` (1-based column X, row Y), blocks separated by blank lines, in ROI order.
    Returns labels ``(rows, cols)`` with ROI k -> class k, the ROI names and colours.
    """
    path = Path(path)
    require_file(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if not lines or "ROI" not in lines[0]:
        raise InputError(f"{path}: not an ENVI ROI ASCII export (first line: {lines[0][:60] if lines else 'empty file'})")
    dims, names, colours, npts = _header(lines)
    if dims is None or not names or len(npts) != len(names):
        raise InputError(f"{path}: incomplete ENVI ROI header (need File Dimension, ROI names and npts)")
    points = []
    for ln in lines:
        if ln.startswith(";") or not ln.strip():
            continue
        parts = ln.split()
        try:
            points.append((int(parts[1]), int(parts[2])))
        except (IndexError, ValueError):
            raise InputError(f"{path}: malformed point row '{ln.strip()[:40]}'") from None
    if len(points) != sum(npts):
        raise InputError(f"{path}: header announces {sum(npts)} points but the file holds {len(points)} (truncated?)")
    labels = np.zeros(dims, np.int32)
    start = 0
    for k, n in enumerate(npts, start=1):
        block = np.array(points[start : start + n]).reshape(-1, 2)
        cols, rows = block[:, 0] - 1, block[:, 1] - 1
        if (rows < 0).any() or (rows >= dims[0]).any() or (cols < 0).any() or (cols >= dims[1]).any():
            raise InputError(f"{path}: ROI '{names[k - 1]}' has points outside the {dims[1]} x {dims[0]} image")
        labels[rows, cols] = k
        start += n
    return labels, names, colours


def _header(lines: list[str]):
    """``(dims (rows, cols) or None, names, colours, npts)`` from the ``;`` header lines."""
    names: list[str] = []
    colours: list[tuple[int, int, int] | None] = []
    npts: list[int] = []
    dims = None
    for ln in lines:
        if not ln.startswith(";"):
            continue
        m = re.match(r";\s*File Dimension:\s*(\d+)\s*x\s*(\d+)", ln)
        if m:
            dims = (int(m.group(2)), int(m.group(1)))  # rows, cols
        m = re.match(r";\s*ROI name:\s*(.*)", ln)
        if m:
            names.append(m.group(1).strip())
            colours.append(None)
        m = re.match(r";\s*ROI rgb value:\s*\{\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\}", ln)
        if m and colours:
            colours[-1] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        m = re.match(r";\s*ROI npts:\s*(\d+)", ln)
        if m:
            npts.append(int(m.group(1)))
    return dims, names, colours, npts


class EnviRoiFormat(
    FileFormat, name="envi-roi", description="an ENVI ROI export", suffixes=[".txt"], georeferenced=False, named_classes=True
):
    """Classes are ROI names (merged with other ROI files by name); pixel coordinates, no georeferencing."""

    def read_labels(self, path: Path, key: str | None, like: GeoGrid | None, field: str | None) -> np.ndarray:
        return read_envi_roi(path)[0]

    def label_metadata(self, path: Path):
        _, names, colours = read_envi_roi(path)
        return {k: n for k, n in enumerate(names, 1)}, {k: c for k, c in enumerate(colours, 1) if c}
