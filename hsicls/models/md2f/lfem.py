"""MS-LFEM: multi-scale local feature extraction with vertical positional encoding (Eq. 3-8)."""

from __future__ import annotations

import torch
from torch import nn

from .posenc import AxisPositionalEncoding


def _conv(cin: int, cout: int, k: tuple[int, int]) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=(k[0] // 2, k[1] // 2), bias=False)


class MSLFEM(nn.Module):
    """Local branch.

    Eq. 3: X' = X + E_v (vertical encoding, ``(1, C, P, 1)``).
    Eq. 4: B0 = Conv3x3(X'). Eq. 5: B1 = Conv3x1(Conv1x3(X')). Eq. 6: B2 = Conv1x3(Conv3x1(X')).
    Eq. 7: B3 = U + Delta * (U - GELU(Conv1x1(U))), U = Conv1x1(X') (a 1x1 projection), Delta learnable.
    Eq. 8: F_l = ReLU(BN(Concat[B0, B1, B2, B3])).

    Shapes: ``(B, C, P, P)`` -> ``F_l`` ``(B, C, P, P)``. Budget choice: each branch outputs
    ``C / 4`` channels, so the concatenation is ``C`` wide without a fusing 1x1 convolution.
    """

    def __init__(self, channels: int, size: int, pos: str = "vertical"):
        super().__init__()
        if channels % 4:
            raise ValueError(f"MS-LFEM needs channels divisible by 4, got {channels}")
        q = channels // 4
        self.pos = AxisPositionalEncoding(channels, size, pos)
        self.b0 = _conv(channels, q, (3, 3))
        self.b1 = nn.Sequential(_conv(channels, q, (1, 3)), _conv(q, q, (3, 1)))
        self.b2 = nn.Sequential(_conv(channels, q, (3, 1)), _conv(q, q, (1, 3)))
        self.b3_proj = nn.Conv2d(channels, q, 1, bias=False)
        self.b3_conv = nn.Conv2d(q, q, 1)
        self.delta = nn.Parameter(torch.full((1, q, 1, 1), 0.5))
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos(x)
        u = self.b3_proj(x)
        b3 = u + self.delta * (u - nn.functional.gelu(self.b3_conv(u)))
        out = torch.cat([self.b0(x), self.b1(x), self.b2(x), b3], dim=1)
        return self.act(self.bn(out))
