"""Disk errors and flushed writes: whichever library met a full disk, one cause in words.

A disk error (ENOSPC, EDQUOT, EIO, EROFS, EFBIG) raised by Python, h5py, GDAL/libtiff, torch.save or matplotlib
becomes one cause (:func:`disk_error_cause`); serialisers that write through C libraries are run into memory first
(:func:`write_via_memory`), so the size is known (free space is checked) and the disk is written by one checked
``write``. The lowest layer of the file handling (:mod:`hsicls.io.locks`, :mod:`hsicls.io.guard`,
:mod:`hsicls.io.atomic` build on it).
"""

from __future__ import annotations

import errno
import io
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}
_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error (a failing disk or a lost network share?)",
    errno.EFBIG: "file too large (a file size limit is set: ulimit -f)",
}
# how C libraries spell them in messages that carry no errno (GDAL/libtiff, HDF5, torch)
_PHRASES = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "read-only file system": errno.EROFS,
    "input/output error": errno.EIO,
    "file too large": errno.EFBIG,
}


def free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def ensure_space(folder: Path, nbytes: int) -> None:
    """Raise ENOSPC before writing ``nbytes`` into ``folder`` when they cannot fit."""
    free = free_bytes(folder)
    if free is not None and nbytes > free:
        raise OSError(errno.ENOSPC, f"No space left on device (needs {_size(nbytes)}, {_size(free)} free)")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def cause_of(code: int | None) -> str | None:
    """A disk errno in words (None for other errors)."""
    return _CAUSES.get(code) if code is not None else None


def disk_errno(text: str) -> int | None:
    """The disk errno a library message names (``errno = 28``, "No space left on device"...)."""
    low = text.lower()
    for phrase, code in _PHRASES.items():
        if phrase in low:
            return code
    m = re.search(r"errno\s*=?\s*(\d+)", low)
    return int(m.group(1)) if m and int(m.group(1)) in DISK_ERRNOS else None


def disk_error_cause(exc: BaseException, folder: Path | None = None) -> str | None:
    """The cause, in words, when ``exc`` (or what it was raised from) is a disk error; a library
    error without an errno counts as "no space left" when ``folder``'s file system is full."""
    e, seen = exc, set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            detail = str(e.strerror or "")
            return detail[0].lower() + detail[1:] if "free)" in detail else cause_of(e.errno)
        code = disk_errno(str(e))
        if code:
            return cause_of(code)
        e = e.__cause__ or e.__context__
    if folder is not None and isinstance(exc, (OSError, RuntimeError)) and free_bytes(folder) == 0:
        return cause_of(errno.ENOSPC)
    return None


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` and flush it to the disk; free space is checked first."""
    ensure_space(path.parent, len(data))
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_via_memory(path: Path, save: Callable[[io.BytesIO], object]) -> None:
    """``save(buffer)`` into memory, then :func:`write_bytes`: C serialisers (h5py, torch.save,
    matplotlib) never meet a full disk half-way, and the size is known before writing."""
    buf = io.BytesIO()
    save(buf)
    write_bytes(path, buf.getbuffer())


@contextmanager
def native_errors(path: Path | None = None) -> Iterator[None]:
    """Run C-library calls (GDAL, libtiff) with their messages on file descriptor 2 captured: a
    disk error they print (``_tiffWriteProc: No space left on device.``) becomes an ``OSError``
    (even when the library itself reports success); anything else is passed on to stderr."""
    try:
        sys.stderr.flush()
        cap = os.memfd_create("hsicls-stderr") if hasattr(os, "memfd_create") else None
        saved = os.dup(2) if cap is not None else None
    except (OSError, ValueError, AttributeError):
        cap = saved = None
    if cap is None:
        yield
        return
    os.dup2(cap, 2)
    failure: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        failure = exc
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        size = os.lseek(cap, 0, os.SEEK_END)
        text = os.pread(cap, size, 0) if size else b""
        os.close(cap)
    code = disk_errno(text.decode(errors="replace"))
    if code:
        raise OSError(code, os.strerror(code), str(path) if path else None) from failure
    while text:  # not a disk error: what the library said goes on to stderr as before
        text = text[os.write(2, text) :]
    if failure is not None:
        raise failure


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the file system allows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def json_safe(obj):
    """NaN/inf become null, so that the JSON we print or write stays valid."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
