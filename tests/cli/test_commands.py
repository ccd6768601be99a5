"""Each subcommand through the CLI on a tiny synthetic scene."""

from __future__ import annotations

import json

import h5py
import numpy as np
import rasterio
import torch

from hsicls.synthetic import CLASS_NAMES
from tests.conftest import no_temp_files, run_cli


def test_preprocess_writes_complete_h5(prepared, tiny_scene):
    with rasterio.open(tiny_scene[1]) as ds:
        labels = ds.read(1)
    with h5py.File(prepared, "r") as f:
        assert f.attrs["format_version"] == 2 and len(f["scenes"]) == 1
        g = f["scenes/0"]
        assert g["cube"].shape == (40, 40, 6)
        assert g["cube"].dtype == np.float32
        train, val, test = (g[f"split/{k}"][...] for k in ("train", "val", "test"))
        assert not (train & val).any() and not (train & test).any() and not (val & test).any()
        assert ((train | val | test) == (labels > 0)).all()
        assert f["preprocess/pca_components"].shape == (6, 24)
        assert f["preprocess/mean"].shape == (24,)
        names = json.loads(f.attrs["class_names"])
        present = [CLASS_NAMES[v - 1] for v in np.unique(labels) if v > 0]
        assert names == present  # names read from the label GeoTIFF's tags
        assert json.loads(f.attrs["split"])["protocol"] == "random"
        assert "32632" in g.attrs["crs"] or "UTM zone 32N" in g.attrs["crs"]
        assert len(g.attrs["transform"]) == 6 and g.attrs["name"] == "scene"
        # every class has training pixels: stratified
        lab = g["labels"][...]
        assert set(np.unique(lab[train | val])) == set(np.unique(lab[lab > 0]))


def test_train_bundle_loads_weights_only(bundle):
    b = torch.load(bundle, map_location="cpu", weights_only=True)
    assert b["format"] == "hsicls-bundle"
    assert b["model"]["name"] == "md2f-mamba"
    assert b["model"]["patch_size"] == 5
    assert b["n_bands"] == 24
    assert b["preprocessing"]["pca_components"].shape == (6, 24)
    assert b["training"]["selection"] == "validation"
    assert 1 <= b["training"]["best_epoch"] <= 2
    assert set(b["split_masks"]) == {"train", "val", "test"}
    assert len(b["palette"]) == len(b["class_names"])


def test_train_json_history(prepared, tmp_path):
    out = tmp_path / "m.pt"
    r = run_cli(
        "train",
        prepared,
        "-o",
        out,
        "--epochs",
        "2",
        "--patch-size",
        "3",
        "--json",
        "--device",
        "cpu",
        "--model",
        "md2f-mamba",
        "--model-opt",
        "fusion=add",
    )
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert [h["epoch"] for h in res["history"]] == [1, 2]
    assert res["selection"] == "validation"
    assert torch.load(out, weights_only=True)["model"]["options"] == {"fusion": "add"}


def test_evaluate_json_and_table(bundle, prepared):
    r = run_cli("evaluate", bundle, prepared, "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    with h5py.File(prepared, "r") as f:
        n_test = int(f["scenes/0/split/test"][...].sum())
        k = len(json.loads(f.attrs["class_names"]))
    cm = np.array(rep["confusion_matrix"])
    assert cm.shape == (k, k) and cm.sum() == n_test == rep["test_pixels"]
    assert abs(rep["oa"] - np.trace(cm) / cm.sum()) < 1e-9
    assert 0 <= rep["aa"] <= 1 and -1 <= rep["kappa"] <= 1
    assert rep["split"]["protocol"] == "random"
    assert "OA" in r.stderr and "kappa" in r.stderr  # the table goes to stderr


def test_predict_map_georeferenced(bundle, tiny_scene, tmp_path):
    cube, labels = tiny_scene
    out = tmp_path / "map.tif"
    r = run_cli("predict-map", cube, "-m", bundle, "-o", out, "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["classified"] == 40 * 40
    b = torch.load(bundle, weights_only=True)
    with rasterio.open(cube) as src, rasterio.open(out) as m:
        assert m.crs == src.crs
        assert m.transform == src.transform
        assert m.dtypes[0] == "uint8" and m.nodata == 0
        data = m.read(1)
        assert data.min() >= 1 and set(np.unique(data)) <= set(b["class_values"])  # borders classified too, in label codes
        cmap = m.colormap(1)
        for code, rgb in zip(b["class_values"], b["palette"]):
            assert tuple(cmap[code][:3]) == tuple(rgb)
        c0 = b["class_values"][0]
        assert m.tags(1)[f"CLASS_{c0}"] == b["class_names"][0]
    assert no_temp_files(tmp_path)


def test_predict_map_nodata_and_npy(bundle, tiny_scene, tmp_path):
    with rasterio.open(tiny_scene[0]) as src:
        data = src.read().transpose(1, 2, 0).astype(np.float32)
    data[0, 0, :] = np.nan
    data[5, 7, :] = 0
    npy = tmp_path / "scene.npy"
    np.save(npy, data)
    out = tmp_path / "map.tif"
    r = run_cli("predict-map", npy, "-m", bundle, "-o", out, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert "no CRS" in r.stderr
    with rasterio.open(out) as m:
        classes = m.read(1)
        assert m.crs is None
    assert classes[0, 0] == 0 and classes[5, 7] == 0
    assert (classes > 0).sum() == 40 * 40 - 2


def test_predict_matches_evaluate_at_test_pixels(bundle, prepared, tiny_scene, tmp_path):
    """The map and evaluate classify the same pixels the same way (same preprocessing, padding)."""
    out = tmp_path / "map.tif"
    assert run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", out, "--device", "cpu").exit_code == 0
    rep = json.loads(run_cli("evaluate", bundle, prepared, "--json", "--device", "cpu").stdout)
    with h5py.File(prepared, "r") as f:
        test = f["scenes/0/split/test"][...]
        lab = f["scenes/0/labels"][...]
    with rasterio.open(out) as m:
        pred = m.read(1)
    cm = np.zeros_like(np.array(rep["confusion_matrix"]))
    b = torch.load(bundle, weights_only=True)
    index = {c: i for i, c in enumerate(b["class_values"])}  # the map holds label codes
    np.add.at(cm, (lab[test] - 1, np.array([index[v] for v in pred[test]])), 1)
    assert (cm == np.array(rep["confusion_matrix"])).all()


def test_datasets_and_models_listing():
    r = run_cli("datasets", "--json")
    assert r.exit_code == 0
    names = [d["name"] for d in json.loads(r.stdout)]
    assert "indian-pines" in names and "pavia-university" in names and len(names) == 11
    r = run_cli("models", "--json")
    assert r.exit_code == 0
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    assert {"md2f-mamba", "spectral-cnn", "rf", "ensemble"} <= set(rows) and rows["spectral-cnn"]["params"] <= 100_000
    assert run_cli("datasets").exit_code == 0


def test_version():
    r = run_cli("--version")
    assert r.exit_code == 0 and r.stdout.startswith("hsicls ")
