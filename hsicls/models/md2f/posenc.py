"""Learnable axis positional encodings: vertical E_v (local branch), horizontal E_h (global)."""

from __future__ import annotations

import torch
from torch import nn


class AxisPositionalEncoding(nn.Module):
    """Adds a learnable encoding that varies along one axis only.

    ``vertical``: E_v in R^{1 x C x P x 1}, broadcast along W (varies with the row).
    ``horizontal``: E_h in R^{1 x C x 1 x P}, broadcast along H (varies with the column).
    ``none``: identity. Shapes: ``(B, C, P, P)`` -> ``(B, C, P, P)``.
    """

    def __init__(self, channels: int, size: int, direction: str):
        super().__init__()
        if direction not in ("vertical", "horizontal", "none"):
            raise ValueError(f"positional encoding must be vertical, horizontal or none, got {direction!r}")
        self.direction = direction
        if direction == "vertical":
            self.encoding = nn.Parameter(torch.randn(1, channels, size, 1) * 0.02)
        elif direction == "horizontal":
            self.encoding = nn.Parameter(torch.randn(1, channels, 1, size) * 0.02)
        else:
            self.register_parameter("encoding", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoding is None:
            return x
        return x + self.encoding
