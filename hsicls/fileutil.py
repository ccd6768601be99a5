"""Output files written atomically: to a temporary name in the same folder, then renamed."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import HsiclsError, OutputExistsError


def check_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to replace an existing file unless ``overwrite``; make sure the folder exists."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (pass --overwrite to replace it)")
    if path.exists() and path.is_dir():
        raise HsiclsError(f"{path}: is a directory, expected a file name")
    if not path.parent.exists():
        raise HsiclsError(f"{path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise HsiclsError(f"{path}: folder {path.parent} is not writable")
    return path


def json_safe(obj):
    """NaN/inf become null, so that the JSON we print or write stays valid."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only if the block succeeds.

    On any exception (including Ctrl-C) the temporary file is removed, so no half-written
    output is ever left under the final name.
    """
    final = check_output(path, overwrite)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        raise HsiclsError(f"{final}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
