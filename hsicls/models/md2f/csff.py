"""CSFF: cosine-similarity feature fusion (Eq. 14-17), and the ablation's alternatives."""

from __future__ import annotations

import torch
from torch import nn

FUSIONS = ("csff", "add", "concat", "weighted")


class CSFF(nn.Module):
    """Eq. 14-15: S = <F_l, F_g> / (||F_l|| ||F_g|| + eps), per pixel over channels ``(B, 1, H, W)``.
    Eq. 16: S' = S broadcast over channels. Eq. 17: F_f = ReLU(F_g + F_l * S').

    No parameters. Shapes: ``F_l, F_g`` ``(B, C, H, W)`` -> ``F_f`` ``(B, C, H, W)``.
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def similarity(self, f_l: torch.Tensor, f_g: torch.Tensor) -> torch.Tensor:
        dot = (f_l * f_g).sum(dim=1, keepdim=True)
        norm = f_l.norm(dim=1, keepdim=True) * f_g.norm(dim=1, keepdim=True)
        return dot / (norm + self.eps)

    def forward(self, f_l: torch.Tensor, f_g: torch.Tensor) -> torch.Tensor:
        return torch.relu(f_g + f_l * self.similarity(f_l, f_g))


class AddFusion(nn.Module):
    """Ablation: F_f = ReLU(F_l + F_g)."""

    def forward(self, f_l: torch.Tensor, f_g: torch.Tensor) -> torch.Tensor:
        return torch.relu(f_l + f_g)


class ConcatFusion(nn.Module):
    """Ablation: F_f = ReLU(BN(Conv1x1(Concat[F_l, F_g])))."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, f_l: torch.Tensor, f_g: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([f_l, f_g], dim=1))


class WeightedFusion(nn.Module):
    """Ablation: F_f = ReLU(a * F_l + (1 - a) * F_g), a = sigmoid(learnable scalar)."""

    def __init__(self):
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(1))

    def forward(self, f_l: torch.Tensor, f_g: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.logit)
        return torch.relu(a * f_l + (1 - a) * f_g)


def make_fusion(kind: str, channels: int) -> nn.Module:
    if kind == "csff":
        return CSFF()
    if kind == "add":
        return AddFusion()
    if kind == "concat":
        return ConcatFusion(channels)
    if kind == "weighted":
        return WeightedFusion()
    raise ValueError(f"unknown fusion {kind!r}; choose from {FUSIONS}")
