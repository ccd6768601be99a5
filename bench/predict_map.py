"""predict-map throughput and memory on a large scene, next to a naive per-pixel loop.

    python bench/predict_map.py [--size 1000] [--batch 256] [--naive-pixels 20000]

1. A ``size x size`` GeoTIFF (200 bands, int16, EPSG:32616) is built by tiling the real Indian
   Pines cube (mirrored at tile joins), written window by window.
2. A md2f-mamba bundle is trained briefly on Indian Pines (accuracy is irrelevant here).
3. ``hsicls predict-map`` runs as a child process; wall time and peak RSS (getrusage) are
   measured end to end: reading, preprocessing, inference and writing included.
4. The naive loop, in the same run: a per-pixel patch Dataset (one ``__getitem__`` per pixel,
   as in the field's public code) over the preprocessed, padded scene, batched by a DataLoader
   with the same model and batch size, on the first ``--naive-pixels`` pixels (model only).
5. The machine's fp32 matmul rate (torch.mm 2048 x 2048) and the achieved rate
   2 x MACs per pixel x pixels/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HSICLS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "indian_pines"


def build_scene(path: Path, size: int, width: int | None = None) -> None:
    """A ``size x (width or size)`` px, 200-band int16 GeoTIFF tiled from Indian Pines."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import Affine
    from rasterio.windows import Window

    ip = np.load(DATA / "Indian_pines_corrected.npy").astype(np.int16)  # (145, 145, 200)
    tile = np.concatenate([ip, ip[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)  # (290, 290, 200), mirrored joins
    height, width = size, width or size
    profile = dict(
        driver="GTiff",
        height=height,
        width=width,
        count=200,
        dtype="int16",
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        predictor=2,
        interleave="pixel",
        crs=CRS.from_epsg(32616),
        transform=Affine.translation(500000, 4500000) @ Affine.scale(20, -20),
    )
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, height, 256):
            for c0 in range(0, width, 256):
                h, w = min(256, height - r0), min(256, width - c0)
                rr = (np.arange(r0, r0 + h) % 290)[:, None]
                cc = (np.arange(c0, c0 + w) % 290)[None, :]
                dst.write(tile[rr, cc].transpose(2, 0, 1), window=Window(c0, r0, w, h))


def naive(model, feats: np.ndarray, patch: int, batch: int, n: int) -> float:
    """Per-pixel patches through a Dataset/DataLoader: pixels/s, model only."""
    r = patch // 2
    padded = np.pad(feats, ((r, r), (r, r), (0, 0)), mode="reflect").transpose(2, 0, 1).copy()
    h, w = feats.shape[:2]

    class Patches(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            y, x = divmod(i, w)
            return torch.from_numpy(padded[:, y : y + patch, x : x + patch].copy())

    loader = torch.utils.data.DataLoader(Patches(), batch_size=batch)
    t = time.perf_counter()
    with torch.inference_mode():
        for xb in loader:
            model(xb).argmax(1)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--naive-pixels", type=int, default=20000)
    args = ap.parse_args()
    from hsicls.artifacts.bundle import load_bundle
    from hsicls.engine.runtime import tune_allocator
    from hsicls.models.complexity import count_flops
    from hsicls.stages.preprocess import PreprocessOptions, preprocess
    from hsicls.stages.train import TrainOptions, train

    tune_allocator()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene = tmp / "big.tif"
        t = time.perf_counter()
        build_scene(scene, args.size)
        print(
            f"scene {args.size}x{args.size}x200 written in {time.perf_counter() - t:.0f} s ({scene.stat().st_size / 2**20:.0f} MiB)",
            flush=True,
        )
        prep, model_path = tmp / "ip.h5", tmp / "m.pt"
        preprocess(
            DATA / "Indian_pines_corrected.npy", DATA / "Indian_pines_gt.mat", prep, PreprocessOptions(seed=0), overwrite=True
        )
        train(prep, model_path, TrainOptions(model="md2f-mamba", epochs=2, patch_size=13, device="cpu"), overwrite=True)
        out = tmp / "map.tif"
        cmd = [
            sys.executable,
            "-m",
            "hsicls",
            "-q",
            "predict-map",
            str(scene),
            "-m",
            str(model_path),
            "-o",
            str(out),
            "--batch-size",
            str(args.batch),
            "--window",
            str(args.window),
            "--device",
            "cpu",
            "--json",
        ]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        summary = json.loads(proc.stdout.read())
        peak_rss_mib = usage.ru_maxrss / 1024
        px = args.size * args.size
        bundle = load_bundle(model_path)
        model = bundle.build_model()
        macs = count_flops(model, 30, 13)["macs"]
        # naive loop on the top rows of the same scene, preprocessed in memory
        import rasterio

        rows_needed = int(np.ceil(args.naive_pixels / args.size)) + 13
        with rasterio.open(scene) as ds:
            raw = ds.read(window=((0, rows_needed), (0, args.size)), out_dtype="float32").transpose(1, 2, 0)
        feats = bundle.preprocessing.apply(raw)
        naive_px_s = naive(model, feats, 13, args.batch, args.naive_pixels)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(5):
        torch.mm(a, b)
    mm = 2 * 2048**3 / ((time.perf_counter() - t) / 5) / 1e9
    ours = px / wall
    achieved = 2 * macs * ours / 1e9
    result = {
        "size": args.size,
        "pixels": px,
        "wall_s": wall,
        "pixels_per_s": ours,
        "peak_rss_mib": peak_rss_mib,
        "naive_pixels_per_s": naive_px_s,
        "speedup": ours / naive_px_s,
        "macs_per_pixel": macs,
        "achieved_gflops": achieved,
        "mm_gflops": mm,
        "fraction_of_mm": achieved / mm,
        "batch": args.batch,
        "window": args.window,
        "summary_pixels_per_s": summary["pixels_per_second"],
        "threads": torch.get_num_threads(),
    }
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "predict_map.json").write_text(json.dumps(result, indent=2))
    print(
        f"md2f-mamba ({macs / 1e6:.2f}M MACs/px), {args.size}x{args.size} px x 200 bands, batch {args.batch}, window {args.window}, CPU {torch.get_num_threads()} threads"
    )
    print("| path | pixels/s | peak RSS | achieved GFLOP/s | share of torch.mm rate |")
    print("|---|---|---|---|---|")
    print(
        f"| hsicls predict-map (end to end, I/O included) | {ours:,.0f} | {peak_rss_mib:,.0f} MiB | {achieved:.1f} | {100 * achieved / mm:.0f} % |"
    )
    print(
        f"| naive per-pixel Dataset/DataLoader (model only) | {naive_px_s:,.0f} | - | {2 * macs * naive_px_s / 1e9:.1f} | {100 * 2 * macs * naive_px_s / 1e9 / mm:.0f} % |"
    )
    print(f"speed-up {ours / naive_px_s:.2f}x; torch.mm 2048^2: {mm:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
