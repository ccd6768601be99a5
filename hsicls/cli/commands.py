"""The ``hsicls`` command line: parses options and calls the stage functions, nothing else.

Logs and progress go to stderr; ``--json`` results go to stdout. User errors
(:class:`~hsicls.errors.HsiclsError`) become one line on stderr and exit code 1, usage errors
exit code 2, Ctrl-C 130, a closed stdout (``| head``) 141. Every command declares its inputs
and outputs, as each stage declares them (``declare_outputs``), to the output guard
(:meth:`hsicls.artifacts.outputs.OutputSet.guard`) before any work.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
from pathlib import Path

import typer

from hsicls import __version__, console
from hsicls.artifacts.outputs import check_folder, command_scope, note_input
from hsicls.cli.args import options_command
from hsicls.config import (
    AssessOptions,
    EvaluateOptions,
    MapOptions,
    ModelInfoOptions,
    PreprocessOptions,
    SampleOptions,
    TrainOptions,
)
from hsicls.engine.distributed import launched
from hsicls.errors import HsiclsError, OptionError, StdoutClosed, Terminated

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


def _print_json(obj) -> None:
    from hsicls.artifacts.outputs import json_safe

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
    from hsicls.stages.preprocess import declare_outputs, scene_inputs
    from hsicls.stages.preprocess import preprocess as run

    declare_outputs(output).guard(overwrite, inputs=[*(scene or []), *labels, opts.train_mask, opts.test_mask])
    data_dir = check_folder(data_dir, "--data-dir")

    scene_path, label_paths, opts = scene_inputs(scene, labels, dataset, data_dir, opts)
    note_input(*(scene_path if isinstance(scene_path, list) else [scene_path]), *label_paths, opts.train_mask, opts.test_mask)
    run(scene_path, label_paths, output, opts, overwrite=overwrite)


def _train_defaults(opts, given, own):
    """With --dataset, the paper's patch size and learning rate for that scene unless given."""
    if own.get("dataset") is None:
        return opts
    from hsicls.datasets import get_dataset

    get_dataset(own["dataset"])  # an unknown name fails here, before torch is imported
    from hsicls.stages.train import dataset_defaults

    return dataset_defaults(opts, given, own["dataset"])


@options_command(app, "train", TrainOptions, section="train", resolve=_train_defaults, wrap=handle_errors)
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
    if folds_all:
        if runs != 1:
            raise OptionError("--folds-all trains every fold once, with the same network seed; --runs does not apply to it")
        _train_folds(prepared, output, opts, overwrite, as_json, resume)
        return
    if launched():
        _train_ranks(prepared, output, dataset, data_dir, runs, runs_parallel, resume, as_json, overwrite, opts)
        return
    if runs == 1:  # --runs: its own files (hsicls.stages.runs)
        from hsicls.artifacts.bundle import guard_training_outputs

        guard_training_outputs(output, resume, overwrite, inputs=[prepared])
    data_dir = check_folder(data_dir, "--data-dir")
    from hsicls.stages.preprocess import prepared_for_dataset
    from hsicls.stages.train import train as run

    if dataset is not None:
        if prepared is not None:
            raise OptionError("give either PREPARED or --dataset, not both")
        prepared = prepared_for_dataset(dataset, data_dir, opts.seed)
    elif prepared is None:
        raise OptionError("give PREPARED (from 'hsicls preprocess') or --dataset NAME")
    if runs != 1:
        from hsicls.stages.runs import render_summary, train_runs

        summary = train_runs(prepared, output, opts, runs, overwrite=overwrite)
        render_summary(summary)
        if as_json:
            _print_json({k: v for k, v in summary.items() if k != "reports"})
        return
    result = run(prepared, output, opts, overwrite=overwrite, resume=resume)
    if as_json:
        _print_json(result.summary(output))


