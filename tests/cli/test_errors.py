"""Bad input: one clear line naming the file, a non-zero exit code, no traceback, no partial output."""

from __future__ import annotations

import numpy as np
import scipy.io

from tests.conftest import no_temp_files, one_error, run_cli


def test_missing_scene(tmp_path, tiny_scene):
    missing = tmp_path / "nope.tif"
    r = run_cli("preprocess", missing, "--labels", tiny_scene[1], "-o", tmp_path / "p.h5")
    one_error(r, "nope.tif", "no such file")
    assert not (tmp_path / "p.h5").exists()


def test_wrong_mat_key(tmp_path):
    mat = tmp_path / "cube.mat"
    scipy.io.savemat(mat, {"cube": np.ones((8, 8, 5)), "other": np.ones((8, 8, 4))})
    lab = tmp_path / "gt.npy"
    np.save(lab, np.ones((8, 8), np.uint8))
    r = run_cli("preprocess", mat, "--labels", lab, "-o", tmp_path / "p.h5", "--key", "paviaU")
    one_error(r, "cube.mat", "paviaU")
    r = run_cli("preprocess", mat, "--labels", lab, "-o", tmp_path / "p.h5")
    one_error(r, "cube.mat", "--key")


def test_label_shape_mismatch(tmp_path):
    cube = tmp_path / "cube.npy"
    np.save(cube, np.random.default_rng(0).random((10, 12, 6)).astype(np.float32))
    lab = tmp_path / "gt.npy"
    np.save(lab, np.ones((12, 10), np.uint8))
    r = run_cli("preprocess", cube, "--labels", lab, "-o", tmp_path / "p.h5")
    one_error(r, "gt.npy", "12x10", "10x12")
    assert not (tmp_path / "p.h5").exists()


def test_empty_labels(tmp_path):
    cube = tmp_path / "cube.npy"
    np.save(cube, np.random.default_rng(0).random((10, 10, 6)).astype(np.float32))
    lab = tmp_path / "gt.npy"
    np.save(lab, np.zeros((10, 10), np.uint8))
    one_error(run_cli("preprocess", cube, "--labels", lab, "-o", tmp_path / "p.h5"), "gt.npy", "no labelled pixel")


def test_corrupt_files(tmp_path, bundle, prepared):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    one_error(run_cli("predict-map", bad, "-m", bundle, "-o", tmp_path / "m.tif"), "bad.tif")
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"garbage")
    one_error(run_cli("evaluate", bad_pt, prepared), "bad.pt")
    one_error(run_cli("evaluate", bundle, bad), "bad.tif")


def test_unknown_dataset(tmp_path):
    one_error(run_cli("download", "atlantis", "--data-dir", tmp_path), "atlantis", "indian-pines")


def test_no_overwrite_without_flag(prepared, tiny_scene, tmp_path):
    out = tmp_path / "p.h5"
    out.write_bytes(b"keep me")
    r = run_cli("preprocess", tiny_scene[0], "--labels", tiny_scene[1], "-o", out)
    one_error(r, "p.h5", "--overwrite")
    assert out.read_bytes() == b"keep me"
    r = run_cli("preprocess", tiny_scene[0], "--labels", tiny_scene[1], "-o", out, "--overwrite", "--components", "4")
    assert r.exit_code == 0 and out.read_bytes() != b"keep me"
    assert no_temp_files(tmp_path)


def test_band_mismatch_and_tiny_scene(bundle, tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.random.default_rng(0).random((20, 20, 7)).astype(np.float32))
    one_error(run_cli("predict-map", wrong, "-m", bundle, "-o", tmp_path / "m.tif"), "wrong.npy", "7 bands", "24")
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, np.random.default_rng(0).random((3, 20, 24)).astype(np.float32))
    one_error(run_cli("predict-map", tiny, "-m", bundle, "-o", tmp_path / "m.tif"), "tiny.npy", "patch")
    assert not (tmp_path / "m.tif").exists()


def test_bad_options(prepared, tmp_path):
    one_error(run_cli("train", "--model", "md2f-mamba", prepared, "-o", tmp_path / "m.pt", "--patch-size", "4"), "patch-size")
    one_error(run_cli("train", prepared, "-o", tmp_path / "m.pt", "--model", "vit-huge"), "vit-huge")
    one_error(
        run_cli(
            "train", prepared, "-o", tmp_path / "m.pt", "--model", "md2f-mamba", "--model-opt", "fusion=magic", "--epochs", "1"
        ),
        "magic",
    )
    one_error(run_cli("evaluate", tmp_path / "none.pt", prepared), "none.pt", "no such file")
    one_error(
        run_cli("train", "--model", "md2f-mamba", prepared, "-o", tmp_path / "m.pt", "--padding", "mirror"), "--padding", "mirror"
    )
    one_error(run_cli("train", "--model", "md2f-mamba", prepared, "-o", tmp_path / "m.pt", "--ema", "1.5"), "--ema")
    assert not (tmp_path / "m.pt").exists()


