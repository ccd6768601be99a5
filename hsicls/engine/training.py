"""One training run of a deep model, as small steps (used by ``hsicls train`` and by [scale]'s
distributed runs).

Adam on cross-entropy over the training pixels' patches, gathered on the fly from one padded
tensor on the training device. :class:`TrainingRun` holds everything that changes during a
run; its steps are

* ``TrainingRun(prep, options, device)``: set-up (tensors, network, optimiser, EMA, schedule,
  seeded generators);
* :meth:`~TrainingRun.train_epoch`: one pass over the training pixels in a seeded order;
* :meth:`~TrainingRun.validate`: OA of the kept network (the EMA when on) on the validation pixels;
* :meth:`~TrainingRun.select`: keep the weights of the best validation OA, count stale epochs;
* :meth:`~TrainingRun.state_dict` / :meth:`~TrainingRun.load_state_dict`: the checkpoint and its
  inverse (a restored run continues to the same weights as an uninterrupted one);
* :meth:`~TrainingRun.result`: the selected weights and what selected them.

The test split is never looked at here.
"""

from __future__ import annotations

import random
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from hsicls.engine.distributed import World
from hsicls.engine.inference import Runner
from hsicls.engine.patches import gather_patches
from hsicls.engine.runtime import autocast, inference_batch_size
from hsicls.models import create_model

if TYPE_CHECKING:  # the stage's options, read here by attribute only (engine does not import the stages' layer)
    from hsicls.config import TrainOptions


def batch_bounds(n: int, batch_size: int, ranks: int = 1) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges covering ``n`` samples; a last batch too small to give each of the
    ``ranks`` processes two samples joins the previous batch (BatchNorm cannot train on a batch
    of one; with one rank: a lone last sample)."""
    bounds = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2 * ranks:
        bounds[-2] = (bounds[-2][0], n)
        bounds.pop()
    return bounds


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pixels(prep, mask: np.ndarray, patch_size: int, device: torch.device):
    """``(rows, cols, y)`` long tensors of the pixels of canvas ``mask``: rows and columns in the
    coordinates of ``prep.padded(patch_size)`` (so each patch comes from its own scene), ``y`` the
    0-based class."""
    rows, cols = np.nonzero(mask)
    y = prep.labels[rows, cols] - 1
    as_t = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)
    return as_t(prep.padded_rows(rows, patch_size)), as_t(cols), as_t(y)


def augment_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random horizontal flip, vertical flip and transposition: ``(N, C, P, P)``."""
    return apply_flips(x, draw_flips(x.shape[0], gen))


BRIGHTNESS = 0.1  # brightness factors are drawn in 1 +- BRIGHTNESS
NOISE_STD = 0.05  # additive Gaussian noise, in the model's input units (standardised bands or PCA axes)


