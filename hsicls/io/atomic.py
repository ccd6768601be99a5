"""Atomic outputs: the only way hsicls writes a user-facing file.

:func:`atomic_output` (and :func:`atomic_outputs` for files that belong together, such as a map and its confidence
raster):

1. the output is checked by the guard (:func:`hsicls.io.guard.check_output`): refused when it is a directory, when
   it is (or is a hard link to) an input of the running command, or when it exists and ``--overwrite`` was not given;
2. an advisory lock (:mod:`hsicls.io.locks`) is held while it is written, so a second hsicls process writing the
   same file fails at once with one line;
3. temporary files left by dead processes for that output (``.<name>.<pid>.tmp``) are removed;
4. the caller writes to a temporary name in the target folder; after a successful ``fsync`` it is moved into place,
   with a no-replace rename (``renameat2(RENAME_NOREPLACE)``, else link + unlink) when ``--overwrite`` was not
   given, so the loser of a race fails cleanly;
5. any failure removes the temporary files; a disk error, whichever library met it (h5py, GDAL, torch.save,
   matplotlib), becomes one :class:`~hsicls.errors.HsiclsError` naming the file and the cause
   (:mod:`hsicls.io.disk`).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from hsicls.errors import HsiclsError, OutputExistsError, first_line
from hsicls.io.disk import cause_of, disk_error_cause, fsync_dir, fsync_file
from hsicls.io.guard import OutputSet, checked_outputs
from hsicls.io.locks import output_lock


# --------------------------------------------------------------------------- temporary files
def temp_name(final: Path, pid: int | None = None) -> Path:
    return final.with_name(f".{final.name[:200]}.{os.getpid() if pid is None else pid}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temps(final: Path) -> list[Path]:
    """Remove the temporary files other, dead processes left for ``final`` (SIGKILL, power loss)."""
    pattern = re.compile(rf"^\.{re.escape(final.name[:200])}\.(\d+)\.tmp(\..*)?$")
    removed = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    if removed:
        from hsicls import console

        console.debug(f"removed {len(removed)} temporary file(s) of dead processes for {final.name}")
    return removed


def _discard(tmp: Path) -> None:
    for p in (tmp, tmp.with_name(tmp.name + ".gtiff")):
        try:
            p.unlink()
        except OSError:
            pass


def _renameat2_noreplace(src: Path, dst: Path) -> bool:
    """``renameat2(src, dst, RENAME_NOREPLACE)``; False where the kernel or file system lacks it."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, noreplace = -100, 1
    if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), noreplace) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def _link_noreplace(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise
        if dst.exists():  # no hard links here (FAT, some network shares): check, then rename
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def move_into_place(tmp: Path, final: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``final``; without ``overwrite`` never replace a file that appeared meanwhile."""
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        if not _renameat2_noreplace(tmp, final):
            _link_noreplace(tmp, final)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise OutputExistsError(
                f"{final}: was created by another process meanwhile; not replaced (pass --overwrite to replace it)"
            ) from None
        raise


def _commit(tmps: list[Path], finals: list[Path], overwrite: bool) -> None:
    """All or nothing: every file flushed, then moved; a failed move takes back the earlier ones."""
    for t in tmps:
        fsync_file(t)
    done: list[Path] = []
    try:
        for t, f in zip(tmps, finals):
            move_into_place(t, f, overwrite)
            done.append(f)
    except BaseException:
        if not overwrite:
            for f in done:
                f.unlink(missing_ok=True)
        raise
    for folder in {f.parent for f in finals}:
        fsync_dir(folder)


def _named(exc: BaseException, tmps: list[Path], finals: list[Path]) -> Path:
    """The output an error is about: the temporary file it names, else the first output."""
    e, seen = exc, set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = f"{getattr(e, 'filename', '') or ''} {e}"
        for t, f in zip(tmps, finals):
            if t.name in text:
                return f
        e = e.__cause__ or e.__context__
    return finals[0]


def _translate(exc: BaseException, tmps: list[Path], finals: list[Path]) -> HsiclsError | None:
    """One clear error for a failed write (``None``: not a writing problem, re-raise as is)."""
    if isinstance(exc, HsiclsError) or not isinstance(exc, Exception):
        return None
    cause = disk_error_cause(exc, finals[0].parent)
    if cause:
        return HsiclsError(f"{_named(exc, tmps, finals)}: cannot write: {cause}")
    library = type(exc).__module__.split(".")[0] in ("rasterio", "h5py")  # GDAL/HDF5 errors that are no OSError
    if isinstance(exc, OSError) or library:
        text = getattr(exc, "strerror", None) or first_line(exc)
        return HsiclsError(f"{_named(exc, tmps, finals)}: cannot write ({text})")
    return None


def _reserve(tmp: Path) -> Path:
    """Create ``tmp`` as a new, empty regular file (``O_EXCL | O_NOFOLLOW``), after removing whatever
    is there (our own pid's leftover, or a planted link: the link is removed, never followed), so
    the writer that opens it next writes into our file."""
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644))
    except OSError as exc:
        raise HsiclsError(f"{tmp}: cannot create a temporary file ({cause_of(exc.errno) or exc.strerror})") from None
    return tmp


@contextmanager
def atomic_outputs(paths: Iterable[str | os.PathLike], overwrite: bool = False, inputs: Iterable = ()) -> Iterator[list[Path]]:
    """Yield temporary paths for ``paths`` (written together); on success they are flushed and
    moved into place together, on any failure (Ctrl-C included) removed. See the module docstring."""
    finals = checked_outputs(paths, overwrite, inputs)
    with ExitStack() as locks:
        for f in finals:
            locks.enter_context(output_lock(f))
            remove_stale_temps(f)
        tmps = [_reserve(temp_name(f)) for f in finals]
        try:
            yield tmps
            _commit(tmps, finals, overwrite)
        except BaseException as exc:
            error = _translate(exc, tmps, finals)  # before the files go: a full disk is still full
            for t in tmps:
                _discard(t)
            if error is not None:
                raise error from None
            raise


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False, inputs: Iterable = ()) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it becomes ``path`` only if the block succeeds."""
    with atomic_outputs([path], overwrite, inputs) as (tmp,):
        yield tmp


def write_texts(outputs: OutputSet, texts: dict[str, str], overwrite: bool) -> list[Path]:
    """Each role's text (UTF-8) to its declared file, each written atomically; returns the files."""
    out = []
    for role, text in texts.items():
        with atomic_output(outputs[role], overwrite) as tmp:
            tmp.write_text(text, encoding="utf-8")
        out.append(outputs[role])
    return out
