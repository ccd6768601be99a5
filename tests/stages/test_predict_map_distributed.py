"""[scale-map] predict-map under torchrun: 2-3 local gloo processes, one thread each.

Every map is compared pixel for pixel (classes, confidence, probabilities) with the map of one
process made with the same options.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from hsicls.synthetic import make_scene, write_scene

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HSICLS_DIST_TIMEOUT": "120"}


def hsicls(*args, ranks: int = 1, restarts: int = 0, wait: bool = True):
    """``hsicls ARGS`` in one process, or under ``torchrun --standalone`` with ``ranks`` processes."""
    args = [str(a) for a in args]
    if ranks == 1:
        cmd = [sys.executable, "-m", "hsicls", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
        cmd += [f"--max-restarts={restarts}", "--monitor-interval=0.1", "-m", "hsicls", *args]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return p
    out, err = p.communicate(timeout=150)
    p.stdout_text, p.stderr_text = out, err
    return p


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def same(a: Path, b: Path) -> bool:
    return np.array_equal(read(a), read(b), equal_nan=True)


@pytest.fixture(scope="module")
def one_process(tiny_scene, bundle, tmp_path_factory):
    """The one-process map, confidence and probabilities (window 16)."""
    d = tmp_path_factory.mktemp("one")
    p = hsicls(
        "predict-map", tiny_scene[0], "-m", bundle, "-o", d / "m.tif", "--confidence", d / "c.tif",
        "--probabilities", d / "p.tif", "--window", "16",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr_text
    return d


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_equal_one_process(ranks, tiny_scene, bundle, one_process, tmp_path):
    out = tmp_path / "m.tif"
    p = hsicls(
        "predict-map", tiny_scene[0], "-m", bundle, "-o", out, "--confidence", tmp_path / "c.tif",
        "--probabilities", tmp_path / "p.tif", "--window", "16", "--json", ranks=ranks,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr_text
    for name in ("m.tif", "c.tif", "p.tif"):
        assert same(one_process / name, tmp_path / name), name
    summary = json.loads(p.stdout_text)  # printed once, by rank 0
    assert summary["world_size"] == ranks and len(summary["ranks"]) == ranks
    assert sum(r["pixels"] for r in summary["ranks"]) == summary["classified"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["c.tif", "m.qml", "m.tif", "m.tif.aux.xml", "p.tif"]
    with rasterio.open(out) as a, rasterio.open(one_process / "m.tif") as b:
        assert a.crs == b.crs and a.transform == b.transform and a.tags(1) == b.tags(1)
        assert a.colormap(1) == b.colormap(1)


def test_cog_under_two_ranks(tiny_scene, bundle, one_process, tmp_path):
    p = hsicls("predict-map", tiny_scene[0], "-m", bundle, "-o", tmp_path / "m.tif", "--window", "16", "--cog", ranks=2)
    assert p.returncode == 0, p.stderr_text
    assert same(one_process / "m.tif", tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_three_scenes_two_ranks(tiny_scene, bundle, tmp_path):
    scenes = []
    for i in range(3):
        s = make_scene(size=24 + 16 * i, bands=24, seed=10 + i)
        write_scene(s, tmp_path / f"s{i}.tif", tmp_path / f"l{i}.tif")
        scenes.append(tmp_path / f"s{i}.tif")
    one, two = tmp_path / "one", tmp_path / "two"
    assert hsicls("predict-map", *scenes, "-m", bundle, "--out-dir", one, "--window", "16").returncode == 0
    p = hsicls("predict-map", *scenes, "-m", bundle, "--out-dir", two, "--window", "16", "--json", ranks=2)
    assert p.returncode == 0, p.stderr_text
    for i in range(3):
        assert same(one / f"s{i}_map.tif", two / f"s{i}_map.tif")
    summary = json.loads(p.stdout_text)
    assert len(summary["maps"]) == 3 and summary["world_size"] == 2
    assert not [f for f in two.iterdir() if f.name.startswith(".")]  # parts removed


def _workers(agent_pid: int) -> list[int]:
    """Worker processes started by the torchrun agent."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == agent_pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _kill_workers_after(p, parts: Path, units: int) -> None:
    """SIGKILL every worker of torchrun ``p`` once ``units`` parts are committed; wait for it to end."""
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if parts.exists() and len(list(parts.glob("*.done"))) >= units:
            for w in _workers(p.pid):
                os.kill(w, signal.SIGKILL)
            break
        time.sleep(0.005)
    p.communicate(timeout=150)


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory, bundle):
    """A 160 x 160 scene and its one-process map at window 16 (100 units)."""
    d = tmp_path_factory.mktemp("big")
    write_scene(make_scene(size=160, bands=24, seed=5), d / "s.tif", d / "l.tif")
    p = hsicls("predict-map", d / "s.tif", "-m", bundle, "-o", d / "one.tif", "--window", "16", "--confidence", d / "c.tif")
    assert p.returncode == 0, p.stderr_text
    return d


