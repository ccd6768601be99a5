"""fp32 against bf16 on the CPU: model only and predict-map end to end, interleaved, with agreement.

    python bench/precision.py [--epochs 30] [--size 256] [--rounds 5]

1. Indian Pines, 5 % training (seed 0), md2f-mamba 13 x 13 trained ``--epochs`` epochs (the bundle
   records its bf16 error bound on the validation pixels).
2. Model only, batch 256, the whole Indian Pines canvas's labelled pixels: fp32, a bf16 copy of the
   network (no check), bf16 autocast, and the bf16 copy with the fp32 re-check (``bf16-checked``),
   interleaved over ``--rounds`` rounds; px/s medians, argmax agreement with fp32 on all 21,025
   pixels, the fraction re-checked.
3. ``hsicls predict-map`` end to end on a ``size x size`` 200-band tile of Indian Pines, ``--precision
   fp32`` against ``auto``, interleaved; the two maps compared pixel for pixel.

Prints the CPU's bf16 flags: ``auto`` is fp32 on a CPU without AMX-BF16 or AVX512-BF16.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from predict_map import DATA, build_scene  # noqa: E402


def model_only(bundle_path: Path, prep_path: Path, rounds: int) -> None:
    from hsicls.artifacts.bundle import load_bundle
    from hsicls.artifacts.prepared import load_prepared
    from hsicls.engine.inference import Runner

    bundle, prep = load_bundle(bundle_path), load_prepared(prep_path)
    model, patch = bundle.build_model(), bundle.model.patch_size
    padded = prep.padded(patch, bundle.model.padding)
    rows, cols = np.nonzero(np.ones(prep.labels.shape, bool))
    rr, cc = torch.as_tensor(prep.padded_rows(rows, patch)), torch.as_tensor(cols)
    err = bundle.training["bf16_error"]
    cpu = torch.device("cpu")
    runners = {
        "fp32": Runner(cpu, False, 256),
        "bf16 copy": Runner(cpu, False, 256, "bf16"),
        "bf16 autocast": Runner(cpu, True, 256),
        "bf16-checked": Runner(cpu, False, 256, "bf16-checked", err),
    }
    times: dict = {k: [] for k in runners}
    preds: dict = {}
    for _ in range(rounds):
        for name, r in runners.items():
            r.stats.update(pixels=0, rechecked=0)
            t = time.perf_counter()
            preds[name] = r.classes(model, padded, rr, cc, patch)
            times[name].append(rows.size / (time.perf_counter() - t))
    base = statistics.median(times["fp32"])
    print(f"model only, {rows.size} px, bf16 error bound {err:.2e}")
    print("| form | px/s median | vs fp32 | argmax = fp32 | re-checked |")
    print("|---|---|---|---|---|")
    for name, r in runners.items():
        agree = float((preds[name] == preds["fp32"]).float().mean())
        rc = r.rechecked_fraction
        print(
            f"| {name} | {statistics.median(times[name]):,.0f} | {statistics.median(times[name]) / base:.2f}x | "
            f"{100 * agree:.3f} % | {'' if rc is None else f'{100 * rc:.2f} %'} |"
        )


def end_to_end(bundle: Path, d: Path, size: int, rounds: int) -> None:
    import rasterio

    scene = d / "scene.tif"
    build_scene(scene, size)
    rates: dict = {"fp32": [], "auto": []}
    for r in range(rounds):
        for prec in rates:
            out = d / f"{prec}{r}.tif"
            t = time.perf_counter()
            cmd = [sys.executable, "-m", "hsicls", "-q", "predict-map", scene, "-m", bundle, "-o", out, "--precision", prec]
            subprocess.run([str(c) for c in cmd], check=True)
            rates[prec].append(size * size / (time.perf_counter() - t))
    with rasterio.open(d / "fp320.tif") as a, rasterio.open(d / "auto0.tif") as b:
        same = np.array_equal(a.read(), b.read())
    base = statistics.median(rates["fp32"])
    print(f"\npredict-map end to end, {size} x {size} x 200 px, {rounds} interleaved rounds; maps identical: {same}")
    for prec, v in rates.items():
        print(f"| {prec} | {statistics.median(v):,.0f} px/s | {statistics.median(v) / base:.2f}x |")


def main() -> None:
    from hsicls.engine.runtime import cpu_flags, native_bf16_cpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"CPU bf16 flags: {sorted(cpu_flags() & {'amx_bf16', 'avx512_bf16', 'amx_tile'})}; native: {native_bf16_cpu()}")
    print(f"threads: {torch.get_num_threads()}, capability {torch.backends.cpu.get_cpu_capability()}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        run = lambda *a: subprocess.run([sys.executable, "-m", "hsicls", "-q", *map(str, a)], check=True)
        run("preprocess", DATA / "Indian_pines_corrected.npy", "--labels", DATA / "Indian_pines_gt.mat", "-o", d / "ip.h5")
        run("train", d / "ip.h5", "-o", d / "m.pt", "--epochs", args.epochs, "--seed", "0")
        model_only(d / "m.pt", d / "ip.h5", args.rounds)
        end_to_end(d / "m.pt", d, args.size, max(2, args.rounds // 2))


if __name__ == "__main__":
    main()