def test_mismatched_bundle_and_prepared(bundle, tiny_scene, tmp_path):
    other = tmp_path / "other.h5"
    assert run_cli("preprocess", tiny_scene[0], "--labels", tiny_scene[1], "-o", other, "--components", "5").exit_code == 0
    one_error(run_cli("evaluate", bundle, other), "other.h5")


def test_more_bad_input(bundle, prepared, tiny_scene, tmp_path):
    one_error(run_cli("evaluate", bundle, prepared, "--batch-size", "0"), "--batch-size")
    one_error(run_cli("predict-map", tiny_scene[0], "-m", bundle, "-o", tmp_path / "m.tif", "--batch-size", "-3"), "--batch-size")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    one_error(run_cli("evaluate", empty, prepared), "empty.pt")
    odd = tmp_path / "we[/ird]" / "x[bold]y.npy"  # rich markup in a path is printed as is
    one_error(run_cli("predict-map", odd, "-m", bundle, "-o", tmp_path / "m.tif"), "we[/ird]", "x[bold]y.npy")
    one_error(run_cli("train", "--model", "md2f-mamba", prepared, "-o", tmp_path / "m.pt", "--lr", "-1"), "--lr")
    one_error(
        run_cli("train", prepared, "-o", tmp_path / "m.pt", "--model", "md2f-mamba", "--model-opt", "spectral_stride=0"),
        "spectral_stride",
    )
    assert run_cli("train", "--model", "md2f-mamba", prepared, "-o", tmp_path / "m.pt", "--seed", "-1").exit_code != 0


def test_labels_out_of_range_or_all_nodata(tmp_path):
    cube = tmp_path / "cube.npy"
    np.save(cube, np.random.default_rng(0).random((10, 10, 6)).astype(np.float32))
    lab = tmp_path / "gt.npy"
    big = np.zeros((10, 10), np.int64)
    big[0, 0] = 2**31 + 5
    np.save(lab, big)
    one_error(run_cli("preprocess", cube, "--labels", lab, "-o", tmp_path / "p.h5"), "gt.npy", "too large")
    data = np.random.default_rng(0).random((10, 10, 6)).astype(np.float32)
    data[:5] = np.nan
    np.save(cube, data)
    gt = np.zeros((10, 10), np.uint8)
    gt[:5] = 1
    np.save(lab, gt)
    one_error(run_cli("preprocess", cube, "--labels", lab, "-o", tmp_path / "p.h5"), "gt.npy", "no labelled pixel")
    np.save(cube, np.random.default_rng(0).random((4, 4, 40)).astype(np.float32))
    np.save(lab, np.repeat(np.array([[1], [1], [2], [2]], np.uint8), 4, axis=1))
    one_error(run_cli("preprocess", cube, "--labels", lab, "-o", tmp_path / "p.h5", "--components", "30"), "PCA")


def test_evaluate_refuses_a_split_that_overlaps_training(bundle, tiny_scene, tmp_path):
    other = tmp_path / "seed1.h5"
    assert (
        run_cli(
            "preprocess",
            tiny_scene[0],
            "--labels",
            tiny_scene[1],
            "-o",
            other,
            "--components",
            "6",
            "--train-ratio",
            "0.3",
            "--seed",
            "1",
        ).exit_code
        == 0
    )
    one_error(run_cli("evaluate", bundle, other), "seed1.h5", "trained or selected on")


def test_labels_on_another_grid(tiny_scene, tmp_path):
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(tiny_scene[1]) as src:
        profile, data = src.profile, src.read()
    profile["transform"] = Affine.translation(1000, 0) @ profile["transform"]
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(shifted, "w", **profile) as dst:
        dst.write(data)
    one_error(run_cli("preprocess", tiny_scene[0], "--labels", shifted, "-o", tmp_path / "p.h5"), "shifted.tif", "grid")


def test_usage_error_is_one_line():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "hsicls", "train", "x.h5"], capture_output=True, text=True)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--output" in lines[0], r.stderr


def test_usage_errors_exit_2(tmp_path, tiny_scene):
    """[design-2] 7: a missing or contradictory argument and an unknown dataset name are usage errors."""
    assert run_cli("preprocess", tiny_scene[0], "-o", tmp_path / "p.h5").exit_code == 2  # no --labels
    assert run_cli("download", "atlantis", "--data-dir", tmp_path).exit_code == 2
    assert run_cli("train", "-o", tmp_path / "m.pt").exit_code == 2  # neither PREPARED nor --dataset