def _train_folds(prepared, output, opts, overwrite: bool, as_json: bool, resume: bool = False) -> None:
    """``train --folds-all`` (under torchrun: the folds spread over the ranks)."""
    from hsicls.stages.runs import train_folds

    if prepared is None:
        raise OptionError("--folds-all needs PREPARED, made with --split group --folds K")
    w = None
    if launched():
        from hsicls.engine.distributed import world

        w = world()
        if not w.is_main:
            console.set_verbosity(-1)
    if w is None:
        summary = train_folds(prepared, output, opts, overwrite=overwrite, world=w, resume=resume)
    else:
        from hsicls.engine.distributed import membership

        with membership():
            summary = train_folds(prepared, output, opts, overwrite=overwrite, world=w, resume=resume)
    if summary is None:
        return
    m = {k: f"{100 * summary[k]['mean']:.2f} ± {100 * summary[k]['std']:.2f}" for k in ("oa", "aa", "kappa")}
    console.info(f"{summary['protocol']}: OA {m['oa']}, AA {m['aa']}, kappa {m['kappa']}; wrote {output.name}.cv.json/.md")
    if as_json:
        _print_json(summary)


def _train_ranks(prepared, output, dataset, data_dir, runs, runs_parallel, resume, as_json, overwrite, opts) -> None:
    """``train`` on one rank of a torchrun group (see :mod:`hsicls.engine.distributed`)."""
    from hsicls.engine.distributed import membership, world
    from hsicls.engine.runtime import resolve_device
    from hsicls.stages.train import train as run

    if dataset is not None or prepared is None:
        raise OptionError("under torchrun, give PREPARED (preprocess once, before the launch), not --dataset")
    w = world()
    if not w.is_main:
        console.set_verbosity(-1)
    with membership():
        if runs != 1:
            from hsicls.stages.runs import render_summary, train_runs

            parallel = runs_parallel if runs_parallel is not None else resolve_device(opts.device).type == "cpu"
            summary = train_runs(prepared, output, opts, runs, overwrite=overwrite, world=w, parallel=parallel)
            if summary is not None:
                render_summary(summary)
                if as_json:
                    _print_json({k: v for k, v in summary.items() if k != "reports"})
            return
        result = run(prepared, output, opts, overwrite=overwrite, resume=resume, world=w)
        if as_json and w.is_main:
            _print_json({**result.summary(output), "world_size": w.size, "global_batch_size": opts.batch_size})


