"""Training step speed by model and execution mode, interleaved round by round on one machine.

    python bench/train_step.py [--models md2f-mamba,ssftt] [--modes eager,bf16,compiled] [--rounds 5] [--steps 15]

One step = gather nothing (a fixed random batch), forward, cross-entropy, backward, AdamW step: the part of
``hsicls train`` that the model decides (the data path is measured by ``bench/train_speed.py``). Modes:

* ``eager``: fp32, as ``hsicls train`` runs today on the CPU;
* ``bf16``: ``torch.autocast(bfloat16)`` around forward and loss (``--precision bf16``);
* ``compiled``: ``torch.compile`` (Inductor) of the network, fp32; its compilation time is printed apart;
* ``compiled-bf16``: both.

Each round runs every (model, mode) pair for ``--steps`` timed steps after two warm-up steps, in turn, so drifts of
a shared machine fall on all of them alike; the table gives the median over rounds and the ratio to the ``ssftt``
entry's eager rate. ``--profile MODEL`` prints the top operators of one eager step instead.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hsicls.engine.runtime import cpu_flags
from hsicls.models import create_model


def make_step(model_name: str, mode: str, bands: int, patch: int, classes: int, batch: int, seed: int = 0):
    torch.manual_seed(seed)
    net = create_model(model_name, in_bands=bands, n_classes=classes, patch_size=patch)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, bands, patch, patch)
    y = torch.randint(0, classes, (batch,))
    fwd = net
    t_compile = 0.0
    if mode.startswith("compiled"):
        fwd = torch.compile(net)
    bf16 = mode.endswith("bf16")

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if mode.startswith("compiled"):
        t0 = time.perf_counter()
        step()
        t_compile = time.perf_counter() - t0
    for _ in range(2):
        step()
    return step, t_compile


def rate(step, steps: int, batch: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="md2f-mamba,ssftt")
    ap.add_argument("--modes", default="eager,bf16,compiled")
    ap.add_argument("--bands", type=int, default=30)
    ap.add_argument("--patch", type=int, default=13)
    ap.add_argument("--classes", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--profile", default=None, help="print the top operators of one eager step of this model")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.profile:
        step, _ = make_step(a.profile, "eager", a.bands, a.patch, a.classes, a.batch)
        with torch.profiler.profile() as prof:
            for _ in range(5):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        return
    flags = sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags: {' '.join(flags)}")
    pairs = [(m, mode) for m in a.models.split(",") for mode in a.modes.split(",")]
    steps = {}
    for m, mode in pairs:
        steps[m, mode], tc = make_step(m, mode, a.bands, a.patch, a.classes, a.batch)
        if tc:
            print(f"{m} {mode}: first step (compilation) {tc:.1f} s")
    rates = {p: [] for p in pairs}
    for r in range(a.rounds):
        for p in pairs:
            rates[p].append(rate(steps[p], a.steps, a.batch))
        print(f"round {r + 1}: " + ", ".join(f"{m}/{mode} {rates[m, mode][-1]:,.0f}" for m, mode in pairs), flush=True)
    ref = statistics.median(rates.get(("ssftt", "eager"), [float("nan")]))
    print("\n| model | mode | samples/s median (min-max) | vs ssftt eager |\n|---|---|---|---|")
    for m, mode in pairs:
        v = rates[m, mode]
        print(f"| {m} | {mode} | {statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f}) | {statistics.median(v) / ref:.2f}x |")


if __name__ == "__main__":
    main()
