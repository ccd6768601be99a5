"""``hsicls evaluate``: accuracy on the test split, as tables and report files (:func:`hsicls.api.evaluate`)."""

from __future__ import annotations

from pathlib import Path

import typer

from hsicls import api
from hsicls.cli.app import Json, Overwrite, app, handle_errors, print_json
from hsicls.cli.args import options_command
from hsicls.config import EvaluateOptions


@options_command(app, "evaluate", EvaluateOptions, section="evaluate", wrap=handle_errors)
def evaluate(
    *,
    opts,
    given,
    bundle: Path = typer.Argument(..., help="Model bundle written by 'hsicls train'."),
    prepared: Path = typer.Argument(..., help="HDF5 file written by 'hsicls preprocess'."),
    report_prefix: Path | None = typer.Option(
        None, "--report", help="Write PREFIX.json (with the split masks), PREFIX.csv and PREFIX.md."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write the confusion matrix as a PNG, and the reliability diagram beside it (STEM_reliability.png)."
    ),
    as_json: bool = Json,
    overwrite: bool = Overwrite,
) -> None:
    """OA, AA, kappa, per-class accuracy (UA, PA, F1 with 95 % intervals), confusion matrix and calibration error on the test split."""
    from hsicls.stages.evaluate import render_report

    report = api.evaluate(bundle, prepared, opts, report=report_prefix, plot=plot, overwrite=overwrite)
    render_report(report)
    if as_json:  # the split masks (pixel indices) go to --report files only
        print_json({k: v for k, v in report.items() if k != "split_masks"})
