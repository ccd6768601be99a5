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

    def __init_subclass__(cls, name: str | None = None, summary: str = "", options: type = NoOptions, recorded=(), **kw):
        super().__init_subclass__(**kw)
        if name is not None:
            cls.name, cls.summary, cls.Options, cls.recorded = name, summary, options, tuple(recorded)
            SPLITS.add(name, cls())

    def check(self, o: Any) -> None:
        """Rules between this protocol's options (raise :class:`OptionError`), before any data is read."""

    def describe(self, o: Any) -> str:
        """The protocol in words (without the validation share and the seed)."""
        raise NotImplementedError

    def record(self, o: Any) -> dict:
        return {k: getattr(o, k) for k in self.recorded}

    def groups(self, labels: np.ndarray, o: Any, inputs: SplitInputs) -> np.ndarray | None:
        """The ``(H, W)`` group ids this protocol holds out whole (kept in the prepared file), or None."""
        return None

    def held_out(self, test: np.ndarray, val: np.ndarray, o: Any, inputs: SplitInputs) -> dict:
        """The groups actually held out for testing and validation, by name (group protocols only)."""
        return {}

    def split(self, labels: np.ndarray, o: Any, inputs: SplitInputs) -> Masks:
        raise NotImplementedError


def get_split(name: str) -> SplitProtocol:
    return SPLITS.lookup(name)


def option_mixins() -> tuple[type, ...]:
    """The options mixins of the registered protocols, each once, in registry order."""
    out: list[type] = []
    for p in SPLITS.values():
        if p.Options is not NoOptions and p.Options not in out:
            out.append(p.Options)
    return tuple(out)


def describe_split(o: Any) -> str:
    """The split protocol in words, printed beside every number."""
    return f"{get_split(o.split).describe(o)}, validation {o.val_ratio:g} of training, seed {o.seed}"


def split_record(o: Any) -> dict:
    """The split as kept in the prepared file: protocol, validation share, seed, words, its own options."""
    rec = {"protocol": o.split, "val_ratio": o.val_ratio, "seed": o.seed, "description": describe_split(o)}
    rec.update(get_split(o.split).record(o))
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


def footprint(mask: np.ndarray, patch_size: int) -> np.ndarray:
    """Pixels covered by the ``patch_size x patch_size`` patch of any pixel of ``mask``."""
    import numpy as np
    from scipy.ndimage import maximum_filter

    return maximum_filter(mask.astype(np.uint8), size=patch_size, mode="constant", cval=0).astype(bool)
