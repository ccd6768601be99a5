"""Scaling beyond one process: predict-map and training at 1 and N ranks under torchrun.

    python bench/scale.py map   [--size 384] [--ranks 2] [--rounds 3]
    python bench/scale.py train [--epochs 3] [--ranks 2] [--rounds 3]

Each rank runs with one thread (``OMP_NUM_THREADS=1``, torchrun's own default), and the
one-process baseline too, so that N ranks on N cores are compared with one rank on one core.
Rounds are interleaved (1 rank, N ranks, control, 1 rank, ...) and medians quoted.

* ``map``: a ``size x size`` 200-band DEFLATE GeoTIFF tiled from Indian Pines, a md2f-mamba bundle
  trained for 2 epochs, ``hsicls predict-map`` end to end (launch, reading, inference, parts,
  assembly). Efficiency = throughput at N / (N x throughput at 1). The assembly share is the
  assembling rank's ``assembly_seconds`` over the wall time. The control runs N independent
  one-process maps at once: what this machine gives N processes at all (shared caches, memory
  bandwidth, hyper-threads), the ceiling any distribution can reach here.
* ``train``: Indian Pines 5 %, md2f-mamba 13 x 13, ``--epochs E`` at batch 64; training samples/s
  from the epoch times in the bundle's log, at 1 rank, N ranks with DDP (global batch 64) and
  ``--runs N --runs-parallel`` (N independent runs, one per rank).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from predict_map import DATA, build_scene  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def hsicls(*args, ranks: int = 1) -> tuple[float, str]:
    """Run ``hsicls ARGS`` (under torchrun when ``ranks`` > 1); wall seconds and stdout."""
    args = [str(a) for a in args]
    cmd = [sys.executable, "-m", "hsicls", *args]
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", "-m", "hsicls", *args]
    t = time.perf_counter()
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return time.perf_counter() - t, p.stdout


def together(commands: list[list[str]]) -> float:
    """Start every command at once; wall seconds until the last ends."""
    t = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-m", "hsicls", *map(str, c)], env=ENV, stdout=subprocess.DEVNULL) for c in commands
    ]
    if any(p.wait() != 0 for p in procs):
        sys.exit("a control run failed")
    return time.perf_counter() - t


def bench_map(args, d: Path) -> dict:
    scene = d / "scene.tif"
    build_scene(scene, args.size)
    _prepare(d)
    hsicls("train", d / "ip.h5", "-o", d / "m.pt", "--model", "md2f-mamba", "--epochs", "2", "--seed", "0")
    px = args.size * args.size
    rows = {"1 rank": [], f"{args.ranks} ranks": [], "control": []}
    rows.update({"1 rank, inside the process": [], f"{args.ranks} ranks, inside the group": []})
    rows["assembly share"] = []
    for r in range(args.rounds):
        out = d / f"one{r}.tif"
        wall, stdout = hsicls("predict-map", scene, "-m", d / "m.pt", "-o", out, "--json")
        rows["1 rank"].append(px / wall)
        rows["1 rank, inside the process"].append(px / json.loads(stdout)["seconds"])
        wall, stdout = hsicls("predict-map", scene, "-m", d / "m.pt", "-o", d / f"n{r}.tif", "--json", ranks=args.ranks)
        rows[f"{args.ranks} ranks"].append(px / wall)
        summary = json.loads(stdout)
        rows["assembly share"].append(summary["assembly_seconds"] / wall)
        # without torchrun's start (agent, workers importing torch, joining the group): the slowest rank's time
        rows[f"{args.ranks} ranks, inside the group"].append(px / max(r["seconds"] for r in summary["ranks"]))
        wall = together([["predict-map", scene, "-m", d / "m.pt", "-o", d / f"c{r}_{i}.tif"] for i in range(args.ranks)])
        rows["control"].append(args.ranks * px / wall)
        for f in d.glob("*.tif"):
            if f != scene:
                f.unlink()
    return rows


def bench_train(args, d: Path) -> dict:
    _prepare(d)
    n_train = _train_pixels(d / "ip.h5")
    common = ["--model", "md2f-mamba", "--epochs", args.epochs, "--batch-size", "64", "--seed", "0", "--overwrite"]
    rows = {"1 rank": [], f"DDP {args.ranks} ranks": [], f"runs-parallel {args.ranks} ranks": []}
    for _ in range(args.rounds):
        wall, _ = hsicls("train", d / "ip.h5", "-o", d / "a.pt", *common)
        rows["1 rank"].append(n_train * args.epochs / _epoch_seconds(d / "a.pt", wall))
        wall, _ = hsicls("train", d / "ip.h5", "-o", d / "b.pt", *common, ranks=args.ranks)
        rows[f"DDP {args.ranks} ranks"].append(n_train * args.epochs / _epoch_seconds(d / "b.pt", wall))
        wall, _ = hsicls(
            "train", d / "ip.h5", "-o", d / "c.pt", *common, "--runs", args.ranks, "--runs-parallel", ranks=args.ranks
        )
        # the runs train side by side: all their samples over the slowest run's training time
        runs = [(d / f"c.pt.run{i}.h5", d / f"c.pt.run{i}.pt") for i in range(args.ranks)]
        samples = sum(_train_pixels(h5) * args.epochs for h5, _ in runs)
        rows[f"runs-parallel {args.ranks} ranks"].append(samples / max(_epoch_seconds(pt, wall) for _, pt in runs))
    return rows


def _prepare(d: Path) -> None:
    """Indian Pines, 5 % training (the project's default split), PCA to 30."""
    gt = DATA / "Indian_pines_gt.mat"
    hsicls("preprocess", DATA / "Indian_pines_corrected.npy", "--labels", gt, "-o", d / "ip.h5", "--seed", "0")


def _train_pixels(prepared: Path) -> int:
    from hsicls.artifacts.prepared import load_prepared

    return int(load_prepared(prepared).train.sum())


def _epoch_seconds(bundle: Path, wall: float) -> float:
    log = Path(str(bundle) + ".log.jsonl")
    try:
        return sum(json.loads(ln)["seconds"] for ln in log.read_text().splitlines() if '"epoch"' in ln)
    except (OSError, KeyError, ValueError):
        return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["map", "train"])
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = (bench_map if args.what == "map" else bench_train)(args, Path(tmp))
    base = statistics.median(rows["1 rank"])
    inside = statistics.median(rows.get("1 rank, inside the process") or rows["1 rank"])
    print(f"| {args.what} | median | min | max | efficiency vs 1 rank |")
    print("|---|---|---|---|---|")
    for name, vals in rows.items():
        med = statistics.median(vals)
        ref = inside if "inside" in name else base
        eff = "" if name.startswith("1 rank") or name == "assembly share" else f"{med / (args.ranks * ref):.2f}"
        fmt = (lambda v: f"{100 * v:.2f} %") if name == "assembly share" else (lambda v: f"{v:,.0f}")
        print(f"| {name} | {fmt(med)} | {fmt(min(vals))} | {fmt(max(vals))} | {eff} |")


if __name__ == "__main__":
    main()
