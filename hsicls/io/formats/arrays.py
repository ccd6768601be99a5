"""Arrays without georeferencing: MATLAB ``.mat`` (v5 via scipy, v7.3 via h5py) and NumPy ``.npy``.

A cube is the only 3-D numeric variable (or ``--key``), labels the only 2-D one; the unmixing
benchmarks' layouts (Jasper Ridge, Samson: ``Y`` with ``nRow``/``nCol``, abundances ``A``) are recognised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsicls.errors import InputError
from hsicls.io.cube import ArrayPixels, BandSet, CubeSource
from hsicls.io.formats.base import FileFormat
from hsicls.io.grid import GeoGrid


def _load_mat(path: Path) -> dict[str, np.ndarray]:
    """All array variables of a MATLAB file (v5 via scipy, v7.3 via h5py), in MATLAB order."""
    import h5py
    import scipy.io

    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except OSError:
        is_hdf5 = False
    try:
        if is_hdf5:
            raise NotImplementedError  # MATLAB v7.3
        raw = scipy.io.loadmat(str(path))
        return {k: v for k, v in raw.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        pass
    except Exception as exc:  # scipy raises ValueError/TypeError/... on corrupt files
        raise InputError(f"{path}: not a readable MATLAB file ({exc})") from None

    try:
        with h5py.File(path, "r") as f:
            out = {}
            for k, v in f.items():
                if isinstance(v, h5py.Dataset) and v.ndim >= 2:
                    out[k] = np.asarray(v).transpose()  # HDF5 stores MATLAB arrays transposed
            return out
    except OSError as exc:
        raise InputError(f"{path}: not a readable MATLAB v7.3 file ({exc})") from None


def _pick_key(path: Path, arrays: dict[str, np.ndarray], key: str | None, ndim: int) -> np.ndarray:
    if key is not None:
        if key not in arrays:
            raise InputError(f"{path}: no variable '{key}' (variables: {', '.join(sorted(arrays)) or 'none'})")
        return arrays[key]
    # scalars and strings come out of loadmat as 2-D arrays too: count numeric arrays only
    candidates = [k for k, v in arrays.items() if v.ndim == ndim and v.dtype.kind in "biuf" and min(v.shape) > 1]
    if len(candidates) == 1:
        return arrays[candidates[0]]
    what = "3-D cube" if ndim == 3 else "2-D label"
    if not candidates:
        raise InputError(f"{path}: no {what} variable found (variables: {', '.join(sorted(arrays)) or 'none'})")
    raise InputError(f"{path}: several {what} variables ({', '.join(sorted(candidates))}); choose one with --key")


def _unmixing_layout(path: Path, arrays: dict[str, np.ndarray], ndim: int) -> np.ndarray | None:
    """Unmixing-benchmark files (Jasper Ridge, Samson): ``Y`` (bands, pixels) with ``nRow``/``nCol``
    -> cube ``(nRow, nCol, bands)``; an endmember file's abundances ``A`` (classes, pixels) of a
    square scene -> labels = 1 + argmax. Pixels are stored column-major (MATLAB order)."""
    if ndim == 3 and "Y" in arrays and "nRow" in arrays and "nCol" in arrays and arrays["Y"].ndim == 2:
        y = arrays["Y"]
        rows, cols = int(np.ravel(arrays["nRow"])[0]), int(np.ravel(arrays["nCol"])[0])
        if y.shape[1] != rows * cols:
            raise InputError(f"{path}: Y has {y.shape[1]} pixels, not nRow x nCol = {rows * cols}")
        return y.T.reshape(cols, rows, y.shape[0]).transpose(1, 0, 2)
    if ndim == 2 and "A" in arrays and "M" in arrays and arrays["A"].ndim == 2:
        a = arrays["A"]
        side = int(round(np.sqrt(a.shape[1])))
        if side * side != a.shape[1]:
            raise InputError(f"{path}: abundances of {a.shape[1]} pixels do not form a square scene; give the labels another way")
        return (a.argmax(axis=0) + 1).reshape(side, side, order="F")
    return None


class ArrayFormat(FileFormat):
    """A cube or labels held whole in one array; no georeferencing (pixel grids, paired with scenes by shape)."""

    georeferenced = False

    def load(self, path: Path, key: str | None, ndim: int) -> np.ndarray:
        raise NotImplementedError

    def open_cube(self, path: Path, key: str | None, mask: str = "all") -> CubeSource:
        arr = self.load(path, key, 3)
        if arr.ndim != 3:
            raise InputError(f"{path}: expected a 3-D (rows, cols, bands) cube, got shape {arr.shape}")
        data = np.ascontiguousarray(arr, dtype=np.float32)
        h, w, b = data.shape
        return CubeSource(path, GeoGrid(h, w), ArrayPixels(data), BandSet.numbered(b))

    def read_labels(self, path: Path, key: str | None, like: GeoGrid | None, field: str | None) -> np.ndarray:
        return self.load(path, key, 2)


class MatFormat(ArrayFormat, name="mat", description="a MATLAB file", suffixes=[".mat"]):
    def load(self, path: Path, key: str | None, ndim: int) -> np.ndarray:
        arrays = _load_mat(path)
        if key is None:
            special = _unmixing_layout(path, arrays, ndim)
            if special is not None:
                return special
        return _pick_key(path, arrays, key, ndim)


class NpyFormat(ArrayFormat, name="npy", description="a NumPy array", suffixes=[".npy"]):
    def load(self, path: Path, key: str | None, ndim: int) -> np.ndarray:
        self.no_key(path, key)
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc):  # numpy's text suggests loading it unsafely: never
                raise InputError(
                    f"{path}: not a plain .npy array (object data or not a .npy file at all); hsicls reads numeric arrays only"
                ) from None
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        except Exception as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
