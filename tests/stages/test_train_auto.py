"""[heldout]: the spectral network, spectral augmentations, ensembles, ``--model auto`` and honest preprocessing.

(Old single-model bundles loading and mapping as before: ``tests/artifacts/test_frozen.py``.)
"""

from __future__ import annotations

import copy
import json

import h5py
import numpy as np
import pytest
import rasterio
import torch

from hsicls.artifacts.bundle import load_bundle, save_bundle
from hsicls.artifacts.prepared import Preprocessing, load_prepared
from hsicls.config import TrainOptions
from hsicls.engine.training import spectral_augment
from hsicls.models import create_model
from hsicls.science.ensembles import RULES, choose, combine, prior_of
from hsicls.stages.train import dataset_defaults
from tests.conftest import run_cli

FAST = ("--epochs", "2", "--patch-size", "5", "--batch-size", "32", "--device", "cpu", "--seed", "0")


@pytest.fixture(scope="module")
def group_prepared(tiny_scene, tmp_path_factory):
    """The tiny scene split by 10-px blocks (a group split), with the default --fit-on and --spectra."""
    cube, labels = tiny_scene
    out = tmp_path_factory.mktemp("heldout") / "g.h5"
    r = run_cli("preprocess", cube, "--labels", labels, "-o", out, "--components", "6", "--split", "group",
                "--group-by", "block", "--block-size", "10", "--patch-size", "5", "--folds", "4", "--fold", "0")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def auto_bundle(group_prepared):
    out = group_prepared.parent / "auto.pt"
    r = run_cli("train", group_prepared, "-o", out, *FAST)  # no --model: the default
    assert r.exit_code == 0, r.stderr
    assert "candidate 3/3" in r.stderr and "validation ensemble" in r.stderr
    return out


def test_spectral_network_is_small_and_sees_the_spectrum_only():
    for bands in (30, 218):
        for patch in (1, 3):
            m = create_model("spectral-cnn", in_bands=bands, n_classes=16, patch_size=patch).eval()
            assert sum(p.numel() for p in m.parameters()) <= 100_000
            x = torch.randn(5, bands, patch, patch)
            assert m(x).shape == (5, 16)
    # a 1x1 network looks at the centre pixel only: the neighbours do not change its output
    m = create_model("spectral-cnn", in_bands=30, n_classes=4, patch_size=1).eval()
    x = torch.randn(3, 30, 1, 1)
    assert torch.equal(m(x), m(x.clone()))


def test_spectral_augmentations_are_exact_on_the_features():
    rng = np.random.default_rng(0)
    b = 12
    comps = rng.normal(size=(4, b))
    prep = Preprocessing(mean=rng.random(b) + 1, std=rng.random(b) + 0.5, components=comps, pca_mean=rng.normal(size=b))
    raw = rng.random((6, b)) + 0.5
    z = torch.from_numpy(prep.apply(raw))[:, :, None, None]
    offset = torch.as_tensor(prep.affine()[1], dtype=torch.float32)
    y = torch.arange(6)  # every class once: no partner to mix with
    out = spectral_augment(z, y, ["brightness"], offset, torch.Generator().manual_seed(5))
    a = 1 + 0.1 * (2 * torch.rand(6, generator=torch.Generator().manual_seed(5)) - 1)
    want = prep.apply(raw * a.numpy()[:, None].astype(np.float64))  # the raw spectra scaled, then preprocessed
    assert np.allclose(out[:, :, 0, 0].numpy(), want, atol=1e-4)
    assert torch.equal(spectral_augment(z, y, ["mix"], offset, torch.Generator().manual_seed(1)), z)  # nobody to mix with
    y2 = torch.tensor([0, 0, 1, 1, 2, 2])
    mixed = spectral_augment(z, y2, ["mix"], offset, torch.Generator().manual_seed(1))[:, :, 0, 0]
    for i in range(6):  # a convex mixture of the sample and the other one of its class
        j = i ^ 1
        d, e = mixed[i] - z[j, :, 0, 0], z[i, :, 0, 0] - z[j, :, 0, 0]
        lam = float(d @ e / (e @ e))
        assert -1e-5 <= lam <= 1 + 1e-5 and torch.allclose(d, lam * e, atol=1e-4)
    noisy = spectral_augment(torch.zeros(400, 8, 1, 1), torch.zeros(400, dtype=torch.long), ["noise"], torch.zeros(8),
                             torch.Generator().manual_seed(0))  # fmt: skip
    assert 0.04 < float(noisy.std()) < 0.06


def test_spectral_augment_is_recorded_and_checked(prepared, tmp_path):
    out = tmp_path / "s.pt"
    r = run_cli("train", prepared, "-o", out, "--model", "spectral-cnn", "--spectral-augment", "brightness,mix", *FAST)
    assert r.exit_code == 0, r.stderr
    assert load_bundle(out).training["config"]["spectral_augment"] == ["brightness", "mix"]
    r = run_cli("train", prepared, "-o", tmp_path / "x.pt", "--spectral-augment", "sparkle")
    assert r.exit_code == 2 and "sparkle" in r.stderr


