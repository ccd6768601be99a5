"""Frozen outputs: written by the code before the [design] refactor (``tests/fixtures/make_fixtures.py``,
commit f39cae0) and held unchanged since: model logits, and a prepared file and bundles of that
format version that must still load, evaluate and map to the same numbers."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_cli

FIX = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = json.loads((FIX / "expected.json").read_text())


def test_logits_of_every_deep_model_are_unchanged():
    from hsicls.models import create_model, get_entry, list_models

    frozen = np.load(FIX / "logits.npz")
    deep = [n for n in list_models() if get_entry(n).kind == "deep"]
    assert set(frozen.files) <= set(deep)
    for name in frozen.files:
        torch.manual_seed(0)
        model = create_model(name, in_bands=10, n_classes=5, patch_size=9).eval()
        x = torch.randn(4, 10, 9, 9, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = model(x).numpy()
        np.testing.assert_allclose(out, frozen[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", ["md2f_v1", "rf_v1"])
def test_old_bundle_and_prepared_file_evaluate_the_same(name):
    r = run_cli("evaluate", FIX / f"{name}.pt", FIX / "prepared_v1.h5", "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["confusion_matrix"] == EXPECTED[name]["confusion_matrix"]
    assert rep["oa"] == pytest.approx(EXPECTED[name]["oa"], abs=1e-12)
    assert rep["kappa"] == pytest.approx(EXPECTED[name]["kappa"], abs=1e-12)


@pytest.mark.parametrize("name", ["md2f_v1", "rf_v1"])
def test_old_bundle_maps_the_same(name, tmp_path):
    import rasterio

    scene = tmp_path / "tiny_scene.npy"
    shutil.copy(FIX / "tiny_scene.npy", scene)
    out = tmp_path / "map.tif"
    r = run_cli("predict-map", scene, "-m", FIX / f"{name}.pt", "-o", out, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    with rasterio.open(out) as ds:
        arr = ds.read(1)
    assert str(arr.dtype) == EXPECTED[name]["map_dtype"]
    # Since [scenes] maps carry the labels' own codes (here 1, 2, 4, 7, 8, 9); the frozen checksum is of
    # the class index 1..K that maps carried before, so decode the codes with the bundle's table first.
    codes = torch.load(FIX / f"{name}.pt", weights_only=True)["class_values"]
    lut = np.zeros(max(codes) + 1, arr.dtype)
    lut[codes] = np.arange(1, len(codes) + 1)
    assert set(np.unique(arr)) <= {0, *codes}
    assert hashlib.sha256(lut[arr].tobytes()).hexdigest() == EXPECTED[name]["map_sha256"]
