"""SSFTT baseline: Sun et al., "Spectral-Spatial Feature Tokenization Transformer for
Hyperspectral Image Classification", IEEE TGRS 60 (2022).

Conv3D 3x3x3 (8 filters, no padding) -> BN -> ReLU -> merge -> Conv2D 3x3 (64, no padding) -> BN
-> ReLU -> Gaussian-weighted tokenizer (L = 4 semantic tokens) -> [cls] + positional embedding
-> one transformer encoder layer (8 heads, MLP width 8) -> cls token -> linear head.
About 153K parameters at 30 PCA bands, 13 x 13 patches and 16 classes, as in the paper's table.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class _Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class _PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.1):
        super().__init__()
        self.heads = heads
        self.scale = dim**-0.5  # the original code scales by the model width, not the head width
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)  # after the output projection, as in the original code

    def forward(self, x):  # (B, T, dim)
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        return self.drop(self.out((attn @ v).transpose(1, 2).reshape(b, t, d)))


class SSFTT(nn.Module):
    """Input ``(B, bands, P, P)``, output logits ``(B, classes)``."""

    def __init__(
        self,
        in_bands: int,
        n_classes: int,
        patch_size: int,
        tokens: int = 4,
        dim: int = 64,
        depth: int = 1,
        heads: int = 8,
        mlp_dim: int = 8,
        dropout: float = 0.1,
    ):
        super().__init__()
        if in_bands < 3 or patch_size < 5:
            raise ValueError("SSFTT needs at least 3 bands and 5 x 5 patches (two unpadded 3x3 convolutions)")
        self.conv3d = nn.Sequential(nn.Conv3d(1, 8, 3), nn.BatchNorm3d(8), nn.ReLU())
        self.conv2d = nn.Sequential(nn.Conv2d(8 * (in_bands - 2), dim, 3), nn.BatchNorm2d(dim), nn.ReLU())
        self.token_wa = nn.Parameter(torch.empty(1, tokens, dim))
        self.token_wv = nn.Parameter(torch.empty(1, dim, dim))
        nn.init.xavier_normal_(self.token_wa)
        nn.init.xavier_normal_(self.token_wv)
        self.pos = nn.Parameter(torch.empty(1, tokens + 1, dim).normal_(std=0.02))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.drop = nn.Dropout(dropout)
        layers = []
        for _ in range(depth):
            layers += [
                _Residual(_PreNorm(dim, _Attention(dim, heads, dropout))),
                _Residual(
                    _PreNorm(
                        dim,
                        nn.Sequential(
                            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)
                        ),
                    )
                ),
            ]
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Linear(dim, n_classes)
        nn.init.xavier_uniform_(self.head.weight)  # the original code's initialisation of the classifier
        nn.init.normal_(self.head.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(x.unsqueeze(1)).flatten(1, 2)  # (B, 8*(bands-2), P-2, P-2)
        x = self.conv2d(x).flatten(2).transpose(1, 2)  # (B, N, dim)
        a = torch.softmax(x @ self.token_wa.transpose(1, 2), dim=1)  # (B, N, L): Gaussian-weighted tokenizer
        t = a.transpose(1, 2) @ (x @ self.token_wv)  # (B, L, dim)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1) + self.pos
        t = self.encoder(self.drop(t))
        return self.head(t[:, 0])


@register_model("ssftt", "SSFTT (TGRS 2022): 3D/2D conv + Gaussian-weighted tokenizer + transformer")
def ssftt(in_bands: int, n_classes: int, patch_size: int, **opts) -> SSFTT:
    """SSFTT with its published settings (4 tokens, width 64, 1 layer, 8 heads)."""
    for k in ("tokens", "dim", "depth", "heads", "mlp_dim"):
        if k in opts:
            opts[k] = int(opts[k])
    if "dropout" in opts:
        opts["dropout"] = float(opts["dropout"])
    return SSFTT(in_bands, n_classes, patch_size, **opts)
