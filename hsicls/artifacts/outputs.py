"""The one guard every output goes through: no lost input, no half-written file, no silent race.

:func:`atomic_output` (and :func:`atomic_outputs` for files that belong together, such as a
map and its confidence raster) is the only way hsicls writes a user-facing file:

1. the output is resolved and refused when it is a directory, when it is (or is a hard link to)
   an input of the running command, or when it exists and ``--overwrite`` was not given;
2. an advisory lock (``fcntl.flock`` on ``<output>.lock``) is held while it is written, so a
   second hsicls process writing the same file fails at once with one line;
3. temporary files left by dead processes for that output (``.<name>.<pid>.tmp``) are removed;
4. the caller writes to a temporary name in the target folder; after a successful ``fsync`` it is
   moved into place, with a no-replace rename (``renameat2(RENAME_NOREPLACE)``, else link +
   unlink) when ``--overwrite`` was not given, so the loser of a race fails cleanly;
5. any failure removes the temporary files; a disk error (ENOSPC, EDQUOT, EIO, EROFS, EFBIG),
   whichever library met it (h5py, GDAL, torch.save, matplotlib), becomes one
   :class:`~hsicls.errors.HsiclsError` naming the file and the cause.

The CLI opens a :func:`command_scope` per invocation: the inputs noted in it (:func:`note_input`)
are what outputs may not be, and the locks taken by :func:`guard_outputs` last until it ends.
Serialisers that write through C libraries are run into memory first (:func:`write_via_memory`),
so the size is known (free space is checked) and the disk is written by one checked ``write``.
"""

from __future__ import annotations

import errno
import io
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from hsicls.errors import HsiclsError, OptionError, OutputExistsError, first_line

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


# --------------------------------------------------------------------------- command scope
class _Command:
    """What one CLI invocation read (outputs may not be any of these), the outputs it checked and the locks it holds."""

    def __init__(self) -> None:
        self.inputs: list[Path] = []
        self.checked: set[tuple[Path, bool]] = set()  # (output, overwrite) already guarded
        self.locks = ExitStack()


_SCOPE: list[_Command] = []


@contextmanager
def command_scope() -> Iterator[_Command]:
    """One CLI invocation: inputs noted and output locks taken inside are dropped at its end."""
    cmd = _Command()
    _SCOPE.append(cmd)
    try:
        with cmd.locks:
            yield cmd
    finally:
        _SCOPE.remove(cmd)


def note_input(*paths: str | os.PathLike | None) -> None:
    """Record files the running command reads (ignored outside a :func:`command_scope`)."""
    if _SCOPE:
        _SCOPE[-1].inputs.extend(Path(p) for p in paths if p is not None)


def _inputs(extra: Iterable) -> list[Path]:
    found = [*(_SCOPE[-1].inputs if _SCOPE else []), *(Path(p) for p in extra if p is not None)]
    out = []
    for p in found:
        out += [p, *_companions(p)]
    return out


def _companions(p: Path) -> list[Path]:
    """Files read together with ``p`` (an ENVI header and its binary data file), as its format says."""
    from hsicls.io.formats import format_of

    return format_of(p, probe=False).companions(p)


def _same_file(a: Path, b: Path) -> str | None:
    """``"is"`` when ``a`` and ``b`` name one file, ``"is a hard link to"`` for another name of it."""
    try:
        if a.resolve() == b.resolve():
            return "is"
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, RuntimeError, ValueError):
        return None
    return "is a hard link to" if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino) else None


