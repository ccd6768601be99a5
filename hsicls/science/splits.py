"""Train / validation / test splits of labelled pixels.

All masks are ``(H, W)`` bool over the scene grid; they never overlap, and their union is the
set of labelled pixels. Validation pixels are always carved from the training pixels, so model
selection never looks at the test split.
"""

from __future__ import annotations

import numpy as np

from hsicls.errors import HsiclsError


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


def group_split(
    labels: np.ndarray,
    groups: np.ndarray,
    val_ratio: float,
    seed: int,
    folds: int,
    fold: int = 0,
    test_groups: set[int] | None = None,
    guard: int = 0,
    warn=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole groups (scenes, polygons, blocks: ``groups`` ``(H, W)`` int, 0 = none) go to training or test.

    The test groups are ``test_groups`` when given, else fold ``fold`` of a ``folds``-fold
    :class:`sklearn.model_selection.StratifiedGroupKFold` over the labelled pixels (stratified by
    class, so every class keeps training pixels where the groups allow it). Validation is carved
    by group from the training groups in the same way (``round(1 / val_ratio)`` folds, the first
    one), falling back to random pixels when fewer than two training groups hold labels.
    ``guard > 0`` drops test pixels within ``guard`` pixels of a training or validation pixel
    (groups that touch, e.g. blocks), as ``disjoint_split`` does.
    """
    lab = labels > 0
    y, g = labels[lab], groups[lab]
    if test_groups is None:
        test_pix = _group_fold(y, g, folds, fold, seed)
    else:
        test_pix = np.isin(g, list(test_groups))
    if test_pix.all() or not test_pix.any():
        raise HsiclsError(f"the group split leaves {'no training' if test_pix.all() else 'no test'} pixels")
    train_pix = ~test_pix
    val_pix = np.zeros_like(train_pix)
    if val_ratio > 0:
        tr_idx = np.flatnonzero(train_pix)
        if len(np.unique(g[tr_idx])) >= 2:
            k = max(2, int(round(1 / val_ratio)))
            sub = _group_fold(y[tr_idx], g[tr_idx], min(k, len(np.unique(g[tr_idx]))), 0, seed + 1)
            val_pix[tr_idx[sub]] = True
        else:
            if warn:
                warn("only one training group: validation pixels are drawn at random inside it")
            rng = np.random.default_rng(seed + 1)
            val_pix[rng.choice(tr_idx, max(1, int(round(val_ratio * tr_idx.size))), replace=False)] = True
        train_pix &= ~val_pix
    out = []
    for m in (train_pix, val_pix, test_pix):
        full = np.zeros(labels.shape, bool)
        full[lab] = m
        out.append(full)
    train, val, test = out
    if guard > 0:
        test &= ~footprint(train | val, 2 * guard + 1)
    return train, val, test


def _group_fold(y: np.ndarray, g: np.ndarray, folds: int, fold: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(g))
    if n_groups < 2:
        raise HsiclsError(f"a group split needs at least 2 groups holding labels, found {n_groups}")
    folds = min(folds, n_groups)
    if not 0 <= fold < folds:
        raise HsiclsError(f"--fold must be in 0..{folds - 1}, got {fold}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class ... fewer than n_splits"
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        _, test_idx = list(splitter.split(np.zeros(len(y)), y, g))[fold]
    mask = np.zeros(len(y), bool)
    mask[test_idx] = True
    return mask


def group_names(groups: np.ndarray, mask: np.ndarray, scenes: list, by: str) -> list[str]:
    """The groups of the pixels in ``mask``: scene names (``--group-by scene``), else group numbers."""
    ids = np.unique(groups[mask & (groups > 0)]).tolist()
    return [scenes[i - 1].name for i in ids] if by == "scene" else [str(i) for i in ids]
