"""Initial spectral-spatial feature extraction (pipeline step 1)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .bnfold import fold_bn


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
        ``(B, bands, P, P)`` -> ``(B * bands', c3, P, P)``, band-window major (the Conv3D's
        ``(B, c3, bands', P, P)`` up to that order and float rounding). Its backward pass is about
        3x faster on CPU than oneDNN's 3-D one, so training uses it."""
        b, d, h, w = x.shape
        k, s = self.conv3d.kernel_size[0], self.conv3d.stride[0]
        xs = x.unfold(1, k, s)  # (B, bands', P, P, 3)
        n = xs.shape[1]
        xs = xs.permute(0, 1, 4, 2, 3).reshape(b * n, k, h, w)
        weight = self.conv3d.weight.squeeze(1)  # (c3, 3, 3, 3): spectral taps become input channels
        return F.conv2d(xs, weight, padding=self.conv3d.padding[1:])  # (B*bands', c3, P, P)

    def _pointwise(self, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """1x1 convolution of ``y`` ``(B, K, P, P)`` (contiguous) with ``weight`` ``(C, K)`` as one
        batched GEMM ``(C, K) x (B, K, N) -> (B, C, N)``: 2x faster forward and backward on CPU than
        oneDNN's NCHW 1x1 convolution of this, the largest activation, and no layout copies."""
        bsz, k, h, w = y.shape
        return torch.bmm(weight.expand(bsz, *weight.shape), y.reshape(bsz, k, h * w)).view(bsz, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bsz, _, h, w = x.shape
        weight = self.conv2d.weight.flatten(1)  # (C, c3 * bands'), c3-major as in the paper's reshape
        c3 = self.conv3d.out_channels
        if self.training and torch.is_grad_enabled():
            y = self._conv3d_as_2d(x)  # (B * bands', c3, P, P)
            n = self.conv2d.in_channels // c3  # bands'
            # BN over c3 with statistics over (B, bands', P, P), as BatchNorm3d on (B, c3, bands', P, P):
            # the view (B * bands', c3, 1, P, P) has the same channel and the same pixel set.
            y = self.act(self.bn3d(y.unsqueeze(2))).view(bsz, n * c3, h, w)  # band-window-major channels
            weight = weight.view(-1, c3, n).transpose(1, 2).reshape(-1, n * c3)  # the same weights, reordered
        elif not self.bn3d.training:  # inference: BN folded into the convolution (one pass less)
            w3, b3 = fold_bn(self.conv3d.weight, None, self.bn3d)
            y = F.conv3d(x.unsqueeze(1), w3, b3, self.conv3d.stride, self.conv3d.padding).relu_().flatten(1, 2)
        else:
            y = self.act(self.bn3d(self.conv3d(x.unsqueeze(1)))).flatten(1, 2)  # (B, c3 * bands', P, P)
        if self.bn2d.training:
            return self.act(self.bn2d(self._pointwise(y, weight)))  # F_init (B, C, P, P)
        # Inference: BN folded; the GEMM's transposed operand (free for BLAS) gives the output
        # channels-last, (B, N, c3*bands') x (c3*bands', C) -> (B, N, C), the layout every later
        # convolution wants, without a copy.
        weight, bias = fold_bn(weight, None, self.bn2d)
        k = weight.shape[1]
        out = torch.bmm(y.reshape(bsz, k, h * w).transpose(1, 2), weight.t().expand(bsz, k, weight.shape[0]))
        return out.add_(bias).relu_().view(bsz, h, w, -1).permute(0, 3, 1, 2)  # (B, C, P, P), channels-last
