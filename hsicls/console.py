"""Logging and progress on stderr (rich), quiet when stderr is not a terminal.

Machine-readable results go to stdout (``--json``); everything meant for a person goes here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

_state = {"verbosity": 0}


def stdout_write(text: str) -> None:
    """Write results (``--json``, ``--print-config``) to stdout and flush them; a reader that went
    away (``| head``) is :class:`~hsicls.errors.StdoutClosed`, a failing stdout one error line."""
    from hsicls.errors import HsiclsError, StdoutClosed

    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed("standard output was closed") from None
    except OSError as exc:
        raise HsiclsError(f"cannot write to standard output ({exc.strerror or exc})") from None


def silence_stdout() -> None:
    """Point stdout (and what Python still holds for it) at /dev/null after its reader left, so the
    interpreter's final flush does not print a BrokenPipeError."""
    _to_devnull(sys.stdout)


def reopen_closed_streams() -> None:
    """A stream closed by the caller (``2>&-``, ``>&-``) starts Python with ``sys.stderr`` / ``sys.stdout``
    set to None, and the first log line or ``--json`` result would fail. Point such a descriptor at
    /dev/null instead, so the command runs and exits as it does with open streams (its messages lost, as
    the caller asked)."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                if devnull != fd:
                    os.dup2(devnull, fd)
                    os.close(devnull)
            except OSError:
                continue
        try:
            setattr(sys, name, open(fd, "w", encoding="utf-8", errors="replace", closefd=False))
        except OSError:
            pass


def _to_devnull(stream) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class _StderrConsole(Console):
    """rich's console, except that a reader of stderr that went away ends the logging, not the job (rich's
    own answer is ``SystemExit(1)``, which would stop a training run before its bundle is written)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _to_devnull(sys.stderr)


def err_console() -> Console:
    """A console on the *current* ``sys.stderr`` (so test runners that swap it see output)."""
    width = None if stderr_is_tty() else 120  # logs and CI: no wrapping at 80 columns
    return _StderrConsole(file=sys.stderr, highlight=False, soft_wrap=True, width=width)


def show(renderable) -> None:
    """A table or report for a person, on stderr (nothing under ``-q``: errors only)."""
    if _state["verbosity"] >= 0:
        _emit(renderable)


def listing(renderable) -> None:
    """A listing that is the command's result (``hsicls datasets``, ``models``) on stdout, so that
    ``hsicls datasets | grep indian`` works (rendered, then written by :func:`stdout_write`)."""
    import io

    buf = io.StringIO()
    width = None if sys.stdout.isatty() else 160
    Console(file=buf, highlight=False, soft_wrap=True, width=width, force_terminal=sys.stdout.isatty()).print(renderable)
    stdout_write(buf.getvalue())


def set_verbosity(level: int) -> None:
    """-1 quiet (errors only), 0 normal, 1 verbose."""
    _state["verbosity"] = level


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _plain(message: str) -> str:
    """User text (file names, exception messages) is never rich markup; one line only."""
    return escape(" ".join(str(message).split("\n")))


def _emit(renderable) -> None:
    """Print to stderr; a reader of stderr that went away (``2>&1 | head -1``) never stops the job: stderr
    goes to /dev/null from then on and the work goes on to write its outputs."""
    try:
        err_console().print(renderable)
        sys.stderr.flush()
    except (BrokenPipeError, ValueError, OSError):
        _to_devnull(sys.stderr)


def info(message: str) -> None:
    if _state["verbosity"] >= 0:
        _emit(_plain(message))


def debug(message: str) -> None:
    if _state["verbosity"] >= 1:
        _emit(f"[dim]{_plain(message)}[/dim]")


def warn(message: str) -> None:
    if _state["verbosity"] >= 0:
        _emit(f"[yellow]warning:[/yellow] {_plain(message)}")


def error(message: str) -> None:
    _emit(f"[red]error:[/red] {_plain(message)}")


def progress_enabled() -> bool:
    return stderr_is_tty() and _state["verbosity"] >= 0


@contextmanager
def progress(kind: str = "count") -> Iterator[Progress | None]:
    """A rich progress bar on stderr, or ``None`` when stderr is not a terminal.

    ``kind`` is ``"count"`` (items) or ``"bytes"`` (downloads).
    """
    if not progress_enabled():
        yield None
        return
    columns = [TextColumn("{task.description}"), BarColumn()]
    if kind == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    else:
        columns += [MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*columns, console=err_console(), transient=False) as bar:
        yield bar
