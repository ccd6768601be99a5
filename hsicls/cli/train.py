"""``hsicls train``: one run, K repeats, every fold, or a torchrun rank's share (:func:`hsicls.api.train`)."""

from __future__ import annotations

from pathlib import Path

import typer

from hsicls import api
from hsicls.cli.app import DataDir, Dataset, Json, Overwrite, app, handle_errors, print_json
from hsicls.cli.args import options_command
from hsicls.config import TrainOptions


def _dataset_defaults(opts, given, own):
    """With --dataset, the paper's patch size and learning rate for that scene unless given."""
    if own.get("dataset") is None:
        return opts
    from hsicls.datasets import get_dataset

    get_dataset(own["dataset"])  # an unknown name fails here, before torch is imported
    from hsicls.stages.train import dataset_defaults

    return dataset_defaults(opts, given, own["dataset"])


@options_command(app, "train", TrainOptions, section="train", resolve=_dataset_defaults, wrap=handle_errors)
def train(
    *,
    opts,
    given,
    prepared: Path | None = typer.Argument(None, help="HDF5 file written by 'hsicls preprocess'."),
    output: Path = typer.Option(..., "--output", "-o", help="Output model bundle (.pt)."),
    dataset: str | None = Dataset,
    data_dir: Path | None = DataDir,
    runs: int = typer.Option(1, "--runs", min=1, help="Train K seeds, each with its own split, and report mean ± std."),
    runs_parallel: bool | None = typer.Option(
        None,
        "--runs-parallel/--runs-ddp",
        help="Under torchrun with --runs K: spread the K runs over the ranks, one whole run per rank (the default on the "
        "CPU), or train each run with all ranks together (DDP; the default on GPUs).",
    ),
    folds_all: bool = typer.Option(
        False,
        "--folds-all",
        help="Cross-validation by group: train every fold of PREPARED (made with --split group --folds K) without "
        "preprocessing again, one bundle per fold (OUTPUT.fold<i>.pt), the same network seed for every fold; write "
        "OUTPUT.cv.json and OUTPUT.cv.md (per fold the held-out groups and OA/AA/kappa, then mean ± std).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from OUTPUT.ckpt."),
    as_json: bool = Json,
    overwrite: bool = Overwrite,
) -> None:
    """Train a model; keep the epoch with the best validation OA; write one model bundle.

    Under torchrun (torchrun --nproc-per-node N -m hsicls train ...) the N ranks train one network with
    DistributedDataParallel (--batch-size is the global batch); rank 0 alone writes the bundle, log and checkpoint."""
    from hsicls.stages.jobs import train_json

    # opts carry --dataset's paper settings already (_dataset_defaults, where the flags given are known)
    result = api.train(prepared, output, opts, runs=runs, runs_parallel=runs_parallel, folds_all=folds_all,
                       resume=resume, overwrite=overwrite, dataset=dataset, data_dir=data_dir)  # fmt: skip
    if as_json and result is not None:
        print_json(train_json(result, output))