@options_command(app, "evaluate", EvaluateOptions, section="evaluate", wrap=handle_errors)
def evaluate(
    *,
    opts,
    given,
    model: Path = typer.Argument(..., help="Model bundle written by 'hsicls train'."),
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
    from hsicls.stages.evaluate import declare_outputs

    outputs = declare_outputs(report_prefix, plot).guard(overwrite, inputs=[model, prepared])
    from hsicls.artifacts.bundle import precheck_bundle

    precheck_bundle(model)
    from hsicls.stages.evaluate import evaluate as run
    from hsicls.stages.evaluate import plot_confusion, plot_reliability, render_report, write_report_files

    report = run(model, prepared, opts)
    render_report(report)
    if report_prefix is not None:
        for p in write_report_files(report, outputs, overwrite):
            console.info(f"wrote {p}")
    if plot is not None:
        plot_confusion(report, outputs["plot"], overwrite)
        plot_reliability(report, outputs["reliability"], overwrite)
        console.info(f"wrote {outputs['plot']} and {outputs['reliability']}")
    if as_json:  # the split masks (pixel indices) go to --report files only
        _print_json({k: v for k, v in report.items() if k != "split_masks"})


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
    from hsicls.artifacts.bundle import precheck_bundle
    from hsicls.stages.predict_map import MapOutputs, outputs_for, predict_maps

    bundle = bundle or bundle_alias
    if bundle is None:
        raise OptionError("predict-map needs the model bundle: -m/--bundle FILE")
    if (output is None) == (out_dir is None):
        raise OptionError("give the map's name with -o/--output, or --out-dir DIR (one map per scene)")
    many = out_dir is not None or len(scene) > 1
    note_input(opts.palette)  # a sidecar (.qml) may not replace the palette it was made from
    if out_dir is not None:  # created, as GDAL tools create an output folder
        check_folder(out_dir, "--out-dir")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HsiclsError(f"--out-dir {out_dir}: cannot create the folder ({exc.strerror})") from None
    template = MapOutputs(output if output is not None else out_dir / "{stem}_map.tif", confidence, probabilities, preview)
    if launched():  # torchrun: units claimed by the ranks, parts assembled by one (hsicls.stages.predict_map_ranks)
        _predict_map_ranks(scene, bundle, template, opts, overwrite, many, as_json)
        return
    if many:  # each scene is checked (and may fail) on its own; outputs are still refused if they are an input
        note_input(bundle, *(s for s in scene if Path(s).exists()))
    else:
        outputs_for(template, Path(scene[0]).stem, False).declared().guard(overwrite, inputs=[scene[0], bundle])
    precheck_bundle(bundle)
    _map_result(predict_maps(scene, bundle, template, opts, overwrite=overwrite, many=many), as_json)


def _map_result(summary: dict | None, as_json: bool) -> None:
    """predict-map's JSON (rank 0's under torchrun; other ranks have none) and exit code 1 when a scene failed."""
    if summary is not None and as_json:
        _print_json(summary)
    if isinstance(summary, dict) and summary.get("failed"):
        raise typer.Exit(code=1)


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
    from hsicls.stages.sample import declare_outputs, sample_maps

    declare_outputs(output).guard(overwrite, inputs=maps)
    design = sample_maps(maps, output, opts, overwrite=overwrite)
    if as_json:
        _print_json(design)


def _predict_map_ranks(scene, bundle, template, opts, overwrite: bool, many: bool, as_json: bool) -> None:
    from hsicls.artifacts.bundle import precheck_bundle
    from hsicls.engine.distributed import membership, world
    from hsicls.stages.predict_map_ranks import predict_maps_distributed

    note_input(bundle, *(s for s in scene if Path(s).exists()))
    precheck_bundle(bundle)
    with membership():
        summary = predict_maps_distributed(world(), scene, bundle, template, opts, overwrite, many)
    _map_result(summary, as_json)


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
    report_prefix: Path | None = typer.Option(None, "--report", help="Write PREFIX.json, PREFIX.csv and PREFIX.md."),
    as_json: bool = Json,
    overwrite: bool = Overwrite,
) -> None:
    """Error matrix, user's/producer's accuracy and F1 with 95 % intervals, and area-adjusted class areas (Olofsson et al. 2014)."""
    from hsicls.stages.assess import assess_maps, declare_outputs, render_assessment, write_assessment_files

    # never over the reference or a map (a GeoJSON reference named PREFIX.json)
    outputs = declare_outputs(report_prefix).guard(overwrite, inputs=[*map, reference])
    result = assess_maps(map, reference, opts)
    render_assessment(result)
    if report_prefix is not None:
        for p in write_assessment_files(result, outputs, overwrite):
            console.info(f"wrote {p}")
    if as_json:
        _print_json(result)


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
    from hsicls.datasets import default_data_dir, download_dataset, get_dataset, import_file, import_folder

    if not math.isfinite(timeout) or timeout <= 0:
        raise OptionError(f"--timeout must be a finite number of seconds > 0, got {timeout}")
    note_input(*from_)
    info = get_dataset(name)
    root = check_folder(data_dir, "--data-dir") or check_folder(default_data_dir(), "$HSICLS_DATA")
    if from_:
        for src in from_:
            if Path(src).is_dir():  # a folder: every file of the scene found in it, by name, verified
                import_folder(info, Path(src), root)
            else:
                import_file(info, src, root)
        return
    paths = download_dataset(info, root, timeout=timeout, retries=retries)
    for p in paths:
        console.info(f"ok {p}")


