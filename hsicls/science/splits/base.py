"""The split-protocol registry, and what every protocol shares.

A split protocol turns the canvas labels ``(H, W)`` int (0 = unlabelled, 1..K) into three masks
``(train, val, test)``, each ``(H, W)`` bool: they never overlap, and guard-band pixels (the
spatial protocols) are in none of them. Validation pixels are always carved from the training
pixels, so model selection never looks at the test split.

A protocol is one module of this package: a :class:`SplitProtocol` subclass, registered by naming it
(``class Stripes(SplitProtocol, name="stripes", summary=..., options=StripeOptions)``), with its own options
as a dataclass mixin (fields made with :func:`hsicls.options.opt`). :class:`hsicls.config.PreprocessOptions` takes every registered
mixin, so its flags, ``--help``, ``--config`` and records follow without another edit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hsicls.errors import HsiclsError, OptionError
from hsicls.registry import Registry

if TYPE_CHECKING:
    import numpy as np

Masks = tuple  # (train, val, test): three (H, W) bool masks


SPLITS: Registry[SplitProtocol] = Registry("split protocol", OptionError)


@dataclass
class SplitInputs:
    """What a protocol may need beyond the labels.

    ``scenes``: the scenes of the canvas, in order (``name``, ``rows``, ``width``); ``groups``:
    ``(H, W)`` int group ids (0 = none) from :meth:`SplitProtocol.groups`; ``read_mask``: puts a
    mask file on the canvas (``(H, W)`` int, non-zero = selected); ``warn``: the warning sink.
    """

    scenes: list = field(default_factory=list)
    groups: np.ndarray | None = None
    read_mask: Callable[[str], np.ndarray] | None = None
    warn: Callable[[str], None] | None = None
    validation: dict = field(default_factory=dict)  # how spatial validation was drawn (filled by the carve)


@dataclass
class NoOptions:
    """A protocol without options of its own."""


class SplitProtocol:
    """One split protocol. ``o`` below is a :class:`hsicls.config.PreprocessOptions`.

    A subclass given a ``name`` is registered in :data:`SPLITS`; ``summary``: a few words for ``--split``'s help;
    ``options``: its options mixin; ``recorded``: the options kept in the split record (beside the protocol, the
    validation share and the seed)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    recorded: ClassVar[tuple[str, ...]] = ()
    # The test pixels lie in other places than the training pixels (fixed masks, disjoint blocks): under
    # ``--val-split auto`` validation is then carved spatially too (:func:`carve_spatial_validation`).
    spatial_test: ClassVar[bool] = False
    # Validation is drawn by the protocol itself (whole groups): ``--val-split`` does not apply.
    own_validation: ClassVar[bool] = False

    def __init_subclass__(cls, name: str | None = None, summary: str = "", options: type = NoOptions, recorded=(), **kw):
        super().__init_subclass__(**kw)
        if name is not None:
            cls.name, cls.summary, cls.Options, cls.recorded = name, summary, options, tuple(recorded)
            SPLITS.add(name, cls())

    def check(self, o: Any) -> None:
        """Rules between this protocol's options (raise :class:`OptionError`), before any data is read."""

    def val_rule(self, o: Any) -> str:
        """How validation is carved from the training pixels: ``spatial`` or ``random`` (``--val-split``;
        ``auto``: spatial where the test is spatially apart, :attr:`spatial_test`)."""
        choice = getattr(o, "val_split", "random")
        if choice == "auto":
            return "spatial" if self.spatial_test else "random"
        return choice

    def carve(
        self, train: np.ndarray, labels: np.ndarray, o: Any, test: np.ndarray | None = None, info: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(train, val)``: validation carved from ``train`` by :meth:`val_rule` (spatially: as far from the
        training pixels as ``test`` is)."""
        return carve(train, labels, o.val_ratio, o.seed, self.val_rule(o), test, info)

    def describe(self, o: Any) -> str:
        """The protocol in words (without the validation share and the seed)."""
        raise NotImplementedError

    def record(self, o: Any) -> dict:
        return {k: getattr(o, k) for k in self.recorded}

    def groups(self, labels: np.ndarray, o: Any, inputs: SplitInputs) -> np.ndarray | None:
        """The ``(H, W)`` group ids this protocol holds out whole (kept in the prepared file), or None."""
        return None

    def held_out(self, test: np.ndarray, val: np.ndarray, o: Any, inputs: SplitInputs) -> dict:
        """The groups actually held out for testing and validation, by name (group protocols); elsewhere how
        spatial validation was drawn (its block size and distances), when it was."""
        return {"validation": dict(inputs.validation)} if inputs.validation else {}

    def split(self, labels: np.ndarray, o: Any, inputs: SplitInputs) -> Masks:
        raise NotImplementedError

    def guarded_footprint(self, record: dict) -> int | None:
        """The side of the largest patch a model may be trained on without its patches reaching test pixels, for a
        split recorded as ``record`` (its guard band's footprint); ``None``: no limit of this kind."""
        return None


def guarded_footprint(record: dict) -> int | None:
    """:meth:`SplitProtocol.guarded_footprint` of a prepared file's split record (``None`` for unknown protocols)."""
    name = record.get("protocol")
    return SPLITS[name].guarded_footprint(record) if name in SPLITS else None


def get_split(name: str) -> SplitProtocol:
    return SPLITS.lookup(name)


def option_mixins() -> tuple[type, ...]:
    """The options mixins of the registered protocols, each once, in registry order."""
    out: list[type] = []
    for p in SPLITS.values():
        if p.Options is not NoOptions and p.Options not in out:
            out.append(p.Options)
    return tuple(out)


VAL_RULES = {
    "random": "random pixels of each class",
    "spatial": "spatial: blocks of each class's training pixels, the block size chosen so that validation lies as "
    "far from the remaining training pixels as the test does (distance percentiles 10-90)",
}


def describe_split(o: Any) -> str:
    """The split protocol in words, printed beside every number."""
    p = get_split(o.split)
    how = "" if p.own_validation else f" ({p.val_rule(o)})"
    return f"{p.describe(o)}, validation {o.val_ratio:g} of training{how}, seed {o.seed}"


def split_record(o: Any) -> dict:
    """The split as kept in the prepared file: protocol, validation share and rule, seed, words, its own options.
    Files written before ``--val-split`` have no ``val_split``: their validation was random."""
    p = get_split(o.split)
    rec = {"protocol": o.split, "val_ratio": o.val_ratio, "seed": o.seed, "description": describe_split(o)}
    if not p.own_validation:
        rec["val_split"] = p.val_rule(o)
        rec["val_rule"] = VAL_RULES[rec["val_split"]]
    rec.update(p.record(o))
    return rec


def check_ratio(name: str, value: float, zero_ok: bool = False) -> None:
    low_ok = 0 <= value if zero_ok else 0 < value
    if not (low_ok and value < 1):
        raise HsiclsError(f"{name} must be in {'[0' if zero_ok else '(0'}, 1), got {value}")


def carve_validation(train: np.ndarray, labels: np.ndarray, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Move ``round(val_ratio * n)`` of each class's training pixels to validation (at least one
    pixel always stays in training). Returns ``(train, val)``."""
    import numpy as np

    check_ratio("--val-ratio", val_ratio, zero_ok=True)
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


def carve(
    train: np.ndarray,
    labels: np.ndarray,
    val_ratio: float,
    seed: int,
    rule: str,
    test: np.ndarray | None = None,
    info: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    if rule == "spatial":
        return carve_matched_validation(train, labels, val_ratio, seed, test, info)
    return carve_validation(train, labels, val_ratio, seed)


BLOCK_SIZES = (2, 4, 8, 16, 32, 64, 128)  # the candidate block sides of spatial validation, in pixels


DISTANCE_QUANTILES = (10, 25, 50, 75, 90)  # percentiles compared between validation and test


def distances(train: np.ndarray, labels: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel of ``pixels`` to the nearest training pixel of its own class."""
    import numpy as np
    from scipy import ndimage

    out = []
    for c in np.unique(labels[pixels]):
        own = train & (labels == c)
        if own.any():
            out.append(ndimage.distance_transform_edt(~own)[pixels & (labels == c)])
    return np.concatenate(out) if out else np.zeros(0)


def carve_blocks(train: np.ndarray, labels: np.ndarray, val_ratio: float, seed: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Move ``round(val_ratio * n)`` of each class's ``n`` training pixels to validation in whole
    ``block x block`` squares of the grid, drawn in a seeded order (the last one gives only the pixels still
    needed, in raster order; at least one pixel stays in training)."""
    import numpy as np

    check_ratio("--val-ratio", val_ratio, zero_ok=True)
    rng = np.random.default_rng(seed + 7919)
    h, w = labels.shape
    nbx = (w + block - 1) // block
    block_id = ((np.arange(h) // block)[:, None] * nbx + (np.arange(w) // block)[None, :]).ravel()
    flat_train, flat_lab = train.ravel().copy(), labels.ravel()
    val = np.zeros_like(flat_train)
    for c in np.unique(flat_lab[flat_train]):
        idx = np.flatnonzero(flat_train & (flat_lab == c))
        quota = min(int(round(val_ratio * idx.size)), idx.size - 1)
        if quota <= 0:
            continue
        have = 0
        for b in rng.permutation(np.unique(block_id[idx])):
            if have >= quota:
                break
            inside = idx[block_id[idx] == b][: quota - have]  # the last block: only the pixels still needed
            val[inside], flat_train[inside] = True, False
            have += inside.size
    return flat_train.reshape(train.shape), val.reshape(train.shape)


def carve_matched_validation(
    train: np.ndarray,
    labels: np.ndarray,
    val_ratio: float,
    seed: int,
    test: np.ndarray | None = None,
    info: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Spatial validation as far from the training pixels as the test is.

    The distances of the test pixels to the nearest training pixel of their class are measured (percentiles
    :data:`DISTANCE_QUANTILES`). Validation is then carved in square blocks of each class's training pixels
    (:func:`carve_blocks`), for block sides :data:`BLOCK_SIZES`, and as whole connected regions
    (:func:`carve_spatial_validation`); the candidate whose validation distances are nearest the test's (mean
    absolute difference of ``log(1 + percentile)``; ties: the smaller blocks) is kept. So a test
    that lies beside the training pixels (a random split) gets small blocks, and a test in other fields gets
    whole fields. ``info`` receives the rule and both sets of distance percentiles."""
    import numpy as np

    if val_ratio == 0 or not train.any():
        return carve_validation(train, labels, val_ratio, seed)
    q = np.asarray(DISTANCE_QUANTILES)
    target = np.percentile(distances(train, labels, test), q) if test is not None and test.any() else None
    candidates = [
        (f"blocks of {b} px", carve_blocks(train, labels, val_ratio, seed, b)) for b in BLOCK_SIZES if b < max(labels.shape)
    ]
    candidates.append(("whole connected regions", carve_spatial_validation(train, labels, val_ratio, seed)))
    scored = []
    for name, (tr, va) in candidates:
        d = distances(tr, labels, va)
        got = np.percentile(d, q) if d.size else np.zeros(q.size)
        miss = float(np.mean(np.abs(np.log1p(got) - np.log1p(target)))) if target is not None else 0.0
        scored.append((miss, name, tr, va, got))
    if target is None:  # no test to match: whole regions
        _, name, tr, va, got = scored[-1]
    else:
        _, name, tr, va, got = min(scored, key=lambda t: t[0])  # min keeps the first (smaller blocks) on a tie
    if info is not None:
        info.update(
            rule=name,
            distance_percentiles=list(DISTANCE_QUANTILES),
            val_distance_px=[round(float(v), 1) for v in got],
            test_distance_px=None if target is None else [round(float(v), 1) for v in target],
        )
    return tr, va


def carve_spatial_validation(train: np.ndarray, labels: np.ndarray, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Move about ``round(val_ratio * n)`` of each class's ``n`` training pixels to validation, in places
    apart from the pixels that stay: validation that sees the spatial shift the test sees.

    Per class (seeded; at least one pixel always stays in training):

    1. Its training pixels fall into connected regions (8-connected: a field, a polygon, a block).
       With several regions, whole regions are taken in a seeded random order, each one that keeps the
       total within 1.5 x the quota, until the quota is met; at least one region stays in training.
    2. What the whole regions could not fill (a class with one region, or regions all larger than the
       quota allows) is taken as a strip at one end of the largest region left: the pixels with the
       smallest, or largest (seeded), coordinate along the region's longer side.

    So validation pixels are whole fields where a class has several, and a compact end of a field
    otherwise, never pixels scattered among the training pixels. Returns ``(train, val)``."""
    import numpy as np
    from scipy import ndimage

    check_ratio("--val-ratio", val_ratio, zero_ok=True)
    rng = np.random.default_rng(seed + 7919)
    train, val = train.copy(), np.zeros_like(train)
    eight = np.ones((3, 3), bool)
    for c in np.unique(labels[train]):
        mask = train & (labels == c)
        n = int(mask.sum())
        quota = min(int(round(val_ratio * n)), n - 1)
        if quota <= 0:
            continue
        regions, m = ndimage.label(mask, structure=eight)
        sizes = np.bincount(regions.ravel(), minlength=m + 1)
        chosen, have = [], 0
        if m >= 2:
            for r in rng.permutation(np.arange(1, m + 1)):
                if have >= quota or len(chosen) == m - 1:
                    break
                if have + sizes[r] <= 1.5 * quota:
                    chosen.append(r)
                    have += int(sizes[r])
        pick = np.isin(regions, chosen) if chosen else np.zeros_like(mask)
        need = quota - have
        if need > 0:
            left = [r for r in range(1, m + 1) if r not in chosen]
            big = max(left, key=lambda r: (sizes[r], -r))
            rr, cc = np.nonzero(regions == big)
            along, across = (rr, cc) if np.ptp(rr) >= np.ptp(cc) else (cc, rr)
            sign = 1 if rng.random() < 0.5 else -1
            order = np.lexsort((across, sign * along))[: min(need, rr.size - (1 if len(left) == 1 else 0))]
            pick[rr[order], cc[order]] = True
        val |= pick
        train &= ~pick
    return train, val


def footprint(mask: np.ndarray, patch_size: int) -> np.ndarray:
    """Pixels covered by the ``patch_size x patch_size`` patch of any pixel of ``mask``."""
    import numpy as np
    from scipy.ndimage import maximum_filter

    return maximum_filter(mask.astype(np.uint8), size=patch_size, mode="constant", cval=0).astype(bool)