def test_fit_on_default_excludes_the_test_groups(group_prepared, tiny_scene, tmp_path):
    p = load_prepared(group_prepared)
    assert p.meta["fit_on"] == "train" and p.meta["fit_on_rule"] == "auto"
    with rasterio.open(tiny_scene[0]) as src:
        raw = src.read().transpose(1, 2, 0).astype(np.float64)
    seen = (p.train | p.val) & p.valid
    assert p.test.any() and not (seen & p.test).any()
    assert np.allclose(p.preprocessing.mean, raw[seen].mean(0))
    assert not np.allclose(p.preprocessing.mean, raw[p.valid].mean(0))
    # the full spectra are kept, standardised with the same statistics
    assert p.spectra is not None and np.allclose(
        p.spectra[p.valid], (raw[p.valid] - p.preprocessing.mean) / p.preprocessing.std, atol=1e-4
    )
    # a random split keeps the paper family's protocol (all pixels), and --fit-on all is labelled transductive
    out = tmp_path / "r.h5"
    r = run_cli("preprocess", tiny_scene[0], "--labels", tiny_scene[1], "-o", out, "--components", "6", "--spectra", "drop")
    assert r.exit_code == 0 and "transductive" in r.stderr
    q = load_prepared(out)
    assert q.meta["fit_on"] == "all" and q.spectra is None


def test_auto_is_the_default_and_its_ensemble_round_trips(auto_bundle, group_prepared, tmp_path):
    b = load_bundle(auto_bundle)
    assert b.model.name == "ensemble" and not b.preprocessing.projects  # fed the standardised spectra
    auto = b.training["auto"]
    assert auto["rule"] == "ensemble" and [m["name"] for m in auto["members"]] == ["rf", "spectral-cnn", "md2f-mamba"]
    assert [r["candidate"] for r in auto["validation"]] == ["rf", "spectral-cnn", "md2f-mamba", "ensemble"]
    assert abs(sum(auto["weights"]) - 1) < 1e-6 and b.temperature is not None
    copy_path = tmp_path / "copy.pt"
    save_bundle(copy_path, load_bundle(auto_bundle))
    a, c = load_bundle(auto_bundle).build_model(), load_bundle(copy_path).build_model()
    x = torch.randn(7, b.model.in_bands, b.model.patch_size, b.model.patch_size)
    assert torch.equal(a(x), c(x))
    r = run_cli("evaluate", auto_bundle, group_prepared, "--json")
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    assert 0 <= rep["oa"] <= 1 and rep["training_config"]["model"] == "auto"
    assert rep["model_choice"]["rule"] == "ensemble" and len(rep["model_choice"]["validation"]) == 4
    # the bf16 copy keeps the forest in float32 and runs
    assert run_cli("evaluate", auto_bundle, group_prepared, "--precision", "bf16").exit_code == 0


def _member_bundle(path, out, i: int):
    """The ensemble bundle with member ``i`` alone (weight 1, no prior adjustment, no outer temperature)."""
    b = load_bundle(path)
    m = len(b.model.options["members"])
    b.model = copy.deepcopy(b.model)
    b.model.options.update(weights=[1.0 if j == i else 0.0 for j in range(m)], tau=0.0)
    b.temperature = None
    save_bundle(out, b)
    return out


def test_ensemble_map_is_the_weighted_combination_of_its_members(auto_bundle, tiny_scene, tmp_path):
    b = load_bundle(auto_bundle)
    maps = []
    for i in range(3):
        m = _member_bundle(auto_bundle, tmp_path / f"m{i}.pt", i)
        r = run_cli("predict-map", tiny_scene[0], "-m", m, "-o", tmp_path / f"c{i}.tif", "--probabilities", tmp_path / f"p{i}.tif",
                    "--precision", "fp32")  # fmt: skip
        assert r.exit_code == 0, r.stderr
        with rasterio.open(tmp_path / f"p{i}.tif") as src:
            maps.append(src.read().astype(np.float64))  # (K, H, W)
    r = run_cli("predict-map", tiny_scene[0], "-m", auto_bundle, "-o", tmp_path / "e.tif", "--probabilities", tmp_path / "pe.tif")
    assert r.exit_code == 0, r.stderr
    with rasterio.open(tmp_path / "pe.tif") as src:
        got = src.read().astype(np.float64)
    opts = b.model.options
    probs = [m.reshape(m.shape[0], -1).T for m in maps]  # (N, K) each
    score = combine(probs, opts["weights"], opts["tau"], np.asarray(opts["prior"])) / b.temperature
    want = torch.softmax(torch.from_numpy(score), 1).numpy().T.reshape(got.shape)
    valid = np.isfinite(got).all(0) & (got.sum(0) > 0)
    assert valid.mean() > 0.9
    assert np.allclose(got[:, valid], want[:, valid], atol=2e-4)
    with rasterio.open(tmp_path / "e.tif") as src:
        classes = src.read(1)
    assert (classes[valid] == np.asarray(b.class_values)[want.argmax(0)[valid]]).mean() > 0.999


