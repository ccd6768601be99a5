"""MDConv: multidirectional depthwise convolution (Eq. 1-2)."""

from __future__ import annotations

import torch
from torch import nn

DIRECTIONS = ("square", "horizontal", "vertical")


class MDConv(nn.Module):
    """Eq. 1: F_sq = DW_kxk(F), F_hor = DW_1xk(F), F_ver = DW_kx1(F);
    Eq. 2: F_MD = ReLU(BN(Conv1x1(Concat[F, F_sq, F_hor, F_ver]))).

    Shapes: ``(B, C, H, W)`` -> ``(B, C, H, W)``. ``directions`` selects which depthwise
    branches exist (all three in the paper; the ablation drops some or all of them).
    """

    def __init__(self, channels: int, kernel: int = 3, directions: tuple[str, ...] = DIRECTIONS):
        super().__init__()
        bad = set(directions) - set(DIRECTIONS)
        if bad:
            raise ValueError(f"unknown MDConv direction(s) {sorted(bad)}; choose from {DIRECTIONS}")
        self.directions = tuple(d for d in DIRECTIONS if d in directions)
        k, p = kernel, kernel // 2
        shapes = {"square": ((k, k), (p, p)), "horizontal": ((1, k), (0, p)), "vertical": ((k, 1), (p, 0))}
        self.branches = nn.ModuleDict(
            {
                d: nn.Conv2d(channels, channels, shapes[d][0], padding=shapes[d][1], groups=channels, bias=False)
                for d in self.directions
            }
        )
        self.fuse = nn.Conv2d(channels * (1 + len(self.directions)), channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x] + [self.branches[d](x) for d in self.directions]
        return self.act(self.bn(self.fuse(torch.cat(feats, dim=1))))
