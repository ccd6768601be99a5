"""Calibrated confidences: temperature scaling, ECE, real probabilities from the random forest and the SVM."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from hsicls.artifacts.bundle import load_bundle
from hsicls.engine.calibration import fit_temperature, nll, reliability
from tests.conftest import run_cli


def test_fit_temperature_recovers_an_overconfident_models_temperature():
    """Labels drawn from softmax(z); the model reports 3 z (overconfident): the fitted T is about 3, NLL drops."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(5_000, 5, generator=gen) * 2
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=gen)[:, 0]
    t = fit_temperature(3 * z, y)
    assert t == pytest.approx(3.0, rel=0.08)
    assert nll(3 * z, y, t) < nll(3 * z, y) - 0.1
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.08)


def test_ece_by_hand():
    """Two bins used of 15: (0.6, 0.667] holds 0.62 and 0.65 (one right), (0.933, 1] holds 0.95, 0.99 (both right)."""
    probs = np.array([[0.62, 0.38], [0.35, 0.65], [0.95, 0.05], [0.01, 0.99]])
    y = np.array([0, 0, 0, 1])
    ece, bins = reliability(probs, y, 15)
    assert sum(b["count"] for b in bins) == 4
    used = [b for b in bins if b["count"]]
    assert [b["count"] for b in used] == [2, 2]
    assert used[0]["confidence"] == pytest.approx(0.635) and used[0]["accuracy"] == 0.5
    assert ece == pytest.approx(0.5 * abs(0.5 - 0.635) + 0.5 * abs(1.0 - 0.97))


def test_training_fits_a_temperature_that_lowers_the_validation_nll(bundle):
    """The session's md2f-mamba training run (2 epochs): the bundle carries T and the validation NLL fell."""
    b = load_bundle(bundle)
    cal = b.training["calibration"]
    assert b.temperature is not None and cal["temperature"] == b.temperature
    assert cal["val_nll_after"] < cal["val_nll_before"]
    assert cal["val_pixels"] > 0 and cal["ece_bins"] == 15


def test_evaluate_reports_ece_per_class_intervals_and_a_reliability_diagram(bundle, prepared, tmp_path):
    png = tmp_path / "cm.png"
    r = run_cli("evaluate", bundle, prepared, "--json", "--device", "cpu", "--plot", png, "--report", tmp_path / "rep")
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    cal = rep["calibration"]
    assert cal["bins"] == 15 and cal["temperature"] == load_bundle(bundle).temperature
    assert 0 <= cal["ece_before"] <= 1 and 0 <= cal["ece_after"] <= 1 and cal["nll_after"] is not None
    assert sum(b["count"] for b in cal["reliability_after"]) == rep["test_pixels"]
    assert (tmp_path / "cm_reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.exists()
    cm = np.array(rep["confusion_matrix"])  # rows = true class
    first = next(iter(rep["classes"].values()))
    assert first["producers_accuracy"] == pytest.approx(cm[0, 0] / cm[0].sum())
    if cm[:, 0].sum():
        assert first["users_accuracy"] == pytest.approx(cm[0, 0] / cm[:, 0].sum())
    assert {"users_accuracy_ci95", "producers_accuracy_ci95", "f1"} <= set(first)
    assert "UA" in r.stderr and "calibration error" in r.stderr
    assert "users_accuracy_ci95" in (tmp_path / "rep.csv").read_text()
    assert "Temperature" in (tmp_path / "rep.md").read_text()


def _easy_scene(tmp_path):
    """30 x 30 px, 8 bands, 3 classes in blocks with distinct flat spectra and small noise (GeoTIFFs)."""
    from rasterio.transform import Affine

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3) + 1, 10)[None, :].repeat(30, 0).astype(np.uint8)
    levels = np.array([0.0, 1000.0, 2000.0, 3000.0])
    cube = levels[labels][:, :, None] + rng.normal(0, 30, (30, 30, 8)) + np.linspace(0, 200, 8)
    prof = dict(driver="GTiff", height=30, width=30, crs="EPSG:32633", transform=Affine(30.0, 0.0, 0.0, 0.0, -30.0, 900.0))
    with rasterio.open(tmp_path / "easy.tif", "w", count=8, dtype="float32", **prof) as ds:
        ds.write(cube.transpose(2, 0, 1).astype(np.float32))
    with rasterio.open(tmp_path / "easy_labels.tif", "w", count=1, dtype="uint8", **prof) as ds:
        ds.write(labels, 1)
    return tmp_path / "easy.tif", tmp_path / "easy_labels.tif"