def test_the_choice_never_sees_the_test_split(auto_bundle, group_prepared, tmp_path):
    scrambled = tmp_path / "scrambled.h5"
    scrambled.write_bytes(group_prepared.read_bytes())
    with h5py.File(scrambled, "r+") as f:
        for i in range(len(f["scenes"])):
            g = f[f"scenes/{i}"]
            lab, test = g["labels"][...], g["split/test"][...]
            rng = np.random.default_rng(9)
            lab[test] = rng.permutation(lab[test]) % lab.max() + 1
            g["labels"][...] = lab
    out = tmp_path / "again.pt"
    assert run_cli("train", scrambled, "-o", out, *FAST).exit_code == 0
    a, b = load_bundle(auto_bundle).training["auto"], load_bundle(out).training["auto"]
    for key in ("chosen", "weights", "tau", "validation"):
        assert a[key] == b[key], key


def test_rules_choose_from_validation_alone():
    rng = np.random.default_rng(1)
    n, k = 300, 4
    y = rng.integers(0, k, n)
    good = np.full((n, k), 0.1)
    good[np.arange(n), y] = 0.7
    noise = rng.dirichlet(np.ones(k), n)
    probs = [good, noise]
    prior = prior_of(y, k)
    regions = np.arange(n) // 50
    for rule in RULES:
        c = choose(rule, ["good", "noise"], probs, y, prior, regions, k)
        assert c.rule == rule and abs(sum(c.weights) - 1) < 1e-9
        assert c.chosen in ("good", "ensemble")
    # the plain average never yields; ensemble-unless yields to a member that is clearly (McNemar) better
    junk = rng.dirichlet(np.ones(k) * 0.2, n)
    assert choose("ensemble", ["good", "junk"], [good, junk], y, prior, regions, k).chosen == "ensemble"
    assert choose("ensemble-unless", ["good", "junk"], [good, junk], y, prior, regions, k).chosen == "good"


def test_auto_refusals_and_dataset_default(prepared, tmp_path):
    r = run_cli("train", prepared, "-o", tmp_path / "m.pt", "--model-opt", "fusion=add")
    assert r.exit_code == 2 and "--model auto" in r.stderr
    r = run_cli("train", prepared, "-o", tmp_path / "m.pt", "--model", "ensemble")
    assert r.exit_code == 2 and "--model auto" in r.stderr
    assert dataset_defaults(TrainOptions(), set(), "indian_pines").model == "md2f-mamba"
    assert dataset_defaults(TrainOptions(model="rf"), {"model"}, "indian_pines").model == "rf"


def test_auto_without_spectra_uses_the_pca_axes(tiny_scene, tmp_path):
    p = tmp_path / "nospec.h5"
    r = run_cli("preprocess", tiny_scene[0], "--labels", tiny_scene[1], "-o", p, "--components", "6", "--spectra", "drop")
    assert r.exit_code == 0
    r = run_cli("train", p, "-o", tmp_path / "m.pt", *FAST)
    assert r.exit_code == 0, r.stderr
    assert "keeps no full spectra" in r.stderr
    b = load_bundle(tmp_path / "m.pt")
    assert b.preprocessing.projects and not any(m["projected"] for m in b.model.options["members"])
    assert run_cli("evaluate", tmp_path / "m.pt", p).exit_code == 0


def test_folds_all_refits_the_preprocessing_per_fold(tiny_scene, tmp_path):
    p = tmp_path / "g.h5"
    r = run_cli("preprocess", tiny_scene[0], "--labels", tiny_scene[1], "-o", p, "--components", "6", "--split", "group",
                "--group-by", "block", "--block-size", "10", "--patch-size", "3", "--folds", "3")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    r = run_cli(
        "train", p, "-o", tmp_path / "cv.pt", "--folds-all", "--model", "spectral-cnn", "--epochs", "1", "--patch-size", "1"
    )
    assert r.exit_code == 0, r.stderr
    with rasterio.open(tiny_scene[0]) as src:
        raw = src.read().transpose(1, 2, 0).astype(np.float64)
    means = []
    for i in range(3):
        f = load_prepared(tmp_path / f"cv.pt.fold{i}.h5")
        seen = (f.train | f.val) & f.valid
        assert np.allclose(f.preprocessing.mean, raw[seen].mean(0), atol=1e-3)
        means.append(f.preprocessing.mean)
    assert not np.allclose(means[0], means[1])


def test_a_fold_the_guard_empties_is_refused(tiny_scene, tmp_path):
    """[heldout] noticed: 10-px blocks with the default 13-px guard footprint left fold 1 with no test pixel, silently."""
    r = run_cli("preprocess", tiny_scene[0], "--labels", tiny_scene[1], "-o", tmp_path / "g.h5", "--components", "6",
                "--split", "group", "--group-by", "block", "--block-size", "10", "--folds", "4", "--fold", "1")  # fmt: skip
    assert r.exit_code == 1 and "--block-size" in r.stderr and "no test" not in r.stdout
    assert not (tmp_path / "g.h5").exists()
