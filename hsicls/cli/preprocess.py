"""``hsicls preprocess``: scene(s) and labels, or a registered scene, to a prepared HDF5 file (:func:`hsicls.api.preprocess`)."""

from __future__ import annotations

from pathlib import Path

import typer

from hsicls import api
from hsicls.cli.app import DataDir, Dataset, Output, Overwrite, app, handle_errors
from hsicls.cli.args import options_command
from hsicls.config import PreprocessOptions


@options_command(app, "preprocess", PreprocessOptions, section="preprocess", wrap=handle_errors)
def preprocess(
    *,
    opts,
    given,
    scene: list[Path] | None = typer.Argument(
        None,
        help="Hyperspectral cube(s): GeoTIFF/ENVI/any GDAL raster, .mat or .npy (rows, cols, bands); several scenes "
        "(shell globs work) go into one prepared file, each on its own grid.",
    ),
    labels: list[Path] = typer.Option(
        [],
        "--labels",
        "-l",
        help="Labels (0 = unlabelled): raster on any grid (warped nearest-neighbour), vector points/polygons in any CRS, "
        ".mat, .npy or ENVI ROI .txt; repeat to fill unlabelled pixels from further files (non-georeferenced scenes: one per scene, in order).",
    ),
    output: Path = Output,
    dataset: str | None = Dataset,
    data_dir: Path | None = DataDir,
    overwrite: bool = Overwrite,
) -> None:
    """Standardise, reduce bands with PCA, split train/validation/test; write one HDF5 file."""
    api.preprocess(scene or None, labels, output, opts, dataset=dataset, data_dir=data_dir, overwrite=overwrite)
