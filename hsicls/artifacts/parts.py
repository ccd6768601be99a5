"""Part files of a map computed by several processes (predict-map under torchrun).

Each unit of work (one window of the map's window grid) is committed as its own part file in a
hidden folder beside the map, ``.<map name>.parts/``: ``u<index>.npz`` holds the window's class
codes, and its confidences and probabilities when they are asked for, and ``u<index>.done`` is
the marker written after it, holding the part's sha256. Both are written under a fresh name
(``O_CREAT | O_EXCL | O_NOFOLLOW``, never through a planted link), flushed to disk (``fsync``) and
renamed into place, the marker only once the part is durable, so a unit is either committed whole
or not at all. A part is trusted only if it matches its marker's digest: one that does not (cut
short by a kill, damaged, deleted behind its marker) is removed with its marker and computed again.

A folder left by a failed or killed run is reused by the next run of the same job (``job.json``
records the scene, the bundle and every option that changes a pixel); a folder of another job is
emptied first. One job owns the folder while it runs: its rank 0 holds the folder's lock from the
plan to the end (a second job is refused, never mixed in), and ``job.json`` names the running job,
checked at every commit and before assembly. The parts are removed once the map is assembled.
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
from hsicls.io.disk import fsync_dir

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
        **outputs.fingerprint(options.reject_below),
        "format": 1,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _write_new(path: Path, data: bytes) -> None:
    """``data`` to ``path`` via a fresh temporary name in the same folder (no link followed), on disk
    (``fsync``) before it takes its name."""
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
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class PartFolder:
    """The part files of one map, owned by the job ``job_id`` (see the module docstring)."""

    def __init__(self, map_path: Path, job_id: str | None = None):
        map_path = Path(map_path)
        self.map = map_path
        self.dir = map_path.with_name(f".{map_path.name}.parts")
        self.job_id = job_id

    def prepare(self, fingerprint: str) -> int:
        """Create the folder, or reuse it for the same job (its verified units kept); name this run
        as its owner; returns the number of committed units. The caller holds the folder's lock."""
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
            record = {"map": self.map.name, "fingerprint": fingerprint, "job": self.job_id}
            _write_new(job, json.dumps(record).encode())
        except OSError as exc:
            raise HsiclsError(f"{d}: cannot create the part folder ({exc.strerror})") from None
        return sum(1 for p in d.iterdir() if p.suffix == ".done")

    def check_owner(self) -> None:
        """This run still owns the folder (``job.json`` names it): never commit to or assemble another's."""
        try:
            owner = json.loads((self.dir / "job.json").read_text()).get("job")
        except (OSError, ValueError, AttributeError):
            owner = None
        if self.job_id is not None and owner != self.job_id:
            raise HsiclsError(
                f"{self.dir}: the part folder of {self.map.name} was taken over or removed by another job; "
                f"this run stops without writing the map (run one predict-map per output at a time)"
            )

    def _part(self, index: int) -> Path:
        return self.dir / f"u{index:07d}.npz"

    def _verified(self, index: int) -> bytes | None:
        """The part's bytes if it matches its marker's digest; otherwise both are removed and None."""
        part, marker = self._part(index), self._part(index).with_suffix(".done")
        try:
            digest = marker.read_text().strip()
            data = part.read_bytes()
        except OSError:
            data, digest = None, ""
        if data is not None and hashlib.sha256(data).hexdigest() == digest:
            return data
        self._discard(index)
        return None

    def _discard(self, index: int) -> None:
        """Remove a unit's marker, then its part: the unit is computed again."""
        for p in (self._part(index).with_suffix(".done"), self._part(index)):
            try:
                p.unlink()
            except OSError:
                pass

    def done(self, index: int) -> bool:
        """The unit is committed and its part verifies (a damaged or missing part is removed: recompute it)."""
        if not self._part(index).with_suffix(".done").exists():
            return False
        return self._verified(index) is not None

    def commit(self, index: int, classes: np.ndarray, confidence, probabilities, counts: np.ndarray, n: int) -> None:
        """Commit one unit: its arrays (on disk), then the marker with their digest."""
        arrays = {"classes": classes, "counts": counts, "n": np.array(n)}
        if confidence is not None:
            arrays["confidence"] = confidence
        if probabilities is not None:
            arrays["probabilities"] = probabilities
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        self.check_owner()
        try:
            _write_new(self._part(index), data)
            _write_new(self._part(index).with_suffix(".done"), hashlib.sha256(data).hexdigest().encode())
            fsync_dir(self.dir)
        except OSError as exc:
            raise HsiclsError(f"{self.dir}: cannot write a part file ({exc.strerror})") from None

    def load(self, index: int) -> dict | None:
        """The unit's arrays, or None when its part does not verify (removed: the caller computes it again)."""
        data = self._verified(index)
        if data is None:
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            self._discard(index)
            return None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
