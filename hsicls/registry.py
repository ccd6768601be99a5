"""The shared shape of hsicls's registries (models, split protocols, file formats): named entries of one
kind in registration order, and a package whose every module registers its entries when imported, so that
adding an entry is adding one file."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Generic, TypeVar

from hsicls.errors import HsiclsError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """``name -> entry`` of one ``kind`` (``"model"``, ``"split protocol"``, ``"file format"``)."""

    def __init__(self, kind: str, error: type[Exception] = HsiclsError):
        super().__init__()
        self.kind, self.error = kind, error

    def add(self, name: str, entry: T) -> T:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self[name] = entry
        return entry

    def lookup(self, name: str) -> T:
        """The entry, or one error naming the known ones."""
        if name not in self:
            raise self.error(f"unknown {self.kind} '{name}' (known: {', '.join(self)})")
        return self[name]


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (its ``__name__`` and ``__path__``), in name order."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        importlib.import_module(f"{package}.{info.name}")
