"""``--split count``: a fixed number of random training pixels per class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsicls.errors import HsiclsError, OptionError
from hsicls.options import opt
from hsicls.science.splits.base import Masks, SplitInputs, SplitProtocol, carve

if TYPE_CHECKING:
    import numpy as np


@dataclass
class CountOptions:
    train_count: int | None = opt(None, "Training pixels per class (split count).", min=1)


def count_split(
    labels: np.ndarray, count: int, val_ratio: float, seed: int, warn=None, val_rule: str = "random", info: dict | None = None
) -> Masks:
    """``count`` training pixels per class (capped at ``n - 1`` for a class of ``n`` pixels,
    with a warning), drawn at random; the rest is test. Returns ``(train, val, test)``."""
    import numpy as np

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
    train, val = carve(train, labels, val_ratio, seed, val_rule, (labels > 0) & ~train, info)
    test = (labels > 0) & ~train & ~val
    return train, val, test


class CountSplit(SplitProtocol, name="count", summary="N per class", options=CountOptions, recorded=["train_count"]):
    def check(self, o) -> None:
        if o.train_count is None:
            raise OptionError("--split count needs --train-count N")

    def describe(self, o) -> str:
        return f"{o.train_count} random pixels per class"

    def split(self, labels: np.ndarray, o, inputs: SplitInputs) -> Masks:
        return count_split(
            labels, o.train_count, o.val_ratio, o.seed, warn=inputs.warn, val_rule=self.val_rule(o), info=inputs.validation
        )