def test_killed_rank_restarts_and_map_is_identical(big_scene, bundle, tmp_path):
    out = tmp_path / "m.tif"
    parts = tmp_path / ".m.tif.parts"
    p = hsicls(
        "predict-map", big_scene / "s.tif", "-m", bundle, "-o", out, "--window", "16", "--confidence", tmp_path / "c.tif",
        ranks=2, restarts=2, wait=False,
    )  # fmt: skip
    killed = False
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and not killed:
        if parts.exists() and len(list(parts.glob("*.done"))) >= 3:
            workers = _workers(p.pid)
            if workers:
                os.kill(max(workers), signal.SIGKILL)
                killed = True
        time.sleep(0.005)
    _, err = p.communicate(timeout=150)
    assert killed, "the map finished before a rank could be killed"
    assert p.returncode == 0, err
    assert same(big_scene / "one.tif", out) and same(big_scene / "c.tif", tmp_path / "c.tif")
    assert not parts.exists()


def test_rerun_after_failure_resumes(big_scene, bundle, tmp_path):
    """A run killed outright (no restarts) leaves committed parts; the same command again resumes."""
    out = tmp_path / "m.tif"
    parts = tmp_path / ".m.tif.parts"
    p = hsicls("predict-map", big_scene / "s.tif", "-m", bundle, "-o", out, "--window", "16", ranks=2, wait=False)
    _kill_workers_after(p, parts, 3)
    assert p.returncode != 0 and not out.exists()
    done_before = len(list(parts.glob("*.done")))
    assert done_before >= 3
    q = hsicls("predict-map", big_scene / "s.tif", "-m", bundle, "-o", out, "--window", "16", ranks=2)
    assert q.returncode == 0, q.stderr_text
    assert "resuming" in q.stderr_text
    assert same(big_scene / "one.tif", out) and not parts.exists()


