"""fp32 against bf16 on the CPU: model only and predict-map end to end, interleaved, with agreement.

    python bench/precision.py [--epochs 2,30,100] [--sizes 128,512] [--rounds 4] [--large-rounds 2]

1. Indian Pines, 5 % training (seed 0), md2f-mamba 13 x 13 trained ``--epochs`` epochs, one bundle
   per value (each records its bf16 error bound on the validation pixels).
2. Model only (the longest-trained bundle), batch 256, the whole Indian Pines canvas's labelled pixels: fp32, a bf16 copy of the
   network (no check), bf16 autocast, and the bf16 copy with the fp32 re-check (``bf16-checked``),
   interleaved over ``--rounds`` rounds; px/s medians, argmax agreement with fp32 on all 21,025
   pixels, the fraction re-checked.
3. ``hsicls predict-map`` end to end on ``size x size`` 200-band tiles of Indian Pines, ``--precision
   fp32`` against ``auto``, interleaved, for every bundle, with and without ``--confidence``; the two
   maps compared pixel for pixel, and what auto chose (its timed probe, its compilation) printed. The
   baseline is ``--precision fp32 --compile off`` (eager fp32); ``auto`` is every default. Before the
   512-px rows the compilation cache (a temporary ``HSICLS_CACHE``) is warmed by one ``--compile on``
   run per bundle and precision, as a second run on a machine finds it (``--cold``: not warmed).

Prints the CPU's bf16 flags: ``auto`` is fp32 on a CPU without AMX-BF16 or AVX512-BF16.
"""

from __future__ import annotations

import argparse
import os
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


def end_to_end(bundles: dict, d: Path, sizes: list[int], rounds: int, large_rounds: int, warm: bool = True) -> None:
    """``predict-map`` end to end, ``--precision auto`` against ``fp32`` run in turn (interleaved), for
    every bundle x scene size x (without, with ``--confidence``); px/s medians, the ratio, whether the
    maps are identical and what auto chose (its probe's reason)."""
    import json

    import rasterio

    print(
        "\n| bundle | scene | --confidence | fp32 eager px/s | auto px/s | auto / fp32 | maps identical | auto ran | compiled "
        "| re-checked |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        scene = d / f"scene{size}.tif"
        build_scene(scene, size)
        if size >= 512 and warm:  # a warm compilation cache (what a second run finds): one --compile on run per bundle
            for bundle in bundles.values():
                for prec in ("fp32", "auto"):
                    cmd = [sys.executable, "-m", "hsicls", "-q", "predict-map", scene, "-m", bundle, "-o", d / "warm.tif",
                           "--compile", "on", "--precision", prec, "--overwrite"]  # fmt: skip
                    subprocess.run([str(c) for c in cmd], check=True)
        n = rounds if size < 512 else large_rounds
        for i, (name, bundle) in enumerate(bundles.items()):
            # --confidence runs fp32 under auto (its values stay exact): one bundle shows it on a large scene
            for conf in (False, True) if size < 512 or i == len(bundles) // 2 else (False,):
                rates: dict = {"fp32": [], "auto": []}
                last: dict = {}
                for r in range(n):
                    for prec in list(rates) if r % 2 == 0 else list(rates)[::-1]:  # ABBA: neither always goes first
                        out = d / f"{prec}.tif"
                        extra = ["--confidence", d / f"{prec}_conf.tif"] if conf else []
                        eager = ["--compile", "off"] if prec == "fp32" else []  # the baseline: fp32, eager
                        cmd = [sys.executable, "-m", "hsicls", "-q", "predict-map", scene, "-m", bundle, "-o", out,
                               "--precision", prec, "--json", "--overwrite", *eager, *extra]  # fmt: skip
                        t = time.perf_counter()
                        res = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True)
                        rates[prec].append(size * size / (time.perf_counter() - t))
                        last[prec] = json.loads(res.stdout)
                with rasterio.open(d / "fp32.tif") as a, rasterio.open(d / "auto.tif") as b:
                    same = np.array_equal(a.read(), b.read())
                f32, auto = statistics.median(rates["fp32"]), statistics.median(rates["auto"])
                rc = last["auto"].get("rechecked_fraction")
                print(
                    f"| {name} | {size} x {size} x 200 | {'yes' if conf else 'no'} | {f32:,.0f} | {auto:,.0f} | "
                    f"**{auto / f32:.2f}x** | {same} | {last['auto']['precision']} | {last['auto'].get('compiled')} | "
                    f"{'' if rc is None else f'{100 * rc:.1f} %'} |",
                    flush=True,
                )
                reasons = f"{last['auto'].get('precision_reason')}; compile: {last['auto'].get('compile_reason')}"
                print(f"<!-- auto: {reasons} -->", flush=True)


def main() -> None:
    from hsicls.engine.runtime import cpu_flags, native_bf16_cpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", default="2,30,100", help="bundles: comma-separated epoch counts")
    ap.add_argument("--sizes", default="128,512", help="scene sides, comma-separated")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds, ABBA (model only, scenes under 512)")
    ap.add_argument("--large-rounds", type=int, default=2, help="interleaved rounds, ABBA, on scenes of 512 and more")
    ap.add_argument("--skip-model-only", action="store_true")
    ap.add_argument("--cold", action="store_true", help="no warm-up compilation before the 512-px rows")
    args = ap.parse_args()
    print(f"CPU bf16 flags: {sorted(cpu_flags() & {'amx_bf16', 'avx512_bf16', 'amx_tile'})}; native: {native_bf16_cpu()}")
    print(f"threads: {torch.get_num_threads()}, capability {torch.backends.cpu.get_cpu_capability()}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        run = lambda *a: subprocess.run([sys.executable, "-m", "hsicls", "-q", *map(str, a)], check=True)
        run("preprocess", DATA / "Indian_pines_corrected.npy", "--labels", DATA / "Indian_pines_gt.mat", "-o", d / "ip.h5")
        bundles = {}
        for e in [int(v) for v in args.epochs.split(",")]:
            run("train", d / "ip.h5", "-o", d / f"m{e}.pt", "--model", "md2f-mamba", "--epochs", e, "--seed", "0")
            bundles[f"{e} epochs"] = d / f"m{e}.pt"
        if not args.skip_model_only:
            model_only(
                next(iter(bundles.values())) if len(bundles) == 1 else list(bundles.values())[-1], d / "ip.h5", args.rounds
            )
        os.environ["HSICLS_CACHE"] = str(d / "cache")  # a compilation cache of this run's own, warmed below
        end_to_end(bundles, d, [int(v) for v in args.sizes.split(",")], args.rounds, args.large_rounds, not args.cold)


if __name__ == "__main__":
    main()
