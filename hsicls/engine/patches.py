"""Patch extraction from one padded tensor, vectorised (no per-sample Python code).

A patch of size ``P`` (odd) centred on pixel ``(r, c)`` of an ``(C, H, W)`` cube is
``padded[:, r:r+P, c:c+P]`` of the cube padded by ``P // 2`` on every side, so border pixels are
classified like any other. The padding is the scene reflected at its border (default) or zeros
(``zero``: the habit of HybridSN's and SSFTT's code; 0 is the mean after standardisation/PCA).
The mode is a property of the trained model: ``train --padding`` records it in the bundle and
``evaluate`` / ``predict-map`` pad the same way.
"""

from __future__ import annotations

import torch

from hsicls.errors import HsiclsError

PAD_MODES = ("reflect", "zero")


def pad_sides(x: torch.Tensor, pads: tuple[int, int, int, int], mode: str = "reflect") -> torch.Tensor:
    """``(C, h, w)`` padded by ``(left, right, top, bottom)`` pixels, reflecting or with zeros."""
    if not any(pads):
        return x
    if mode == "zero":
        return torch.nn.functional.pad(x, pads)
    return torch.nn.functional.pad(x.unsqueeze(0), pads, mode="reflect").squeeze(0)


def pad_cube(cube: torch.Tensor, patch_size: int, mode: str = "reflect") -> torch.Tensor:
    """``(C, H, W)`` -> ``(C, H + 2r, W + 2r)``, ``r = patch_size // 2``, padded by ``mode``."""
    r = patch_size // 2
    _, h, w = cube.shape
    if h < patch_size or w < patch_size:
        raise HsiclsError(f"the scene is {h}x{w} px, smaller than one {patch_size}x{patch_size} patch")
    return pad_sides(cube, (r, r, r, r), mode)


def gather_patches(padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Patches centred on ``(rows[i], cols[i])`` (unpadded coordinates).

    ``padded`` ``(C, Hp, Wp)``, ``rows``/``cols`` ``(N,)`` long on the same device
    -> ``(N, C, P, P)`` in one advanced-indexing gather.
    """
    off = torch.arange(patch_size, device=padded.device)
    r = (rows[:, None] + off)[:, :, None]  # (N, P, 1)
    c = (cols[:, None] + off)[:, None, :]  # (N, 1, P)
    return padded[:, r, c].permute(1, 0, 2, 3)  # (C, N, P, P) -> (N, C, P, P)
