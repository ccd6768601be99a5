"""``hsicls download``: a registered scene's files, sha256-checked, or imported by hand (:func:`hsicls.api.download`)."""

from __future__ import annotations

from pathlib import Path

import typer

from hsicls import api, console
from hsicls.cli.app import app, handle_errors


@app.command()
@handle_errors
def download(
    name: str = typer.Argument(..., help="Dataset name (see 'hsicls datasets')."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Target folder (default $HSICLS_DATA or ~/.cache/hsicls)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Network timeout in seconds."),
    retries: int = typer.Option(3, "--retries", min=0, help="Retries per source on transient failures (resuming each time)."),
    from_: list[Path] = typer.Option(
        [],
        "--from",
        help="Import a file obtained by hand, or every file of the scene found in a folder (sha256 checked; no network); repeatable.",
    ),
) -> None:
    """Download a benchmark scene, verifying every file's sha256 (or import files with --from)."""
    paths = api.download(name, data_dir, timeout=timeout, retries=retries, sources=from_)
    if not from_:  # an import says what it took itself
        for p in paths:
            console.info(f"ok {p}")
