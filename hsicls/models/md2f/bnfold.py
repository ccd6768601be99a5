"""BatchNorm folded into the preceding convolution or linear layer at inference time."""

from __future__ import annotations

import torch
from torch import nn


def fold_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``(out, ...)`` and bias ``(out,)`` of ``BN(layer(x))`` with BN's running statistics.

    With s = gamma / sqrt(running_var + eps): W' = s * W (per output channel) and
    b' = beta + s * (b - running_mean). Used only when ``bn`` is in eval mode; saves one full
    pass over the activation per BatchNorm.
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    b = bn.bias + ((bias if bias is not None else 0) - bn.running_mean) * scale
    return w, b
