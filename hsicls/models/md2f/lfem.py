"""MS-LFEM: multi-scale local feature extraction with vertical positional encoding (Eq. 3-8)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .bnfold import fold_bn

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

    Inference (eval mode) re-parameterises the linear parts: B1's Conv3x1(Conv1x3(.)) and B2's
    Conv1x3(Conv3x1(.)) are bias-free compositions, hence 3x3 kernels (outer products summed over
    the intermediate channels; zero padding agrees), and B3's projection U is the centre tap of
    a 3x3 kernel. So [B0, B1, B2, U] come from one dense 3x3 convolution ``C -> C`` with BN folded
    into its first 3C/4 outputs; only Eq. 7's non-linear remainder runs on U. Identical up to
    float rounding; ``reparameterize = False`` keeps the literal form.
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
        self.reparameterize = True

    def merged_kernel(self) -> torch.Tensor:
        """The dense ``(C, C, 3, 3)`` kernel whose outputs are ``[B0, B1, B2, U]`` (Eq. 4-6, U of Eq. 7)."""
        k0 = self.b0.weight  # (q, C, 3, 3)
        a, b = self.b1[1].weight[:, :, :, 0], self.b1[0].weight[:, :, 0, :]  # rows (q, q, 3), columns (q, C, 3)
        k1 = torch.einsum("omr,mic->oirc", a, b)
        d, e = self.b2[1].weight[:, :, 0, :], self.b2[0].weight[:, :, :, 0]  # columns (q, q, 3), rows (q, C, 3)
        k2 = torch.einsum("omc,mir->oirc", d, e)
        kp = nn.functional.pad(self.b3_proj.weight, (1, 1, 1, 1))  # 1x1 -> centre tap of 3x3
        return torch.cat([k0, k1, k2, kp], dim=0)

    def _forward_merged(self, x: torch.Tensor) -> torch.Tensor:
        q = self.b3_conv.in_channels
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        shift = self.bn.bias - self.bn.running_mean * scale
        kernel = self.merged_kernel()
        weight, bias = fold_bn(kernel, None, self.bn)
        weight = torch.cat([weight[: 3 * q], kernel[3 * q :]])  # U stays unnormalised: Eq. 7 needs it raw
        bias = torch.cat([bias[: 3 * q], bias.new_zeros(q)])
        out = F.conv2d(x, weight, bias, padding=1)  # [BN(B0), BN(B1), BN(B2), U]
        u = out[:, 3 * q :].clone()  # a copy: ``out`` is written in place below (autograd-safe)
        b3 = u + self.delta * (u - F.gelu(self.b3_conv(u)))
        out[:, 3 * q :] = b3 * scale[3 * q :, None, None] + shift[3 * q :, None, None]
        return out.relu_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos(x)
        if not self.bn.training and self.reparameterize:
            return self._forward_merged(x)
        u = self.b3_proj(x)
        b3 = u + self.delta * (u - nn.functional.gelu(self.b3_conv(u)))
        out = torch.cat([self.b0(x), self.b1(x), self.b2(x), b3], dim=1)
        return self.act(self.bn(out))
