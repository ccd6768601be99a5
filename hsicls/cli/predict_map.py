"""``hsicls predict-map``: class maps of one scene or many, in one process or over torchrun ranks (:func:`hsicls.api.predict_map`)."""

from __future__ import annotations

from pathlib import Path

import typer

from hsicls import api
from hsicls.cli.app import Bundle, Json, Overwrite, app, handle_errors, print_json
from hsicls.cli.args import options_command
from hsicls.config import MapOptions


@options_command(app, "predict-map", MapOptions, section="predict-map", wrap=handle_errors)
def predict_map(
    *,
    opts,
    given,
    scene: list[Path] = typer.Argument(
        ..., help="Scene(s) to classify (same bands as the training scenes): GeoTIFF/ENVI/any GDAL raster, .mat, .npy."
    ),
    bundle: Path | None = Bundle,
    bundle_alias: Path | None = typer.Option(None, "--model", hidden=True),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output class-map GeoTIFF (one scene; '{stem}' is replaced by the scene's file stem)."
    ),
    out_dir: Path | None = typer.Option(
        None,
        "--out-dir",
        help="Write one map per scene, DIR/<stem>_map.tif (scenes whose map exists are skipped unless --overwrite).",
    ),
    confidence: Path | None = typer.Option(
        None,
        "--confidence",
        help="Also write the maximum class probability per pixel, calibrated with the bundle's temperature (several scenes: a name with '{stem}').",
    ),
    probabilities: Path | None = typer.Option(
        None, "--probabilities", help="Also write one probability band per class, float32 (several scenes: a name with '{stem}')."
    ),
    preview: Path | None = typer.Option(
        None, "--preview", help="Also write a PNG quicklook with a legend (several scenes: a name with '{stem}')."
    ),
    as_json: bool = Json,
    overwrite: bool = Overwrite,
) -> None:
    """Classify every pixel of one or several scenes; write georeferenced class-map GeoTIFFs in the labels' own codes."""
    summary = api.predict_map(scene, bundle or bundle_alias, output, opts, out_dir=out_dir, confidence=confidence,
                              probabilities=probabilities, preview=preview, overwrite=overwrite)  # fmt: skip
    if summary is not None and as_json:  # rank 0's under torchrun; other ranks have none
        print_json(summary)
    if isinstance(summary, dict) and summary.get("failed"):
        raise typer.Exit(code=1)