@pytest.mark.parametrize("model", ["rf", "svm"])
def test_classic_confidences_are_probabilities_and_reject_below_keeps_confident_pixels(model, tmp_path):
    """An easy case: the forest's (and the Platt-scaled SVM's) confidences exceed 0.9, not 1/K-ish values of a
    second softmax (6 classes: at most 0.352), and --reject-below 0.5 leaves such pixels their class."""
    cube, labels = _easy_scene(tmp_path)
    prep, m = tmp_path / "p.h5", tmp_path / "m.pt"
    assert run_cli("preprocess", cube, "-l", labels, "-o", prep, "--components", "4", "--train-ratio", "0.2").exit_code == 0
    r = run_cli("train", prep, "-o", m, "--model", model)
    assert r.exit_code == 0, r.stderr
    assert load_bundle(m).temperature is not None
    prob, conf, rejected = tmp_path / "prob.tif", tmp_path / "conf.tif", tmp_path / "rej.tif"
    args = ("-o", rejected, "--confidence", conf, "--probabilities", prob, "--reject-below", "0.5", "--device", "cpu")
    r = run_cli("predict-map", cube, "-m", m, *args)
    assert r.exit_code == 0, r.stderr
    assert "votes" not in r.stderr
    with rasterio.open(prob) as a, rasterio.open(rejected) as b, rasterio.open(conf) as c:
        probs, kept, confidence = a.read(), b.read(1), c.read(1)
    classes = probs.argmax(0) + 1  # the class without rejection
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    np.testing.assert_allclose(probs.max(0), confidence, atol=1e-6)
    # (a perfect validation split keeps T = 1 since [validation]: the forest's own vote shares, not sharpened)
    assert np.median(confidence) > 0.9 and (confidence > 0.8).mean() > 0.9
    sure = confidence >= 0.5
    assert np.array_equal(kept[sure], classes[sure]) and (kept[~sure] == 4).all()
    assert (classes == np.repeat(np.arange(3) + 1, 10)[None, :]).mean() > 0.95


def test_no_validation_split_skips_calibration_and_says_so(tmp_path):
    cube, labels = _easy_scene(tmp_path)
    prep, m = tmp_path / "p.h5", tmp_path / "m.pt"
    args = ("preprocess", cube, "-l", labels, "-o", prep, "--components", "4", "--train-ratio", "0.2", "--val-ratio", "0")
    assert run_cli(*args).exit_code == 0
    r = run_cli("train", prep, "-o", m, "--model", "svm")
    assert r.exit_code == 0 and "calibration skipped" in r.stderr
    b = load_bundle(m)
    assert b.temperature is None and "no validation split" in b.training["calibration"]["skipped"]
    r = run_cli("evaluate", m, prep, "--json")
    rep = json.loads(r.stdout)
    assert rep["calibration"]["ece_after"] is None and "no validation split" in rep["calibration"]["skipped"]
    assert "calibration skipped" in r.stderr


def test_confidence_and_probability_rasters_are_valid_cogs(bundle, tiny_scene, tmp_path):
    out, conf, prob = tmp_path / "m.tif", tmp_path / "c.tif", tmp_path / "p.tif"
    args = ("predict-map", tiny_scene[0], "-m", bundle, "-o", out, "--confidence", conf, "--probabilities", prob)
    r = run_cli(*args, "--cog", "--confidence-dtype", "uint8", "--window", "16", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    for path in (out, conf, prob):
        with rasterio.open(path) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", path.name
            assert ds.overviews(1) and ds.profile["tiled"]
    with rasterio.open(conf) as c, rasterio.open(prob) as p:
        assert c.dtypes[0] == "uint8" and c.nodata == 0 and p.count == load_bundle(bundle).n_classes
        np.testing.assert_allclose(p.read().sum(axis=0), 1, atol=1e-4)
