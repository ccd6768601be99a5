"""The fault matrix: bad inputs and faults, run through the real CLI in a subprocess.

Every case asserts its exit status, exactly one ``error:`` line naming the problem (or, for the
cases that only warn, the named warning), no traceback, no file under a final output name, no
temporary or lock file left, and the sha256 of every input and pre-existing file unchanged.
The table runs in a few parallel subprocesses on one tiny prepared file and a 1-epoch bundle
built once. Then: a real full disk (a 2 MiB tmpfs, when the test runs as root), a size-limited
writer (``RLIMIT_FSIZE``, for everyone), two concurrent writers, SIGKILL then rerun, a held lock
and a closed stdout.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
# one compute thread per run: the cases run side by side, and a tiny model gains nothing from more
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    "PYTHONWARNINGS": "",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
WORKERS = min(4, (os.cpu_count() or 2) + 1)
# runs hsicls with a file size limit; SIGXFSZ ignored, so writes past it fail with EFBIG
LIMITED = (
    "import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
    "os.execv(sys.executable, [sys.executable, '-m', 'hsicls', *sys.argv[2:]])"
)


def hsicls(*args, cwd: Path, limit: int | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", LIMITED, str(limit)] if limit else [sys.executable, "-m", "hsicls"]
    return subprocess.run(
        [*cmd, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, errors="replace", timeout=timeout, **kw
    )


def sha_tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def leftovers(folder: Path) -> list[str]:
    """Temporary and lock files left behind (a link a case planted is the case's, not a leftover)."""
    return [
        p.name
        for p in folder.rglob("*")
        if (p.name.endswith((".tmp", ".gtiff", ".lock")) or ".tmp." in p.name) and not p.is_symlink()
    ]


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """In-process training here runs on one thread too (restored after this module)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- assets (built once)
class _Evil:
    """Unpickling this runs ``touch MARKER``: a bundle carrying it must be refused unread."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write_bundles(a: Path) -> None:
    import torch

    good = torch.load(a / "m.pt", weights_only=True)
    torch.save({"format": "hsicls-bundle", "format_version": 2, "x": _Evil(a / "PWNED")}, a / "evil.pt")
    (a / "evil.pkl").write_bytes(pickle.dumps(_Evil(a / "PWNED"), protocol=4))
    (a / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (a / "empty.pt").write_bytes(b"")
    (a / "truncated.pt").write_bytes((a / "m.pt").read_bytes()[:20000])
    torch.save({k: v for k, v in good.items() if k != "state_dict"}, a / "no_weights.pt")
    torch.save({**good, "model": {**good["model"], "name": "vit-huge"}}, a / "unknown_model.pt")
    torch.save({**good, "model": {**good["model"], "n_classes": 5}}, a / "wrong_classes.pt")
    one = {**good, "model": {**good["model"], "n_classes": 1}, "class_names": ["a"], "class_values": [1], "palette": [[1, 2, 3]]}
    torch.save(one, a / "one_class.pt")
    torch.save({**good, "class_values": ["x"] * len(good["class_names"])}, a / "bad_values.pt")


def _write_scenes(a: Path, cube: np.ndarray, labels: np.ndarray) -> None:
    framed = cube.copy()
    framed[0], framed[-1], framed[:, 0], framed[:, -1] = -9999, -9999, -9999, -9999
    np.save(a / "framed.npy", framed)
    nan_band = cube.copy()
    nan_band[..., 3] = np.nan
    np.save(a / "nan_band.npy", nan_band)
    scattered = cube.copy()  # every pixel NaN in one band, but no band NaN everywhere
    r, c = np.indices(cube.shape[:2])
    scattered[r, c, (r + c) % cube.shape[2]] = np.nan
    np.save(a / "all_nodata.npy", scattered)
    np.save(a / "labels.npy", labels)
    one = np.where(labels > 0, 3, 0).astype(np.uint8)
    np.save(a / "one_class.npy", one)
    (a / "bad.toml").write_text("[train]\nepochs = = 3\n")


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Path:
    """A 24 x 24 px, 8-band GeoTIFF scene, its prepared file and a 1-epoch bundle, plus broken bundles,
    an interrupted run's checkpoint on another split, and odd scenes."""
    from hsicls.stages.train import TrainOptions, train
    from hsicls.synthetic import make_scene, write_scene

    a = tmp_path_factory.mktemp("faults")
    scene = make_scene(size=24, bands=8, seed=5)
    write_scene(scene, a / "scene.tif", a / "labels.tif")
    common = ("--components", "4", "--train-ratio", "0.3")
    assert run_cli("preprocess", a / "scene.tif", "-l", a / "labels.tif", "-o", a / "p.h5", *common).exit_code == 0
    r = run_cli(
        "train", "--model", "md2f-mamba", a / "p.h5", "-o", a / "m.pt", "--epochs", "1", "--patch-size", "3", "--device", "cpu"
    )
    assert r.exit_code == 0, r.stderr
    assert (
        run_cli("preprocess", a / "scene.tif", "-l", a / "labels.tif", "-o", a / "p2.h5", *common, "--seed", "7").exit_code == 0
    )

    def stop(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            a / "p2.h5", a / "other.pt", TrainOptions(model="md2f-mamba", epochs=3, patch_size=3, device="cpu"), on_epoch_end=stop
        )
    shutil.move(a / "other.pt.ckpt", a / "other.ckpt")
    _write_bundles(a)
    _write_scenes(a, scene.cube.astype(np.float32), scene.labels)
    return a


# --------------------------------------------------------------------------- the table
@dataclass
class Case:
    name: str
    args: list[str]  # {asset} names a file of the assets, copied into the case's folder
    code: int
    needles: tuple[str, ...]  # in the one error line (or, with warn, in a warning line)
    outputs: tuple[str, ...] = ()  # final names that must not appear (or, exit 0, must)
    setup: Callable[[Path], None] | None = None
    warn: bool = False  # exit 0 with a warning
    limit: int | None = None  # RLIMIT_FSIZE in bytes: a size-limited writer
    changes: tuple[str, ...] = ()  # pre-existing files that this (successful) case may rewrite
    in_process: bool = False  # through the CLI's entry function in this process (torch already loaded)


def _link(src: str, dst: str, hard: bool = True):
    return lambda d, a: (os.link if hard else os.symlink)(d / src, d / dst)


def _file(name: str, data: bytes = b"keep me"):
    return lambda d, a: (d / name).write_bytes(data)


def _copy(asset: str, name: str):
    return lambda d, a: shutil.copy(a / asset, d / name)


def _fifo(name: str):
    def make(d: Path, a: Path) -> None:
        (d / name).unlink(missing_ok=True)  # an asset copied under that name gives way to the FIFO
        os.mkfifo(d / name)

    return make


def _folder(name: str):
    return lambda d, a: (d / name).mkdir()


def _non_utf8(d: Path, a: Path) -> None:
    shutil.copy(a / "scene.tif", os.fsencode(d) + b"/sc\xff\xfe.tif")


E1 = ("--model", "md2f-mamba", "--epochs", "1", "--patch-size", "3", "--device", "cpu")
PRE = ("preprocess", "{scene.tif}", "-l", "{labels.tif}")
MAP = ("predict-map", "{scene.tif}", "-m")
CASES = [
    # --- lost input: an output that is an input, a hard link or symlink to one, or given twice
    Case("preprocess -o SCENE --overwrite", [*PRE, "-o", "scene.tif", "--overwrite"], 1, ("scene.tif", "the input")),
    Case("preprocess -o LABELS --overwrite", [*PRE, "-o", "labels.tif", "--overwrite"], 1, ("the input labels.tif",)),
    Case(
        "preprocess -o hard link of SCENE",
        [*PRE, "-o", "h.tif", "--overwrite"],
        1,
        ("h.tif", "hard link"),
        setup=_link("scene.tif", "h.tif"),
    ),
    Case("train PREP -o PREP", ["train", "{p.h5}", "-o", "p.h5", *E1], 1, ("p.h5", "the input")),
    Case("train PREP -o PREP --overwrite", ["train", "{p.h5}", "-o", "p.h5", "--overwrite", *E1], 1, ("the input p.h5",)),
    Case(
        "train -o CONFIG --config CONFIG",
        ["train", "{p.h5}", "-o", "c.toml", "--config", "c.toml", "--overwrite"],
        1,
        ("c.toml", "the input"),
        setup=_file("c.toml", b"[train]\nepochs = 1\n"),
    ),
    Case(
        "evaluate --plot MODEL --overwrite",
        ["evaluate", "{m.pt}", "{p.h5}", "--plot", "m.pt", "--overwrite"],
        1,
        ("m.pt", "the input"),
    ),
    Case(
        "evaluate --report R --plot R.json",
        ["evaluate", "{m.pt}", "{p.h5}", "--report", "r", "--plot", "r.json"],
        1,
        ("r.json", "given twice"),
        outputs=("r.json", "r.csv", "r.md"),
    ),
    Case("predict-map -o SCENE --overwrite", [*MAP, "{m.pt}", "-o", "scene.tif", "--overwrite"], 1, ("scene.tif", "the input")),
    Case(
        "predict-map -o symlink to MODEL",
        [*MAP, "{m.pt}", "-o", "l.tif", "--overwrite"],
        1,
        ("l.tif", "the input m.pt"),
        setup=_link("m.pt", "l.tif", hard=False),
    ),
    Case(
        "predict-map --confidence MAP",
        [*MAP, "{m.pt}", "-o", "map.tif", "--confidence", "map.tif"],
        1,
        ("map.tif", "given twice"),
        outputs=("map.tif",),
    ),
    Case(
        "predict-map over an existing map",
        [*MAP, "{m.pt}", "-o", "map.tif"],
        1,
        ("map.tif", "--overwrite"),
        setup=_file("map.tif"),
    ),
    # --- checkpoints and side files
    Case(
        "train over an interrupted run's checkpoint",
        ["train", "{p.h5}", "-o", "o.pt", *E1],
        1,
        ("o.pt.ckpt", "--resume", "--overwrite"),
        outputs=("o.pt",),
        setup=_copy("other.ckpt", "o.pt.ckpt"),
    ),
    Case(
        "train --resume on another prepared file",
        ["train", "{p.h5}", "-o", "o.pt", "--epochs", "3", "--patch-size", "3", "--device", "cpu", "--resume"],
        1,
        ("o.pt.ckpt", "another prepared file"),
        outputs=("o.pt",),
        setup=_copy("other.ckpt", "o.pt.ckpt"),
    ),
    Case(
        "train --resume without a checkpoint",
        ["train", "{p.h5}", "-o", "o.pt", *E1, "--resume"],
        1,
        ("o.pt.ckpt", "no checkpoint"),
        outputs=("o.pt",),
    ),
    # --- a size-limited writer (RLIMIT_FSIZE): EFBIG from h5py, torch.save, GDAL, matplotlib
    Case(
        "preprocess, file size limit",
        [*PRE, "-o", "p2.h5", "--components", "4"],
        1,
        ("p2.h5", "file too large"),
        outputs=("p2.h5",),
        limit=8000,
    ),
    Case(
        "train, file size limit",
        ["train", "{p.h5}", "-o", "o.pt", *E1],
        1,
        ("o.pt", "file too large"),
        outputs=("o.pt", "o.pt.ckpt"),
        limit=8000,
    ),
    Case(
        "predict-map, file size limit",
        [*MAP, "{m.pt}", "-o", "map.tif", "--probabilities", "prob.tif", "--confidence", "c.tif"],
        1,
        ("prob.tif", "file too large"),
        outputs=("map.tif", "prob.tif", "c.tif"),
        limit=8000,
    ),
    Case(
        "evaluate --report, file size limit",
        ["evaluate", "{m.pt}", "{p.h5}", "--report", "r", "--device", "cpu"],
        1,
        ("r.json", "file too large"),
        outputs=("r.json", "r.csv", "r.md"),
        limit=8000,
    ),
    # --- broken or hostile bundles
    Case(
        "malicious pickle bundle", ["evaluate", "{evil.pt}", "{p.h5}"], 1, ("evil.pt", "contains executable pickle data; refused")
    ),
    Case(
        "malicious bare pickle",
        [*MAP, "{evil.pkl}", "-o", "map.tif"],
        1,
        ("evil.pkl", "contains executable pickle data; refused"),
        outputs=("map.tif",),
    ),
    Case("random bytes as bundle", ["evaluate", "{random.pt}", "{p.h5}"], 1, ("random.pt", "not an hsicls model bundle")),
    Case("arguments swapped", ["evaluate", "{p.h5}", "{m.pt}"], 1, ("p.h5", "not an hsicls model bundle", "HDF5")),
    Case(
        "scene given as bundle",
        [*MAP, "{scene.tif}", "-o", "map.tif"],
        1,
        ("scene.tif", "not an hsicls model bundle", "TIFF"),
        outputs=("map.tif",),
    ),
    Case("empty bundle", ["evaluate", "{empty.pt}", "{p.h5}"], 1, ("empty.pt", "empty")),
    Case("truncated bundle", ["evaluate", "{truncated.pt}", "{p.h5}"], 1, ("truncated.pt", "not an hsicls model bundle")),
    Case("bundle without weights", ["evaluate", "{no_weights.pt}", "{p.h5}"], 1, ("no_weights.pt", "missing 'state_dict'")),
    Case(
        "bundle of an unknown model",
        [*MAP, "{unknown_model.pt}", "-o", "map.tif"],
        1,
        ("unknown_model.pt", "vit-huge"),
        outputs=("map.tif",),
    ),
    Case("bundle with a wrong class count", ["evaluate", "{wrong_classes.pt}", "{p.h5}"], 1, ("wrong_classes.pt", "5 classes")),
    Case("bundle of one class", ["evaluate", "{one_class.pt}", "{p.h5}"], 1, ("one_class.pt", "at least 2")),
    Case("bundle with damaged class codes", ["evaluate", "{bad_values.pt}", "{p.h5}"], 1, ("bad_values.pt", "damaged")),
    Case("directory as bundle", ["evaluate", "b.pt", "{p.h5}"], 1, ("b.pt", "is a directory"), setup=_folder("b.pt")),
    # --- bad values
    Case("--lr inf", ["train", "{p.h5}", "-o", "o.pt", "--lr", "inf"], 2, ("--lr", "finite"), outputs=("o.pt",)),
    Case("--lr nan", ["train", "{p.h5}", "-o", "o.pt", "--lr", "nan"], 2, ("--lr", "finite"), outputs=("o.pt",)),
    Case("--lr 5", ["train", "{p.h5}", "-o", "o.pt", "--lr", "5"], 2, ("--lr", "<= 1"), outputs=("o.pt",)),
    Case("--epochs -1", ["train", "{p.h5}", "-o", "o.pt", "--epochs", "-1"], 2, ("--epochs", ">= 1"), outputs=("o.pt",)),
    Case("--seed 2**40", ["train", "{p.h5}", "-o", "o.pt", "--seed", str(2**40)], 2, ("--seed",), outputs=("o.pt",)),
    Case("--runs 0", ["train", "{p.h5}", "-o", "o.pt", "--runs", "0"], 2, ("--runs",), outputs=("o.pt",)),
    Case("model-info --patch 4", ["model-info", "--patch", "4"], 2, ("--patch-size", "odd")),
    Case("model-info --classes 0", ["model-info", "--classes", "0"], 2, ("--classes", ">= 2")),
    Case("model-info --classes 1", ["model-info", "--classes", "1"], 2, ("--classes", ">= 2")),
    Case("model-info --bands 0", ["model-info", "--bands", "0"], 2, ("--bands", ">= 1")),
    Case("--train-ratio 1.5", [*PRE, "-o", "p2.h5", "--train-ratio", "1.5"], 2, ("--train-ratio",), outputs=("p2.h5",)),
    Case("--nodata nan", [*PRE, "-o", "p2.h5", "--nodata", "nan"], 2, ("--nodata", "finite"), outputs=("p2.h5",)),
    Case(
        "--reject-below 2", [*MAP, "{m.pt}", "-o", "map.tif", "--reject-below", "2"], 2, ("--reject-below",), outputs=("map.tif",)
    ),
    Case("--window 8", [*MAP, "{m.pt}", "-o", "map.tif", "--window", "8"], 2, ("--window", ">= 16"), outputs=("map.tif",)),
    Case("download --timeout -1", ["download", "houston", "--timeout", "-1"], 2, ("--timeout",)),
    Case(
        "config file not TOML",
        ["train", "{p.h5}", "-o", "o.pt", "--config", "{bad.toml}"],
        2,
        ("bad.toml", "TOML"),
        outputs=("o.pt",),
    ),
    Case(
        "one-class labels",
        ["preprocess", "{scene.tif}", "-l", "{one_class.npy}", "-o", "p2.h5"],
        1,
        ("one_class.npy", "at least 2 classes"),
        outputs=("p2.h5",),
    ),
    # --- nodata heuristics, in preprocess and predict-map alike
    Case(
        "untagged -9999 frame",
        ["preprocess", "{framed.npy}", "-l", "{labels.npy}", "-o", "p2.h5", "--components", "4"],
        0,
        ("-9999", "--nodata -9999"),
        outputs=("p2.h5",),
        warn=True,
    ),
    Case(
        "all-NaN band in preprocess",
        ["preprocess", "{nan_band.npy}", "-l", "{labels.npy}", "-o", "p2.h5", "--components", "4"],
        0,
        ("band 4", "NaN at every pixel"),
        outputs=("p2.h5",),
        warn=True,
    ),
    Case(
        "all-NaN band in predict-map",
        ["predict-map", "{nan_band.npy}", "-m", "{m.pt}", "-o", "map.tif"],
        1,
        ("nan_band.npy", "7 bands"),
        outputs=("map.tif",),
    ),
    Case(
        "every pixel nodata in predict-map",
        ["predict-map", "{all_nodata.npy}", "-m", "{m.pt}", "-o", "map.tif"],
        1,
        ("all_nodata.npy", "every pixel is nodata"),
        outputs=("map.tif",),
    ),
    # --- environment
    Case("non-UTF-8 file name", [*MAP, "{m.pt}", "-o", os.fsdecode(b"m\xff.tif")], 1, ("m\\xff.tif", "not valid UTF-8")),
    Case(
        "non-UTF-8 input name",
        ["predict-map", os.fsdecode(b"sc\xff\xfe.tif"), "-m", "{m.pt}", "-o", "map.tif"],
        1,
        ("not valid UTF-8",),
        outputs=("map.tif",),
        setup=_non_utf8,
    ),
    Case(
        "file given as --data-dir", ["download", "indian-pines", "--data-dir", "{p.h5}"], 1, ("--data-dir", "expected a folder")
    ),
    Case("directory given as -o", [*PRE, "-o", "out"], 1, ("out", "is a directory"), setup=_folder("out")),
    Case(
        "empty directory given as --from",  # a folder is searched for the scene's files ([practitioner] 10)
        ["download", "houston", "--from", "d", "--data-dir", "data"],
        1,
        ("d", "holds none of the files of houston2013"),
        setup=_folder("d"),
    ),
    Case("missing output folder", [*PRE, "-o", "nowhere/p.h5"], 1, ("nowhere", "does not exist")),
    Case(
        "short dataset name (alias)",
        ["download", "houston", "--from", "{p.h5}", "--data-dir", "data"],
        1,
        ("p.h5", "houston2013"),
    ),
    Case(
        "unknown dataset for train defaults",
        ["train", "--dataset", "atlantis", "-o", "o.pt"],
        2,  # a usage error ([design-2] 7)
        ("atlantis", "unknown dataset"),
        outputs=("o.pt",),
    ),
    Case(
        "-v after the subcommand", ["train", "{p.h5}", "-o", "o.pt", "--epochs", "0", "-v"], 2, ("--epochs",), outputs=("o.pt",)
    ),
]


# --------------------------------------------------------------------------- [hardening-2]
def _victim_link(link: str):
    """A file of the user's (``victim.txt``, its sha256 checked after the case) and a link to it planted at ``link``."""

    def setup(d: Path, a: Path) -> None:
        (d / "victim.txt").write_bytes(b"the user's precious file")
        os.symlink(d / "victim.txt", d / link)

    return setup


def _other_crs(d: Path, a: Path) -> None:
    """A one-band class map like labels.tif but declared in another CRS."""
    import rasterio
    from rasterio.crs import CRS

    with rasterio.open(a / "labels.tif") as src:
        prof, data = src.profile, src.read(1)
    prof.update(crs=CRS.from_epsg(4326), count=1)
    with rasterio.open(d / "other.tif", "w", **prof) as dst:
        dst.write(data, 1)


def _nan_wavelength(d: Path, a: Path) -> None:
    import rasterio

    shutil.copy(a / "scene.tif", d / "nanwl.tif")
    with rasterio.open(d / "nanwl.tif", "r+") as ds:
        ds.update_tags(2, wavelength="nan")


def _bad_bands(record):
    def setup(d: Path, a: Path) -> None:
        import torch

        good = torch.load(a / "m.pt", weights_only=True)
        torch.save({**good, "bands": record}, d / "bb.pt")

    return setup


CASES += [
    # 1. a link planted at a side file is never written through
    Case(
        "link planted at predict-map's lock",
        [*MAP, "{m.pt}", "-o", "map.tif"],
        1,
        ("map.tif.lock", "symbolic link"),
        outputs=("map.tif",),
        setup=_victim_link("map.tif.lock"),
    ),
    Case(
        "link planted at train's lock",
        ["train", "{p.h5}", "-o", "o.pt", *E1],
        1,
        ("o.pt.lock", "symbolic link"),
        outputs=("o.pt",),
        setup=_victim_link("o.pt.lock"),
    ),
    Case(
        "link planted at the map's .aux.xml",
        [*MAP, "{m.pt}", "-o", "map.tif"],
        1,
        ("map.tif.aux.xml", "symbolic link"),
        outputs=("map.tif",),
        setup=_victim_link("map.tif.aux.xml"),
    ),
    Case(
        "link planted at the map's .qml",
        [*MAP, "{m.pt}", "-o", "map.tif"],
        1,
        ("map.qml", "symbolic link"),
        outputs=("map.tif",),
        setup=_victim_link("map.qml"),
    ),
    # 2. a side file never replaces a file the user gave or made
    Case(
        "map's .qml sidecar over the --palette .qml",
        [*MAP, "{m.pt}", "-o", "map.tif", "--palette", "map.qml", "--overwrite"],
        1,
        ("map.qml", "the input"),
        outputs=("map.tif",),
        setup=_file(
            "map.qml",
            b'<qgis><renderer-v2><colorPalette><paletteEntry value="1" color="#ff0000" label="a"/></colorPalette></renderer-v2></qgis>',
        ),
    ),
    Case(
        "train over an earlier run's log",
        ["train", "{p.h5}", "-o", "o.pt", *E1],
        1,
        ("o.pt.log.jsonl", "already exists"),
        outputs=("o.pt",),
        setup=_file("o.pt.log.jsonl", b'{"epoch": 1}\n'),
    ),
    # 3. malformed palettes and bundle records: one line naming the file
    *(
        Case(
            f"palette: {what}",
            [*MAP, "{m.pt}", "-o", "map.tif", "--palette", name],
            1,
            (name, "palette"),
            outputs=("map.tif",),
            setup=_file(name, content),
        )
        for what, name, content in (
            ("broken JSON", "p.json", b'{"1": [255, 0'),
            ("JSON list", "p.json", b"[1, 2, 3]"),
            ("short .clr line", "p.clr", b"1 255 0\n"),
            ("non-numeric .clr", "p.clr", b"1 red green blue\n"),
            ("truncated .qml", "p.qml", b'<qgis><renderer-v2><colorPalette><paletteEntry value="1" col'),
        )
    ),
    Case(
        "bundle: wavelengths of the wrong type",
        [*MAP, "bb.pt", "-o", "map.tif"],
        1,
        ("bb.pt", "band record"),
        outputs=("map.tif",),
        setup=_bad_bands({"count": 8, "wavelengths": "400-900"}),
    ),
    Case(
        "bundle: wavelengths of the wrong length",
        [*MAP, "bb.pt", "-o", "map.tif"],
        1,
        ("bb.pt", "wavelengths"),
        outputs=("map.tif",),
        setup=_bad_bands({"count": 8, "wavelengths": [500.0, 600.0]}),
    ),
    Case(
        "bundle: band record not a table",
        [*MAP, "bb.pt", "-o", "map.tif"],
        1,
        ("bb.pt", "band record"),
        outputs=("map.tif",),
        setup=_bad_bands([1, 2, 3]),
    ),
    Case(
        "bundle: NaN wavelengths",
        [*MAP, "bb.pt", "-o", "map.tif"],
        1,
        ("bb.pt", "finite"),
        outputs=("map.tif",),
        setup=_bad_bands({"count": 8, "wavelengths": [float("nan")] * 8}),
    ),
    # 4. no silent contradiction
    Case(
        "duplicate --class-map",
        ["assess", "map.tif", "-r", "{labels.tif}", "--class-map", "1=a", "--class-map", "1=b"],
        2,
        ("--class-map", "given twice"),
        setup=_file("map.tif"),
    ),
    Case(
        "config file with tables for other stages only",
        ["train", "{p.h5}", "-o", "o.pt", "--config", "c.toml"],
        2,
        ("c.toml", "[train]"),
        outputs=("o.pt",),
        setup=_file("c.toml", b"[evaluate]\nbatch_size = 4\n"),
    ),
    Case(
        "--folds above the number of groups",
        [*PRE, "-o", "g.h5", "--split", "group", "--group-by", "block", "--block-size", "12", "--folds", "9"],
        2,
        ("--folds 9", "groups"),
        outputs=("g.h5",),
    ),
    Case(
        "NaN wavelength in a scene",
        ["preprocess", "nanwl.tif", "-l", "{labels.tif}", "-o", "p.h5", "--components", "4"],
        0,
        ("nanwl.tif", "wavelength", "ignored"),
        outputs=("p.h5",),
        setup=_nan_wavelength,
        warn=True,
    ),
    # new commands and options of this session
    Case(
        "sample: output named like the map",
        ["sample", "map.tif", "-o", "map.tif", "--overwrite"],
        1,
        ("map.tif", "the input"),
        setup=_copy("labels.tif", "map.tif"),
    ),
    Case(
        "sample: unknown output format",
        ["sample", "map.tif", "-o", "pts.txt"],
        2,
        ("pts.txt", ".gpkg"),
        outputs=("pts.txt",),
        setup=_copy("labels.tif", "map.tif"),
    ),
    Case(
        "sample: a text file as the map",
        ["sample", "notes.tif", "-o", "pts.gpkg"],
        1,
        ("notes.tif",),
        outputs=("pts.gpkg",),
        setup=_file("notes.tif", b"not a raster"),
    ),
    Case(
        "sample: expected UA out of range",
        ["sample", "map.tif", "-o", "p.gpkg", "--allocation", "neyman", "--expected-ua", "1=1.5"],
        2,
        ("--expected-ua", "(0, 1)"),
        outputs=("p.gpkg",),
        setup=_copy("labels.tif", "map.tif"),
    ),
    Case(
        "train --folds-all on a random split",
        ["train", "{p.h5}", "-o", "cv.pt", "--folds-all", *E1],
        1,
        ("--folds", "group"),
        outputs=("cv.pt.cv.json", "cv.pt.fold0.pt"),
    ),
    Case(
        "--patch-search with an even size",
        ["train", "{p.h5}", "-o", "o.pt", "--patch-search", "3,4", *E1],
        2,
        ("--patch-search", "odd"),
        outputs=("o.pt",),
    ),
    Case("--sieve 1", [*MAP, "{m.pt}", "-o", "map.tif", "--sieve", "1"], 2, ("--sieve",), outputs=("map.tif",)),
    Case(
        "assess of maps in two CRSs",
        ["assess", "{labels.tif}", "other.tif", "-r", "{labels.tif}"],
        1,
        ("other.tif", "CRS"),
        setup=_other_crs,
    ),
    # [hardening-3]: sizes bounded, special files refused, names that collide, contradictions
    Case(
        "--sieve larger than the map",
        [*MAP, "{m.pt}", "-o", "map.tif", "--sieve", "100000"],
        1,
        ("scene.tif", "--sieve 100000", "576"),
        outputs=("map.tif",),
    ),
    Case(
        "--majority huge", [*MAP, "{m.pt}", "-o", "map.tif", "--majority", "2147483649"], 2, ("--majority",), outputs=("map.tif",)
    ),
    Case(
        "--majority wider than the map",
        [*MAP, "{m.pt}", "-o", "map.tif", "--majority", "99"],
        1,
        ("--majority 99", "24 x 24"),
        outputs=("map.tif",),
    ),
    Case(
        "FIFO as the scene",
        [*MAP, "{m.pt}", "-o", "map.tif"],
        1,
        ("scene.tif", "FIFO"),
        outputs=("map.tif",),
        setup=_fifo("scene.tif"),
    ),
    Case("FIFO as a map to assess", ["assess", "m.tif", "-r", "{labels.tif}"], 1, ("m.tif", "FIFO"), setup=_fifo("m.tif")),
    Case("FIFO as the reference", ["assess", "{labels.tif}", "-r", "r.gpkg"], 1, ("r.gpkg", "FIFO"), setup=_fifo("r.gpkg")),
    Case(
        "FIFO as a map to sample",
        ["sample", "m.tif", "-o", "s.gpkg"],
        1,
        ("m.tif", "FIFO"),
        outputs=("s.gpkg",),
        setup=_fifo("m.tif"),
    ),
    Case("FIFO as the bundle", [*MAP, "b.pt", "-o", "map.tif"], 1, ("b.pt", "FIFO"), outputs=("map.tif",), setup=_fifo("b.pt")),
    Case("assess --report ''", ["assess", "{labels.tif}", "-r", "{labels.tif}", "--report", ""], 2, ("--report", "prefix")),
    Case(
        "sample --reference-field map_code",
        ["sample", "{labels.tif}", "-o", "s.gpkg", "--reference-field", "map_code"],
        2,
        ("--reference-field", "map_code", "own columns"),
        outputs=("s.gpkg",),
    ),
    Case(
        "sample --reference-field ''",
        ["sample", "{labels.tif}", "-o", "s.gpkg", "--reference-field", ""],
        2,
        ("--reference-field",),
        outputs=("s.gpkg",),
    ),
    Case("-v -q together", ["-v", "-q", "datasets"], 2, ("-v", "-q")),
    Case(
        "a text file named .npy",
        ["preprocess", "t.npy", "-l", "{labels.tif}", "-o", "p.h5"],
        1,
        ("t.npy", "numeric arrays"),
        outputs=("p.h5",),
        setup=_file("t.npy", b"just text\n"),
    ),
    Case(
        "a .json that is not GeoJSON",
        ["preprocess", "{scene.tif}", "-l", "j.json", "-o", "p.h5"],
        1,
        ("j.json", "GeoJSON"),
        outputs=("p.h5",),
        setup=_file("j.json", b'{"a": 1}'),
    ),
    Case(
        "--patch-size with --patch-search",
        ["train", "{p.h5}", "-o", "o.pt", "--patch-search", "3,5", *E1],
        2,
        ("--patch-size 3", "--patch-search"),
        outputs=("o.pt",),
    ),
    Case("--patch-search ''", ["train", "{p.h5}", "-o", "o.pt", "--patch-search", ""], 2, ("--patch-search",), outputs=("o.pt",)),
    Case(
        "--model rf with --patch-search",
        ["train", "{p.h5}", "-o", "o.pt", "--model", "rf", "--patch-search", "3,5"],
        2,
        ("--patch-search", "--model rf"),
        outputs=("o.pt",),
    ),
    Case(
        "--model rf with --class-weighting",
        ["train", "{p.h5}", "-o", "o.pt", "--model", "rf", "--class-weighting", "balanced"],
        2,
        ("--class-weighting", "--model rf"),
        outputs=("o.pt",),
    ),
    Case(
        "--folds-all with --runs",
        ["train", "{p.h5}", "-o", "cv.pt", "--folds-all", "--runs", "3", *E1],
        2,
        ("--folds-all", "--runs"),
    ),
    Case(
        "--class-map with a code no side has",
        ["assess", "{labels.tif}", "-r", "{labels.tif}", "--class-map", "77=x"],
        0,
        ("--class-map", "no class 77"),
        warn=True,
    ),
    Case(
        "--expected-ua under proportional allocation",
        ["sample", "{labels.tif}", "-o", "s.gpkg", "--expected-ua", "1=0.7"],
        0,
        ("--expected-ua", "neyman"),
        outputs=("s.gpkg",),
        warn=True,
    ),
    Case(
        "rerun over a killed training's log and checkpoint",
        ["train", "{p.h5}", "-o", "o.pt", *E1],
        1,
        ("o.pt.ckpt", "--resume"),
        outputs=("o.pt",),
        setup=lambda d, a: (shutil.copy(a / "other.ckpt", d / "o.pt.ckpt"), (d / "o.pt.log.jsonl").write_text("{}\n")),
    ),
    Case(
        "GeoJSON in projected coordinates without a crs member",
        ["preprocess", "{scene.tif}", "-l", "proj.geojson", "--label-field", "cls", "-o", "p.h5"],
        1,
        ("proj.geojson", "WGS 84", "RFC 7946"),
        outputs=("p.h5",),
        setup=_file(
            "proj.geojson",
            b'{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", '
            b'"coordinates": [366100.0, 5807900.0]}, "properties": {"cls": 1}}]}',
        ),
    ),
    Case(
        "assess --reference-field ''",
        ["assess", "{labels.tif}", "-r", "{labels.tif}", "--reference-field", ""],
        2,
        ("--reference-field",),
    ),
    # 5. --out-dir that does not exist is created
    Case("--out-dir created", [*MAP, "{m.pt}", "--out-dir", "new/maps"], 0, (), outputs=("new/maps/scene_map.tif",)),
]


# Cases whose failure is pure Python after torch is loaded: run through the CLI's entry function
# (``hsicls.cli.main.run``, as the console script) in this process, which has torch loaded already.
IN_PROCESS = {
    "truncated bundle",
    "bundle without weights",
    "bundle of an unknown model",
    "bundle with a wrong class count",
    "bundle of one class",
    "bundle with damaged class codes",
    "all-NaN band in predict-map",
    "every pixel nodata in predict-map",
    "train --resume on another prepared file",
    "train over an interrupted run's checkpoint",
    "untagged -9999 frame",
    "all-NaN band in preprocess",
}
for _c in CASES:
    _c.in_process = _c.name in IN_PROCESS


def _in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        r = run_cli(*args)
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def _run_case(case: Case, assets: Path, root: Path):
    d = root / "".join(ch if ch.isalnum() else "_" for ch in case.name)
    d.mkdir()
    args = []
    for a in case.args:
        if a.startswith("{") and a.endswith("}"):
            shutil.copy(assets / a[1:-1], d / a[1:-1])
            a = a[1:-1]
        args.append(a)
    if case.setup is not None:
        case.setup(d, assets)
    before = sha_tree(d)
    r = _in_process(args, d) if case.in_process else hsicls(*args, cwd=d, limit=case.limit)
    return d, before, r


@pytest.fixture(scope="module")
def table(assets, tmp_path_factory):
    """Every case of :data:`CASES`, run in parallel subprocesses: ``{name: (folder, sha256 before, result)}``."""
    root = tmp_path_factory.mktemp("table")
    outside = [c for c in CASES if not c.in_process]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = dict(zip([c.name for c in outside], pool.map(lambda c: _run_case(c, assets, root), outside)))
    for c in CASES:
        if c.in_process:
            results[c.name] = _run_case(c, assets, root)
    return results


def test_the_table_has_at_least_40_subprocess_cases():
    assert len([c for c in CASES if not c.in_process]) >= 40 and len({c.name for c in CASES}) == len(CASES)
    assert IN_PROCESS <= {c.name for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(case: Case, table, assets):
    d, before, r = table[case.name]
    assert r.returncode == case.code, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    errors = error_lines(r.stderr)
    if case.code == 0:
        assert not errors, r.stderr
        if case.warn:
            warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
            assert any(all(n in w for n in case.needles) for w in warnings), r.stderr
        for name in case.outputs:
            assert (d / name).is_file(), name
    else:
        assert len(errors) == 1, r.stderr
        for n in case.needles:
            assert n in errors[0], r.stderr
        for name in case.outputs:
            assert not (d / name).exists() or name in before, name
    after = sha_tree(d)
    changed = [k for k in before if after.get(k) != before[k] and k not in case.changes]
    assert not changed, f"changed or lost: {changed}"
    assert not leftovers(d), leftovers(d)
    assert not (assets / "PWNED").exists(), "a pickle payload ran"


# --------------------------------------------------------------------------- real full disk (root)
@contextlib.contextmanager
def full_tmpfs(folder: Path, free: int | None = 0):
    """A 2 MiB tmpfs mounted on ``folder`` and filled up to ``free`` bytes (``None``: mounted
    read-only); unmounted on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    opts = "size=2m" if free is not None else "size=2m,ro"
    mount = ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("a real full disk needs root and mount -t tmpfs")
    try:
        if free is None:
            yield folder
            return
        st = os.statvfs(folder)
        with open(folder / "filler", "wb") as f:
            with contextlib.suppress(OSError):
                f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free))
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


FULL_DISK = [
    ("preprocess", [*PRE, "-o", "{out}/p.h5", "--components", "4"], ["p.h5"], 0),
    ("train", ["train", "{p.h5}", "-o", "{out}/m.pt", *E1], ["m.pt", "m.pt.ckpt", "m.pt.log.jsonl"], 0),
    (
        "predict-map",
        [*MAP, "{m.pt}", "-o", "{out}/map.tif", "--confidence", "{out}/c.tif", "--preview", "{out}/map.png", "--cog"],
        ["map.tif", "c.tif", "map.png"],
        0,
    ),
    # room for the map but not for all its probabilities: GDAL meets the full disk while flushing
    (
        "predict-map, disk full half-way",
        [*MAP, "{m.pt}", "-o", "{out}/map.tif", "--probabilities", "{out}/prob.tif"],
        ["map.tif", "prob.tif"],
        12_000,
    ),
    (
        "evaluate --plot",
        ["evaluate", "{m.pt}", "{p.h5}", "--plot", "{out}/cm.png", "--device", "cpu"],
        ["cm.png"],
        0,
    ),
    ("read-only file system", [*PRE, "-o", "{out}/p.h5"], ["p.h5"], None),
]


def _full_disk_case(case, assets: Path, root: Path):
    name, args, finals, free = case
    d = root / "".join(ch if ch.isalnum() else "_" for ch in name)
    d.mkdir()
    args = [a.format(out="full") if "{out}" in a else a for a in args]
    for a in args:
        if a.startswith("{"):
            shutil.copy(assets / a[1:-1], d / a[1:-1])
    args = [a[1:-1] if a.startswith("{") else a for a in args]
    before = sha_tree(d)
    with full_tmpfs(d / "full", free):
        r = hsicls(*args, cwd=d)
        left = sorted(p.name for p in (d / "full").iterdir() if p.name != "filler")
    return before, sha_tree(d), r, left, finals


def test_a_real_full_disk(assets, tmp_path):
    """ENOSPC met by h5py, torch.save, GDAL/libtiff (also while flushing on close), matplotlib and
    plain writes: one line naming the file and "no space left on device", exit 1, no output."""
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs root and mount -t tmpfs")
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda c: _full_disk_case(c, assets, tmp_path), FULL_DISK))
    for (name, *_), (before, after, r, left, finals) in zip(FULL_DISK, results):
        assert r.returncode == 1, (name, r.stderr)
        errors = error_lines(r.stderr)
        cause = "read-only file system" if name == "read-only file system" else "no space left on device"
        assert len(errors) == 1 and cause in errors[0], (name, r.stderr)
        assert any(f in errors[0] for f in finals), (name, errors)
        assert "Traceback" not in r.stderr and "_tiff" not in r.stderr, (name, r.stderr)
        assert left == [], (name, left)  # no final file, no temporary, no lock
        assert before == {k: v for k, v in after.items() if not k.startswith("full/")}, name


# --------------------------------------------------------------------------- concurrency, kills, locks
def _big_scene(assets: Path, folder: Path) -> Path:
    """A 72 x 72 px scene of the bundle's 8 bands (the tiny scene tiled), for runs that last."""
    import rasterio

    with rasterio.open(assets / "scene.tif") as ds:
        cube = ds.read().transpose(1, 2, 0).astype(np.float32)
    path = folder / "big.npy"
    np.save(path, np.tile(cube, (3, 3, 1)))
    return path


def _wait_for(pattern: str, folder: Path, proc: subprocess.Popen, timeout: float = 60) -> Path | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.005)
    return None


def test_two_writers_of_one_output(assets, tmp_path):
    """Two predict-map runs, same output, no --overwrite, started together: one wins, the other fails
    cleanly with one line; the map is the winner's, whole."""
    import rasterio

    for f in ("scene.tif", "m.pt"):
        shutil.copy(assets / f, tmp_path / f)
    cmd = [sys.executable, "-m", "hsicls", "predict-map", "scene.tif", "-m", "m.pt", "-o", "map.tif", "--device", "cpu"]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
        p.stdout.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    errors = error_lines(loser)
    assert len(errors) == 1 and "map.tif" in errors[0], loser
    assert any(k in errors[0] for k in ("another hsicls process", "already exists", "created by another process")), loser
    assert "Traceback" not in loser
    with rasterio.open(tmp_path / "map.tif") as ds:
        assert ds.read(1).any()
    assert not leftovers(tmp_path)


def test_a_held_lock_is_refused_at_once(assets, tmp_path):
    import fcntl

    for f in ("scene.tif", "m.pt"):
        shutil.copy(assets / f, tmp_path / f)
    with open(tmp_path / "map.tif.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        r = hsicls("predict-map", "scene.tif", "-m", "m.pt", "-o", "map.tif", cwd=tmp_path)
    assert r.returncode == 1
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and "another hsicls process" in errors[0] and f"pid {os.getpid()}" in errors[0], r.stderr
    assert not (tmp_path / "map.tif").exists()


def test_ctrl_c_then_sigkill_then_rerun_of_predict_map(assets, tmp_path):
    """Ctrl-C mid-way: exit 130, nothing left. SIGKILL mid-way: its temporary file stays behind;
    the rerun removes it (its process is dead) and succeeds."""
    shutil.copy(assets / "m.pt", tmp_path / "m.pt")
    big = _big_scene(assets, tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "hsicls",
        "predict-map",
        big.name,
        "-m",
        "m.pt",
        "-o",
        "map.tif",
        "--window",
        "16",
        "--device",
        "cpu",
    ]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):  # SIGTERM is handled as SIGINT is ([hardening-3])
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        tmp = _wait_for(".map.tif.*.tmp", tmp_path, proc)
        assert tmp is not None, proc.communicate()[1]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if sig != signal.SIGKILL:
            expected = (130, "error: interrupted") if sig == signal.SIGINT else (143, "error: terminated")
            assert (proc.returncode, error_lines(err)) == (expected[0], [expected[1]]), err
            assert not (tmp_path / "map.tif").exists() and not leftovers(tmp_path)
    assert proc.returncode == -signal.SIGKILL and tmp.exists() and not (tmp_path / "map.tif").exists()
    r = hsicls(*cmd[3:], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "map.tif").exists() and not leftovers(tmp_path)


def test_ctrl_c_of_training_then_rerun(assets, tmp_path):
    """Ctrl-C after a checkpoint: exit 130, one line saying how to resume. The rerun with --resume
    removes the temporary files a dead run left (here: one planted for the interrupted process, as
    a SIGKILL mid-write leaves) and finishes. (A rerun without --resume is refused: see the table.)"""
    shutil.copy(assets / "p.h5", tmp_path / "p.h5")
    args = ["train", "p.h5", "-o", "t.pt", "--model", "md2f-mamba", "--epochs", "12", "--patch-size", "3", "--device", "cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hsicls", *args],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert _wait_for("t.pt.ckpt", tmp_path, proc) is not None, proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and len(error_lines(err)) == 1 and "--resume" in error_lines(err)[0], err
    stale = tmp_path / f".t.pt.ckpt.{proc.pid}.tmp"
    stale.write_bytes(b"half a checkpoint")
    r = hsicls(*args, "--resume", cwd=tmp_path)
    assert r.returncode == 0 and "resuming from epoch" in r.stderr, r.stderr
    assert (tmp_path / "t.pt").exists() and not (tmp_path / "t.pt.ckpt").exists()
    assert not leftovers(tmp_path)


# --------------------------------------------------------------------------- stdout, verbosity
def test_closed_stdout_exits_quietly(tmp_path):
    """``hsicls datasets --json | true``: the shell's usual status for a broken pipe, nothing on stderr."""
    read, write = os.pipe()
    os.close(read)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "hsicls", "datasets", "--json"], stdout=write, stderr=subprocess.PIPE, env=ENV, text=True
        )
    finally:
        os.close(write)
    assert r.returncode == 141 and r.stderr == "", r.stderr
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [sys.executable, "-m", "hsicls", "datasets", "--json"], stdout=full, stderr=subprocess.PIPE, env=ENV, text=True
        )
    assert r.returncode == 1 and error_lines(r.stderr) == [r.stderr.strip()] and "standard output" in r.stderr


