"""``hsicls sample``: a stratified reference sample of class maps (:func:`hsicls.api.sample`)."""

from __future__ import annotations

from pathlib import Path

import typer

from hsicls import api
from hsicls.cli.app import Json, Overwrite, app, handle_errors, print_json
from hsicls.cli.args import options_command
from hsicls.config import SampleOptions


@options_command(app, "sample", SampleOptions, section="sample", wrap=handle_errors)
def sample(
    *,
    opts,
    given,
    maps: list[Path] = typer.Argument(..., help="Class map(s) to sample (tiles of one map are one population)."),
    output: Path = typer.Option(..., "--output", "-o", help="Sample points: .gpkg, .geojson (.json) or .csv."),
    as_json: bool = Json,
    overwrite: bool = Overwrite,
) -> None:
    """Draw a stratified random reference sample from class maps (Olofsson et al. 2014), ready for 'hsicls assess'."""
    design = api.sample(maps, output, opts, overwrite=overwrite)
    if as_json:
        print_json(design)