def spectral_augment(x: torch.Tensor, y: torch.Tensor, kinds, offset: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Spectral augmentations of a batch of features ``x`` ``(N, C, P, P)`` with classes ``y`` ``(N,)``.

    The features are an affine map of the raw spectra, ``z = s W + b`` (standardisation and PCA,
    :meth:`~hsicls.artifacts.prepared.Preprocessing.affine`; ``offset`` is ``b`` ``(C,)``), so each
    augmentation of the raw spectrum has an exact form on ``z``:

    * ``brightness``: ``s' = a s`` with ``a ~ U(1 - 0.1, 1 + 0.1)`` per sample (illumination, DeepHyperX's
      radiation noise): ``z' = a z + (1 - a) b``;
    * ``mix``: ``s' = l s_i + (1 - l) s_j``, ``j`` another sample of the same class in the batch, ``l ~ U(0, 1)``
      (DeepHyperX's mixture noise; an affine map keeps convex mixtures): ``z' = l z_i + (1 - l) z_j``;
    * ``noise``: ``z' = z + e``, ``e ~ N(0, 0.05^2)`` per element (sensor noise, in input units).

    The draws come from ``gen`` (seeded), so a run is repeatable."""
    n = x.shape[0]
    dev, dt = x.device, x.dtype
    if "mix" in kinds and n > 1:
        key = y.cpu().double() + torch.rand(n, generator=gen, dtype=torch.float64) * 0.5  # shuffle within each class
        order = torch.argsort(key)
        cls = y.cpu()[order]
        partner = torch.empty(n, dtype=torch.long)
        start = 0
        for end in [*torch.nonzero(cls[1:] != cls[:-1]).flatten().add(1).tolist(), n]:
            block = order[start:end]
            partner[block] = block.roll(1)  # each sample mixes with the next one of its class (itself if alone)
            start = end
        lam = torch.rand(n, generator=gen).to(dev, dt)[:, None, None, None]
        x = lam * x + (1 - lam) * x[partner.to(dev)]
    if "brightness" in kinds:
        a = (1 + BRIGHTNESS * (2 * torch.rand(n, generator=gen) - 1)).to(dev, dt)[:, None, None, None]
        x = a * x + (1 - a) * offset.to(dev, dt)[None, :, None, None]
    if "noise" in kinds:
        x = x + NOISE_STD * torch.randn(x.shape, generator=gen).to(dev, dt)
    return x


def draw_flips(n: int, gen: torch.Generator) -> torch.Tensor:
    """The augmentation draws of ``n`` samples: ``(3, n)`` uniform numbers (one generator call, so
    the ranks of a distributed run draw a global batch's numbers and each takes its columns)."""
    return torch.rand(3, n, generator=gen)


def apply_flips(x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Flip horizontally, vertically and transpose the samples of ``x`` whose draw is below 0.5."""
    flips = draws.to(x.device) < 0.5
    x = torch.where(flips[0, :, None, None, None], x.flip(3), x)
    x = torch.where(flips[1, :, None, None, None], x.flip(2), x)
    return torch.where(flips[2, :, None, None, None], x.transpose(2, 3), x)


def ema_update(decay: float):
    """Bias-corrected exponential moving average for ``AveragedModel(multi_avg_fn=...)``.

    After ``n`` optimiser steps the average is ``sum_t d^(n-t) w_t / sum_t d^(n-t)`` (t = 1..n):
    step ``n`` enters with weight ``(1 - d) / (1 - d^n)`` (1 on the first step, then 1/(1+d), ...,
    tending to ``1 - d``). Unlike an average started from the first step's weights, a short run
    is averaged over its own trajectory (horizon about ``1 / (1 - d)`` steps), not held near its
    start. Integer buffers (BN's step count) take the current value."""

    @torch.no_grad()
    def update(averaged: list, current: list, num_averaged) -> None:
        n = int(num_averaged) + 1  # steps averaged once this one is in (the first one is copied)
        weight = (1 - decay) / (1 - decay**n)
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c, weight)
            else:
                a.copy_(c)

    return update


def class_weights(y: torch.Tensor, n_classes: int, how: str) -> torch.Tensor | None:
    """``balanced``: weight ``n / (K n_k)`` per class from the training labels ``y`` (0-based), so that each class
    contributes alike to the loss (scikit-learn's ``class_weight="balanced"``); a class without training pixels
    gets 0. ``none``: ``None``."""
    if how == "none":
        return None
    counts = torch.bincount(y, minlength=n_classes).to(torch.float32)
    w = torch.where(counts > 0, y.numel() / (n_classes * counts.clamp_min(1)), torch.zeros_like(counts))
    return w.to(y.device)


def make_scheduler(opt, o: TrainOptions):
    if o.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=o.epochs)
    if o.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=[max(1, o.epochs // 2), max(1, (3 * o.epochs) // 4)], gamma=0.1
        )
    return None


class TrainingRun:
    """The state of one run; see the module docstring for the steps."""

    world = World()  # one process (see DistributedTrainingRun)

    def __init__(self, prep, options: TrainOptions, device: torch.device, use_bf16: bool):
        o = self.options = options
        self.device, self.use_bf16 = device, use_bf16
        self.padded = prep.padded(o.patch_size, o.padding).to(device)  # (C, H + P - 1, W + P - 1), scenes padded apart
        self.tr = pixels(prep, prep.train, o.patch_size, device)
        self.va = pixels(prep, prep.val, o.patch_size, device)
        self.n_classes, self.in_bands = prep.n_classes, prep.cube.shape[2]
        self.model = create_model(
            o.model, in_bands=self.in_bands, n_classes=self.n_classes, patch_size=o.patch_size, **o.model_options
        )
        self.model.to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        # EMA of the weights and BN statistics: the averaged network is validated and kept.
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_update(o.ema), use_buffers=True) if o.ema else None
        self.sched = make_scheduler(self.opt, o)
        self.class_weights = class_weights(self.tr[2], self.n_classes, o.class_weighting)  # (K,) or None
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=self.class_weights, label_smoothing=o.label_smoothing)
        self.order_gen = torch.Generator(device="cpu").manual_seed(o.seed)
        self.aug_gen = torch.Generator(device="cpu").manual_seed(o.seed + 1)
        self.spec_gen = torch.Generator(device="cpu").manual_seed(o.seed + 2)
        self.offset = torch.as_tensor(prep.preprocessing.affine()[1], dtype=torch.float32)  # b of z = s W + b, (C,)
        self.bounds = batch_bounds(self.n_train, o.batch_size)
        self.val_runner = Runner(device, use_bf16, min(1024, inference_batch_size(None, device)))  # training memory is held
        self.best: dict = {"oa": -1.0, "epoch": 0, "state": None}
        self.history: list[dict] = []
        self.epoch, self.stale = 0, 0

    @property
    def n_train(self) -> int:
        return int(self.tr[0].numel())

    @property
    def n_val(self) -> int:
        return int(self.va[0].numel())

    @property
    def kept(self) -> torch.nn.Module:
        """The network that is validated and kept: the EMA when on, else the trained one."""
        return self.ema.module if self.ema is not None else self.model

    def train_epoch(self, on_batch=None) -> float:
        """One pass over the training pixels in a seeded random order; returns the mean loss. ``on_batch()``
        is called after every optimiser step (the progress within an epoch)."""
        rows, cols, y = self.tr
        self.model.train()
        order = torch.randperm(self.n_train, generator=self.order_gen).to(self.device)
        total = 0.0
        for lo, hi in self.bounds:
            idx = order[lo:hi]
            x = gather_patches(self.padded, rows[idx], cols[idx], self.options.patch_size)
            if self.options.augment:
                x = augment_batch(x, self.aug_gen)
            if self.options.spectral_augment:
                x = spectral_augment(x, y[idx], self.options.spectral_augment, self.offset, self.spec_gen)
            with autocast(self.device, self.use_bf16):
                loss = self.loss_fn(self.model(x).float(), y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            total += float(loss.detach()) * idx.numel()
            if on_batch is not None:
                on_batch()
        if self.sched is not None:
            self.sched.step()
        self.epoch += 1
        return total / self.n_train

    def validate(self) -> float | None:
        """OA of the kept network on the validation pixels (``None`` without validation split)."""
        if not self.n_val:
            return None
        rows, cols, y = self.va
        pred = self.val_runner.classes(self.kept, self.padded, rows, cols, self.options.patch_size)
        return float((pred == y).float().mean())

    def select(self, val_oa: float | None) -> None:
        """Keep the weights if ``val_oa`` is the best so far; else count one more stale epoch."""
        if val_oa is None:
            return
        if val_oa > self.best["oa"]:
            state = {k: v.detach().clone() for k, v in self.kept.state_dict().items()}
            self.best = {"oa": val_oa, "epoch": self.epoch, "state": state}
            self.stale = 0
        else:
            self.stale += 1

    def step(self, on_batch=None) -> dict:
        """Train one epoch, validate, select; returns the epoch's log record."""
        t0 = time.perf_counter()
        lr = self.opt.param_groups[0]["lr"]
        loss = self.train_epoch(on_batch)
        val_oa = self.validate()
        self.select(val_oa)
        rec = {"epoch": self.epoch, "loss": loss, "val_oa": val_oa, "lr": lr, "seconds": time.perf_counter() - t0}
        self.history.append(rec)
        return rec

    def should_stop(self) -> bool:
        """Early stopping: ``options.early_stopping`` epochs without a better validation OA."""
        return bool(self.options.early_stopping and self.n_val and self.stale >= self.options.early_stopping)

    def state_dict(self) -> dict:
        """Everything a restored run needs to continue bit for bit."""
        return {
            "format": "hsicls-checkpoint",
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "order_gen": self.order_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
            "spec_gen": self.spec_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "best_oa": self.best["oa"],
            "best_epoch": self.best["epoch"],
            "best_state": self.best["state"],
            "history": self.history,
            "stale": self.stale,
            "options": self.options.to_record(),
        }

    def load_state_dict(self, state: dict) -> None:
        """The inverse of :meth:`state_dict` (the options are checked by the caller)."""
        self.model.load_state_dict(state["model"])  # copies onto the model's device
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])  # casts the moments to the parameters' device
        if self.sched is not None and state.get("scheduler"):
            self.sched.load_state_dict(state["scheduler"])
        self.order_gen.set_state(state["order_gen"])
        self.aug_gen.set_state(state["aug_gen"])
        if "spec_gen" in state:  # checkpoints from before --spectral-augment
            self.spec_gen.set_state(state["spec_gen"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(list(state["cuda_rng"]))
        best_state = state.get("best_state")
        self.best = {
            "oa": state["best_oa"],
            "epoch": state["best_epoch"],
            "state": {k: v.to(self.device) for k, v in best_state.items()} if best_state else None,
        }
        self.history, self.stale = list(state["history"]), int(state["stale"])
        self.epoch = int(state["epoch"])

    def result(self) -> tuple[dict | None, dict]:
        """``(state_dict to keep or None for the kept network's own, selection record)``."""
        if self.best["state"] is None:
            return None, {"selection": "final", "best_epoch": self.epoch, "val_oa": None}
        return self.best["state"], {"selection": "validation", "best_epoch": self.best["epoch"], "val_oa": self.best["oa"]}


class DistributedTrainingRun(TrainingRun):
    """A :class:`TrainingRun` shared by the ranks of a ``torchrun`` group (PyTorch's own
    ``DistributedDataParallel``; gloo on the CPU, NCCL on GPUs).

    ``options.batch_size`` is the global batch. Every rank draws the same permutation and the
    same augmentation numbers from the seeded generators (so the draws do not depend on the
    number of ranks) and takes its contiguous share of each batch; each rank's loss is its sum
    over its share times ``ranks / batch``, so DDP's average of the gradients is the gradient of
    the global batch's mean loss. BatchNorm: synchronised across ranks on GPUs (SyncBatchNorm);
    on the CPU each rank normalises its share with its own batch statistics, and DDP broadcasts
    rank 0's running statistics before every forward pass (and once more after each epoch, so
    every rank validates and keeps the same network). Validation pixels are split across the
    ranks and the integer counts of correct pixels all-reduced: every rank sees the same OA,
    keeps the same epoch and stops early at the same epoch.
    """

    def __init__(self, prep, options: TrainOptions, device: torch.device, use_bf16: bool, world):
        super().__init__(prep, options, device, use_bf16)
        from torch.nn.parallel import DistributedDataParallel

        self.world = world
        if device.type == "cuda":  # the parameters stay the same objects: the optimiser and EMA keep theirs
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        # torch's per-rank "Grad strides do not match bucket view strides" is a performance hint about the layout
        # of some depthwise-convolution gradients, printed once by every rank: not a user's concern
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        self.net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.bounds = batch_bounds(self.n_train, options.batch_size, world.size)
        self.loss_sum = torch.nn.CrossEntropyLoss(
            weight=self.class_weights, label_smoothing=options.label_smoothing, reduction="sum"
        )

    def _batch_weight(self, idx: torch.Tensor) -> float:
        """The global batch's normaliser: its size, or its summed class weights (as a weighted mean's)."""
        if self.class_weights is None:
            return float(idx.numel())
        return float(self.class_weights[self.tr[2][idx]].sum())

    def _share(self, lo: int, hi: int) -> tuple[int, int]:
        n, r, k = hi - lo, self.world.rank, self.world.size
        return lo + n * r // k, lo + n * (r + 1) // k

    def train_epoch(self, on_batch=None) -> float:
        import torch.distributed as dist

        rows, cols, y = self.tr
        self.net.train()
        order = torch.randperm(self.n_train, generator=self.order_gen).to(self.device)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for lo, hi in self.bounds:
            draws = draw_flips(hi - lo, self.aug_gen) if self.options.augment else None
            a, b = self._share(lo, hi)
            idx = order[a:b]
            x = gather_patches(self.padded, rows[idx], cols[idx], self.options.patch_size)
            if draws is not None:
                x = apply_flips(x, draws[:, a - lo : b - lo])
            if self.options.spectral_augment:  # the ranks draw alike, each on its own samples
                x = spectral_augment(x, y[idx], self.options.spectral_augment, self.offset, self.spec_gen)
            with autocast(self.device, self.use_bf16):
                loss = self.loss_sum(self.net(x).float(), y[idx])
            self.opt.zero_grad(set_to_none=True)
            (loss * (self.world.size / self._batch_weight(order[lo:hi]))).backward()
            self.opt.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            total += loss.detach()
            if on_batch is not None:
                on_batch()
        for module in (self.model, self.ema):
            for buf in module.buffers() if module is not None else ():
                dist.broadcast(buf, 0)
        dist.all_reduce(total)
        if self.sched is not None:
            self.sched.step()
        self.epoch += 1
        return float(total) / self.n_train

    def validate(self) -> float | None:
        import torch.distributed as dist

        if not self.n_val:
            return None
        rows, cols, y = self.va
        a, b = self._share(0, self.n_val)
        pred = self.val_runner.classes(self.kept, self.padded, rows[a:b], cols[a:b], self.options.patch_size)
        correct = (pred == y[a:b]).sum().to(torch.int64).reshape(1)
        dist.all_reduce(correct)
        return int(correct) / self.n_val
