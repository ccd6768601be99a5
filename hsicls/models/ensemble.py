"""An ensemble of trained models in one network: every member fed from one patch of the standardised spectrum.

The ensemble's input is the scene after per-band standardisation only, ``x (N, B, P, P)`` with ``P`` the
largest member patch. Each member ``m`` takes its own view of it and gives class probabilities:

* its patch, the centre ``P_m x P_m`` crop (reflect or zero padding crops alike: the padded values within
  ``P_m // 2`` of the centre do not depend on how wide the pad is);
* its features: the full spectrum, or its PCA axes ``z = (x - mu_m) A_m^T`` (``A_m`` ``(C_m, B)``, the
  prepared file's PCA: exactly the cube it was trained on);
* its calibrated probabilities ``p_m = softmax(f_m(z) / T_m)`` (``T_m``: its own validation temperature).

They are combined as ``p = sum_m w_m p_m`` (weights ``w`` summing to 1, chosen on the validation split), with
an optional prior adjustment: the output is ``log p - tau log pi`` (``pi`` the training class frequencies,
``tau`` chosen on validation; ``tau = 1`` divides the training prior out, which raises the rare classes'
recall). The output is a log-probability up to a constant: ``softmax`` of it is the adjusted distribution,
so evaluate, predict-map, calibration and the bf16 re-check treat it like any model's logits.

Fitted members (random forest, SVM) stay float32 when the ensemble is copied to bf16: their thresholds and
support vectors would move, and their outputs with them.

The weights are stored as buffers of the state dict (``members.<i>.net.*``, ``members.<i>.components``,
``members.<i>.center``); the member list (names, options, sizes, temperatures), ``w``, ``tau`` and ``pi`` are
the model options, plain JSON kept in the bundle.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .registry import create_model, get_entry, register_model

PROB_FLOOR = 1e-12


class _Float32(nn.Module):
    """A member kept in float32 under ``.to(torch.bfloat16)`` (its input cast up, its output back)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def _apply(self, fn, recurse=True):
        return super()._apply(lambda t: fn(t).to(t.dtype) if t.is_floating_point() else fn(t), recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float()).to(x.dtype)


class Member(nn.Module):
    """One member: crop, optional PCA projection, network, temperature -> probabilities ``(N, K)`` (float32)."""

    def __init__(self, spec: dict, in_bands: int, n_classes: int):
        super().__init__()
        self.patch = int(spec["patch_size"])
        self.temperature = float(spec.get("temperature") or 1.0)
        feats = int(spec["in_bands"])
        self.projected = bool(spec.get("projected", False))
        net = create_model(spec["name"], in_bands=feats, n_classes=n_classes, patch_size=self.patch, **spec.get("options", {}))
        self.net = _Float32(net) if get_entry(spec["name"]).fitted else net
        if self.projected:
            self.register_buffer("components", torch.zeros(feats, in_bands))  # (C_m, B)
            self.register_buffer("center", torch.zeros(in_bands))  # (B,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, c = x.shape[2] // 2, self.patch // 2
        x = x[:, :, r - c : r + c + 1, r - c : r + c + 1]
        if self.projected:  # z = (x - mu) A^T as a 1x1 convolution with bias -A mu: 2x faster than the einsum
            a = self.components.to(x.dtype)
            x = F.conv2d(x, a[:, :, None, None], -(a @ self.center.to(x.dtype)))
        return torch.softmax(self.net(x).float() / self.temperature, dim=1)


class Ensemble(nn.Module):
    def __init__(self, in_bands: int, n_classes: int, members: list[dict], weights: list[float], tau: float = 0.0, prior=None):
        super().__init__()
        if not members or len(weights) != len(members):
            raise ValueError(f"{len(members)} members and {len(weights)} weights")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("ensemble weights must be non-negative, not all zero")
        self.members = nn.ModuleList(Member(m, in_bands, n_classes) for m in members)
        w = torch.tensor([float(v) for v in weights], dtype=torch.float32)
        self._w = (w / w.sum()).tolist()  # python floats: the weights are options, not learnt
        self.tau = float(tau)
        log_prior = torch.log(torch.tensor(prior, dtype=torch.float32).clamp_min(PROB_FLOOR)) if prior else torch.zeros(n_classes)
        self.register_buffer("log_prior", log_prior, persistent=False)

    def member_probabilities(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's calibrated probabilities ``(N, K)`` float32."""
        return [m(x) for m in self.members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = None
        for w, m in zip(self._w, self.members):
            if w > 0:  # a member with weight 0 (one that lost to another alone) is not run
                q = w * m(x)
                p = q if p is None else p + q
        return (torch.log(p.clamp_min(PROB_FLOOR)) - self.tau * self.log_prior.float()).to(x.dtype)


def member_spec(name: str, options: dict, in_bands: int, patch_size: int, temperature: float | None, projected: bool) -> dict:
    """The JSON record of one member (what :class:`Member` is built from)."""
    return {
        "name": name,
        "options": dict(options),
        "in_bands": int(in_bands),
        "patch_size": int(patch_size),
        "temperature": None if temperature is None else float(temperature),
        "projected": bool(projected),
    }


@register_model("ensemble", "Weighted ensemble of trained members (made by --model auto)", kind="ensemble", trainable=False)
def ensemble(in_bands: int, n_classes: int, patch_size: int, **opts: Any) -> Ensemble:
    """An ensemble bundle's network (members, weights, prior adjustment in its options)."""
    return Ensemble(in_bands, n_classes, opts["members"], opts["weights"], opts.get("tau", 0.0), opts.get("prior"))
