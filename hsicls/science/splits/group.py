"""``--split group``: whole scenes, polygons or blocks held out (spatial hold-out, K-fold by group)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hsicls.errors import HsiclsError, OptionError
from hsicls.options import opt
from hsicls.science.splits.base import Masks, SplitInputs, SplitProtocol, footprint

if TYPE_CHECKING:
    import numpy as np

GroupBy = Literal["scene", "polygon", "block"]


@dataclass
class GroupOptions:
    group_by: GroupBy = opt(
        "scene", "Split group: the unit held out: a scene (file stem), a polygon (a connected region of one class), or a block."
    )
    test_groups: list[str] | None = opt(
        None,
        "Split group: comma-separated test groups (scene stems, or group numbers); default: drawn by --test-fraction.",
        comma_list=True,
    )
    test_fraction: float = opt(
        0.25,
        "Split group: share of the groups held out for testing (sets the folds: 1 / F).",
        min=0,
        max=1,
        min_open=True,
        max_open=True,
    )
    folds: int | None = opt(None, "Split group: K-fold cross-validation by group (train --runs K runs the K folds).", min=2)
    fold: int = opt(0, "Split group: which fold (0..K-1) is the test fold.", min=0)


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
) -> Masks:
    """Whole groups (scenes, polygons, blocks: ``groups`` ``(H, W)`` int, 0 = none) go to training or test.

    The test groups are ``test_groups`` when given, else fold ``fold`` of a ``folds``-fold
    :class:`sklearn.model_selection.StratifiedGroupKFold` over the labelled pixels (stratified by
    class, so every class keeps training pixels where the groups allow it). Validation is carved
    by group from the training groups in the same way (``round(1 / val_ratio)`` folds, the first
    one), falling back to random pixels when fewer than two training groups hold labels.
    ``guard > 0`` drops test pixels within ``guard`` pixels of a training or validation pixel
    (groups that touch, e.g. blocks), as the disjoint protocol does.
    """
    import numpy as np

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
        held = int(test.sum())
        test &= ~footprint(train | val, 2 * guard + 1)
        if not test.any():
            raise HsiclsError(
                f"the group split's guard ({guard} px, half of --patch-size, around every training and validation pixel) "
                f"leaves none of this fold's {held} test pixels: its test groups touch training groups everywhere; use a "
                f"larger --block-size or a smaller --patch-size"
            )
    return train, val, test


def _group_fold(y: np.ndarray, g: np.ndarray, folds: int, fold: int, seed: int) -> np.ndarray:
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(g))
    if n_groups < 2:
        raise HsiclsError(f"a group split needs at least 2 groups holding labels, found {n_groups}")
    folds = min(folds, n_groups)
    if not 0 <= fold < folds:
        raise HsiclsError(f"--fold must be in 0..{folds - 1}, got {fold}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class ... fewer than n_splits"
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        _, test_idx = list(splitter.split(np.zeros(len(y)), y, g))[fold]
    mask = np.zeros(len(y), bool)
    mask[test_idx] = True
    return mask


def guard_pixels(by: str, patch_size: int) -> int:
    """The guard band of a group split: none between scenes, half a patch between touching groups."""
    return patch_size // 2 if by != "scene" else 0


def group_names(groups: np.ndarray, mask: np.ndarray, scenes: list, by: str) -> list[str]:
    """The groups of the pixels in ``mask``: scene names (``--group-by scene``), else group numbers."""
    import numpy as np

    ids = np.unique(groups[mask & (groups > 0)]).tolist()
    return [scenes[i - 1].name for i in ids] if by == "scene" else [str(i) for i in ids]


def make_groups(labels: np.ndarray, scenes: list, by: str, block: int) -> np.ndarray:
    """Group id of every canvas pixel: the scene (1..S), a connected region of one class (8-connected,
    within one scene), or a ``block x block`` square of one scene."""
    import numpy as np
    from scipy import ndimage

    groups = np.zeros(labels.shape, np.int32)
    nxt = 1
    for i, s in enumerate(scenes):
        lab = labels[s.rows, : s.width]
        view = groups[s.rows, : s.width]
        if by == "scene":
            view[lab > 0] = i + 1
        elif by == "block":
            r, c = np.indices(lab.shape)
            ids = (r // block) * ((s.width + block - 1) // block) + c // block
            view[lab > 0] = nxt + ids[lab > 0]
            nxt += int(ids.max()) + 1
        else:
            for k in np.unique(lab[lab > 0]):
                comp, n = ndimage.label(lab == k, structure=np.ones((3, 3), int))
                view[comp > 0] = nxt + comp[comp > 0] - 1
                nxt += n
    return groups


class GroupSplit(
    SplitProtocol, name="group", summary="whole scenes, polygons or blocks held out; see --group-by", options=GroupOptions
):
    own_validation = True  # validation by whole groups (group_split)

    def folds(self, o) -> int:
        return o.folds if o.folds is not None else max(2, int(round(1 / o.test_fraction)))

    def check(self, o) -> None:
        if o.folds is not None and o.fold >= o.folds:
            raise OptionError(f"--fold must be in 0..{o.folds - 1}, got {o.fold}")

    def describe(self, o) -> str:
        held = f"test groups {','.join(o.test_groups)}" if o.test_groups else f"fold {o.fold} of {self.folds(o)}"
        return f"hold-out by {o.group_by}, {held}, validation by {o.group_by}"

    def record(self, o) -> dict:
        return dict(group_by=o.group_by, test_groups=o.test_groups, folds=self.folds(o), fold=o.fold, patch_size=o.patch_size)

    def guarded_footprint(self, record: dict) -> int | None:
        """Touching groups (polygons, blocks) keep half a patch between test and training pixels; scenes need none."""
        if "patch_size" not in record or not guard_pixels(record.get("group_by", "scene"), int(record["patch_size"])):
            return None
        return 2 * guard_pixels(record["group_by"], int(record["patch_size"])) + 1

    def groups(self, labels: np.ndarray, o, inputs: SplitInputs) -> np.ndarray:
        return make_groups(labels, inputs.scenes, o.group_by, o.block_size or o.patch_size)

    def held_out(self, test: np.ndarray, val: np.ndarray, o, inputs: SplitInputs) -> dict:
        g, scenes = inputs.groups, inputs.scenes
        return {
            "test_groups": group_names(g, test, scenes, o.group_by),
            "validation_groups": group_names(g, val, scenes, o.group_by),
        }

    def split(self, labels: np.ndarray, o, inputs: SplitInputs) -> Masks:
        import numpy as np

        groups = inputs.groups
        test = self._test_group_ids(o, inputs.scenes) if o.test_groups else None
        if o.folds is not None and test is None:  # asked for: never silently fewer folds
            n = len(np.unique(groups[labels > 0]))
            if o.folds > n:
                raise OptionError(f"--folds {o.folds} is more than the {n} groups holding labels (--group-by {o.group_by})")
        guard = guard_pixels(o.group_by, o.patch_size)
        return group_split(labels, groups, o.val_ratio, o.seed, self.folds(o), o.fold, test, guard, warn=inputs.warn)

    @staticmethod
    def _test_group_ids(o, scenes: list) -> set[int]:
        if o.group_by == "scene":
            stems = {s.name: i + 1 for i, s in enumerate(scenes)}
            unknown = [g for g in o.test_groups if g not in stems]
            if unknown:
                raise HsiclsError(f"--test-groups: no scene named {', '.join(unknown)} (scenes: {', '.join(stems)})")
            return {stems[g] for g in o.test_groups}
        try:
            return {int(g) for g in o.test_groups}
        except ValueError:
            raise HsiclsError(f"--test-groups: {o.group_by} groups are numbers, got {', '.join(o.test_groups)}") from None
