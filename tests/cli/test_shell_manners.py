"""[practitioner]: shell manners, class areas, and assessments that cannot mislead."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import run_cli


def test_listings_go_to_stdout_so_grep_works():
    r = run_cli("datasets")
    assert r.exit_code == 0 and "indian" in r.stdout and "indian" not in r.stderr
    r = run_cli("models")
    assert r.exit_code == 0 and "md2f-mamba" in r.stdout
    p = subprocess.run(
        f"{sys.executable} -m hsicls datasets | grep -c indian", shell=True, capture_output=True, text=True, check=False
    )
    assert p.returncode == 0 and int(p.stdout.strip()) >= 1


def test_quiet_means_errors_only_on_stderr(bundle, prepared, tiny_scene, tmp_path):
    r = run_cli("-q", "evaluate", bundle, prepared)
    assert r.exit_code == 0 and r.stderr.strip() == "", r.stderr
    r = run_cli("evaluate", bundle, prepared, "-q", "--json")
    assert r.exit_code == 0 and r.stderr.strip() == "" and json.loads(r.stdout)["oa"] >= 0
    r = run_cli("-q", "predict-map", tiny_scene[0], "-m", bundle, "-o", tmp_path / "m.tif")
    assert r.exit_code == 0 and r.stderr.strip() == "", r.stderr


def test_predict_map_reports_hectares_per_class(bundle, tiny_scene, tmp_path):
    r = run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", tmp_path / "m.tif", "--json")
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["area_unit"] == "m²" and s["area_note"] is None
    total_ha = sum(c["hectares"] for c in s["classes"].values())
    assert abs(total_ha - s["classified"] * 1.5 * 1.5 / 1e4) < 1e-9  # 1.5 m pixels (hsicls.synthetic)


def test_evaluate_names_held_out_groups_and_scores_each(tiny_scene, tmp_path):
    """[practitioner] 3: the held-out groups are named in the prepared file, the bundle and the report, with
    OA / AA / kappa per group beside the pooled figures (their pixel counts add up to the test split)."""
    from hsicls.artifacts.bundle import load_bundle

    cube, labels = tiny_scene
    p, m = tmp_path / "g.h5", tmp_path / "g.pt"
    r = run_cli("preprocess", cube, "-l", labels, "-o", p, "--components", "6", "--split", "group", "--group-by", "block",
                "--block-size", "10", "--folds", "4")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert run_cli("train", "--model", "md2f-mamba", p, "-o", m, "--epochs", "1", "--patch-size", "3").exit_code == 0
    split = load_bundle(m).training["split"]
    assert split["test_groups"] and split["validation_groups"]
    r = run_cli("evaluate", m, p, "--json", "--report", tmp_path / "rep")
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["held_out_groups"] == split["test_groups"]
    assert sum(g["pixels"] for g in rep["per_group"]) == rep["test_pixels"]
    assert all(0 <= g["oa"] <= 1 for g in rep["per_group"])
    md = (tmp_path / "rep.md").read_text()
    assert "Held-out groups" in md and "Confusion matrix" in md


def test_majority_and_sieve_filters():
    import numpy as np

    from hsicls.io.maps import majority_filter, sieve_filter

    a = np.ones((7, 7), np.uint8)
    a[3, 3] = 2  # a lone pixel: voted away
    a[0, :] = 0  # nodata row: neither votes nor changes
    out = majority_filter(a, 3)
    assert out[3, 3] == 1 and (out[0] == 0).all()
    b = np.ones((10, 10), np.uint8)
    b[2:4, 2:4] = 3  # a 4-pixel region
    b[6:9, 6:9] = 4  # a 9-pixel region
    s = sieve_filter(b, 5)
    assert (s[2:4, 2:4] == 1).all() and (s[6:9, 6:9] == 4).all()


def test_predict_map_clean_up_is_independent_of_the_window(bundle, tiny_scene, tmp_path):
    import numpy as np
    import rasterio

    maps = {}
    for window in (16, 64):
        out = tmp_path / f"m{window}.tif"
        r = run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", out, "--window", window, "--majority", "3",
                    "--sieve", "4", "--json")  # fmt: skip
        assert r.exit_code == 0, r.stderr
        with rasterio.open(out) as ds:
            maps[window] = ds.read(1)
            assert ds.tags()["MAJORITY_FILTER"] == "3" and ds.tags()["SIEVE_PIXELS"] == "4"
        summary = json.loads(r.stdout)
        codes, n = np.unique(maps[window][maps[window] > 0], return_counts=True)
        assert {str(c): int(k) for c, k in zip(codes, n)} == {
            c: v["pixels"] for c, v in summary["classes"].items() if v["pixels"]
        }
    assert np.array_equal(maps[16], maps[64])
    raw = tmp_path / "raw.tif"
    assert run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", raw).exit_code == 0
    with rasterio.open(raw) as ds:
        assert not np.array_equal(ds.read(1), maps[16])  # the clean-up did something


def test_majority_must_be_odd(bundle, tiny_scene, tmp_path):
    r = run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", tmp_path / "m.tif", "--majority", "4")
    assert r.exit_code == 2 and "odd" in r.stderr


def test_folds_all_cross_validates_by_group_without_preprocessing_again(tiny_scene, tmp_path):
    """[holdout] 2: every fold of a group split from one prepared file, the same network seed, a summary naming the
    held-out groups of each fold (disjoint, together every group) with mean ± std."""
    cube, labels = tiny_scene
    p, m = tmp_path / "g.h5", tmp_path / "cv.pt"
    r = run_cli("preprocess", cube, "-l", labels, "-o", p, "--components", "6", "--split", "group", "--group-by", "block",
                "--block-size", "10", "--folds", "3")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    r = run_cli(
        "train", "--model", "md2f-mamba", p, "-o", m, "--folds-all", "--epochs", "1", "--patch-size", "3", "--seed", "5", "--json"
    )
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert [f["fold"] for f in s["folds"]] == [0, 1, 2] and "seed 5" in s["protocol"]
    held = [set(f["held_out"]) for f in s["folds"]]
    assert all(not (a & b) for i, a in enumerate(held) for b in held[i + 1 :])
    assert abs(s["oa"]["mean"] - sum(f["oa"] for f in s["folds"]) / 3) < 1e-12
    from hsicls.artifacts.bundle import load_bundle

    for i in range(3):
        b = load_bundle(tmp_path / f"cv.pt.fold{i}.pt")
        assert b.training["seed"] == 5 and b.training["split"]["fold"] == i
    assert "mean ± std" in (tmp_path / "cv.pt.cv.md").read_text()


def test_patch_search_chooses_on_validation_only(prepared, tmp_path):
    """[holdout] 1: --patch-search scores each candidate on the validation split; scrambling the test labels
    changes nothing in the search (the test split is never looked at), and the choice is kept in the bundle."""
    import dataclasses

    import numpy as np

    from hsicls.artifacts.bundle import load_bundle
    from hsicls.artifacts.prepared import load_prepared, save_prepared

    base = load_prepared(prepared)
    labels = base.labels.copy()
    k = base.n_classes
    labels[base.test] = (labels[base.test] % k) + 1  # every test pixel now has another class
    scrambled = tmp_path / "scrambled.h5"
    save_prepared(scrambled, dataclasses.replace(base, labels=labels))
    records = []
    for p in (prepared, scrambled):
        out = tmp_path / f"{p.stem}.pt"
        r = run_cli(
            "train",
            "--model",
            "md2f-mamba",
            p,
            "-o",
            out,
            "--patch-search",
            "3,5",
            "--search-epochs",
            "2",
            "--epochs",
            "2",
            "--seed",
            "0",
        )
        assert r.exit_code == 0, r.stderr
        rec = load_bundle(out).training["patch_search"]
        assert rec["on"] == "validation split" and set(rec["validation_oa"]) == {"3", "5"}
        assert load_bundle(out).model.patch_size == rec["chosen"]
        records.append(rec)
    assert records[0] == records[1]
    assert not np.array_equal(labels[base.test], base.labels[base.test])


def test_patch_search_takes_odd_sizes(prepared, tmp_path):
    r = run_cli("train", "--model", "md2f-mamba", prepared, "-o", tmp_path / "m.pt", "--patch-search", "3,4")
    assert r.exit_code == 2 and "odd" in r.stderr


def test_progress_within_an_epoch(prepared, monkeypatch, tmp_path):
    """[practitioner] 11: on a terminal, the progress shows the batches of the running epoch (one advance per
    optimiser step); off a terminal nothing is drawn."""
    from hsicls import console
    from hsicls.config import TrainOptions
    from hsicls.stages.train import train

    advances = []
    real = console.progress

    class Bar:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, k):
            return getattr(self.inner, k)

        def advance(self, task, n=1):
            advances.append(task)
            self.inner.advance(task, n)

    import contextlib

    @contextlib.contextmanager
    def fake(kind="count"):
        monkeypatch.setattr(console, "progress_enabled", lambda: True)
        with real(kind) as bar:
            yield Bar(bar)

    monkeypatch.setattr(console, "progress", fake)
    train(prepared, tmp_path / "m.pt", TrainOptions(model="md2f-mamba", epochs=2, patch_size=3, batch_size=32, device="cpu"))
    assert len(advances) >= 4 and len(set(advances)) == 1  # every step of both epochs, on the epoch's task


def test_balanced_class_weights(prepared, tmp_path):
    """[holdout] 1: --class-weighting balanced weighs each class n / (K n_k) (scikit-learn's "balanced")."""
    import torch

    from hsicls.artifacts.bundle import load_bundle
    from hsicls.engine.training import class_weights

    y = torch.tensor([0, 0, 0, 1, 2, 2])
    w = class_weights(y, 4, "balanced")
    assert torch.allclose(w, torch.tensor([6 / 12, 6 / 4, 6 / 8, 0.0]))
    assert class_weights(y, 4, "none") is None
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
        "--class-weighting",
        "balanced",
    )
    assert r.exit_code == 0, r.stderr
    assert load_bundle(tmp_path / "m.pt").training["class_weighting"] == "balanced"


