"""``--split random``: the paper's protocol, a random stratified share of every class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsicls.options import opt
from hsicls.science.splits.base import Masks, SplitInputs, SplitProtocol, check_ratio

if TYPE_CHECKING:
    import numpy as np


@dataclass
class RatioOptions:
    train_ratio: float = opt(
        0.05,
        "Fraction of each class's labelled pixels used for training (random, disjoint).",
        min=0,
        max=1,
        min_open=True,
        max_open=True,
    )


def stratified_split(labels: np.ndarray, train_ratio: float, val_ratio: float, seed: int) -> Masks:
    """Random stratified split, the paper's protocol (5 % of every class for training).

    For each class with ``n`` labelled pixels: ``max(1, round(train_ratio * n))`` pixels are
    drawn for training (at most ``n - 1`` when ``n > 1``, so every class keeps a test pixel);
    then ``round(val_ratio * n_train)`` of those move to validation. The rest is test.

    Returns ``(train, val, test)`` masks, each ``(H, W)`` bool.
    """
    import numpy as np

    check_ratio("--train-ratio", train_ratio)
    check_ratio("--val-ratio", val_ratio, zero_ok=True)
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


class RandomSplit(SplitProtocol, name="random", summary="stratified ratio", options=RatioOptions, recorded=["train_ratio"]):
    def describe(self, o) -> str:
        return f"random stratified, {o.train_ratio:g} of each class"

    def split(self, labels: np.ndarray, o, inputs: SplitInputs) -> Masks:
        train, val, test = stratified_split(labels, o.train_ratio, o.val_ratio, o.seed)
        if self.val_rule(o) == "spatial":  # asked for: the same training pixels, validation carved in regions
            train, val = self.carve(train | val, labels, o, test, inputs.validation)
        return train, val, test
