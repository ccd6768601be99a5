"""Initial spectral-spatial feature extraction (pipeline step 1)."""

from __future__ import annotations

import torch
from torch import nn


class InitialExtractor(nn.Module):
    """Conv3D 3x3x3 -> BN -> ReLU, merge (channels x bands), 1x1 Conv2D -> BN -> ReLU.

    Shapes: ``(B, bands, P, P)`` -> Conv3D over ``(bands, P, P)`` with ``c3`` filters, no padding
    along the spectral axis and a spectral stride ``spectral_stride`` -> ``(B, c3, bands', P, P)``
    with ``bands' = (bands - 3) // spectral_stride + 1`` -> reshape ``(B, c3 * bands', P, P)``
    -> 1x1 Conv2D -> ``F_init`` ``(B, C, P, P)``.

    Budget choice: ``c3 = 8`` filters at full spectral resolution (stride 1) cost about 2.8M
    MACs at the Pavia University configuration (30 bands, P = 13, C = 48); a spectral stride
    of 2 halves that when another part needs the budget.
    """

    def __init__(self, bands: int, channels: int, c3: int = 8, spectral_stride: int = 1):
        super().__init__()
        if bands < 3:
            raise ValueError(f"need at least 3 bands, got {bands}")
        if c3 < 1 or spectral_stride < 1 or channels < 1:
            raise ValueError("c3, spectral_stride and channels must be positive")
        self.conv3d = nn.Conv3d(1, c3, kernel_size=3, stride=(spectral_stride, 1, 1), padding=(0, 1, 1), bias=False)
        self.bn3d = nn.BatchNorm3d(c3)
        depth = (bands - 3) // spectral_stride + 1
        self.conv2d = nn.Conv2d(c3 * depth, channels, kernel_size=1, bias=False)
        self.bn2d = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn3d(self.conv3d(x.unsqueeze(1))))  # (B, c3, bands', P, P)
        y = y.flatten(1, 2)  # (B, c3*bands', P, P)
        return self.act(self.bn2d(self.conv2d(y)))  # (B, C, P, P)
