"""Split protocols, honest model selection, reproducibility, resume, --runs, report files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from hsicls.science.splits import count_split, disjoint_split, footprint, stratified_split
from hsicls.stages.train import TrainOptions, train
from tests.conftest import run_cli


def _labels(seed=0, h=60, w=60, k=5):
    """Blocky label map with unlabelled gaps, like real ground truth."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, k + 1, (h // 6, w // 6))
    return np.kron(coarse, np.ones((6, 6), int)).astype(np.int32)


@pytest.mark.parametrize("patch", [5, 9, 13])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_disjoint_split_footprint_property(patch, seed):
    labels = _labels(seed)
    train, val, test = disjoint_split(labels, 0.1, 0.2, seed, patch_size=patch)
    assert train.any() and test.any()
    assert not (footprint(train | val, patch) & test).any()  # no test pixel inside a training patch
    assert not ((train | val) & test).any()
    for c in np.unique(labels[labels > 0]):
        assert (labels[train | val] == c).any()  # every class gets training pixels


def test_splits_reproducible_by_seed():
    labels = _labels(3)
    for fn in (
        lambda s: stratified_split(labels, 0.1, 0.2, s),
        lambda s: disjoint_split(labels, 0.1, 0.2, s, 7),
        lambda s: count_split(labels, 10, 0.2, s),
    ):
        a, b, c = fn(4), fn(4), fn(5)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert not np.array_equal(a[0], c[0])


def test_count_split_caps_with_warning():
    labels = np.zeros((20, 20), int)
    labels[:2, :3] = 1  # 6 pixels
    labels[10:, 10:] = 2
    warnings = []
    train, val, test = count_split(labels, 10, 0.0, 0, warn=warnings.append)
    assert (labels[train] == 1).sum() == 5 and (labels[train] == 2).sum() == 10
    assert warnings and "capped" in warnings[0]


def test_split_modes_through_cli(tiny_scene, tmp_path):
    cube, labels = tiny_scene
    import rasterio

    with rasterio.open(labels) as ds:
        lab = ds.read(1)
    mask = np.zeros_like(lab)
    mask[:, :12] = lab[:, :12]
    np.save(tmp_path / "train_mask.npy", mask)
    cases = {
        "count": ["--split", "count", "--train-count", "8"],
        "disjoint": ["--split", "disjoint", "--train-ratio", "0.2", "--patch-size", "5"],
        "fixed": ["--split", "fixed", "--train-mask", str(tmp_path / "train_mask.npy")],
    }
    for name, args in cases.items():
        out = tmp_path / f"{name}.h5"
        r = run_cli("preprocess", cube, "--labels", labels, "-o", out, "--components", "5", *args)
        assert r.exit_code == 0, r.stderr
        with h5py.File(out, "r") as f:
            split = json.loads(f.attrs["split"])
            tr, va, te = (f[f"scenes/0/split/{k}"][...] for k in ("train", "val", "test"))
        assert split["protocol"] == name
        assert not ((tr | va) & te).any()
        if name == "fixed":
            assert ((tr | va) == (mask > 0)).all() and (te == ((lab > 0) & (mask == 0))).all()
        if name == "disjoint":
            assert not (footprint(tr | va, 5) & te).any()
    r = run_cli("preprocess", cube, "--labels", labels, "-o", tmp_path / "x.h5", "--split", "count")
    assert r.exit_code != 0 and "--train-count" in r.stderr


def test_fit_on_train_recorded(tiny_scene, tmp_path):
    cube, labels = tiny_scene
    out = tmp_path / "p.h5"
    assert run_cli("preprocess", cube, "--labels", labels, "-o", out, "--components", "5", "--fit-on", "train").exit_code == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["fit_on"] == "train"
        tr = f["scenes/0/split/train"][...] | f["scenes/0/split/val"][...]
        z = f["scenes/0/cube"][...][tr]
    assert np.allclose(z.mean(axis=0), 0, atol=1e-4)  # PCA centred on the training pixels, not the scene


def test_whiten_gives_unit_variance_components(tiny_scene, tmp_path):
    cube, labels = tiny_scene
    plain, white = tmp_path / "p.h5", tmp_path / "w.h5"
    assert run_cli("preprocess", cube, "--labels", labels, "-o", plain, "--components", "5").exit_code == 0
    assert run_cli("preprocess", cube, "--labels", labels, "-o", white, "--components", "5", "--whiten").exit_code == 0
    with h5py.File(plain, "r") as f, h5py.File(white, "r") as g:
        assert json.loads(f.attrs["whiten"]) is False and json.loads(g.attrs["whiten"]) is True
        zp, zw = f["scenes/0/cube"][...].reshape(-1, 5), g["scenes/0/cube"][...].reshape(-1, 5)
    assert np.allclose(zw.std(axis=0), 1, atol=1e-3)  # every component at unit variance
    assert zp.std(axis=0)[0] > 2 * zp.std(axis=0)[-1]  # without whitening the variances fall off
    assert np.allclose(zw * zp.std(axis=0) / zw.std(axis=0), zp, atol=1e-3)  # same axes, rescaled


