"""Errors that are the user's to fix.

Every stage raises :class:`HsiclsError` (or a subclass) for bad input: a missing file, a wrong
key, mismatched shapes, an unknown dataset name. The CLI turns it into one line on stderr and a
non-zero exit code; anything else is a bug and keeps its traceback.

Exit codes: 1 a user error (:class:`HsiclsError`), 2 a usage error (:class:`OptionError`, and
click's own usage errors), 130 interrupted (Ctrl-C), 141 standard output closed (:class:`StdoutClosed`).
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class HsiclsError(Exception):
    """A problem with the user's input, reported as one clear line."""

    exit_code = 1


class OptionError(HsiclsError, ValueError):
    """An option value is invalid (out of range, not finite, not one of the choices): a usage error."""

    exit_code = 2


class InputError(HsiclsError):
    """A file could not be read or holds something unexpected."""


class StdoutClosed(HsiclsError):
    """Standard output was closed by its reader (``| head``, ``| true``): stop quietly, with the
    shell's usual status for a broken pipe (128 + SIGPIPE)."""

    exit_code = 141


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's time limit), handled as Ctrl-C is: temporary files and locks are
    removed on the way out; exit code 143 (128 + 15)."""

    exit_code = 143


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what to do next in its message (``--resume``); exit code 130. Still a
    :class:`KeyboardInterrupt`, so a library caller's ``except KeyboardInterrupt`` catches it."""


class OutputExistsError(HsiclsError):
    """The output exists and ``--overwrite`` was not given."""


class DownloadError(HsiclsError):
    """A download failed or did not verify."""
