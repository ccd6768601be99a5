"""``--split disjoint``: training pixels in compact blocks, a guard band keeps test pixels out of
every training patch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsicls.errors import HsiclsError
from hsicls.options import opt, shared
from hsicls.science.splits.base import Masks, SplitInputs, SplitProtocol, carve, check_ratio, footprint

if TYPE_CHECKING:
    import numpy as np


@dataclass
class DisjointOptions:
    patch_size: int = shared("patch_size", help="Split disjoint: the patch whose footprint is kept free of test pixels.")
    block_size: int | None = opt(None, "Split disjoint: block side in pixels (default: the patch size).", min=1)


def disjoint_split(
    labels: np.ndarray,
    train_ratio: float,
    val_ratio: float,
    seed: int,
    patch_size: int = 13,
    block: int | None = None,
    val_rule: str = "random",
    info: dict | None = None,
) -> Masks:
    """Spatially disjoint split: no test pixel lies inside any training pixel's patch footprint.

    1. The grid is cut into square blocks of ``block`` pixels (default: ``patch_size``).
    2. For each class (rarest first) blocks holding it are drawn at random (seeded); the class's
       pixels in those blocks become training pixels, block by block, until the class has
       ``round(train_ratio * n)`` of its ``n`` pixels (at least 1; the last block contributes
       only the pixels still needed, in raster order). Training pixels thus come in compact
       clusters instead of being scattered over the whole scene.
    3. Guard band: every labelled pixel within ``patch_size // 2`` (Chebyshev distance) of a
       training pixel is dropped from the test split, so no training patch covers a test pixel.
       The test split is every other labelled pixel.
    4. Validation pixels are carved from the training pixels by ``val_rule`` (``spatial``: whole
       training regions of a class, or a strip at one end of one; ``random``: scattered pixels).
    Returns ``(train, val, test)``; guard-band pixels are in none of them.
    """
    import numpy as np

    check_ratio("--train-ratio", train_ratio)
    h, w = labels.shape
    block = block or patch_size
    if block < 1:
        raise HsiclsError(f"--block-size must be >= 1, got {block}")
    rng = np.random.default_rng(seed)
    nbx = (w + block - 1) // block
    block_id = (np.arange(h) // block)[:, None] * nbx + (np.arange(w) // block)[None, :]
    flat_lab, flat_block = labels.ravel(), block_id.ravel()
    train = np.zeros(flat_lab.shape, bool)
    classes, totals = np.unique(flat_lab[flat_lab > 0], return_counts=True)
    for c, total in sorted(zip(classes, totals), key=lambda t: t[1]):
        quota = max(1, int(round(train_ratio * total)))
        pix = np.flatnonzero(flat_lab == c)
        blocks = np.unique(flat_block[pix])
        rng.shuffle(blocks)
        have = 0
        for b in blocks:
            if have >= quota:
                break
            inside = pix[flat_block[pix] == b][: quota - have]
            train[inside] = True
            have += inside.size
    train = train.reshape(labels.shape)
    test = (labels > 0) & ~footprint(train, patch_size)
    train, val = carve(train, labels, val_ratio, seed, val_rule, test, info)
    return train, val, test


class DisjointSplit(SplitProtocol, name="disjoint", summary="spatially disjoint, footprint-guarded", options=DisjointOptions):
    """train_ratio is declared by the random protocol (RatioOptions), and shared with it."""

    spatial_test = True

    def describe(self, o) -> str:
        block = o.block_size or o.patch_size
        return f"spatially disjoint, {o.train_ratio:g} of each class in {block}-px blocks, {o.patch_size}x{o.patch_size} footprint guarded"

    def record(self, o) -> dict:
        return {"train_ratio": o.train_ratio, "patch_size": o.patch_size, "block_size": o.block_size or o.patch_size}

    def guarded_footprint(self, record: dict) -> int | None:
        return int(record["patch_size"]) if "patch_size" in record else None

    def split(self, labels: np.ndarray, o, inputs: SplitInputs) -> Masks:
        return disjoint_split(
            labels, o.train_ratio, o.val_ratio, o.seed, o.patch_size, o.block_size, self.val_rule(o), inputs.validation
        )
