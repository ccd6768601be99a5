"""A small spectral network: a 1-D CNN over the full standardised spectrum of the centre pixel.

Built for whole held-out tiles and scenes outside the training area, where spatial context learnt on
a few training fields transfers poorly and the spectrum carries the class. The stem follows
SpectralEarth's spectral adapter (Braham et al. 2024: three strided 1-D convolutions over the band
axis); the head is a small MLP. With a 3 x 3 (or larger) patch the network sees two spectra, the
centre pixel's and the mean of the patch, as two input channels; it never looks at the spatial layout.

Shapes, for ``B`` samples of ``C`` bands and ``K`` classes::

    x (B, C, P, P) -> spectra (B, 1 or 2, C)
      -> Conv1d(k=7, s=2) -> BN -> GELU -> Conv1d(k=5, s=2) -> BN -> GELU -> Conv1d(k=3, s=2) -> BN -> GELU
      -> adaptive average pool to 8 positions (B, width, 8) -> flatten -> Linear(8 width, hidden) -> GELU
      -> dropout -> Linear(hidden, K)

About 64K parameters with the defaults (width 48, hidden 128), at any band count (the pool fixes the
head's size). Spectral augmentations (brightness, noise, same-class mixing) are training options
(``--spectral-augment``, :func:`hsicls.engine.training.spectral_augment`), recorded in the bundle.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

POOLED = 8  # positions along the band axis after the adaptive pool


class SpectralCNN(nn.Module):
    def __init__(
        self, in_bands: int, n_classes: int, patch_size: int = 1, width: int = 48, hidden: int = 128, dropout: float = 0.2
    ):
        super().__init__()
        self.context = patch_size > 1  # the patch mean as a second channel
        c_in = 2 if self.context else 1
        w1 = max(8, int(width) // 2)

        def block(a: int, b: int, k: int) -> list[nn.Module]:
            return [nn.Conv1d(a, b, k, stride=2, padding=k // 2, bias=False), nn.BatchNorm1d(b), nn.GELU()]

        self.stem = nn.Sequential(*block(c_in, w1, 7), *block(w1, int(width), 5), *block(int(width), int(width), 3))
        self.pool = nn.AdaptiveAvgPool1d(POOLED)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(int(width) * POOLED, int(hidden)), nn.GELU(), nn.Dropout(float(dropout)),
            nn.Linear(int(hidden), n_classes),
        )  # fmt: skip

    def spectra(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, P, P)`` -> ``(B, 1 or 2, C)``: the centre spectrum (and the patch's mean spectrum)."""
        centre = x[:, :, x.shape[2] // 2, x.shape[3] // 2][:, None, :]
        if not self.context:
            return centre
        return torch.cat([centre, x.mean(dim=(2, 3))[:, None, :]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stem(self.spectra(x))))


@register_model("spectral-cnn", "1-D CNN over the full standardised spectrum of the centre pixel (about 64K parameters)")
def spectral_cnn(in_bands: int, n_classes: int, patch_size: int, **opts) -> SpectralCNN:
    """Spectral network (no spatial layout; with patches of 3 or more, the patch mean as a second channel)."""
    return SpectralCNN(in_bands, n_classes, patch_size, **{k: float(v) if k == "dropout" else int(v) for k, v in opts.items()})
