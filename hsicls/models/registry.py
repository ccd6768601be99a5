"""A model registry in the style of timm: ``@register_model`` + ``create_model(name, ...)``.

A registered factory takes ``(in_bands, n_classes, patch_size, **options)`` and returns an
``nn.Module`` whose ``forward`` maps patches ``(B, in_bands, P, P)`` to logits ``(B, n_classes)``.
Adding a model is adding one decorated function.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hsicls.errors import HsiclsError
from hsicls.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., Any]
    description: str
    kind: str = "deep"  # "deep": trained by gradient descent; "classic": fitted by ``fit``; "ensemble": assembled
    fit: Callable[..., Any] | None = None  # classic: (x_tr, y_tr, x_val, y_val, n_classes, seed, log) -> (module, options)
    selects_on_validation: bool = True  # a fitted model picks its settings on the validation split
    # its outputs are logits or log-probabilities (False: e.g. votes); a module may also say so itself with a
    # ``probabilistic`` attribute (SVM bundles from before Platt scaling output one-vs-one votes)
    probabilistic: bool = True
    every_class: bool = False  # a fitted model that needs training pixels of every class (the SVM's one-vs-one pairs)
    trainable: bool = True  # False: made from other trained models (the ensemble of --model auto), not by train itself

    @property
    def fitted(self) -> bool:
        """Fitted in one call on the centre pixels (patch size 1), not trained by epochs."""
        return self.fit is not None


_REGISTRY: Registry[ModelEntry] = Registry("model")


def register_model(name: str, description: str = "", kind: str = "deep", fit: Callable | None = None, **flags: bool) -> Callable:
    def deco(fn: Callable) -> Callable:
        doc = description or (fn.__doc__ or "").strip().splitlines()[0]
        _REGISTRY.add(name, ModelEntry(name, fn, doc, kind, fit, **flags))
        return fn

    return deco


def list_models(pattern: str = "*", kind: str | None = None) -> list[str]:
    return sorted(n for n, e in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (kind is None or e.kind == kind))


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise HsiclsError(f"unknown model '{name}' (known: {', '.join(list_models())})")
    return _REGISTRY[name]


def create_model(name: str, *, in_bands: int, n_classes: int, patch_size: int, **options: Any):
    """Build a registered model; unknown options are a clear error."""
    entry = get_entry(name)
    try:
        return entry.factory(in_bands=in_bands, n_classes=n_classes, patch_size=patch_size, **options)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as exc:
        raise HsiclsError(
            f"model '{name}': invalid options {options or ''} for {in_bands} bands, {patch_size}x{patch_size} patches ({exc})"
        ) from None
