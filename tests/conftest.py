"""Shared fixtures: tiny synthetic scenes written to temporary files, a CLI runner."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import pytest

from hsicls.cli.main import run
from hsicls.synthetic import make_scene, write_scene

SHARED_DATA = Path(os.environ.get("HSICLS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr


def run_cli(*args: str) -> Result:
    """Run ``hsicls ARGS`` in-process as the console entry point does (usage errors included);
    stdout and stderr are kept apart; a bug's exception propagates."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> tuple[Path, Path]:
    """A 40 x 40 px, 24-band georeferenced scene with 9 classes, as GeoTIFFs."""
    d = tmp_path_factory.mktemp("tiny")
    scene = make_scene(size=40, bands=24, seed=3)
    cube, labels = d / "scene.tif", d / "labels.tif"
    write_scene(scene, cube, labels)
    return cube, labels


@pytest.fixture(scope="session")
def prepared(tiny_scene, tmp_path_factory) -> Path:
    cube, labels = tiny_scene
    out = tmp_path_factory.mktemp("prep") / "prepared.h5"
    r = run_cli("preprocess", cube, "--labels", labels, "-o", out, "--components", "6", "--train-ratio", "0.3")
    assert r.exit_code == 0, r.stderr
    return out


@pytest.fixture(scope="session")
def bundle(prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "model.pt"
    r = run_cli(
        "train",
        "--model",
        "md2f-mamba",
        prepared,
        "-o",
        out,
        "--epochs",
        "2",
        "--patch-size",
        "5",
        "--batch-size",
        "32",
        "--device",
        "cpu",
    )
    assert r.exit_code == 0, r.stderr
    return out


def one_error(r: Result, *needles) -> str:
    """A user error: a non-zero exit, no traceback, exactly one ``error:`` line on stderr, naming every needle."""
    assert r.exit_code != 0 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert str(n) in errors[0], r.stderr
    return errors[0]


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.endswith(".part")]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not present at {SHARED_DATA} (set HSICLS_SHARED_DATA)")
    return SHARED_DATA


def rng_cube(h, w, b, seed=0):
    return np.random.default_rng(seed).random((h, w, b)).astype(np.float32)
