"""``--split fixed``: training (and test) pixels from mask files, e.g. a benchmark's official split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hsicls.errors import HsiclsError, OptionError
from hsicls.options import opt
from hsicls.science.splits.base import Masks, SplitInputs, SplitProtocol, carve

if TYPE_CHECKING:
    import numpy as np


@dataclass
class MaskOptions:
    train_mask: str | None = opt(None, "Split fixed: training pixels (non-zero).")
    test_mask: str | None = opt(None, "Split fixed: test pixels (default: every other labelled pixel).")


def fixed_split(
    labels: np.ndarray,
    train_mask: np.ndarray,
    test_mask: np.ndarray | None,
    val_ratio: float,
    seed: int,
    val_rule: str = "random",
    info: dict | None = None,
) -> Masks:
    """Training (and optionally test) pixels from masks; default test = every other labelled pixel.
    Validation is carved from the training pixels by ``val_rule`` (``random`` or ``spatial``,
    :func:`hsicls.science.splits.base.carve`)."""
    train = (train_mask > 0) & (labels > 0)
    if not train.any():
        raise HsiclsError("the training mask selects no labelled pixel")
    if test_mask is not None:
        test = (test_mask > 0) & (labels > 0) & ~train
    else:
        test = (labels > 0) & ~train
    train, val = carve(train, labels, val_ratio, seed, val_rule, test, info)
    return train, val, test


class FixedSplit(SplitProtocol, name="fixed", summary="mask files", options=MaskOptions, recorded=["train_mask", "test_mask"]):
    spatial_test = True  # an official training mask holds whole fields; the test is elsewhere

    def check(self, o) -> None:
        if o.train_mask is None:
            raise OptionError("--split fixed needs --train-mask FILE")

    def describe(self, o) -> str:
        test = ", " + Path(o.test_mask).name if o.test_mask else ""
        return f"fixed masks ({Path(o.train_mask).name if o.train_mask else '?'}{test})"

    def split(self, labels: np.ndarray, o, inputs: SplitInputs) -> Masks:
        test = inputs.read_mask(o.test_mask) if o.test_mask else None
        return fixed_split(labels, inputs.read_mask(o.train_mask), test, o.val_ratio, o.seed, self.val_rule(o), inputs.validation)
