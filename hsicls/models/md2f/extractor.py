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

    def _conv3d_as_2d(self, x: torch.Tensor) -> torch.Tensor:
        """The same Conv3D (one input channel) as a Conv2D over windows of 3 consecutive bands:
        ``(B, bands, P, P)`` -> ``(B, c3, bands', P, P)``. Identical up to float rounding; its
        backward pass is about 3x faster on CPU than oneDNN's 3-D one, so training uses it."""
        b, d, h, w = x.shape
        k, s = self.conv3d.kernel_size[0], self.conv3d.stride[0]
        xs = x.unfold(1, k, s)  # (B, bands', P, P, 3)
        n = xs.shape[1]
        xs = xs.permute(0, 1, 4, 2, 3).reshape(b * n, k, h, w)
        weight = self.conv3d.weight.squeeze(1)  # (c3, 3, 3, 3): spectral taps become input channels
        y = nn.functional.conv2d(xs, weight, padding=self.conv3d.padding[1:])  # (B*bands', c3, P, P)
        return y.view(b, n, -1, h, w).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            y = self._conv3d_as_2d(x)
        else:
            y = self.conv3d(x.unsqueeze(1))
        y = self.act(self.bn3d(y))  # (B, c3, bands', P, P)
        y = y.flatten(1, 2)  # (B, c3*bands', P, P)
        return self.act(self.bn2d(self.conv2d(y)))  # (B, C, P, P)
