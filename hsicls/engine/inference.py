"""Batched inference: the one loop that runs patches through a model (evaluate, predict-map,
validation during training, benchmarks).

:class:`Runner` holds the resolved device, precision and batch size; :meth:`Runner.logits`
yields ``(slice, logits)`` per batch of pixels, each batch's patches gathered on the device from
one padded tensor (:func:`hsicls.engine.patches.gather_patches`), under bf16 autocast when asked.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from hsicls.engine.patches import gather_patches
from hsicls.engine.runtime import autocast, cpu_inference_mode, inference_batch_size, resolve_device, uses_bf16

_BF16_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# A bf16 copy's logits differ from fp32's by at most ``error x max|logit|`` per pixel (``error``
# measured on the validation pixels at train time, :func:`bf16_error`). Two logits then move
# apart by at most twice that; a pixel whose bf16 top-2 margin is below ``RECHECK_FACTOR x error x
# max|logit|`` is recomputed in fp32 (a factor 2 of safety over the worst validation pixel).
RECHECK_FACTOR = 4.0


def bf16_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A bf16 copy of ``model`` in eval mode (cached per model; the merged inference network of
    md2f-mamba folds its BatchNorms in its forward pass, in bf16 too)."""
    low = _BF16_COPIES.get(model)
    if low is None:
        low = _BF16_COPIES[model] = copy.deepcopy(model).to(torch.bfloat16).eval()
    return low


@dataclass(frozen=True)
class Runner:
    device: torch.device
    use_bf16: bool  # bf16 autocast (GPUs)
    batch_size: int
    cpu_mode: str = "fp32"  # fp32 | bf16 | bf16-checked (runtime.cpu_inference_mode)
    bf16_error: float | None = None  # the bundle's relative bf16 error (bf16-checked)
    stats: dict = field(default_factory=lambda: {"pixels": 0, "rechecked": 0}, compare=False)

    @classmethod
    def resolve(
        cls, device: str = "auto", precision: str = "auto", batch_size: int | None = None, bf16_error: float | None = None
    ) -> Runner:
        dev = resolve_device(device)
        mode = cpu_inference_mode(precision, dev, bf16_error)
        return cls(dev, uses_bf16(precision, dev), inference_batch_size(batch_size, dev), mode, bf16_error)

    def on(self, device: torch.device) -> Runner:
        """The same policy on another device (a rank's own GPU)."""
        return Runner(device, self.use_bf16, self.batch_size, self.cpu_mode, self.bf16_error)

    @property
    def precision(self) -> str:
        if self.device.type == "cpu":
            return self.cpu_mode
        return "bf16" if self.use_bf16 else "fp32"

    @property
    def rechecked_fraction(self) -> float | None:
        n = self.stats["pixels"]
        return self.stats["rechecked"] / n if self.cpu_mode == "bf16-checked" and n else None

    def _forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cpu" or self.cpu_mode == "fp32":
            with autocast(x.device, self.use_bf16):
                return model(x).float()
        out = bf16_copy(model)(x.to(torch.bfloat16)).float()
        self.stats["pixels"] += out.shape[0]
        if self.cpu_mode == "bf16-checked" and out.shape[0]:
            top2 = out.topk(min(2, out.shape[1]), dim=1).values
            margin = top2[:, 0] - top2[:, -1]
            redo = margin <= RECHECK_FACTOR * self.bf16_error * out.abs().amax(1)
            if redo.any():
                out[redo] = model(x[redo]).float()
                self.stats["rechecked"] += int(redo.sum())
        return out

    @torch.no_grad()
    def logits(
        self, model: torch.nn.Module, padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """``(slice of the pixel list, logits (n, K) float32)`` for the pixels ``(rows, cols)`` of
        ``padded`` ``(C, H + P - 1, W + P - 1)`` (unpadded coordinates), batch by batch."""
        model.eval()
        for start in range(0, rows.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            yield sl, self._forward(model, gather_patches(padded, rows[sl], cols[sl], patch_size))

    def all_logits(self, model, padded, rows, cols, patch_size) -> torch.Tensor:
        """Logits ``(N, K)`` float32 of every pixel ``(rows, cols)``, on the device."""
        parts = [logits for _, logits in self.logits(model, padded, rows, cols, patch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, 0, device=padded.device)

    def classes(self, model, padded, rows, cols, patch_size) -> torch.Tensor:
        """0-based class index ``(N,)`` of every pixel ``(rows, cols)``."""
        out = torch.empty(rows.shape[0], dtype=torch.long, device=padded.device)
        for sl, logits in self.logits(model, padded, rows, cols, patch_size):
            out[sl] = logits.argmax(1)
        return out


@torch.no_grad()
def bf16_error(model: torch.nn.Module, padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int) -> float:
    """The largest relative error of a bf16 copy's logits on these pixels (validation pixels at train
    time): ``max over pixels of max_k |bf16_k - fp32_k| / max_k |fp32_k|``, on the CPU."""
    model, padded, rows, cols = model.cpu().eval(), padded.cpu(), rows.cpu(), cols.cpu()
    worst = 0.0
    for start in range(0, rows.shape[0], 256):
        x = gather_patches(padded, rows[start : start + 256], cols[start : start + 256], patch_size)
        ref = model(x).float()
        low = bf16_copy(model)(x.to(torch.bfloat16)).float()
        scale = ref.abs().amax(1).clamp_min(1e-12)
        worst = max(worst, float(((low - ref).abs().amax(1) / scale).max()))
    return worst
