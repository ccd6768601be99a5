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