def test_no_standardize_is_pca_of_raw_values(tiny_scene, tmp_path):
    from sklearn.decomposition import PCA

    from hsicls.io.readers import read_cube

    cube, labels = tiny_scene
    out = tmp_path / "raw.h5"
    assert run_cli("preprocess", cube, "--labels", labels, "-o", out, "--components", "3", "--no-standardize").exit_code == 0
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["standardize"]) is False
        z = f["scenes/0/cube"][...].reshape(-1, 3)
    raw = read_cube(cube).data.reshape(z.shape[0], -1)
    ref = PCA(n_components=3).fit_transform(raw.astype(np.float64))
    np.testing.assert_allclose(np.abs(z), np.abs(ref), rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def _state(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_training_is_deterministic_on_cpu(prepared, tmp_path):
    opts = TrainOptions(model="md2f-mamba", epochs=2, patch_size=5, batch_size=32, seed=3, device="cpu", augment=True)
    train(prepared, tmp_path / "a.pt", opts)
    train(prepared, tmp_path / "b.pt", opts)
    a, b = _state(tmp_path / "a.pt"), _state(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_equals_uninterrupted(prepared, tmp_path):
    opts = TrainOptions(
        model="md2f-mamba",
        epochs=4,
        patch_size=5,
        batch_size=32,
        seed=1,
        device="cpu",
        lr_schedule="cosine",
        augment=True,
        ema=0.9,
    )
    train(prepared, tmp_path / "full.pt", opts)

    def stop(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(prepared, tmp_path / "cut.pt", opts, on_epoch_end=stop)
    assert (tmp_path / "cut.pt.ckpt").exists() and not (tmp_path / "cut.pt").exists()
    r = run_cli(
        "train",
        "--model",
        "md2f-mamba",
        prepared,
        "-o",
        tmp_path / "cut.pt",
        "--epochs",
        "4",
        "--patch-size",
        "5",
        "--batch-size",
        "32",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--lr-schedule",
        "cosine",
        "--augment",
        "--ema",
        "0.9",
        "--resume",
    )
    assert r.exit_code == 0, r.stderr
    a, b = _state(tmp_path / "full.pt"), _state(tmp_path / "cut.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "cut.pt.ckpt").exists()
    log = [json.loads(x) for x in (tmp_path / "cut.pt.log.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in log] == [1, 2, 3, 4] and all("lr" in h and "val_oa" in h for h in log)
    r = run_cli("train", "--model", "md2f-mamba", prepared, "-o", tmp_path / "cut.pt", "--epochs", "5", "--resume")
    assert r.exit_code != 0 and "checkpoint" in r.stderr


def test_ema_weights_are_the_ones_kept(prepared, tmp_path):
    """--ema: training is unchanged and the bundle holds the averaged weights (a decay near 0
    averages nothing away, so it keeps the raw weights; 0.9 keeps others)."""
    base = dict(model="md2f-mamba", epochs=3, patch_size=5, batch_size=32, seed=2, device="cpu")
    raw = train(prepared, tmp_path / "raw.pt", TrainOptions(**base))
    near = train(prepared, tmp_path / "near.pt", TrainOptions(**base, ema=1e-12))
    avg = train(prepared, tmp_path / "avg.pt", TrainOptions(**base, ema=0.9))
    a, b, c = _state(tmp_path / "raw.pt"), _state(tmp_path / "near.pt"), _state(tmp_path / "avg.pt")
    floats = [k for k in a if a[k].is_floating_point()]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in floats)
    assert [h["loss"] for h in raw.history] == [h["loss"] for h in avg.history] == [h["loss"] for h in near.history]
    assert not all(torch.allclose(a[k], c[k], atol=1e-4) for k in floats)
    assert torch.load(tmp_path / "avg.pt", weights_only=True)["training"]["ema"] == 0.9
    from hsicls.stages.evaluate import evaluate, report_markdown

    rep = evaluate(tmp_path / "avg.pt", prepared, device="cpu")
    assert rep["ema"] == 0.9 and rep["padding"] == "reflect" and "EMA of the weights, decay 0.9" in report_markdown(rep)


def test_selection_on_validation_only(prepared, tmp_path):
    res = train(
        prepared, tmp_path / "m.pt", TrainOptions(model="md2f-mamba", epochs=4, patch_size=5, batch_size=32, device="cpu")
    )
    vals = [h["val_oa"] for h in res.history]
    assert res.selection == "validation" and res.best_epoch == 1 + int(np.argmax(vals))
    b = torch.load(tmp_path / "m.pt", weights_only=True)
    assert b["training"]["best_epoch"] == res.best_epoch
    # the bundle's weights are those of the selected epoch, chosen without the test split:
    # scrambling every test label cannot change what was selected
    with h5py.File(prepared, "r") as f:
        labels, test = f["scenes/0/labels"][...], f["scenes/0/split/test"][...]
    scrambled = tmp_path / "scrambled.h5"
    import shutil

    shutil.copy(prepared, scrambled)
    with h5py.File(scrambled, "r+") as f:
        lab = labels.copy()
        lab[test] = (lab[test] % lab.max()) + 1
        f["scenes/0/labels"][...] = lab
    res2 = train(
        scrambled, tmp_path / "m2.pt", TrainOptions(model="md2f-mamba", epochs=4, patch_size=5, batch_size=32, device="cpu")
    )
    assert res2.best_epoch == res.best_epoch
    a, b2 = _state(tmp_path / "m.pt"), _state(tmp_path / "m2.pt")
    assert all(torch.equal(a[k], b2[k]) for k in a)


def test_no_validation_keeps_final_epoch(tiny_scene, tmp_path):
    out = tmp_path / "p.h5"
    assert (
        run_cli(
            "preprocess", *tiny_scene[:1], "--labels", tiny_scene[1], "-o", out, "--components", "5", "--val-ratio", "0"
        ).exit_code
        == 0
    )
    res = train(out, tmp_path / "m.pt", TrainOptions(model="md2f-mamba", epochs=3, patch_size=5, batch_size=32, device="cpu"))
    assert res.selection == "final" and res.best_epoch == 3


def test_runs_mean_std(prepared, tmp_path):
    r = run_cli(
        "train",
        "--model",
        "md2f-mamba",
        prepared,
        "-o",
        tmp_path / "m.pt",
        "--epochs",
        "1",
        "--patch-size",
        "3",
        "--runs",
        "2",
        "--json",
        "--device",
        "cpu",
    )
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["seeds"] == [0, 1] and len(s["oa"]["runs"]) == 2
    assert s["oa"]["std"] == pytest.approx(float(np.std(s["oa"]["runs"])))
    assert "±" in r.stderr
    masks = [h5py.File(tmp_path / f"m.pt.run{i}.h5", "r")["scenes/0/split/train"][...] for i in range(2)]
    assert not np.array_equal(masks[0], masks[1])  # each run has its own split
    assert (tmp_path / "m.pt.runs.json").exists()


def test_evaluate_report_files_and_plot(bundle, prepared, tmp_path):
    r = run_cli("evaluate", bundle, prepared, "--report", tmp_path / "rep", "--plot", tmp_path / "cm.png", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert set(rep["split_masks"]) == {"train", "val", "test"} and len(rep["split_masks"]["test"]) == rep["test_pixels"]
    assert (tmp_path / "rep.csv").read_text().startswith("class,train_pixels,test_pixels,accuracy")
    md = (tmp_path / "rep.md").read_text()
    assert "| **OA** |" in md and "random stratified" in md
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ema_is_the_bias_corrected_exponential_average_of_the_trajectory():
    """``ema_update``: after steps w_1..w_n the average is sum d^(n-t) w_t / sum d^(n-t)."""
    from torch.optim.swa_utils import AveragedModel

    from hsicls.stages.train import ema_update

    m = torch.nn.BatchNorm1d(1)
    avg = AveragedModel(m, multi_avg_fn=ema_update(0.9), use_buffers=True)
    ws = [1.0, 2.0, 5.0, -3.0]
    with torch.no_grad():
        for w in ws:
            m.weight.fill_(w)
            m.num_batches_tracked.fill_(int(10 * w) + 40)
            avg.update_parameters(m)
    d, n = 0.9, len(ws)
    expect = sum(d ** (n - 1 - i) * w for i, w in enumerate(ws)) / sum(d ** (n - 1 - i) for i in range(n))
    assert float(avg.module.weight.detach()) == pytest.approx(expect, rel=1e-6)
    assert int(avg.module.num_batches_tracked) == 10  # integer buffers take the current value
