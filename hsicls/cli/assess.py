"""``hsicls assess``: accuracy and area of class maps against reference labels (:func:`hsicls.api.assess`)."""

from __future__ import annotations

from pathlib import Path

import typer

from hsicls import api
from hsicls.cli.app import Json, Overwrite, Report, app, handle_errors, print_json
from hsicls.cli.args import options_command
from hsicls.config import AssessOptions


@options_command(app, "assess", AssessOptions, section="assess", wrap=handle_errors)
def assess(
    *,
    opts,
    given,
    map: list[Path] = typer.Argument(
        ...,
        help="Single-band class map(s) (hsicls's or any GDAL raster; nodata respected); several maps (tiles of one map) "
        "give one error matrix and one area estimate, with a row per map.",
    ),
    reference: Path = typer.Option(
        ..., "--reference", "-r", help="Reference labels: a raster on any grid, or points/polygons in a vector file in any CRS."
    ),
    report_prefix: Path | None = Report,
    as_json: bool = Json,
    overwrite: bool = Overwrite,
) -> None:
    """Error matrix, user's/producer's accuracy and F1 with 95 % intervals, and area-adjusted class areas (Olofsson et al. 2014)."""
    from hsicls.stages.assess import render_assessment

    result = api.assess(map, reference, opts, report=report_prefix, overwrite=overwrite)
    render_assessment(result)
    if as_json:
        print_json(result)
