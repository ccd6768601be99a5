"""Parameter and MAC/FLOP counts (torch.utils.flop_counter)."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def params_per_child(model: nn.Module) -> dict[str, int]:
    return {name: count_params(child) for name, child in model.named_children()}


def count_flops(model: nn.Module, in_bands: int, patch_size: int, reparameterized: bool = False) -> dict[str, int]:
    """FLOPs for one sample as torch.utils.flop_counter counts them (2 per multiply-add of
    convolutions and matrix products; element-wise ops not counted); ``macs = flops / 2``.
    Papers in this field report this multiply-accumulate count under the name FLOPs.

    Counted on the architecture as specified (modules with a ``reparameterize`` switch run in
    their literal form); ``reparameterized=True`` counts the merged inference path instead, which
    does more multiply-adds in fewer, denser convolutions.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    switches = [m for m in model.modules() if hasattr(m, "reparameterize")]
    saved = [m.reparameterize for m in switches]
    for m in switches:
        m.reparameterize = reparameterized
    model.eval()
    x = torch.zeros(1, in_bands, patch_size, patch_size)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
        for m, v in zip(switches, saved):
            m.reparameterize = v
    flops = int(counter.get_total_flops())
    return {"flops": flops, "macs": flops // 2}


def model_info(name: str, bands: int, patch: int, classes: int, options: dict | None = None) -> dict:
    """Parameters (total and per top-level component), MACs and FLOPs per sample."""
    from .registry import create_model, get_entry

    entry = get_entry(name)
    model = create_model(name, in_bands=bands, n_classes=classes, patch_size=patch, **(options or {}))
    info = {
        "model": name,
        "kind": entry.kind,
        "bands": bands,
        "patch": patch,
        "classes": classes,
        "options": dict(options or {}),
        "params": count_params(model),
        "components": params_per_child(model),
    }
    if not entry.fitted:
        info.update(count_flops(model, bands, patch))
        if any(hasattr(m, "reparameterize") for m in model.modules()):
            info["inference_macs"] = count_flops(model, bands, patch, reparameterized=True)["macs"]
    else:  # fitted models: size depends on the data (support vectors, tree nodes)
        info.update({"flops": None, "macs": None})
    return info
