"""Compiled networks for large inference jobs: ``torch.compile`` (Inductor) with a persistent cache.

Inductor fuses the elementwise chains that take about half of md2f-mamba's time on a CPU and writes
C++ kernels for them; the first compilation of a network costs tens of seconds (a C compiler runs),
a later one with the same network and shapes is read from the cache in a few seconds. So
``--compile auto`` compiles only when the job's estimated eager time (its first batch's time x its
batches) is at least :data:`COMPILE_REPAY` x the expected compilation time: the time recorded for the
same network signature the last time it was compiled here, or :data:`COLD_COMPILE_S` when none is.

* One input shape: every batch is zero-padded to the batch size (:class:`Compiled`), so the network is
  compiled once (``dynamic=False``); each pixel's logits depend on its own patch only.
* The cache lives in ``$HSICLS_CACHE`` or ``$XDG_CACHE_HOME/hsicls`` or ``~/.cache/hsicls``, folder
  ``inductor`` (Inductor's ``TORCHINDUCTOR_CACHE_DIR`` unless the user set it), made ``0700``; a folder
  that another user owns or that others may write is not used (compiled code is loaded from it).
* A failure (no C compiler, an unsupported operator) is one warning and the job runs eager.

Compiled logits differ from eager ones by rounding (fusion reorders sums); the caller treats the
compiled network as it treats bf16 (:class:`hsicls.engine.inference.Runner`): pixels whose top-2
margin is within the measured difference are recomputed eagerly, so the map stays eager fp32's.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

import torch

from hsicls.errors import first_line

COLD_COMPILE_S = 60.0  # measured here: 57 s for md2f-mamba fp32, 20 s for its bf16 copy, cold (2 cores)
COMPILE_REPAY = 4.0  # compile when the eager job is estimated at >= 4 x the expected compilation time


class UnsafeCache(Exception):
    """The cache folder is not this user's alone."""


def cache_root() -> Path:
    base = os.environ.get("HSICLS_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hsicls"


def cache_dir() -> Path:
    """The Inductor cache folder, created ``0700``; :class:`UnsafeCache` if another user owns it or others
    may write to it (compiled code is loaded from there)."""
    d = cache_root() / "inductor"
    made = not d.exists()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    if made:
        os.chmod(d, 0o700)
    st = os.stat(d)
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UnsafeCache(f"{d} belongs to another user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCache(f"{d} is writable by others (chmod 700 it)")
    return d


def _record_path() -> Path:
    return cache_root() / "compile-times.json"


def expected_seconds(signature: str) -> float:
    """The compilation time recorded for ``signature`` (a warm cache), else :data:`COLD_COMPILE_S`."""
    try:
        return float(json.loads(_record_path().read_text())[signature])
    except (OSError, ValueError, KeyError, TypeError):
        return COLD_COMPILE_S


def record_seconds(signature: str, seconds: float) -> None:
    path = _record_path()
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(data, dict):
            data = {}
        data[signature] = round(seconds, 2)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass


def signature(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype) -> str:
    """What a compiled network depends on: its class, its parameter shapes, the input shape and dtype, torch."""
    shapes = ",".join("x".join(map(str, p.shape)) for p in model.parameters())
    digest = hashlib.sha256(shapes.encode()).hexdigest()[:12]  # stable across processes (hash() is salted)
    return f"{type(model).__name__}|{tuple(x.shape)}|{dtype}|{torch.__version__}|{digest}"


class Compiled:
    """``net`` compiled for batches of exactly ``size`` (smaller ones zero-padded), logits as float32."""

    def __init__(self, net: torch.nn.Module, size: int, dtype: torch.dtype):
        self.size, self.dtype = size, dtype
        self.fn = torch.compile(net, dynamic=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = x.shape[0]
        if m < self.size:
            x = torch.cat([x, x.new_zeros((self.size - m,) + tuple(x.shape[1:]))])
        return self.fn(x.to(self.dtype))[:m].float()


def try_compile(net: torch.nn.Module, x: torch.Tensor, size: int, dtype: torch.dtype, warn) -> tuple[Compiled | None, float]:
    """``(the compiled network, seconds its compilation and first batch took)``, or ``(None, 0)`` after one
    ``warn`` line when compilation is not possible here."""
    try:
        d = cache_dir()
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(d))
    except (OSError, UnsafeCache) as exc:
        warn(f"compilation skipped: the cache folder is not safe to use ({exc}); running eager")
        return None, 0.0
    sig = signature(net, x, dtype)
    try:
        t = time.perf_counter()
        c = Compiled(net, size, dtype)
        c(x)
        seconds = time.perf_counter() - t
    except Exception as exc:  # no C compiler, an operator Inductor cannot lower, ...
        warn(f"torch.compile failed ({first_line(exc)}); running eager")
        return None, 0.0
    record_seconds(sig, seconds)
    return c, seconds
