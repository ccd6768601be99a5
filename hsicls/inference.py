"""Batched inference: the one loop that runs patches through a model (evaluate, predict-map,
validation during training, benchmarks).

:class:`Runner` holds the resolved device, precision and batch size; :meth:`Runner.logits`
yields ``(slice, logits)`` per batch of pixels, each batch's patches gathered on the device from
one padded tensor (:func:`hsicls.patches.gather_patches`), under bf16 autocast when asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .patches import gather_patches
from .runtime import autocast, inference_batch_size, resolve_device, uses_bf16


@dataclass(frozen=True)
class Runner:
    device: torch.device
    use_bf16: bool
    batch_size: int

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto", batch_size: int | None = None) -> Runner:
        dev = resolve_device(device)
        return cls(dev, uses_bf16(precision, dev), inference_batch_size(batch_size, dev))

    @property
    def precision(self) -> str:
        return "bf16" if self.use_bf16 else "fp32"

    @torch.no_grad()
    def logits(
        self, model: torch.nn.Module, padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """``(slice of the pixel list, logits (n, K) float32)`` for the pixels ``(rows, cols)`` of
        ``padded`` ``(C, H + P - 1, W + P - 1)`` (unpadded coordinates), batch by batch."""
        model.eval()
        for start in range(0, rows.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            with autocast(padded.device, self.use_bf16):
                out = model(gather_patches(padded, rows[sl], cols[sl], patch_size))
            yield sl, out.float()

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
