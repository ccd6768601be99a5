"""[scale-train] train under torchrun: DDP on 2 gloo processes and --runs spread over the ranks."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import torch

from hsicls.artifacts.bundle import load_bundle
from tests.stages.test_predict_map_distributed import _workers, hsicls

COMMON = ["--model", "md2f-mamba", "--epochs", "3", "--patch-size", "5", "--batch-size", "32", "--seed", "0"]


def weights(path) -> dict:
    return load_bundle(path).state_dict


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def two_ranks(prepared, tmp_path_factory):
    """A 2-rank DDP bundle, trained once for the tests below."""
    d = tmp_path_factory.mktemp("ddp")
    p = hsicls("train", prepared, "-o", d / "a.pt", *COMMON, "--json", ranks=2)
    assert p.returncode == 0, p.stderr_text
    return d / "a.pt", p


def test_one_rank_equals_plain_train(prepared, tmp_path):
    assert hsicls("train", prepared, "-o", tmp_path / "plain.pt", *COMMON).returncode == 0
    p = hsicls("train", prepared, "-o", tmp_path / "one.pt", *COMMON, ranks=1)
    assert p.returncode == 0
    assert same_weights(tmp_path / "plain.pt", tmp_path / "one.pt")


def test_two_ranks_same_seed_identical(two_ranks, prepared, tmp_path):
    first, p = two_ranks
    again = hsicls("train", prepared, "-o", tmp_path / "b.pt", *COMMON, ranks=2)
    assert again.returncode == 0, again.stderr_text
    assert same_weights(first, tmp_path / "b.pt")
    assert (tmp_path / "b.pt.log.jsonl").read_text().count("\n") == 3
    assert sorted(f.name for f in tmp_path.iterdir()) == ["b.pt", "b.pt.log.jsonl"]  # rank 0 alone wrote; no checkpoint left


def test_bundle_and_json_record_world_size(two_ranks, prepared):
    path, p = two_ranks
    rec = load_bundle(path).training
    assert rec["world_size"] == 2 and rec["global_batch_size"] == 32
    out = json.loads(p.stdout_text)  # printed once
    assert out["world_size"] == 2
    r = hsicls("evaluate", path, prepared, "--json")
    assert r.returncode == 0, r.stderr_text
    report = json.loads(r.stdout_text)
    assert report["world_size"] == 2 and report["global_batch_size"] == 32


def test_resume_after_interruption_equals_uninterrupted(prepared, tmp_path):
    args = ["--model", "md2f-mamba", "--epochs", "8", "--patch-size", "5", "--batch-size", "32", "--seed", "1"]
    full = hsicls("train", prepared, "-o", tmp_path / "full.pt", *args, ranks=2)
    assert full.returncode == 0, full.stderr_text
    out = tmp_path / "cut.pt"
    ckpt = tmp_path / "cut.pt.ckpt"
    p = hsicls("train", prepared, "-o", out, *args, ranks=2, wait=False)
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and p.poll() is None:
        if ckpt.exists():
            for w in _workers(p.pid):
                os.kill(w, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    p.communicate(timeout=150)
    assert killed and not out.exists(), "the run ended before it could be interrupted"
    again = hsicls("train", prepared, "-o", out, *args, "--resume", ranks=2)
    assert again.returncode == 0, again.stderr_text
    assert "resuming from epoch" in again.stderr_text
    assert same_weights(tmp_path / "full.pt", out)


def test_runs_parallel_equals_runs_one_by_one(prepared, tmp_path):
    args = [
        "--model",
        "md2f-mamba",
        "--epochs",
        "2",
        "--patch-size",
        "5",
        "--batch-size",
        "32",
        "--seed",
        "0",
        "--runs",
        "2",
        "--json",
    ]
    one = hsicls("train", prepared, "-o", tmp_path / "one.pt", *args)
    assert one.returncode == 0, one.stderr_text
    par = hsicls("train", prepared, "-o", tmp_path / "par.pt", *args, "--runs-parallel", ranks=2)
    assert par.returncode == 0, par.stderr_text
    a, b = json.loads(one.stdout_text), json.loads(par.stdout_text)
    assert a["oa"]["runs"] == b["oa"]["runs"] and a["kappa"]["runs"] == b["kappa"]["runs"]
    assert b["runs_parallel"] is True and b["world_size"] == 2
    for i in range(2):
        assert same_weights(tmp_path / f"one.pt.run{i}.pt", tmp_path / f"par.pt.run{i}.pt")


def test_failing_ranks_give_one_line_and_no_bundle(prepared, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an HDF5 file")
    p = hsicls("train", bad, "-o", tmp_path / "m.pt", *COMMON, ranks=2)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr_text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: rank ") and "bad.h5" in lines[0], p.stderr_text
    assert not (tmp_path / "m.pt").exists()
