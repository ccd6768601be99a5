"""Model cost: parameters, MACs/FLOPs (torch.utils.flop_counter) and CPU throughput.

    python bench/model_cost.py [--bands 30 --patch 13 --classes 9 --batch 1024]

Reports, at the Pavia University configuration by default, parameters per component, MACs and
FLOPs per sample, inference pixels/s (batch of patches, eval mode, fp32) and training
samples/s (forward + backward + Adam step, batch 64), next to the machine's fp32 matmul rate
(torch.mm 2048 x 2048) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from hsicls.engine.runtime import tune_allocator
from hsicls.models import create_model, list_models
from hsicls.models.complexity import count_flops, count_params, params_per_child


def timeit(fn, repeat: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bands", type=int, default=30)
    ap.add_argument("--patch", type=int, default=13)
    ap.add_argument("--classes", type=int, default=9)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    mm_gflops = 2 * 2048**3 / timeit(lambda: torch.mm(a, b), 5) / 1e9
    rows = []
    for name in list_models(kind="deep"):
        m = create_model(name, in_bands=args.bands, n_classes=args.classes, patch_size=args.patch)
        cost = count_flops(m, args.bands, args.patch)
        x = torch.randn(args.batch, args.bands, args.patch, args.patch)
        m.eval()
        with torch.no_grad():
            infer = args.batch / timeit(lambda m=m, x=x: m(x), 3)
        m.train()
        opt = torch.optim.Adam(m.parameters())
        xb, yb = torch.randn(64, args.bands, args.patch, args.patch), torch.randint(0, args.classes, (64,))

        def step(m=m, xb=xb, yb=yb, opt=opt):
            loss = torch.nn.functional.cross_entropy(m(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()

        train = 64 / timeit(step, 10)
        rows.append(
            {
                "model": name,
                "params": count_params(m),
                "params_per_component": params_per_child(m),
                "macs": cost["macs"],
                "flops": cost["flops"],
                "infer_px_per_s": infer,
                "train_samples_per_s": train,
                "achieved_gflops": infer * cost["flops"] / 1e9,
            }
        )
    out = {
        "config": vars(args),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "mm_gflops": mm_gflops,
        "models": rows,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"bands {args.bands}, patch {args.patch}, classes {args.classes}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; torch.mm 2048^2: {mm_gflops:.1f} GFLOP/s"
    )
    print("| model | params | MACs | FLOPs | inference px/s | achieved GFLOP/s | training samples/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['params']:,} | {r['macs'] / 1e6:.2f}M | {r['flops'] / 1e6:.2f}M | "
            f"{r['infer_px_per_s']:,.0f} | {r['achieved_gflops']:.1f} | {r['train_samples_per_s']:,.0f} |"
        )
        print("  per component: " + ", ".join(f"{k} {v:,}" for k, v in r["params_per_component"].items()))


if __name__ == "__main__":
    main()
