"""End to end on the real Indian Pines scene in ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import json

import numpy as np
import torch

from hsicls.io.readers import read_cube, read_labels
from tests.conftest import run_cli

IP_COUNTS = [46, 1428, 830, 237, 483, 730, 28, 478, 20, 972, 2455, 593, 205, 1265, 386, 93]


def test_indian_pines_readers(shared_data):
    d = shared_data / "indian_pines"
    cube = read_cube(d / "Indian_pines_corrected.npy")
    assert cube.data.shape == (145, 145, 200)
    for f in ("Indian_pines_gt.mat", "Indian_pines_gt.npy"):
        gt = read_labels(d / f)
        assert np.bincount(gt.ravel(), minlength=17)[1:].tolist() == IP_COUNTS


def test_indian_pines_end_to_end(shared_data, tmp_path):
    d = shared_data / "indian_pines"
    prep, model = tmp_path / "ip.h5", tmp_path / "ip.pt"
    r = run_cli(
        "preprocess",
        d / "Indian_pines_corrected.npy",
        "--labels",
        d / "Indian_pines_gt.mat",
        "-o",
        prep,
        "--train-ratio",
        "0.1",
        "--seed",
        "0",
    )
    assert r.exit_code == 0, r.stderr
    r = run_cli(
        "train",
        "--model",
        "md2f-mamba",
        prep,
        "-o",
        model,
        "--epochs",
        "12",
        "--patch-size",
        "9",
        "--device",
        "cpu",
        "--seed",
        "0",
    )
    assert r.exit_code == 0, r.stderr
    r = run_cli("evaluate", model, prep, "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    chance = max(IP_COUNTS) / sum(IP_COUNTS)  # always answering the largest class: 0.24
    assert rep["oa"] > 0.80 > chance
    assert rep["kappa"] > 0.75
    # test = labelled - training - validation: model selection never saw a test pixel
    assert rep["test_pixels"] == sum(IP_COUNTS) - sum(rep["train_pixels_per_class"]) - _val(prep)
    # temperature scaling, fitted on the validation split, lowers its NLL; evaluate reports ECE before and after
    cal = torch.load(model, weights_only=True)["training"]["calibration"]
    # the temperature lowers the validation NLL whenever it moves (it never sharpens beyond what validation supports)
    assert cal["val_nll_after"] < cal["val_nll_before"] or (
        cal["temperature"] == 1.0 and cal["val_nll_after"] == cal["val_nll_before"]
    )
    assert rep["calibration"]["temperature"] == cal["temperature"]
    assert rep["calibration"]["ece_after"] is not None


def _val(prep) -> int:
    import h5py

    with h5py.File(prep, "r") as f:
        return int(f["scenes/0/split/val"][...].sum())
