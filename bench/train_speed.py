"""Training speed: our data path vs a per-sample Dataset/DataLoader loop, same model and batch.

    python bench/train_speed.py [--model md2f-mamba] [--device cpu]

Ours: patches gathered on the fly from one padded tensor with one vectorised index per batch.
Naive: a torch Dataset whose ``__getitem__`` slices one patch (as the field's public code does),
batched by a DataLoader (batch 64, shuffled, no workers). Both run forward + backward + Adam on
the same model. Reports training samples/s, and seconds per epoch (training + validation
inference) for Indian Pines (5 % split, 20 % of it validation) and for a Pavia-University-size
training set (2,138 patches of 30 bands, 13 x 13, on a 610 x 340 grid).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from hsicls.engine.inference import Runner
from hsicls.engine.patches import gather_patches, pad_cube
from hsicls.engine.runtime import resolve_device, tune_allocator
from hsicls.models import create_model
from hsicls.stages.train import batch_bounds

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HSICLS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "indian_pines"


class PatchDataset(torch.utils.data.Dataset):
    """The naive per-sample path: one Python call and one small copy per patch."""

    def __init__(self, padded: np.ndarray, rows, cols, y, p):
        self.padded, self.rows, self.cols, self.y, self.p = padded, rows, cols, y, p

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        r, c = self.rows[i], self.cols[i]
        return torch.from_numpy(self.padded[:, r : r + self.p, c : c + self.p].copy()), int(self.y[i])


def epoch_ours(model, opt, padded, rows, cols, y, p, bs, gen):
    model.train()
    order = torch.randperm(len(rows), generator=gen)
    for lo, hi in batch_bounds(len(rows), bs):
        idx = order[lo:hi]
        loss = torch.nn.functional.cross_entropy(model(gather_patches(padded, rows[idx], cols[idx], p)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def epoch_naive(model, opt, loader):
    model.train()
    for x, y in loader:
        if x.shape[0] < 2:
            continue
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def measure(name, cube, train_mask, labels, val_mask, args, device):
    p = 13
    cube_t = torch.from_numpy(np.ascontiguousarray(cube.transpose(2, 0, 1)))
    padded = pad_cube(cube_t, p).to(device)
    rows, cols = (torch.as_tensor(a, device=device) for a in np.nonzero(train_mask))
    y = torch.as_tensor(labels[train_mask] - 1, dtype=torch.long, device=device)
    vr, vc = (torch.as_tensor(a, device=device) for a in np.nonzero(val_mask))
    k = int(labels.max())
    torch.manual_seed(0)
    model = create_model(args.model, in_bands=cube.shape[2], n_classes=k, patch_size=p).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    gen = torch.Generator().manual_seed(0)
    epoch_ours(model, opt, padded, rows, cols, y, p, 64, gen)  # warm-up
    t = time.perf_counter()
    for _ in range(args.epochs):
        epoch_ours(model, opt, padded, rows, cols, y, p, 64, gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ours = (time.perf_counter() - t) / args.epochs
    t = time.perf_counter()
    if len(vr):
        Runner(padded.device, False, 1024).classes(model, padded, vr, vc, p)
    val_s = time.perf_counter() - t
    ds = PatchDataset(padded.cpu().numpy(), rows.cpu().numpy(), cols.cpu().numpy(), y.cpu().numpy(), p)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
    t = time.perf_counter()
    epoch_naive(model, opt, loader)  # one epoch is enough for the slow path
    naive = time.perf_counter() - t
    n = len(rows)
    return {
        "setting": name,
        "train_px": n,
        "val_px": len(vr),
        "ours_samples_per_s": n / ours,
        "naive_samples_per_s": n / naive,
        "ours_epoch_s": ours + val_s,
        "naive_epoch_s": naive + val_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="md2f-mamba")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    tune_allocator()
    device = resolve_device(args.device)
    from hsicls.io.readers import read_cube, read_labels
    from hsicls.science.splits import stratified_split
    from hsicls.stages.preprocess import fit_preprocessing

    scene = read_cube(DATA / "Indian_pines_corrected.npy")
    labels = read_labels(DATA / "Indian_pines_gt.mat")
    valid = scene.valid_mask()
    prep = fit_preprocessing(scene.data, valid, 30, 0)
    cube = prep.apply(scene.data)
    tr, va, _ = stratified_split(labels, 0.05, 0.2, 0)
    rows = [measure("Indian Pines 5 %", cube, tr, labels, va, args, device)]
    rng = np.random.default_rng(0)
    pu = rng.standard_normal((610, 340, 30)).astype(np.float32)
    pu_labels = rng.integers(1, 10, (610, 340)).astype(np.int32)
    pu_train = np.zeros((610, 340), bool)
    pu_train.ravel()[rng.choice(610 * 340, 2138, replace=False)] = True
    rows.append(measure("Pavia-U size (2,138 patches)", pu, pu_train, pu_labels, np.zeros_like(pu_train), args, device))
    print(f"{args.model}, batch 64, 13x13 patches, 30 bands, device {device.type}, {torch.get_num_threads()} threads")
    print("| setting | train px | ours samples/s | naive samples/s | speed-up | ours s/epoch (train + val) | naive s/epoch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['train_px']} | {r['ours_samples_per_s']:,.0f} | {r['naive_samples_per_s']:,.0f} | "
            f"{r['ours_samples_per_s'] / r['naive_samples_per_s']:.2f}x | {r['ours_epoch_s']:.2f} | {r['naive_epoch_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
