"""[validation] Spatial validation inside fixed and disjoint training masks, and a temperature that never
sharpens beyond what the validation supports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from hsicls.config import PreprocessOptions
from hsicls.engine.calibration import SATURATED, guarded_temperature, validation_halves
from hsicls.errors import OptionError
from hsicls.science.splits import disjoint_split, fixed_split, split_record
from hsicls.science.splits.base import carve_spatial_validation
from tests.conftest import run_cli

EIGHT = np.ones((3, 3), bool)


def _fields(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 60 x 60 canvas of 3 classes in rectangular fields: class 1 in four fields, class 2 in two, class 3
    in one long field; the training mask covers every field."""
    labels = np.zeros((60, 60), np.int64)
    for r0, c0 in ((2, 2), (2, 30), (30, 2), (30, 30)):
        labels[r0 : r0 + 8, c0 : c0 + 10] = 1
    labels[15:22, 5:20] = 2
    labels[45:52, 40:55] = 2
    labels[15:20, 30:58] = 3
    return labels, labels > 0


def test_spatial_validation_takes_whole_regions_or_a_strip():
    labels, train_mask = _fields()
    train, val = carve_spatial_validation(train_mask, labels, 0.25, seed=3)
    assert not (train & val).any() and np.array_equal(train | val, train_mask)
    for c in (1, 2, 3):
        regions, m = ndimage.label(train_mask & (labels == c), structure=EIGHT)
        n = int((labels == c).sum())
        assert 0 < val[labels == c].sum() < n  # some validation, never the whole class
        assert abs(val[labels == c].sum() - 0.25 * n) <= 0.5 * 0.25 * n + 1
        split = [r for r in range(1, m + 1) if train[regions == r].any() and val[regions == r].any()]
        assert len(split) <= 1, (c, split)  # whole regions, but for at most one region cut by a strip
        for r in split:  # the strip: one connected piece at one end of the region
            assert ndimage.label(val & (regions == r), structure=EIGHT)[1] == 1
    # class 1 (four fields of 80 px, quota 80): one whole field; class 3 (one field): a strip
    assert ndimage.label(val & (labels == 1), structure=EIGHT)[1] == 1 and val[labels == 1].sum() == 80
    again = carve_spatial_validation(train_mask, labels, 0.25, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again))  # stable for a seed


def test_spatial_validation_is_apart_from_training_unlike_random():
    """The distance from validation pixels to the nearest training pixel of the same class is larger than
    with random validation (which puts every validation pixel beside a training pixel)."""
    labels, train_mask = _fields()

    def mean_distance(train, val):
        out = []
        for c in (1, 2, 3):
            d = ndimage.distance_transform_edt(~(train & (labels == c)))
            out.append(d[val & (labels == c)].mean())
        return float(np.mean(out))

    spatial = fixed_split(labels, train_mask, None, 0.25, 0, val_rule="spatial")
    rand = fixed_split(labels, train_mask, None, 0.25, 0, val_rule="random")
    assert mean_distance(spatial[0], spatial[1]) > 2 * mean_distance(rand[0], rand[1])
    assert np.array_equal(spatial[2], rand[2])  # the test split is the same


def test_val_split_auto_is_spatial_on_fixed_and_disjoint_only():
    o = PreprocessOptions(split="disjoint")
    assert split_record(o)["val_split"] == "spatial"
    assert split_record(PreprocessOptions())["val_split"] == "random"
    assert split_record(PreprocessOptions(split="fixed", train_mask="t.tif"))["val_split"] == "spatial"
    assert split_record(PreprocessOptions(split="fixed", train_mask="t.tif", val_split="random"))["val_split"] == "random"
    assert "val_split" not in split_record(PreprocessOptions(split="group"))
    with pytest.raises(OptionError, match="whole groups"):
        PreprocessOptions(split="group", val_split="spatial").validate()
    labels = np.random.default_rng(0).integers(1, 4, (40, 40))
    a = disjoint_split(labels, 0.2, 0.2, 0, 5, val_rule="spatial")
    b = disjoint_split(labels, 0.2, 0.2, 0, 5, val_rule="random")
    assert np.array_equal(a[0] | a[1], b[0] | b[1]) and np.array_equal(a[2], b[2])


def test_temperature_falls_back_to_one_when_validation_is_saturated():
    rng = np.random.default_rng(0)
    y = torch.as_tensor(rng.integers(0, 4, 500))
    logits = torch.randn(500, 4) + 3 * torch.nn.functional.one_hot(y, 4)  # every pixel right, margins moderate
    logits[torch.arange(500), y] += 2
    assert float((logits.argmax(1) == y).double().mean()) >= SATURATED
    t, why = guarded_temperature(logits, y)
    assert t == 1.0 and "too few errors" in why


