"""The console entry point: every command module registered on the application, global flags hoisted, usage errors
as one line, and the exit code (0, 1 user error, 2 usage, 130 Ctrl-C, 141 closed stdout)."""

from __future__ import annotations

import os
import re
import sys

import typer

from hsicls import console
from hsicls.cli import assess, datasets, download, evaluate, models, predict_map, preprocess, sample, train  # noqa: F401
from hsicls.cli.app import app
from hsicls.errors import StdoutClosed, Terminated
from hsicls.io.guard import command_scope

__all__ = ["app", "main", "run"]

_GLOBAL_FLAG = re.compile(r"^(-v+|-q|--verbose|--quiet)$")


def _hoist_global_flags(args: list[str]) -> list[str]:
    """``-v``/``-q`` given after the subcommand (``hsicls train p.h5 -o m.pt -v``) move before it,
    where the root command reads them; values of the subcommand's own options are left alone."""
    if not any(_GLOBAL_FLAG.match(a) for a in args[1:]):
        return args
    from typer.main import get_command

    group = get_command(app)
    i = next((k for k, a in enumerate(args) if not a.startswith("-")), None)
    sub = group.commands.get(args[i]) if i is not None else None
    if sub is None:
        return args
    takes_value = {o for p in sub.params if not getattr(p, "is_flag", True) and not getattr(p, "count", False) for o in p.opts}
    moved, rest, k = [], [], i + 1
    while k < len(args):
        a = args[k]
        if a == "--":
            rest += args[k:]
            break
        if _GLOBAL_FLAG.match(a):
            moved.append(a)
        else:
            rest.append(a)
            if a in takes_value and k + 1 < len(args):
                rest.append(args[k + 1])
                k += 1
        k += 1
    return args[:i] + moved + [args[i]] + rest


def _undecodable(args: list[str]) -> str | None:
    """The first argument that is not valid UTF-8 (a file name in another encoding), as shown to a person."""
    for a in args:
        try:
            a.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(a).decode("utf-8", "backslashreplace")
    return None


def _usage_error(exc) -> int:
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'hsicls': the help was printed
        return 0
    ctx = getattr(exc, "ctx", None)
    name = getattr(ctx, "info_name", None)
    hint = f" (see 'hsicls {name} --help')" if name and name != "hsicls" and ctx.parent is not None else ""
    console.error(exc.format_message() + hint)
    return exc.exit_code


def run(args: list[str] | None = None) -> int:
    """Run the CLI on ``args`` (default ``sys.argv[1:]``) and return the exit code: usage errors
    become one ``error:`` line too (exit code 2), Ctrl-C exit code 130, a closed stdout 141."""
    args = list(sys.argv[1:] if args is None else args)
    bad = _undecodable(args)
    if bad is not None:
        console.error(f"{bad}: not valid UTF-8 (a file name in another encoding?); rename the file, hsicls needs UTF-8 names")
        return 1
    try:
        with command_scope():
            rc = app(args=_hoist_global_flags(args), standalone_mode=False)
    except typer.Abort:
        console.error("interrupted")
        return 130
    except BrokenPipeError:
        return StdoutClosed.exit_code
    except Exception as exc:  # click/typer usage errors (typer vendors its own click)
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        return _usage_error(exc)
    return rc if isinstance(rc, int) else 0


def _terminate_as_interrupt() -> None:
    """SIGTERM raises :class:`Terminated` (a KeyboardInterrupt), so a killed job cleans up its temporary
    files and locks as Ctrl-C does; left alone where someone (torchrun's agent) installed a handler."""
    import signal

    def on_term(signum, frame):
        raise Terminated("terminated")

    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        pass


def main() -> None:
    """Console entry point."""
    console.reopen_closed_streams()
    _terminate_as_interrupt()
    try:
        code = run()
        sys.stdout.flush()
    except BrokenPipeError:
        code = StdoutClosed.exit_code
    if code == StdoutClosed.exit_code:
        console.silence_stdout()
    sys.exit(code)


if __name__ == "__main__":
    main()