def test_folds_all_resume_keeps_the_finished_folds(tiny_scene, tmp_path):
    """[hardening-3] An interrupted --folds-all (here: fold 2's bundle missing, fold 1's left with a leftover log)
    resumes with --resume: finished folds are kept byte for byte, the others trained; nothing to resume is refused."""
    cube, labels = tiny_scene
    p, m = tmp_path / "g.h5", tmp_path / "cv.pt"
    r = run_cli("preprocess", cube, "-l", labels, "-o", p, "--components", "6", "--split", "group", "--group-by", "block",
                "--block-size", "10", "--folds", "3")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    args = ("train", p, "-o", m, "--folds-all", "--model", "md2f-mamba", "--epochs", "1", "--patch-size", "3", "--seed", "5")
    r = run_cli(*args, "--resume")
    assert r.exit_code == 1 and "no fold" in r.stderr
    assert run_cli(*args).exit_code == 0
    kept = (tmp_path / "cv.pt.fold0.pt").read_bytes()
    (tmp_path / "cv.pt.fold1.pt").unlink()
    (tmp_path / "cv.pt.fold2.pt").unlink()
    (tmp_path / "cv.pt.fold1.pt.log.jsonl").write_text("{}\n")
    r = run_cli(*args)
    assert r.exit_code != 0  # without --resume the earlier run's files are not replaced
    r = run_cli(*args, "--resume", "--json")
    assert r.exit_code == 0, r.stderr
    assert "finished by the earlier run" in r.stderr
    assert (tmp_path / "cv.pt.fold0.pt").read_bytes() == kept
    assert all((tmp_path / f"cv.pt.fold{i}.pt").exists() for i in range(3))
    assert [f["fold"] for f in json.loads(r.stdout)["folds"]] == [0, 1, 2]
    r = run_cli(
        "train",
        "--model",
        "md2f-mamba",
        p,
        "-o",
        m,
        "--folds-all",
        "--epochs",
        "2",
        "--patch-size",
        "3",
        "--seed",
        "5",
        "--resume",
    )
    assert r.exit_code == 1 and "other options" in r.stderr