# --------------------------------------------------------------------------- checks
def check_output(path: str | os.PathLike, overwrite: bool, inputs: Iterable = ()) -> Path:
    """Refuse an output that is a directory or an input of the command, or that exists without
    ``overwrite``; make sure its folder exists and is writable. Returns it as a :class:`Path`."""
    path = Path(path)
    if path.is_dir():
        raise HsiclsError(f"{path}: is a directory; give a file name (e.g. {path / 'out'})")
    for inp in _inputs(inputs):
        how = _same_file(path, inp)
        if how:
            raise HsiclsError(f"{path}: {how} the input {inp}; refusing to write over an input (choose another output name)")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{path}: already exists (pass --overwrite to replace it)")
    parent = path.parent
    if not parent.exists():
        raise HsiclsError(f"{path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise HsiclsError(f"{path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        readonly = (os.statvfs(parent).f_flag & os.ST_RDONLY) if hasattr(os, "statvfs") else False
        raise HsiclsError(f"{path}: cannot write: {_cause(errno.EROFS) if readonly else f'folder {parent} is not writable'}")
    return path


def check_folder(path: str | os.PathLike | None, flag: str) -> Path | None:
    """A folder option (``--data-dir``): refuse an existing file given in its place."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HsiclsError(f"{flag} {path}: is a file, expected a folder")
    return path


def check_inputs(inputs: Iterable) -> list[Path]:
    """Every input must be an existing file (not a folder): checked before any work."""
    from hsicls.io.formats import require_file

    out = [Path(p) for p in inputs if p is not None]
    for p in out:
        require_file(p)
    return out


def guard_outputs(outputs: Iterable, overwrite: bool, inputs: Iterable = ()) -> list[Path]:
    """:meth:`OutputSet.guard` for plain paths (each its own role). Returns the outputs."""
    declared = OutputSet(*(Declared(str(i), Path(p)) for i, p in enumerate(outputs) if p is not None))
    return declared.guard(overwrite, inputs).paths


def _checked(outputs: Iterable, overwrite: bool, inputs: Iterable) -> list[Path]:
    """Every output checked and told apart from the others."""
    return _distinct([check_output(p, overwrite, inputs) for p in outputs if p is not None])


def _distinct(finals: list[Path]) -> list[Path]:
    for i, a in enumerate(finals):
        for b in finals[:i]:
            if _same_file(a, b):
                raise HsiclsError(f"{a}: given twice as an output ({b}); the outputs need different file names")
    return finals


# --------------------------------------------------------------------------- declared outputs
@dataclass(frozen=True)
class Declared:
    """One file a command writes: its ``role`` (how its writer asks for it) and its path. A ``sidecar`` goes with
    the main file (a map's ``.aux.xml`` / ``.qml``): it is replaced with it whatever ``--overwrite`` says, but
    never when it is an input or a symbolic link."""

    role: str
    path: Path
    sidecar: bool = False


class OutputSet:
    """The files one command writes, declared in one place (each stage's ``declare_outputs``); checked together
    by :meth:`guard` once per command, and read back by role by the writers (``outputs["md"]``)."""

    def __init__(self, *items: Declared | None):
        self.items = [Declared(d.role, Path(d.path), d.sidecar) for d in items if d is not None and d.path is not None]
        roles = [d.role for d in self.items]
        if len(set(roles)) != len(roles):
            raise ValueError(f"an output role is declared twice: {roles}")

    def __add__(self, other: OutputSet) -> OutputSet:
        return OutputSet(*self.items, *other.items)

    def __iter__(self) -> Iterator[Declared]:
        return iter(self.items)

    def __contains__(self, role: str) -> bool:
        return any(d.role == role for d in self.items)

    def __getitem__(self, role: str) -> Path:
        for d in self.items:
            if d.role == role:
                return d.path
        raise KeyError(role)

    def get(self, role: str) -> Path | None:
        return self[role] if role in self else None

    @property
    def paths(self) -> list[Path]:
        """Every declared file, sidecars included."""
        return [d.path for d in self.items]

    def guard(self, overwrite: bool, inputs: Iterable = (), lock: bool | set[str] = True) -> OutputSet:
        """Check every input (an existing file) and every output (distinct, not an input, replaceable; a sidecar
        not a link) before any work; inside a :func:`command_scope` lock the main files until the command ends
        (``lock``: all of them, none, or the roles named), and skip what this command already checked. Returns self."""
        inputs = check_inputs(inputs)
        note_input(*inputs)
        done = _SCOPE[-1].checked if _SCOPE else set()
        todo = [d for d in self.items if (d.path, overwrite) not in done]
        for d in todo:
            if d.sidecar and d.path.is_symlink():
                raise HsiclsError(f"{d.path}: the sidecar name is a symbolic link; refusing to replace it (remove it)")
            check_output(d.path, overwrite or d.sidecar, inputs)
        _distinct(self.paths)
        if _SCOPE:
            done.update((d.path, overwrite) for d in todo)
            for d in todo:
                if not d.sidecar and (lock is True or (lock and d.role in lock)):
                    _SCOPE[-1].locks.enter_context(output_lock(d.path))
        return self


def report_outputs(prefix: Path | None) -> OutputSet:
    """``PREFIX.json``, ``PREFIX.csv`` and ``PREFIX.md`` (roles ``json``, ``csv``, ``md``); none without a prefix."""
    if prefix is None:
        return OutputSet()
    if not prefix.name or prefix.name in (".", ".."):
        raise OptionError(f"--report {str(prefix)!r}: give a file name prefix, e.g. --report results/acc")
    return OutputSet(*(Declared(s[1:], prefix.with_name(prefix.name + s)) for s in (".json", ".csv", ".md")))


def write_texts(outputs: OutputSet, texts: dict[str, str], overwrite: bool) -> list[Path]:
    """Each role's text (UTF-8) to its declared file, each written atomically; returns the files."""
    out = []
    for role, text in texts.items():
        with atomic_output(outputs[role], overwrite) as tmp:
            tmp.write_text(text, encoding="utf-8")
        out.append(outputs[role])
    return out


# --------------------------------------------------------------------------- locks
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
            raise HsiclsError(f"{final}: cannot create the lock file {lock.name} ({_cause(exc.errno) or exc.strerror})") from None
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


# --------------------------------------------------------------------------- disk errors
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


def _cause(code: int | None) -> str | None:
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
            return detail[0].lower() + detail[1:] if "free)" in detail else _cause(e.errno)
        code = disk_errno(str(e))
        if code:
            return _cause(code)
        e = e.__cause__ or e.__context__
    if folder is not None and isinstance(exc, (OSError, RuntimeError)) and free_bytes(folder) == 0:
        return _cause(errno.ENOSPC)
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


# --------------------------------------------------------------------------- atomic outputs
def _fsync(path: Path) -> None:
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
        _fsync(t)
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
        raise HsiclsError(f"{tmp}: cannot create a temporary file ({_cause(exc.errno) or exc.strerror})") from None
    return tmp


@contextmanager
def atomic_outputs(paths: Iterable[str | os.PathLike], overwrite: bool = False, inputs: Iterable = ()) -> Iterator[list[Path]]:
    """Yield temporary paths for ``paths`` (written together); on success they are flushed and
    moved into place together, on any failure (Ctrl-C included) removed. See the module docstring."""
    finals = _checked(paths, overwrite, inputs)
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


def json_safe(obj):
    """NaN/inf become null, so that the JSON we print or write stays valid."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
