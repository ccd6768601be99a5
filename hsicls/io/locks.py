"""Output locks: an advisory ``fcntl.flock`` on ``<output>.lock`` while a file is written, so a second hsicls
process writing the same output fails at once with one line instead of racing it."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hsicls.errors import HsiclsError
from hsicls.io.disk import cause_of

_HELD: dict[str, list] = {}  # lock path -> [fd, depth], per process (flock is per open file)


def _lock_path(final: Path) -> Path:
    return final.with_name(final.name + ".lock")


def _acquire(lock: Path, final: Path) -> int:
    import fcntl

    nofollow = getattr(os, "O_NOFOLLOW", 0)  # a link planted at the lock's name is never written through
    for _ in range(10):
        try:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | nofollow, 0o644)
            except PermissionError:  # another user's lock file: locking needs no write access
                fd = os.open(lock, os.O_RDONLY | nofollow)
        except OSError as exc:
            if exc.errno == errno.ELOOP or lock.is_symlink():
                raise HsiclsError(
                    f"{final}: its lock file {lock.name} is a symbolic link; refusing to follow it (remove it if it is yours)"
                ) from None
            raise HsiclsError(
                f"{final}: cannot create the lock file {lock.name} ({cause_of(exc.errno) or exc.strerror})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise HsiclsError(
                f"{final}: another hsicls process{who} is writing it; wait for it to finish or choose another output name"
            ) from None
        try:  # the previous holder may have removed the file between our open and our lock
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:  # a full disk: the pid is only informative
                pass
            return fd
        os.close(fd)
    raise HsiclsError(f"{final}: could not lock {lock.name} (it keeps being replaced)")


@contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``<path>.lock`` (re-entrant within the process); the
    lock file is removed on release. Another process holding it is an error, not a wait."""
    final = Path(path)
    lock = _lock_path(final)
    key = str(lock.parent.resolve() / lock.name)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    _HELD[key] = [_acquire(lock, final), 1]
    try:
        yield
    finally:
        fd = _HELD.pop(key)[0]
        try:
            os.unlink(lock)  # while still holding it, so no one else's lock file is removed
        except OSError:
            pass
        os.close(fd)
