"""HSM-GFE: hybrid state-space global feature extraction with horizontal encoding (Eq. 9-13)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .bnfold import fold_bn
from .posenc import AxisPositionalEncoding


class HSMGFE(nn.Module):
    """Global branch, linear in the number of positions ``N = P * P``.

    Eq. 9 (stage 1): X' = X + E_h (horizontal encoding ``(1, C, 1, P)``);
        F_h_bar = DWConv3x3(Conv1x1_{C->d}(LayerNorm(X')))              ``(B, d, N)``
    Eq. 10 (stage 2): [Theta, Lambda, Psi] = split(Conv1x1_{d->3d}(F_h_bar)), each ``(B, d, N)``;
        Omega: learnable global log-space prior over the N positions ``(1, P, P, 1)``
        (zeros = uniform prior; shared by the channels, hence "global").
    Eq. 11: F_global = F_h_bar . (Softmax(Lambda + Omega) (.) Theta).

        Reading used here (shapes worked out so that the cost stays O(N)): the softmax runs
        over the N positions, independently per channel, so A = Softmax_N(Lambda + Omega) is
        ``(B, d, N)`` with every row summing to 1. The global state is the selective scan's
        summary s = sum_n A[:, :, n] * Theta[:, :, n], a ``(B, d)`` vector gathered over all
        positions in one pass; "F_h_bar ." is the product of ``F_h_bar`` ``(B, N, d)`` with the
        diagonal state diag(s) ``(B, d, d)``, i.e. F_global[b, c, n] = F_h_bar[b, c, n] * s[b, c].
        No ``(N, N)`` or ``(N, d) x (N, d)`` product is formed; cost O(N d) time and memory.
    Eq. 12 (stage 3): [H, Z] = split(Conv1x1_{d->2d}(F_global)).
    Eq. 13: F_tilde = (H (.) SiLU(Z) + H (.) Phi) (.) Psi, Phi a learnable residual scale ``(d,)``;
        F_g = BN(Conv1x1_{d->C}(F_tilde)) reshaped to ``(B, C, P, P)``.
    """

    def __init__(self, channels: int, size: int, state: int | None = None, pos: str = "horizontal"):
        super().__init__()
        d = state or channels
        self.size = size
        self.pos = AxisPositionalEncoding(channels, size, pos)
        self.norm = nn.LayerNorm(channels)
        # 1x1 convolutions are written as Linear layers on channels-last (B, H, W, C) tensors.
        self.expand = nn.Linear(channels, d, bias=False)
        self.dw = nn.Conv2d(d, d, 3, padding=1, groups=d)
        self.select = nn.Linear(d, 3 * d)
        self.omega_log = nn.Parameter(torch.zeros(1, size, size, 1))
        self.gate = nn.Linear(d, 2 * d)
        self.phi = nn.Parameter(torch.full((d,), 0.1))
        self.out = nn.Linear(d, channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def global_state(self, f: torch.Tensor, theta: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """Eq. 11 on channels-last ``(B, H, W, d)`` inputs (N = H W) -> ``(B, H, W, d)``; O(N d)."""
        b, h, w, d = f.shape
        omega = self.omega_log if self.omega_log.shape[1:3] == (h, w) else self.omega_log.new_zeros(1, h, w, 1)
        a = torch.softmax((lam + omega).reshape(b, h * w, d), dim=1)  # (B, N, d), softmax over positions
        s = (a * theta.reshape(b, h * w, d)).sum(dim=1)  # (B, d) global state
        return f * s[:, None, None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``F_g`` ``(B, C, H, W)``."""
        x = self.pos(x).permute(0, 2, 3, 1)  # (B, H, W, C); a view when x is channels-last
        f = self.expand(self.norm(x))  # (B, H, W, d)
        f = self.dw(f.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # depthwise 3x3 -> F_h_bar (B, H, W, d)
        theta, lam, psi = self.select(f).chunk(3, dim=-1)
        g = self.global_state(f, theta, lam)
        hh, z = self.gate(g).chunk(2, dim=-1)
        ft = hh * (F.silu(z) + self.phi) * psi  # Eq. 13: (H (.) SiLU(Z) + H (.) Phi) (.) Psi, H factored out
        if self.bn.training:
            return self.bn(self.out(ft).permute(0, 3, 1, 2))
        weight, bias = fold_bn(self.out.weight, None, self.bn)  # inference: BN folded into the projection
        return F.linear(ft, weight, bias).permute(0, 3, 1, 2)