def test_verbosity_flags_after_the_subcommand(assets, tmp_path):
    base = ("preprocess", assets / "scene.tif", "-l", assets / "labels.tif", "--components", "4")
    loud = run_cli(*base, "-o", tmp_path / "a.h5", "-v")
    assert loud.exit_code == 0 and "PCA keeps" in loud.stderr, loud.stderr
    quiet = run_cli(*base, "-o", tmp_path / "b.h5", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    odd = run_cli(*base[:-2], "--components", "4", "--class-names", "-v", "-o", tmp_path / "c.h5")  # a value, not the flag
    assert odd.exit_code == 1 and "--class-names" in odd.stderr, odd.stderr


# --------------------------------------------------------------------------- in-process checks
def test_side_files_are_named_from_the_whole_output_name(assets, tmp_path):
    for name in ("a.pt", "a.pth"):
        r = run_cli("train", assets / "p.h5", "-o", tmp_path / name, *E1)
        assert r.exit_code == 0, r.stderr
    assert (tmp_path / "a.pt.log.jsonl").exists() and (tmp_path / "a.pth.log.jsonl").exists()
    assert not (tmp_path / "a.log.jsonl").exists()


def test_an_all_nan_band_is_dropped_alike_in_preprocess_and_predict_map(assets, tmp_path):
    scene = assets / "nan_band.npy"
    r = run_cli("preprocess", scene, "-l", assets / "labels.npy", "-o", tmp_path / "p.h5", "--components", "4")
    assert r.exit_code == 0 and "band 4 is NaN at every pixel; dropped" in r.stderr, r.stderr
    assert run_cli("train", tmp_path / "p.h5", "-o", tmp_path / "m.pt", *E1).exit_code == 0
    r = run_cli("predict-map", scene, "-m", tmp_path / "m.pt", "-o", tmp_path / "map.tif", "--device", "cpu")
    assert r.exit_code == 0 and "band 4 is NaN at every pixel; dropped" in r.stderr, r.stderr


def test_nodata_option_marks_the_frame_and_silences_the_warning(assets, tmp_path):
    import h5py

    args = ("preprocess", assets / "framed.npy", "-l", assets / "labels.npy", "-o", tmp_path / "p.h5", "--components", "4")
    r = run_cli(*args, "--nodata", "-9999")
    assert r.exit_code == 0 and "--nodata" not in r.stderr, r.stderr
    with h5py.File(tmp_path / "p.h5") as f:
        valid = f["scenes/0/valid"][...]
    assert not valid[0].any() and not valid[:, -1].any() and valid[1:-1, 1:-1].all()


def test_a_diverging_run_writes_no_bundle(assets, tmp_path, monkeypatch):
    from hsicls.engine.training import TrainingRun

    step = TrainingRun.step
    monkeypatch.setattr(TrainingRun, "step", lambda self, on_batch=None: {**step(self, on_batch), "loss": float("nan")})
    r = run_cli("train", assets / "p.h5", "-o", tmp_path / "m.pt", *E1)
    assert r.exit_code == 1 and "diverged" in error_lines(r.stderr)[0], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_no_replace_rename_and_its_fallback(tmp_path, monkeypatch):
    from hsicls.errors import OutputExistsError
    from hsicls.io import atomic as fileutil

    for fallback in (False, True):
        if fallback:  # no renameat2: link + unlink
            monkeypatch.setattr(fileutil, "_renameat2_noreplace", lambda src, dst: False)
        final = tmp_path / f"out{fallback}.txt"
        with fileutil.atomic_output(final) as tmp:
            tmp.write_text("first")
            final.write_text("someone else's")  # appears while we write
            with pytest.raises(OutputExistsError):
                fileutil.move_into_place(tmp, final, overwrite=False)
            final.unlink()
        assert final.read_text() == "first" and not leftovers(tmp_path)


def test_stale_temporary_files_of_dead_processes_only(tmp_path):
    from hsicls.io import atomic as fileutil

    final = tmp_path / "x.tif"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = fileutil.temp_name(final, int(dead.stdout))
    live = fileutil.temp_name(final, os.getppid())
    for p in (stale, live, stale.with_name(stale.name + ".gtiff")):
        p.write_text("x")
    with fileutil.atomic_output(final) as tmp:
        tmp.write_text("done")
    assert final.read_text() == "done" and live.exists()
    assert not stale.exists() and not stale.with_name(stale.name + ".gtiff").exists()


def test_disk_errors_are_recognised_in_library_messages():
    from hsicls.io.disk import disk_error_cause

    h5 = OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")
    assert disk_error_cause(h5) == "no space left on device"
    assert disk_error_cause(RuntimeError("_tiffWriteProc: Disk quota exceeded.")) == "disk quota exceeded"
    assert disk_error_cause(OSError(30, "Read-only file system")) == "read-only file system"
    assert disk_error_cause(ValueError("some bug")) is None


def test_short_dataset_names_are_aliases():
    import json

    from hsicls.datasets import get_dataset

    expect = {
        "houston": "houston2013",
        "pavia": "pavia-centre",
        "paviau": "pavia-university",
        "salinas": "salinas",
        "indian": "indian-pines",
        "ksc": "ksc",
        "longkou": "whu-hi-longkou",
        "hanchuan": "whu-hi-hanchuan",
        "honghu": "whu-hi-honghu",
        "Indian_Pines": "indian-pines",
        "PaviaU": "pavia-university",
    }
    assert {k: get_dataset(k).name for k in expect} == expect
    r = run_cli("datasets", "--json")
    rows = {d["name"]: d["aliases"] for d in json.loads(r.stdout)}
    assert rows["houston2013"] == ["houston"] and rows["salinas"] == []


def test_an_envi_header_protects_its_data_file_and_back(tmp_path):
    from hsicls.errors import HsiclsError
    from hsicls.io.guard import check_output

    (tmp_path / "scene.hdr").write_text("ENVI\n")
    (tmp_path / "scene.img").write_bytes(b"\0" * 16)
    with pytest.raises(HsiclsError, match="the input"):
        check_output(tmp_path / "scene.img", True, inputs=[tmp_path / "scene.hdr"])
    with pytest.raises(HsiclsError, match="the input"):
        check_output(tmp_path / "scene.hdr", True, inputs=[tmp_path / "scene.img"])
    assert check_output(tmp_path / "map.hdr", True, inputs=[tmp_path / "scene.img"]) == tmp_path / "map.hdr"


# --------------------------------------------------------------------------- [hardening-2], beyond the table
def test_a_link_planted_at_the_temporary_name_is_not_written_through(tmp_path):
    """The temporary name (``.<name>.<pid>.tmp``) is reserved with O_EXCL | O_NOFOLLOW after any link there is
    removed: the victim keeps its bytes and the output is written."""
    from hsicls.io.atomic import atomic_output, temp_name

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out.json"
    os.symlink(victim, temp_name(out))
    with atomic_output(out) as tmp:
        with open(tmp, "w") as f:
            f.write("{}")
    assert victim.read_bytes() == b"precious" and out.read_text() == "{}" and not out.is_symlink()


def test_a_closed_stderr_does_not_stop_training_before_its_bundle(assets, tmp_path):
    """``hsicls train ... 2>&1 | head -1``: the reader leaves after one line; the job still writes its bundle."""
    shutil.copy(assets / "p.h5", tmp_path / "p.h5")
    cmd = f"{sys.executable} -m hsicls -v train p.h5 -o m.pt --epochs 3 --patch-size 3 --device cpu 2>&1 | head -1"
    p = subprocess.run(cmd, shell=True, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.stdout.count("\n") <= 1
    deadline = time.time() + 120  # the pipeline ends with head; the job may still be finishing
    while time.time() < deadline and not ((tmp_path / "m.pt").exists() and not leftovers(tmp_path)):
        time.sleep(0.2)
    assert (tmp_path / "m.pt").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize(
    "args, redirect, output",
    [
        (["sample", "labels.tif", "-o", "s.gpkg", "-n", "30"], "2>&-", "s.gpkg"),
        (["predict-map", "scene.tif", "-m", "m.pt", "-o", "map.tif"], "2>&-", "map.tif"),
        (["sample", "labels.tif", "-o", "s.gpkg", "-n", "30", "--json"], ">&-", "s.gpkg"),
        (["assess", "labels.tif", "-r", "labels.tif", "--json"], ">&-", None),
        (["datasets", "--json"], ">&-", None),
    ],
)
def test_closed_streams_behave_like_open_ones(assets, tmp_path, args, redirect, output):
    """[hardening-3] A closed stderr (``2>&-``) or stdout (``>&-``): the command does its work and exits 0,
    as with open streams (its messages are lost, as the caller asked); no traceback."""
    import shlex

    for name in ("labels.tif", "scene.tif", "m.pt"):
        shutil.copy(assets / name, tmp_path / name)
    cmd = " ".join(shlex.quote(c) for c in [sys.executable, "-m", "hsicls", *args]) + " " + redirect
    r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    if output:
        assert (tmp_path / output).exists() and not leftovers(tmp_path)