def test_unit_on_bad_data_fails_cleanly(bundle, tmp_path):
    """A scene whose compressed tiles are damaged half-way: one clear line, exit 1, no map."""
    write_scene(make_scene(size=64, bands=24, seed=7), tmp_path / "s.tif", tmp_path / "l.tif")
    raw = bytearray((tmp_path / "s.tif").read_bytes())
    n = len(raw)
    raw[n // 2 : n // 2 + n // 4] = os.urandom(n // 4)
    (tmp_path / "bad.tif").write_bytes(bytes(raw))
    out = tmp_path / "m.tif"
    p = hsicls("predict-map", tmp_path / "bad.tif", "-m", bundle, "-o", out, "--window", "16", ranks=2)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr_text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "bad.tif" in lines[0], p.stderr_text
    assert "hsicls/" not in "".join(
        ln for ln in p.stderr_text.splitlines() if ln.strip().startswith("File ")
    )  # torchrun's own only
    assert not out.exists() and not (tmp_path / "m.tif.aux.xml").exists()


def test_a_link_planted_at_the_part_folder_is_refused(tiny_scene, bundle, tmp_path):
    """[hardening-2] 1: the part folder is never a planted link: one line, nothing written through it."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    os.symlink(victim, tmp_path / ".m.tif.parts")
    p = hsicls("predict-map", tiny_scene[0], "-m", bundle, "-o", tmp_path / "m.tif", ranks=2)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr_text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and ".m.tif.parts" in lines[0] and "link" in lines[0], p.stderr_text
    assert sorted(f.name for f in victim.iterdir()) == ["keep.txt"] and not (tmp_path / "m.tif").exists()


def test_reject_below_preview_uint8_confidence_and_cleanup_under_two_ranks(tiny_scene, bundle, tmp_path):
    """The outputs that depend on the whole map (--majority, --preview) or on probabilities (--reject-below,
    uint8 confidence) equal the one-process ones."""
    common = ["--window", "16", "--reject-below", "0.5", "--confidence-dtype", "uint8", "--majority", "3"]
    for ranks, d in ((1, tmp_path / "one"), (2, tmp_path / "two")):
        d.mkdir()
        p = hsicls("predict-map", tiny_scene[0], "-m", bundle, "-o", d / "m.tif", "--confidence", d / "c.tif",
                   "--preview", d / "m.png", *common, ranks=ranks)  # fmt: skip
        assert p.returncode == 0, p.stderr_text
    assert same(tmp_path / "one" / "m.tif", tmp_path / "two" / "m.tif")
    assert same(tmp_path / "one" / "c.tif", tmp_path / "two" / "c.tif")
    assert (tmp_path / "two" / "m.png").stat().st_size > 0


def test_a_second_job_on_the_same_map_is_refused_and_never_mixes(tiny_scene, bundle, one_process, tmp_path):
    """[hardening-3] Two torchrun jobs on one output: while one job owns the part folder (its rank 0 holds the
    folder's lock from plan to end; held here by the test, as a running job's rank 0 would), a second job is
    refused with one line and leaves the first's parts untouched; once it is free, the same command runs."""
    from hsicls.artifacts.parts import PartFolder
    from hsicls.io.locks import output_lock

    out = tmp_path / "m.tif"
    first = PartFolder(out, "first-job")
    first.prepare("the first job's fingerprint")
    first.commit(0, np.ones((16, 16), np.uint16), None, None, np.array([0, 256]), 256)
    before = {p.name: p.read_bytes() for p in first.dir.iterdir()}
    with output_lock(first.dir):
        second = hsicls("predict-map", tiny_scene[0], "-m", bundle, "-o", out, "--window", "16", ranks=2)
    assert second.returncode != 0
    lines = [ln for ln in second.stderr_text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "another predict-map job" in lines[0], second.stderr_text
    assert {p.name: p.read_bytes() for p in first.dir.iterdir()} == before and not out.exists()
    third = hsicls("predict-map", tiny_scene[0], "-m", bundle, "-o", out, "--window", "16", ranks=2)
    assert third.returncode == 0, third.stderr_text
    assert same(one_process / "m.tif", out) and not first.dir.exists()


def test_damaged_and_missing_parts_are_computed_again(big_scene, bundle, tmp_path):
    """[hardening-3] A part cut short after a kill (its marker kept) and a part deleted behind its marker:
    the rerun does not trust either, computes both again, and the map equals the one-process map."""
    from hsicls.artifacts.parts import PartFolder, job_fingerprint
    from hsicls.config import MapOptions
    from hsicls.io.maps import MapOutputs

    out = tmp_path / "m.tif"
    p = hsicls("predict-map", big_scene / "s.tif", "-m", bundle, "-o", out, "--window", "16", ranks=2, wait=False)
    parts = tmp_path / ".m.tif.parts"
    _kill_workers_after(p, parts, 4)
    assert p.returncode != 0 and not out.exists()
    done = sorted(parts.glob("*.done"))
    assert len(done) >= 2
    cut, gone = done[0].with_suffix(".npz"), done[1].with_suffix(".npz")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # truncated, its marker kept
    gone.unlink()  # deleted behind its marker
    fp = job_fingerprint(big_scene / "s.tif", Path(bundle), MapOutputs(out), MapOptions(window=16))
    assert json.loads((parts / "job.json").read_text())["fingerprint"] == fp  # the rerun reuses this folder
    q = hsicls("predict-map", big_scene / "s.tif", "-m", bundle, "-o", out, "--window", "16", ranks=2)
    assert q.returncode == 0, q.stderr_text
    assert "BadZipFile" not in q.stderr_text and "Traceback" not in q.stderr_text
    assert same(big_scene / "one.tif", out) and not parts.exists()
    folder = PartFolder(tmp_path / "x.tif", "job-a")  # and the folder's own checks, without ranks
    folder.prepare("fp")
    folder.commit(0, np.ones((4, 4), np.uint16), None, None, np.array([0, 16]), 16)
    assert folder.done(0) and folder.load(0)["n"] == 16
    folder._part(0).write_bytes(b"PK\x03\x04 damaged")
    assert not folder.done(0) and not folder._part(0).exists()  # removed with its marker: computed again
    PartFolder(tmp_path / "x.tif", "job-b").prepare("fp")  # another job took the folder over
    with pytest.raises(Exception, match="taken over"):
        folder.commit(1, np.ones((4, 4), np.uint16), None, None, np.array([0, 16]), 16)
