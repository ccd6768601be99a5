"""The ``hsicls`` Typer application, its global flags, the flags several commands share, and the error boundary.

Each command is one module of this package (rasterio's ``rio/`` pattern) that parses its flags, calls one function
of :mod:`hsicls.api` and prints; :mod:`hsicls.cli.main` assembles them and runs the application. Logs and progress go
to stderr; ``--json`` results go to stdout. User errors (:class:`~hsicls.errors.HsiclsError`) become one line on
stderr and exit code 1, usage errors exit code 2, Ctrl-C 130, a closed stdout (``| head``) 141.
"""

from __future__ import annotations

import functools
import json

import typer

from hsicls import __version__, console
from hsicls.errors import HsiclsError, StdoutClosed, Terminated

app = typer.Typer(
    name="hsicls",
    help="Hyperspectral image land-cover classification: download, preprocess, train, evaluate, predict-map.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command-level flags shared by several commands, declared once (stage options: hsicls.config).
Overwrite = typer.Option(False, "--overwrite", help="Replace the output file if it exists.")
Json = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
DataDir = typer.Option(None, "--data-dir", help="Where registered scenes live (default $HSICLS_DATA or ~/.cache/hsicls).")
Dataset = typer.Option(
    None, "--dataset", help="A registered scene (see 'hsicls datasets'); fetched and preprocessed with the defaults if needed."
)
Output = typer.Option(..., "--output", "-o", help="Output HDF5 file.")
Bundle = typer.Option(None, "--bundle", "-m", help="Model bundle written by 'hsicls train'.")
Report = typer.Option(None, "--report", help="Write PREFIX.json, PREFIX.csv and PREFIX.md.")


def handle_errors(fn):
    """Turn user errors into one clear line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StdoutClosed as exc:
            raise typer.Exit(code=exc.exit_code) from None
        except HsiclsError as exc:
            if not getattr(exc, "reported", False):  # another rank of a torchrun group said it already
                from hsicls.engine.distributed import first_to_fail

                message = first_to_fail(str(exc))
                if message is not None:
                    console.error(message)
            raise typer.Exit(code=exc.exit_code) from None
        except Terminated:
            console.error("terminated")
            raise typer.Exit(code=Terminated.exit_code) from None
        except KeyboardInterrupt as exc:  # Interrupted says what to do next
            console.error(str(exc) or "interrupted")
            raise typer.Exit(code=130) from None

    return wrapper


def print_json(obj) -> None:
    """``--json``: the result on stdout (NaN and infinities as null, so the JSON stays valid)."""
    from hsicls.io.disk import json_safe

    console.stdout_write(json.dumps(json_safe(obj), indent=2) + "\n")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hsicls {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    if quiet and verbose:
        console.error("-v and -q contradict each other; give one")
        raise typer.Exit(2)
    console.set_verbosity(-1 if quiet else min(verbose, 1))
