"""GPU figures: model-only map inference, training speed and end-to-end predict-map on CUDA.

    python bench/gpu.py [--model md2f-mamba] [--out bench/out/gpu.json]

1. Model time for a Pavia-University-size scene (610 x 340 = 207,400 px, 30 PCA bands, 13 x 13
   patches, 9 classes): every pixel's patch gathered on the GPU from one padded tensor and
   classified in batches, fp32 and bf16 autocast, after one warm-up pass; CUDA synchronised
   before the clock stops. The issue's goal: under 1 s.
2. Training speed at the Pavia-size training set (2,138 patches, batch 64, Adam): samples/s and
   seconds per epoch, fp32 and bf16 autocast.
3. ``hsicls predict-map`` end to end (reading, PCA, inference, writing) on a 610 x 340 x 200
   GeoTIFF tiled from Indian Pines, with a bundle trained for 2 epochs on Indian Pines.
Needs a CUDA GPU and ../shared/data (or HSICLS_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_map import DATA, build_scene  # noqa: E402

from hsicls.engine.patches import gather_patches, pad_cube  # noqa: E402
from hsicls.models import create_model  # noqa: E402
from hsicls.stages.train import batch_bounds  # noqa: E402

H, W, BANDS, P, K = 610, 340, 30, 13, 9


def sync() -> None:
    torch.cuda.synchronize()


def map_model_time(name: str, precision: str, batch: int) -> dict:
    dev = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = create_model(name, in_bands=BANDS, n_classes=K, patch_size=P).to(dev).eval()
    padded = pad_cube(torch.randn(BANDS, H, W, device=dev), P)
    rows, cols = torch.meshgrid(torch.arange(H, device=dev), torch.arange(W, device=dev), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    out = torch.empty(H * W, dtype=torch.long, device=dev)

    def run() -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            for s in range(0, H * W, batch):
                out[s : s + batch] = model(gather_patches(padded, rows[s : s + batch], cols[s : s + batch], P)).argmax(1)

    run()
    sync()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t)
    best = min(times)
    return {
        "model": name,
        "precision": precision,
        "batch": batch,
        "pixels": H * W,
        "seconds": best,
        "pixels_per_s": H * W / best,
        "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20,
    }


def train_speed(name: str, precision: str, epochs: int = 5) -> dict:
    dev = torch.device("cuda")
    rng = np.random.default_rng(0)
    padded = pad_cube(torch.from_numpy(rng.standard_normal((BANDS, H, W)).astype(np.float32)), P).to(dev)
    idx = torch.as_tensor(rng.choice(H * W, 2138, replace=False), device=dev)
    rows, cols = idx // W, idx % W
    y = torch.as_tensor(rng.integers(0, K, 2138), device=dev)
    torch.manual_seed(0)
    model = create_model(name, in_bands=BANDS, n_classes=K, patch_size=P).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    gen = torch.Generator().manual_seed(0)

    def epoch() -> None:
        order = torch.randperm(len(rows), generator=gen).to(dev)
        for lo, hi in batch_bounds(len(rows), 64):
            b = order[lo:hi]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = torch.nn.functional.cross_entropy(model(gather_patches(padded, rows[b], cols[b], P)).float(), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    epoch()
    sync()
    t = time.perf_counter()
    for _ in range(epochs):
        epoch()
    sync()
    s = (time.perf_counter() - t) / epochs
    return {"model": name, "precision": precision, "train_px": 2138, "seconds_per_epoch": s, "samples_per_s": 2138 / s}


def end_to_end(tmp: Path) -> dict:
    from hsicls.stages.preprocess import PreprocessOptions, preprocess
    from hsicls.stages.train import TrainOptions, train

    scene = tmp / "pavia_size.tif"
    build_scene(scene, H, W)
    prep, bundle = tmp / "ip.h5", tmp / "m.pt"
    preprocess(DATA / "Indian_pines_corrected.npy", DATA / "Indian_pines_gt.mat", prep, PreprocessOptions(seed=0), overwrite=True)
    train(prep, bundle, TrainOptions(model="md2f-mamba", epochs=2, patch_size=P, device="cuda"), overwrite=True)
    rows = []
    for precision in ("bf16", "fp32"):
        out = tmp / f"map_{precision}.tif"
        cmd = [
            sys.executable,
            "-m",
            "hsicls",
            "-q",
            "predict-map",
            str(scene),
            "-m",
            str(bundle),
            "-o",
            str(out),
            "--device",
            "cuda",
            "--precision",
            precision,
            "--batch-size",
            "8192",
            "--window",
            "512",
            "--json",
            "--overwrite",
        ]
        t = time.perf_counter()
        summary = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout)
        rows.append(
            {
                "precision": precision,
                "wall_s_with_startup": time.perf_counter() - t,
                "seconds": summary["seconds"],
                "pixels_per_s": summary["pixels_per_second"],
                "pixels": summary["pixels"],
            }
        )
    return {"scene": f"{H}x{W}x200 GeoTIFF", "runs": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="md2f-mamba")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "gpu.json"))
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU")
    res = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "model": args.model,
        "map_model": [],
        "train": [],
        "e2e": None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps(res, indent=2))

    for precision in ("fp32", "bf16"):
        for batch in (4096, 16384):
            res["map_model"].append(map_model_time(args.model, precision, batch))
            print(res["map_model"][-1], flush=True)
            save()
    for precision in ("fp32", "bf16"):
        res["train"].append(train_speed(args.model, precision))
        print(res["train"][-1], flush=True)
        save()
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory() as tmp:
            res["e2e"] = end_to_end(Path(tmp))
        print(res["e2e"], flush=True)
        save()
    print(f"{res['gpu']}, torch {res['torch']}, {args.model}")
    print("| map model time, 207,400 px | batch | seconds | px/s |")
    print("|---|---|---|---|")
    for r in res["map_model"]:
        print(f"| {r['precision']} | {r['batch']} | {r['seconds']:.3f} | {r['pixels_per_s']:,.0f} |")
    print("| training, 2,138 patches, batch 64 | s/epoch | samples/s |")
    print("|---|---|---|")
    for r in res["train"]:
        print(f"| {r['precision']} | {r['seconds_per_epoch']:.3f} | {r['samples_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
