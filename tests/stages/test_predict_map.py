"""predict-map at scale: window invariance, COG, confidence, rejection, preview, real georeferencing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from tests.conftest import no_temp_files, run_cli


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_window_size_does_not_change_the_map(bundle, tiny_scene, tmp_path):
    maps = []
    for window in (16, 23, 64):
        out = tmp_path / f"map{window}.tif"
        r = run_cli(
            "predict-map", tiny_scene[0], "-m", bundle, "-o", out, "--window", window, "--batch-size", "97", "--device", "cpu"
        )
        assert r.exit_code == 0, r.stderr
        maps.append(_read(out))
    assert np.array_equal(maps[0], maps[1]) and np.array_equal(maps[0], maps[2])
    assert maps[0].min() >= 1


def test_confidence_probabilities_reject_preview(bundle, tiny_scene, tmp_path):
    out, conf, prob, png = tmp_path / "map.tif", tmp_path / "conf.tif", tmp_path / "prob.tif", tmp_path / "map.png"
    r = run_cli(
        "predict-map",
        tiny_scene[0],
        "-m",
        bundle,
        "-o",
        out,
        "--confidence",
        conf,
        "--probabilities",
        prob,
        "--reject-below",
        "0.6",
        "--preview",
        png,
        "--json",
        "--device",
        "cpu",
    )
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    with rasterio.open(out) as m, rasterio.open(conf) as c, rasterio.open(prob) as p:
        classes, confidence, probs = m.read(1), c.read(1), p.read()
        names = m.tags()["CLASS_NAMES"].split(";")
        codes = [int(c) for c in m.tags()["CLASS_CODES"].split(";")]
        unknown = codes[names.index("unknown")]
        assert unknown == max(codes[:-1]) + 1
        assert m.tags(1)[f"CLASS_{unknown}"] == "unknown"
        assert tuple(m.colormap(1)[unknown][:3]) == (128, 128, 128)
        assert c.crs == m.crs and p.count == len(names) - 1
    assert np.all((confidence >= 0) & (confidence <= 1))
    assert np.array_equal(classes == unknown, confidence < 0.6)
    np.testing.assert_allclose(probs.sum(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(probs.max(axis=0), confidence, atol=1e-6)
    assert summary["rejected"] == int((classes == unknown).sum())
    assert summary["per_class_area"] and summary["area_unit"] == "m²"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert no_temp_files(tmp_path)


def test_uint8_confidence(bundle, tiny_scene, tmp_path):
    conf = tmp_path / "c.tif"
    r = run_cli(
        "predict-map",
        tiny_scene[0],
        "-m",
        bundle,
        "-o",
        tmp_path / "m.tif",
        "--confidence",
        conf,
        "--confidence-dtype",
        "uint8",
        "--device",
        "cpu",
    )
    assert r.exit_code == 0, r.stderr
    with rasterio.open(conf) as c:
        assert c.dtypes[0] == "uint8" and c.nodata == 0
        assert c.read(1).min() >= 1


def test_cog_output(bundle, tiny_scene, tmp_path):
    out = tmp_path / "map_cog.tif"
    r = run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", out, "--cog", "--window", "16", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    plain = tmp_path / "plain.tif"
    assert run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", plain, "--device", "cpu").exit_code == 0
    with rasterio.open(out) as ds, rasterio.open(plain) as ref:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.overviews(1)
        assert np.array_equal(ds.read(1), ref.read(1)) and ds.crs == ref.crs and ds.transform == ref.transform
        assert ds.colormap(1)[1] == ref.colormap(1)[1]
    assert no_temp_files(tmp_path)


def test_map_outputs_must_differ(bundle, tiny_scene, tmp_path):
    r = run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", tmp_path / "m.tif", "--confidence", tmp_path / "m.tif")
    assert r.exit_code != 0 and "different file names" in r.stderr


def test_enmap_georeferencing_through_the_chain(shared_data, tmp_path):
    root = shared_data / "enmap_potsdam"
    tile = root / "images" / "enmap_potsdam_tile_96_32.tif"
    prep, model, out = tmp_path / "p.h5", tmp_path / "m.pt", tmp_path / "map.tif"
    r = run_cli(
        "preprocess",
        tile,
        "--labels",
        root / "labels" / tile.name,
        "-o",
        prep,
        "--components",
        "10",
        "--train-ratio",
        "0.3",
        "--class-names",
        "roof,pavement,low vegetation,tree,soil,water",
    )
    assert r.exit_code == 0, r.stderr
    assert (
        run_cli(
            "train", "--model", "md2f-mamba", prep, "-o", model, "--epochs", "2", "--patch-size", "5", "--device", "cpu"
        ).exit_code
        == 0
    )
    other = root / "images" / "enmap_potsdam_tile_160_96.tif"
    r = run_cli("predict-map", other, "-m", model, "-o", out, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    with rasterio.open(other) as src, rasterio.open(out) as m:
        assert m.crs == src.crs and m.crs.to_epsg() == 32633
        assert m.transform == src.transform
        assert m.read(1).min() >= 1  # every pixel classified, borders included
    assert json.loads(r.stdout)["area_unit"] == "m²"


def test_zero_padding_is_kept_in_the_bundle_and_used_by_evaluate_and_predict_map(prepared, tiny_scene, tmp_path):
    """``train --padding zero``: the bundle records it; predict-map's border patches are zero-padded
    (equal to patches cut from the zero-padded prepared cube, not the reflected one), for any window."""
    import torch

    from hsicls.artifacts.bundle import load_bundle
    from hsicls.artifacts.prepared import load_prepared
    from hsicls.engine.patches import gather_patches, pad_cube
    from hsicls.stages.evaluate import evaluate

    model_path = tmp_path / "zero.pt"
    r = run_cli(
        "train",
        "--model",
        "md2f-mamba",
        prepared,
        "-o",
        model_path,
        "--epochs",
        "2",
        "--patch-size",
        "7",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--padding",
        "zero",
    )
    assert r.exit_code == 0, r.stderr
    bundle = load_bundle(model_path)
    assert bundle.model.padding == "zero" and bundle.training["config"]["padding"] == "zero"
    probs = {}
    for window in (16, 64):
        out, prob = tmp_path / f"map{window}.tif", tmp_path / f"prob{window}.tif"
        r = run_cli(
            "predict-map",
            tiny_scene[0],
            "-m",
            model_path,
            "-o",
            out,
            "--probabilities",
            prob,
            "--window",
            window,
            "--device",
            "cpu",
        )
        assert r.exit_code == 0, r.stderr
        with rasterio.open(prob) as ds:
            probs[window] = ds.read()  # (K, H, W)
    assert np.allclose(probs[16], probs[64], atol=1e-5)

    prep = load_prepared(prepared)
    cube = torch.from_numpy(np.ascontiguousarray(prep.cube.transpose(2, 0, 1)))
    h, w = prep.labels.shape
    rows, cols = (torch.as_tensor(a.ravel()) for a in np.meshgrid(np.arange(h), np.arange(w), indexing="ij"))
    model = bundle.build_model()
    t = bundle.temperature or 1.0  # probabilities are calibrated: softmax(logits / T)
    with torch.no_grad():
        direct = {
            mode: torch.softmax(model(gather_patches(pad_cube(cube, 7, mode), rows, cols, 7)) / t, 1).numpy().T.reshape(-1, h, w)
            for mode in ("zero", "reflect")
        }
    border = np.ones((h, w), bool)
    border[3:-3, 3:-3] = False
    assert np.allclose(probs[64], direct["zero"], atol=1e-4)
    assert not np.allclose(probs[64][:, border], direct["reflect"][:, border], atol=1e-4)
    assert np.allclose(probs[64][:, ~border], direct["reflect"][:, ~border], atol=1e-4)  # inside, the mode is irrelevant
    rep = evaluate(model_path, prepared, device="cpu")
    test_rows, test_cols = np.nonzero(prep.test)
    expected = direct["zero"].argmax(0)[test_rows, test_cols]
    assert rep["oa"] == pytest.approx(float(np.mean(expected == prep.labels[test_rows, test_cols] - 1)), abs=1e-9)
