"""The embedded sample scene: present, small, georeferenced, and reproducible by its generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from hsicls.synthetic import make_scene

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def test_sample_files_small_and_georeferenced():
    cube, labels = SAMPLE / "sample_scene.tif", SAMPLE / "sample_labels.tif"
    assert cube.stat().st_size + labels.stat().st_size < 5 * 1024 * 1024
    with rasterio.open(cube) as c, rasterio.open(labels) as lab:
        assert c.crs.is_projected and c.crs.to_epsg() == 32632
        assert c.transform == lab.transform and c.crs == lab.crs
        assert 100 <= c.count <= 200 and 100 <= c.width <= 200 and 100 <= c.height <= 200
        assert c.tags(1)["wavelength"]
        classes = np.unique(lab.read(1))
        assert 6 <= len(classes[classes > 0]) <= 10


def test_generator_reproduces_committed_sample():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_sample", SAMPLE / "make_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    scene = make_scene(size=mod.SIZE, bands=mod.BANDS, seed=mod.SEED)
    with rasterio.open(SAMPLE / "sample_scene.tif") as c, rasterio.open(SAMPLE / "sample_labels.tif") as lab:
        assert np.array_equal(lab.read(1), scene.labels)
        stored = c.read().transpose(1, 2, 0)
    assert np.array_equal(stored, np.round(scene.cube * 10000).astype(np.int16))
