"""[practitioner]: shell manners, class areas, and assessments that cannot mislead."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import run_cli


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
    from hsicls.bundle import load_bundle

    cube, labels = tiny_scene
    p, m = tmp_path / "g.h5", tmp_path / "g.pt"
    r = run_cli("preprocess", cube, "-l", labels, "-o", p, "--components", "6", "--split", "group", "--group-by", "block",
                "--block-size", "10", "--folds", "4")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert run_cli("train", p, "-o", m, "--epochs", "1", "--patch-size", "3").exit_code == 0
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
