"""Full-scene maps against the field's public code, on one 512 x 512 x 200 scene, interleaved round by round.

    pip install einops tqdm                      # what the peers' code imports (not hsicls dependencies)
    git clone https://github.com/zgr6010/HSI_SSFTT /tmp/peers/HSI_SSFTT
    git clone https://github.com/nshaud/DeepHyperX /tmp/peers/DeepHyperX
    python bench/peers.py --ssftt /tmp/peers/HSI_SSFTT --deephyperx /tmp/peers/DeepHyperX [--rounds 2] [--epochs 30]

The peers' code is imported from those folders as published, never copied into this repository; modules they import
only to plot or to log (seaborn, spectral, visdom) are replaced by empty stand-ins.

* **hsicls**: ``hsicls predict-map SCENE -m BUNDLE -o map.tif`` with every default (``--precision auto``,
  ``--compile auto``), as a subprocess: the interpreter's start, reading the GeoTIFF, writing the map GeoTIFF and its
  sidecars are all in the time. Bundles (``--bundles``): md2f-mamba (``--epochs`` epochs), the default ``--model
  auto`` ensemble, and hsicls's ``ssftt`` entry (SSFTT's network through hsicls's pipeline: the pipelines compared at
  equal network), trained on Indian Pines (preprocess defaults).
* **SSFTT, original code** (Sun et al. 2022, ``cls_SSFTT_IP``): its own pipeline for a map, in this process: the scene
  read into an array, ``applyPCA`` (30 whitened components), ``createImageCubes`` (13 x 13, ``removeZeroLabels=False``,
  by strips of 128 rows so the float64 patch array stays a few GB), its ``TestDS`` / ``DataLoader`` (batch 64) and its
  ``test`` loop with its published Indian Pines weights (``cls_params/SSFTTnet_params.pth``).
* **DeepHyperX ``li``** (Li et al. 2017, 3-D CNN): the scene min-max normalised as its ``get_dataset`` does, then its
  ``models.test`` (sliding window, patch 5, batch 100, centre pixel), argmax; untrained weights (speed does not
  depend on them).

Prints px/s per round and the medians, and the ratios hsicls / peer.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from predict_map import DATA, build_scene  # noqa: E402


def _stand_ins(*names: str) -> None:
    """Empty modules for imports the peers use only to plot or log."""
    for name in names:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError:
                sys.modules[name] = types.ModuleType(name)


def _read(scene: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(scene) as ds:
        return ds.read().transpose(1, 2, 0)  # (H, W, B)


def ssftt_runner(folder: Path):
    code = folder / "cls_SSFTT_IP"
    _stand_ins("torchvision", "PIL")
    sys.path.insert(0, str(code))
    cwd_train = importlib.import_module("IP_train")  # defines applyPCA, createImageCubes, TestDS, test via get_cls_map
    net_mod = importlib.import_module("SSFTTnet")
    cls_map = importlib.import_module("get_cls_map")
    net = net_mod.SSFTTnet()
    net.load_state_dict(torch.load(code / "cls_params" / "SSFTTnet_params.pth", map_location="cpu", weights_only=True))
    net.eval()

    def run(scene: Path) -> int:
        x = _read(scene)
        h, w = x.shape[:2]
        x_pca = cwd_train.applyPCA(x, numComponents=30)
        pred = []
        strip, m = 128, 6
        for r0 in range(0, h, strip):  # createImageCubes over strips with their halo, the halo's patches dropped
            lo, hi = max(r0 - m, 0), min(r0 + strip + m, h)
            patches, labels = cwd_train.createImageCubes(x_pca[lo:hi], np.zeros((hi - lo, w)), 13, removeZeroLabels=False)
            keep = slice((r0 - lo) * w, (r0 - lo + min(strip, h - r0)) * w)
            patches, labels = patches[keep], labels[keep]
            patches = patches.reshape(-1, 13, 13, 30, 1).transpose(0, 4, 3, 1, 2)
            loader = torch.utils.data.DataLoader(cwd_train.TestDS(patches, labels), batch_size=64, shuffle=False)
            y_pred, _ = cls_map.test("cpu", net, loader)
            pred.append(y_pred)
        return int(np.concatenate(pred).size)

    return run


def li_runner(folder: Path):
    _stand_ins("seaborn", "spectral", "visdom")
    quiet = types.ModuleType("tqdm")  # its progress bar only: no terminal output in the timed loop
    quiet.tqdm = lambda iterable, **kw: iterable
    sys.modules["tqdm"] = quiet
    sys.path.insert(0, str(folder))
    models = importlib.import_module("models")
    net = models.LiEtAl(200, 17, n_planes=16, patch_size=5)
    hyper = {"patch_size": 5, "center_pixel": True, "batch_size": 100, "device": "cpu", "n_classes": 17, "test_stride": 1}

    def run(scene: Path) -> int:
        img = np.asarray(_read(scene), dtype="float32")
        img = (img - np.min(img)) / (np.max(img) - np.min(img))  # datasets.get_dataset's normalisation
        probs = models.test(net, img, hyper)
        return int(probs.argmax(-1).size)

    return run


def hsicls_runner(bundle: Path, out: Path, pixels: int):
    def run(scene: Path) -> int:
        cmd = [sys.executable, "-m", "hsicls", "-q", "predict-map", scene, "-m", bundle, "-o", out, "--overwrite"]
        subprocess.run([str(c) for c in cmd], check=True)
        return pixels

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ssftt", type=Path, required=True, help="a checkout of github.com/zgr6010/HSI_SSFTT")
    ap.add_argument("--deephyperx", type=Path, required=True, help="a checkout of github.com/nshaud/DeepHyperX")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=30, help="md2f-mamba's epochs (alone, and in the auto ensemble)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument(
        "--bundles",
        default="md2f-mamba,auto,ssftt",
        help="hsicls models to train on Indian Pines and map with (auto: the default)",
    )
    a = ap.parse_args()
    from hsicls.engine.runtime import cpu_flags

    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags {' '.join(flags)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        scene = d / "scene.tif"
        build_scene(scene, a.size)
        cli = lambda *x: subprocess.run([sys.executable, "-m", "hsicls", "-q", *map(str, x)], check=True)  # noqa: E731
        cli("preprocess", DATA / "Indian_pines_corrected.npy", "--labels", DATA / "Indian_pines_gt.mat", "-o", d / "ip.h5")
        runners = {}
        for m in a.bundles.split(","):
            cli("train", d / "ip.h5", "-o", d / f"{m}.pt", "--model", m, "--epochs", a.epochs, "--seed", "0")
            runners[f"hsicls {m}"] = hsicls_runner(d / f"{m}.pt", d / f"{m}.tif", a.size * a.size)
        runners["SSFTT original"] = ssftt_runner(a.ssftt)
        runners["DeepHyperX li"] = li_runner(a.deephyperx)
        rates = {k: [] for k in runners}
        for r in range(a.rounds):
            order = list(runners) if r % 2 == 0 else list(runners)[::-1]
            for k in order:
                t0 = time.perf_counter()
                n = runners[k](scene)
                rates[k].append(n / (time.perf_counter() - t0))
                print(f"round {r + 1}: {k} {rates[k][-1]:,.0f} px/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n| pipeline ({a.size} x {a.size} x 200) | px/s median (min-max) |\n|---|---|")
    for k, v in rates.items():
        print(f"| {k} | {med[k]:,.0f} ({min(v):,.0f}-{max(v):,.0f}) |")
    peers = [k for k in rates if not k.startswith("hsicls")]
    print("\n| hsicls bundle | " + " | ".join(f"vs {p}" for p in peers) + " |\n|---|" + "---|" * len(peers))
    for k in (k for k in rates if k.startswith("hsicls")):
        print(f"| {k} | " + " | ".join(f"{med[k] / med[p]:.2f}x" for p in peers) + " |")


if __name__ == "__main__":
    main()
