"""The guard every command runs before any work: no input lost, no output where it may not be.

The CLI (and each API call) opens a :func:`command_scope`: the inputs noted in it (:func:`note_input`) are what
outputs may not be, and the locks taken by :meth:`OutputSet.guard` last until it ends. Each stage declares the
files it writes once (its ``declare_outputs``: an :class:`OutputSet` of :class:`Declared` roles); the guard checks
them together, and the writers read them back by role. Writing itself: :mod:`hsicls.io.atomic`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from hsicls.errors import HsiclsError, OptionError, OutputExistsError
from hsicls.io.disk import cause_of
from hsicls.io.locks import output_lock


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


def in_command() -> bool:
    """Whether a :func:`command_scope` is open (the CLI's, or an API call's)."""
    return bool(_SCOPE)


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
        raise HsiclsError(f"{path}: cannot write: {cause_of(errno.EROFS) if readonly else f'folder {parent} is not writable'}")
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


def checked_outputs(outputs: Iterable, overwrite: bool, inputs: Iterable) -> list[Path]:
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