def test_temperature_kept_when_both_halves_agree_and_refused_when_they_do_not():
    rng = np.random.default_rng(1)
    y = torch.as_tensor(rng.integers(0, 3, 2000))
    clean = torch.nn.functional.one_hot(y, 3).double() * 1.5 + torch.as_tensor(rng.normal(0, 1, (2000, 3)))
    halves = np.arange(2000) % 2
    low = clean * 0.2  # an under-confident model: T < 1 fits, and both halves agree
    t, why = guarded_temperature(low, y, halves)
    assert t < 1 and why is None
    shifted = low.clone()  # one half is confidently wrong: a sharper T there makes the other half worse
    wrong = (torch.as_tensor(halves) == 1) & (torch.as_tensor(rng.random(2000)) < 0.6)
    shifted[wrong] = torch.roll(clean[wrong], 1, dims=1) * 3
    t2, why2 = guarded_temperature(shifted, y, halves)
    assert t2 == 1.0 or why2 is None  # either the fit itself softens (T >= 1) or the check refuses a sharper T
    if why2:
        assert "other half" in why2


def test_validation_halves_split_regions_by_place():
    mask = np.zeros((20, 20), bool)
    mask[1:4, 1:4] = mask[10:14, 10:14] = mask[1:3, 15:19] = True
    rows, cols = np.nonzero(mask)
    h = validation_halves(rows, cols, mask.shape)
    regions = ndimage.label(mask, structure=EIGHT)[0][rows, cols]
    for r in np.unique(regions):  # a region is never split between the halves
        assert len(np.unique(h[regions == r])) == 1
    assert set(np.unique(h)) == {0, 1}


def test_old_prepared_file_keeps_its_recorded_split_and_the_report_says_so(tmp_path):
    from tests.artifacts.test_frozen import FIX

    r = run_cli("evaluate", FIX / "md2f_v1.pt", FIX / "prepared_v1.h5", "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    assert "val_split" not in rep["split"] and "prepared before --val-split" in rep["validation"]


def test_preprocess_records_spatial_validation_on_a_fixed_split(tiny_scene, tmp_path):
    import rasterio

    from hsicls.artifacts.prepared import load_prepared

    scene, labels = tiny_scene
    with rasterio.open(labels) as src:
        profile, lab = src.profile, src.read(1)
    mask = np.zeros_like(lab)
    mask[:, : lab.shape[1] // 2] = 1
    with rasterio.open(tmp_path / "train.tif", "w", **profile) as dst:
        dst.write(mask, 1)
    out = tmp_path / "p.h5"
    r = run_cli("preprocess", scene, "--labels", labels, "-o", out, "--split", "fixed", "--train-mask", tmp_path / "train.tif")
    assert r.exit_code == 0, r.stderr
    prep = load_prepared(out)
    assert prep.meta["split"]["val_split"] == "spatial" and "(spatial)" in prep.meta["split"]["description"]
    assert prep.val.any() and not (prep.val & prep.train).any()


def test_spatial_validation_lies_as_far_from_training_as_the_test():
    """[validation] 1: the block size is chosen so that the validation pixels' distances to the remaining
    training pixels match the test's: a test beside the training pixels gives small blocks, a test in other
    fields gives large blocks or whole fields; the choice and both distance profiles are recorded."""
    from hsicls.science.splits.base import carve_matched_validation

    labels, train_mask = _fields()
    train = train_mask & (np.indices(labels.shape)[1] % 6 != 0)  # every sixth column is test, beside training
    test = train_mask & ~train
    info = {}
    tr, va = carve_matched_validation(train, labels, 0.25, 0, test, info)
    assert info["rule"] in ("blocks of 2 px", "blocks of 4 px") and info["test_distance_px"][2] == 1.0
    far_labels = labels.copy()
    far_labels[:, 45:] = 0  # the right half's fields are the test, far from the left half's training
    far_train = train_mask & (np.indices(labels.shape)[1] < 28)
    far_test = (labels > 0) & (np.indices(labels.shape)[1] >= 28)
    info2 = {}
    tr2, va2 = carve_matched_validation(far_train, labels, 0.25, 0, far_test, info2)
    assert info2["test_distance_px"][2] > 5 and info2["val_distance_px"][2] > 1
    assert info2["rule"] not in ("blocks of 2 px", "blocks of 4 px")
    for t, v, tr_mask in ((tr, va, train), (tr2, va2, far_train)):
        assert not (t & v).any() and np.array_equal(t | v, tr_mask)
    again = carve_matched_validation(train, labels, 0.25, 0, test, {})
    assert np.array_equal(again[1], va)  # stable for a seed
