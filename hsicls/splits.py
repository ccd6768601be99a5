"""Train / validation / test splits of labelled pixels.

All masks are ``(H, W)`` bool over the scene grid; they never overlap, and their union is the
set of labelled pixels. Validation pixels are always carved from the training pixels, so model
selection never looks at the test split.
"""

from __future__ import annotations

import numpy as np

from .errors import HsiclsError


def stratified_split(
    labels: np.ndarray,
    train_ratio: float,
    val_ratio: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random stratified split, the paper's protocol (5 % of every class for training).

    For each class with ``n`` labelled pixels: ``max(1, round(train_ratio * n))`` pixels are
    drawn for training (at most ``n - 1`` when ``n > 1``, so every class keeps a test pixel);
    then ``round(val_ratio * n_train)`` of those move to validation. The rest is test.

    Returns ``(train, val, test)`` masks, each ``(H, W)`` bool.
    """
    if not 0 < train_ratio < 1:
        raise HsiclsError(f"--train-ratio must be in (0, 1), got {train_ratio}")
    if not 0 <= val_ratio < 1:
        raise HsiclsError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    rng = np.random.default_rng(seed)
    flat = labels.ravel()
    train = np.zeros(flat.shape, bool)
    val = np.zeros(flat.shape, bool)
    for c in np.unique(flat[flat > 0]):
        idx = np.flatnonzero(flat == c)
        rng.shuffle(idx)
        n = idx.size
        n_train = max(1, int(round(train_ratio * n)))
        if n > 1:
            n_train = min(n_train, n - 1)
        n_val = int(round(val_ratio * n_train))
        n_val = min(n_val, n_train - 1)  # keep at least one pixel to train on
        chosen = idx[:n_train]
        val[chosen[:n_val]] = True
        train[chosen[n_val:]] = True
    test = (flat > 0) & ~train & ~val
    shape = labels.shape
    return train.reshape(shape), val.reshape(shape), test.reshape(shape)


def carve_validation(train: np.ndarray, labels: np.ndarray, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Move ``round(val_ratio * n)`` of each class's training pixels to validation (at least one
    pixel always stays in training). Returns ``(train, val)``."""
    if not 0 <= val_ratio < 1:
        raise HsiclsError(f"--val-ratio must be in [0, 1), got {val_ratio}")
    rng = np.random.default_rng(seed + 7919)
    flat_train = train.ravel().copy()
    flat_lab = labels.ravel()
    val = np.zeros_like(flat_train)
    for c in np.unique(flat_lab[flat_train]):
        idx = np.flatnonzero(flat_train & (flat_lab == c))
        rng.shuffle(idx)
        n_val = min(int(round(val_ratio * idx.size)), idx.size - 1)
        val[idx[:n_val]] = True
        flat_train[idx[:n_val]] = False
    return flat_train.reshape(train.shape), val.reshape(train.shape)


def count_split(labels: np.ndarray, count: int, val_ratio: float, seed: int, warn=None):
    """``count`` training pixels per class (capped at ``n - 1`` for a class of ``n`` pixels,
    with a warning), drawn at random; the rest is test. Returns ``(train, val, test)``."""
    if count < 1:
        raise HsiclsError(f"--train-count must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    flat = labels.ravel()
    train = np.zeros(flat.shape, bool)
    capped = []
    for c in np.unique(flat[flat > 0]):
        idx = np.flatnonzero(flat == c)
        rng.shuffle(idx)
        n = max(1, min(count, idx.size - 1)) if idx.size > 1 else 1
        if n < count:
            capped.append(f"class {c}: {n} of {count}")
        train[idx[:n]] = True
    if capped and warn:
        warn("--train-count capped by the class size (" + "; ".join(capped) + ")")
    train = train.reshape(labels.shape)
    train, val = carve_validation(train, labels, val_ratio, seed)
    test = (labels > 0) & ~train & ~val
    return train, val, test


def footprint(mask: np.ndarray, patch_size: int) -> np.ndarray:
    """Pixels covered by the ``patch_size x patch_size`` patch of any pixel of ``mask``."""
    from scipy.ndimage import maximum_filter

    return maximum_filter(mask.astype(np.uint8), size=patch_size, mode="constant", cval=0).astype(bool)


def disjoint_split(
    labels: np.ndarray, train_ratio: float, val_ratio: float, seed: int, patch_size: int = 13, block: int | None = None
):
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
    4. Validation pixels are carved from the training pixels.
    Returns ``(train, val, test)``; guard-band pixels are in none of them.
    """
    if not 0 < train_ratio < 1:
        raise HsiclsError(f"--train-ratio must be in (0, 1), got {train_ratio}")
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
    train, val = carve_validation(train, labels, val_ratio, seed)
    return train, val, test


def fixed_split(labels: np.ndarray, train_mask: np.ndarray, test_mask: np.ndarray | None, val_ratio: float, seed: int):
    """Training (and optionally test) pixels from masks; default test = every other labelled pixel."""
    train = (train_mask > 0) & (labels > 0)
    if not train.any():
        raise HsiclsError("the training mask selects no labelled pixel")
    if test_mask is not None:
        test = (test_mask > 0) & (labels > 0) & ~train
    else:
        test = (labels > 0) & ~train
    train, val = carve_validation(train, labels, val_ratio, seed)
    return train, val, test
