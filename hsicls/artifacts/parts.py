"""Part files of a map computed by several processes (predict-map under torchrun).

Each unit of work (one window of the map's window grid) is committed as its own part file in a
hidden folder beside the map, ``.<map name>.parts/``: ``u<index>.npz`` holds the window's class
codes, and its confidences and probabilities when they are asked for, and ``u<index>.done`` is
the marker written after it. Both are written under a fresh name (``O_CREAT | O_EXCL |
O_NOFOLLOW``, never through a planted link) and renamed into place, so a unit is either
committed whole or not at all. A folder left by a failed or killed run is reused by the next
run of the same job (``job.json`` records the scene, the bundle and every option that changes a
pixel); a folder of another job is emptied first. The parts are removed once the map is
assembled.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from hsicls.errors import HsiclsError

__all__ = ["PartFolder", "job_fingerprint"]


def _stat(p: Path) -> list:
    s = os.stat(p)
    return [str(Path(p).resolve()), s.st_size, s.st_mtime_ns]


def job_fingerprint(scene: Path, bundle: Path, outputs, options) -> str:
    """A digest of what the parts depend on: the scene and bundle files (path, size, mtime) and
    the options that change a pixel's value or the parts' contents."""
    record = {
        "scene": _stat(scene),
        "bundle": _stat(bundle),
        "window": options.window,
        "batch_size": options.batch_size,
        "device": options.device,
        "precision": options.precision,
        "reject_below": options.reject_below,
        "nodata": options.nodata,
        "key": options.key,
        "confidence": outputs.confidence is not None or options.reject_below is not None,
        "probabilities": outputs.probabilities is not None,
        "format": 1,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _write_new(path: Path, data: bytes) -> None:
    """``data`` to ``path`` via a fresh temporary name in the same folder (no link followed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileExistsError:
        tmp.unlink()  # our own pid's leftover (a restarted rank can get a dead rank's pid back)
        fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class PartFolder:
    """The part files of one map (see the module docstring)."""

    def __init__(self, map_path: Path):
        map_path = Path(map_path)
        self.map = map_path
        self.dir = map_path.with_name(f".{map_path.name}.parts")

    def prepare(self, fingerprint: str) -> int:
        """Create the folder, or reuse it for the same job; returns the number of committed units."""
        d = self.dir
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise HsiclsError(f"{d}: expected the part folder of {self.map.name}, found a link or a file; remove it")
        job = d / "job.json"
        if d.exists():
            try:
                same = json.loads(job.read_text())["fingerprint"] == fingerprint
            except (OSError, ValueError, KeyError, TypeError):
                same = False
            if not same:
                shutil.rmtree(d)
        try:
            d.mkdir(exist_ok=True)
            if not job.exists():
                _write_new(job, json.dumps({"map": self.map.name, "fingerprint": fingerprint}).encode())
        except OSError as exc:
            raise HsiclsError(f"{d}: cannot create the part folder ({exc.strerror})") from None
        return sum(1 for p in d.iterdir() if p.suffix == ".done")

    def _part(self, index: int) -> Path:
        return self.dir / f"u{index:07d}.npz"

    def done(self, index: int) -> bool:
        return self._part(index).with_suffix(".done").exists()

    def commit(self, index: int, classes: np.ndarray, confidence, probabilities, counts: np.ndarray, n: int) -> None:
        """Commit one unit: its arrays, then the marker."""
        arrays = {"classes": classes, "counts": counts, "n": np.array(n)}
        if confidence is not None:
            arrays["confidence"] = confidence
        if probabilities is not None:
            arrays["probabilities"] = probabilities
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            _write_new(self._part(index), buf.getvalue())
            _write_new(self._part(index).with_suffix(".done"), b"")
        except OSError as exc:
            raise HsiclsError(f"{self.dir}: cannot write a part file ({exc.strerror})") from None

    def load(self, index: int) -> dict:
        try:
            with np.load(self._part(index), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise HsiclsError(
                f"{self._part(index)}: a part file of {self.map.name} is unreadable ({exc}); run the command again"
            ) from None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
