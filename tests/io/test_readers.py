"""Readers: .mat v5 / v7.3, .npy, GeoTIFF; label handling."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from hsicls.errors import InputError
from hsicls.io.readers import read_cube, read_labels


def test_mat_v5_autodetect(tmp_path):
    cube = np.random.default_rng(0).random((6, 7, 5))
    p = tmp_path / "c.mat"
    scipy.io.savemat(p, {"paviaU": cube, "gt": np.ones((6, 7))})
    s = read_cube(p)
    assert s.data.shape == (6, 7, 5) and s.data.dtype == np.float32
    np.testing.assert_allclose(s.data, cube, rtol=1e-6)
    assert s.grid.crs is None and s.grid.transform is None
    assert read_labels(p).shape == (6, 7)


def test_mat_v73(tmp_path):
    cube = np.random.default_rng(1).random((6, 7, 5))
    p = tmp_path / "c73.mat"
    with h5py.File(p, "w") as f:  # MATLAB -v7.3 stores arrays transposed
        f.create_dataset("cube", data=cube.T)
    np.testing.assert_allclose(read_cube(p).data, cube, rtol=1e-6)
    with pytest.raises(InputError, match="no variable 'x'"):
        read_cube(p, key="x")


def test_geotiff_keeps_georeferencing(tiny_scene):
    s = read_cube(tiny_scene[0])
    assert s.data.shape == (40, 40, 24)
    assert s.grid.crs is not None and s.grid.transform[0] == 1.5 and s.grid.transform[4] == -1.5
    assert s.wavelengths is not None and s.wavelengths[0] == pytest.approx(400.0)


def test_float_labels_and_negative(tmp_path):
    p = tmp_path / "l.npy"
    np.save(p, np.array([[0.0, 1.0], [2.0, 2.0]], np.float32))
    assert read_labels(p).dtype == np.int32
    np.save(p, np.array([[0.5, 1.0], [2.0, 2.0]], np.float32))
    with pytest.raises(InputError, match="whole numbers"):
        read_labels(p)
    np.save(p, np.array([[-1, 1], [2, 2]]))
    with pytest.raises(InputError, match=">= 0"):
        read_labels(p)


def test_truncated_npy(tmp_path):
    p = tmp_path / "t.npy"
    np.save(p, np.ones((10, 10, 10)))
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(InputError, match="t.npy"):
        read_cube(p)