@app.command()
@handle_errors
def datasets(as_json: bool = Json) -> None:
    """List the registered benchmark scenes."""
    from rich.table import Table

    from hsicls.datasets import aliases_of, list_datasets

    rows = list_datasets()
    if as_json:
        _print_json(
            [
                {
                    "name": d.name,
                    "aliases": aliases_of(d.name),
                    "title": d.title,
                    "sensor": d.sensor,
                    "shape": list(d.shape),
                    "bands": d.shape[2],
                    "classes": len(d.class_names),
                    "class_names": list(d.class_names),
                    "palette": [list(c) for c in d.colours],
                    "wavelengths_nm": list(d.wavelengths_nm) if d.wavelengths_nm else None,
                    "patch_size": d.patch_size,
                    "cube": d.cube,
                    "labels": d.labels,
                    "cube_key": d.cube_key,
                    "labels_key": d.labels_key,
                    "train_mask": d.train_mask,
                    "test_mask": d.test_mask,
                    "verified": d.verified,
                    "notes": d.notes,
                    "files": [{"name": f.name, "urls": list(f.urls), "sha256": f.sha256, "size": f.size} for f in d.files],
                }
                for d in rows
            ]
        )
        return
    table = Table(title="hsicls datasets")
    for col in ("name", "also", "scene", "sensor", "rows x cols x bands", "classes", "verified"):
        table.add_column(col)
    for d in rows:
        verified = "yes" if d.verified else "no checksum"
        table.add_row(
            d.name,
            ", ".join(aliases_of(d.name)),
            d.title,
            d.sensor,
            "x".join(map(str, d.shape)),
            str(len(d.class_names)),
            verified,
        )
    console.listing(table)


@options_command(app, "models", ModelInfoOptions, exclude=("model", "model_options"), wrap=handle_errors)
def models(*, opts, given, as_json: bool = Json) -> None:
    """List the registered models with their parameter counts."""
    from rich.table import Table

    from hsicls.models import create_model, get_entry, list_models
    from hsicls.models.complexity import count_params

    rows = [
        {
            "name": "auto",
            "kind": "auto",
            "params": None,
            "description": "The default of 'train': rf, spectral-cnn and md2f-mamba, trained and averaged (chosen on validation)",
        }
    ]
    for name in list_models():
        entry = get_entry(name)
        made = entry.fitted or not entry.trainable  # fitted, or assembled from trained members: no size of its own
        net = None if made else create_model(name, in_bands=opts.bands, n_classes=opts.classes, patch_size=opts.patch_size)
        rows.append(
            {
                "name": name,
                "kind": entry.kind,
                "params": count_params(net) if net is not None else None,
                "description": entry.description,
            }
        )
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"hsicls models ({opts.bands} bands, {opts.patch_size}x{opts.patch_size} patch, {opts.classes} classes)")
    for col in ("name", "params", "description"):
        table.add_column(col)
    for r in rows:
        size = (
            f"{r['params']:,}" if r["params"] is not None else {"classic": "fitted", "auto": "members"}.get(r["kind"], "members")
        )
        table.add_row(r["name"], size, r["description"])
    console.listing(table)


@options_command(app, "model-info", ModelInfoOptions, wrap=handle_errors)
def model_info(*, opts, given, as_json: bool = Json) -> None:
    """Parameters per component, MACs and FLOPs per sample (torch.utils.flop_counter)."""
    from rich.table import Table

    from hsicls.models.complexity import model_info as run

    try:
        info = run(opts.model, opts.bands, opts.patch_size, opts.classes, opts.model_options)
    except ValueError as exc:
        raise HsiclsError(f"model '{opts.model}': {exc}") from None
    if as_json:
        _print_json(info)
        return
    table = Table(title=f"{opts.model}: {opts.bands} bands, {opts.patch_size}x{opts.patch_size} patch, {opts.classes} classes")
    table.add_column("component")
    table.add_column("params", justify="right")
    for k, v in info["components"].items():
        table.add_row(k, f"{v:,}")
    table.add_section()
    table.add_row("total", f"{info['params']:,}")
    if info["macs"] is not None:
        table.add_row("MACs / sample", f"{info['macs'] / 1e6:.2f}M")
        table.add_row("FLOPs / sample", f"{info['flops'] / 1e6:.2f}M")
    if info.get("inference_macs"):
        table.add_row("MACs, merged inference path", f"{info['inference_macs'] / 1e6:.2f}M")
    console.listing(table)


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
