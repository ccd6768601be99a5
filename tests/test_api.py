"""[api] The Python API: the commands as functions, a model callable on arrays, errors raised (never SystemExit)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rasterio

import hsicls
from tests.conftest import run_cli


def test_import_is_light_and_lists_the_api():
    code = "import sys, hsicls; hsicls.TrainOptions; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert {"train", "load_model", "predict_map", "list_datasets", "HsiclsError"} <= set(dir(hsicls))
    with pytest.raises(AttributeError):
        hsicls.no_such_thing  # noqa: B018
    from hsicls import api

    assert set(hsicls._API) == set(api.__all__)  # the lazy names and the API's own list are one list


def test_options_are_checked_like_flags_and_raise_errors(prepared, tmp_path):
    with pytest.raises(hsicls.OptionError, match="epochs"):
        hsicls.train(prepared, tmp_path / "m.pt", epochs=0)
    with pytest.raises(hsicls.OptionError):
        hsicls.train(prepared, tmp_path / "m.pt", options=hsicls.EvaluateOptions())
    with pytest.raises(hsicls.InputError, match="no such file"):
        hsicls.evaluate(tmp_path / "none.pt", prepared)
    assert not (tmp_path / "m.pt").exists()


def test_commands_as_functions_and_predict_in_memory(tiny_scene, tmp_path):
    cube, labels = tiny_scene
    p, m = tmp_path / "p.h5", tmp_path / "m.pt"
    prep = hsicls.preprocess(cube, labels, p, components=6, train_ratio=0.3)
    assert p.exists() and prep.n_classes >= 2
    res = hsicls.train(p, m, model="md2f-mamba", epochs=1, patch_size=5, batch_size=32, device="cpu")
    assert res.best_epoch >= 1
    rep = hsicls.evaluate(m, p)
    assert 0 <= rep["oa"] <= 1 and rep["model_name"] == "md2f-mamba"
    summary = hsicls.predict_map(cube, m, tmp_path / "map.tif", probabilities=tmp_path / "p.tif", precision="fp32")
    assert summary["classified"] > 0
    model = hsicls.load_model(m)
    assert model.name == "md2f-mamba" and model.class_names == rep["class_names"]
    with rasterio.open(tmp_path / "map.tif") as ds:
        written = ds.read(1)
    with rasterio.open(tmp_path / "p.tif") as ds:
        written_p = ds.read()
    with rasterio.open(cube) as ds:
        arr = ds.read().transpose(1, 2, 0)
        from_ds = model.predict(ds, precision="fp32")
    from_path = model.predict(cube, precision="fp32")
    from_array = model.predict(arr, precision="fp32")
    for pred in (from_path, from_array, from_ds):
        assert np.array_equal(pred.classes, written)  # the classes of predict-map, no file written
        assert np.allclose(pred.probabilities, written_p, equal_nan=True, atol=1e-6)
    ok = written > 0
    assert np.allclose(from_array.probabilities[:, ok].sum(0), 1, atol=1e-5)
    assert model.predict(arr, probabilities=False).probabilities is None
    with pytest.raises(hsicls.InputError, match="bands"):
        model.predict(arr[..., :5])
    with pytest.raises(hsicls.InputError, match="H, W, B"):
        model.predict(arr[..., 0])


def test_datasets_and_the_cli_agree():
    import hsicls.datasets  # the subpackage of the registered scenes; the function is list_datasets

    names = [d.name for d in hsicls.list_datasets()]
    assert "indian-pines" in names
    r = run_cli("datasets", "--json")
    import json

    assert [d["name"] for d in json.loads(r.stdout)] == names


def test_the_api_gives_what_the_cli_gives(tiny_scene, tmp_path):
    """A notebook's session through the API alone equals the CLI's: the same weights and records, the same map."""
    import torch

    cube, labels = tiny_scene
    common = dict(model="md2f-mamba", epochs=1, patch_size=3, batch_size=32, device="cpu", seed=4)
    hsicls.preprocess(cube, labels, tmp_path / "a.h5", components=5)
    hsicls.train(tmp_path / "a.h5", tmp_path / "a.pt", **common)
    hsicls.predict_map(cube, tmp_path / "a.pt", tmp_path / "a.tif")
    assert run_cli("preprocess", cube, "-l", labels, "-o", tmp_path / "b.h5", "--components", "5").exit_code == 0
    flags = [
        "--model",
        "md2f-mamba",
        "--epochs",
        "1",
        "--patch-size",
        "3",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--seed",
        "4",
    ]
    assert run_cli("train", tmp_path / "b.h5", "-o", tmp_path / "b.pt", *flags).exit_code == 0
    assert run_cli("predict-map", cube, "-m", tmp_path / "b.pt", "-o", tmp_path / "b.tif").exit_code == 0
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["temperature"] == b["temperature"] and a["training"]["config"] == b["training"]["config"]
    with rasterio.open(tmp_path / "a.tif") as x, rasterio.open(tmp_path / "b.tif") as y:
        assert np.array_equal(x.read(), y.read())


def test_several_scenes_one_bundle_check_and_the_cli_messages(bundle, tiny_scene, tmp_path):
    """predict_map over several scenes (out_dir) writes one map per scene; a broken bundle is refused once, before
    any scene, with the CLI's own line; a missing output name is the CLI's OptionError line."""
    cube = tiny_scene[0]
    other = tmp_path / "other.tif"
    other.write_bytes(cube.read_bytes())
    out = hsicls.predict_map([cube, other], bundle, out_dir=tmp_path / "maps")
    assert len(out["maps"]) == 2 and not out["failed"]
    assert sorted(p.name for p in (tmp_path / "maps").glob("*_map.tif")) == sorted(f"{s.stem}_map.tif" for s in (cube, other))

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a bundle at all")
    with pytest.raises(hsicls.InputError) as api_error:
        hsicls.predict_map([cube, other], bad, out_dir=tmp_path / "maps2")
    r = run_cli("predict-map", cube, other, "-m", bad, "--out-dir", tmp_path / "maps3")
    cli_errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.exit_code == 1 and cli_errors == [f"error: {api_error.value}"], r.stderr  # once, not per scene
    assert not list((tmp_path / "maps2").glob("*.tif"))

    with pytest.raises(hsicls.OptionError) as no_output:
        hsicls.predict_map(cube, bundle)
    r = run_cli("predict-map", cube, "-m", bundle)
    assert r.exit_code == no_output.value.exit_code == 2 and f"error: {no_output.value}" in r.stderr


def test_each_cli_command_calls_one_api_function():
    """The CLI is thin: every command function in hsicls/cli/<command>.py calls exactly one function of hsicls.api,
    and no command module imports the engine, the readers or the file layer."""
    import ast
    from pathlib import Path

    cli = Path(hsicls.__file__).parent / "cli"
    modules = sorted(p for p in cli.glob("*.py") if p.stem not in ("__init__", "app", "args", "main", "commands"))
    assert {p.stem for p in modules} >= {"preprocess", "train", "evaluate", "predict_map", "assess", "sample", "download"}
    for p in modules:
        tree = ast.parse(p.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in imported if m.startswith(("hsicls.engine", "hsicls.io", "hsicls.artifacts"))}, p.name
        commands = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.decorator_list]
        assert commands, p.name
        for fn in commands:
            calls = [
                c.func.attr
                for c in ast.walk(fn)
                if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                and isinstance(c.func.value, ast.Name) and c.func.value.id == "api"
            ]  # fmt: skip
            assert len(calls) == 1, (p.name, fn.name, calls)
