"""The ``hsicls`` command line: parses options and calls the stage functions, nothing else.

Logs and progress go to stderr; ``--json`` results go to stdout. User errors
(:class:`~hsicls.errors.HsiclsError`) become one line on stderr and exit code 1.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import typer

from . import __version__, console
from .errors import HsiclsError

app = typer.Typer(
    name="hsicls",
    help="Hyperspectral image land-cover classification: download, preprocess, train, evaluate, predict-map.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Overwrite = typer.Option(False, "--overwrite", help="Replace the output file if it exists.")
Device = typer.Option("auto", "--device", help="auto (GPU when present), cpu or cuda.")
Json = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


def handle_errors(fn):
    """Turn user errors into one clear line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HsiclsError as exc:
            console.error(str(exc))
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            console.error("interrupted")
            raise typer.Exit(code=130) from None

    return wrapper


def _print_json(obj) -> None:
    from .fileutil import json_safe

    sys.stdout.write(json.dumps(json_safe(obj), indent=2) + "\n")


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
    console.set_verbosity(-1 if quiet else min(verbose, 1))


@app.command()
@handle_errors
def preprocess(
    scene: Path | None = typer.Argument(
        None, help="Hyperspectral cube: GeoTIFF/ENVI/any GDAL raster, .mat or .npy (rows, cols, bands)."
    ),
    labels: list[Path] = typer.Option(
        [],
        "--labels",
        "-l",
        help="Labels (0 = unlabelled): raster, .mat, .npy, ENVI ROI .txt or vector file; repeat to fill unlabelled pixels from further files.",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Output HDF5 file."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="A registered scene instead of SCENE/--labels (see 'hsicls datasets')."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Where registered scenes live (default $HSICLS_DATA or ~/.cache/hsicls)."
    ),
    label_field: str | None = typer.Option(None, "--label-field", help="Class attribute of vector labels."),
    components: int = typer.Option(30, "--components", help="PCA components to keep (0 = no PCA)."),
    split: str = typer.Option(
        "random",
        "--split",
        help="random (stratified ratio), count (N per class), disjoint (spatially disjoint, footprint-guarded), fixed (mask files).",
    ),
    train_ratio: float = typer.Option(
        0.05, "--train-ratio", help="Fraction of each class's labelled pixels used for training (random, disjoint)."
    ),
    train_count: int | None = typer.Option(None, "--train-count", help="Training pixels per class (split count)."),
    patch_size: int = typer.Option(
        13, "--patch-size", help="Split disjoint: the patch whose footprint is kept free of test pixels."
    ),
    block_size: int | None = typer.Option(
        None, "--block-size", help="Split disjoint: block side in pixels (default: the patch size)."
    ),
    train_mask: Path | None = typer.Option(None, "--train-mask", help="Split fixed: training pixels (non-zero)."),
    test_mask: Path | None = typer.Option(
        None, "--test-mask", help="Split fixed: test pixels (default: every other labelled pixel)."
    ),
    val_ratio: float = typer.Option(
        0.2,
        "--val-ratio",
        help="Fraction of the training pixels held out for validation (model selection); 0 = none, the final epoch is kept.",
    ),
    fit_on: str = typer.Option(
        "all",
        "--fit-on",
        help="Fit standardisation + PCA on 'all' valid pixels (the paper family's habit) or only on 'train' pixels.",
    ),
    whiten: bool = typer.Option(
        False, "--whiten/--no-whiten", help="Scale each PCA component to unit variance (PCA whitening, as in HybridSN and SSFTT)."
    ),
    standardize: bool = typer.Option(
        True,
        "--standardize/--no-standardize",
        help="Standardise every band before PCA (default), or run PCA on the raw values (HybridSN's and SSFTT's code).",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split."),
    key: str | None = typer.Option(None, "--key", help="Variable of the cube inside a .mat file (auto-detected)."),
    labels_key: str | None = typer.Option(
        None, "--labels-key", help="Variable of the labels inside a .mat file (auto-detected)."
    ),
    class_names: str | None = typer.Option(None, "--class-names", help="Comma-separated class names, in label order."),
    overwrite: bool = Overwrite,
) -> None:
    """Standardise, reduce bands with PCA, split train/validation/test; write one HDF5 file."""
    from .preprocess import PreprocessOptions
    from .preprocess import preprocess as run

    names = [n.strip() for n in class_names.split(",")] if class_names else None
    opts = PreprocessOptions(
        components,
        train_ratio,
        val_ratio,
        seed,
        key,
        labels_key,
        names,
        None,
        label_field,
        split,
        train_count,
        patch_size,
        block_size,
        str(train_mask) if train_mask else None,
        str(test_mask) if test_mask else None,
        fit_on,
        whiten,
        standardize,
    )
    scene_path, label_paths = _scene_inputs(scene, labels, dataset, data_dir, opts)
    run(scene_path, label_paths, output, opts, overwrite=overwrite)


def _scene_inputs(scene, labels, dataset, data_dir, opts):
    """SCENE + --labels, or --dataset NAME (files resolved, and fetched if missing)."""
    if dataset is not None:
        if scene is not None or labels:
            raise HsiclsError("give either SCENE with --labels, or --dataset, not both")
        from .datasets import resolve_dataset

        r = resolve_dataset(dataset, data_dir)
        opts.key = opts.key or r.cube_key
        opts.labels_key = opts.labels_key or r.labels_key
        opts.class_names = opts.class_names or list(r.info.class_names)
        opts.palette = r.info.colours
        if opts.split == "fixed" and opts.train_mask is None and r.info.train_mask:
            opts.train_mask = str(r.root / r.info.train_mask)
            opts.test_mask = opts.test_mask or (str(r.root / r.info.test_mask) if r.info.test_mask else None)
        return r.cube, r.labels
    if scene is None or not labels:
        raise HsiclsError("give SCENE and --labels, or --dataset NAME")
    return scene, list(labels)


def _prepared_for(dataset: str, data_dir: Path | None, seed: int) -> Path:
    """``<data-dir>/<name>/prepared_seed<seed>.h5``, made with the preprocess defaults if missing."""
    from .datasets import default_data_dir, get_dataset
    from .preprocess import PreprocessOptions
    from .preprocess import preprocess as run

    info = get_dataset(dataset)
    path = (data_dir or default_data_dir()) / info.name / f"prepared_seed{seed}.h5"
    if not path.exists():
        opts = PreprocessOptions(seed=seed)
        scene, labels = _scene_inputs(None, None, dataset, data_dir, opts)
        run(scene, labels, path, opts)
    else:
        console.info(f"using {path}")
    return path


def _parse_model_opts(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise HsiclsError(f"--model-opt expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command()
@handle_errors
def train(
    prepared: Path | None = typer.Argument(None, help="HDF5 file written by 'hsicls preprocess'."),
    output: Path = typer.Option(..., "--output", "-o", help="Output model bundle (.pt)."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="A registered scene; preprocessed with the defaults first if needed."
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where registered scenes live."),
    model: str = typer.Option("md2f-mamba", "--model", help="Registered model (see 'hsicls models')."),
    model_opt: list[str] = typer.Option([], "--model-opt", help="Model option KEY=VALUE, e.g. fusion=add (repeatable)."),
    patch_size: int | None = typer.Option(
        None, "--patch-size", help="Patch side in pixels, odd (default 13; with --dataset the paper's size for that scene)."
    ),
    epochs: int = typer.Option(100, "--epochs"),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float | None = typer.Option(
        None, "--lr", help="Adam learning rate (default 0.002; the paper's 0.004 on WHU-Hi-HanChuan)."
    ),
    weight_decay: float = typer.Option(0.0, "--weight-decay"),
    lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant, cosine, or step (x0.1 at 50 % and 75 %)."),
    early_stopping: int = typer.Option(
        0, "--early-stopping", help="Stop after N epochs without a better validation OA (0 = off)."
    ),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing"),
    augment: bool = typer.Option(False, "--augment", help="Random flips/transpositions of the training patches."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16."),
    ema: float = typer.Option(
        0.0,
        "--ema",
        help="Decay per step of an exponential moving average of the weights, e.g. 0.99 (0 = off); the average is validated and kept.",
    ),
    padding: str = typer.Option(
        "reflect",
        "--padding",
        help="Patches beyond the scene border: reflect the scene, or zero (HybridSN/SSFTT code). Kept in the bundle.",
    ),
    seed: int = typer.Option(0, "--seed", min=0),
    runs: int = typer.Option(1, "--runs", help="Train K seeds, each with its own split, and report mean ± std."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from OUTPUT.ckpt."),
    device: str = Device,
    as_json: bool = Json,
    overwrite: bool = Overwrite,
) -> None:
    """Train a model; keep the epoch with the best validation OA; write one model bundle."""
    from .train import TrainOptions
    from .train import train as run

    if dataset is not None:
        if prepared is not None:
            raise HsiclsError("give either PREPARED or --dataset, not both")
        from .datasets import get_dataset

        info = get_dataset(dataset)
        lr = lr if lr is not None else info.lr
        patch_size = patch_size if patch_size is not None else info.patch_size
        prepared = _prepared_for(dataset, data_dir, seed)
    elif prepared is None:
        raise HsiclsError("give PREPARED (from 'hsicls preprocess') or --dataset NAME")
    opts = TrainOptions(
        model,
        _parse_model_opts(model_opt),
        patch_size if patch_size is not None else 13,
        epochs,
        batch_size,
        lr if lr is not None else 0.002,
        seed,
        device,
        weight_decay,
        lr_schedule,
        early_stopping,
        label_smoothing,
        augment,
        precision,
        padding,
        ema,
    )
    if runs != 1:
        from .runs import render_summary, train_runs

        summary = train_runs(prepared, output, opts, runs, overwrite=overwrite)
        render_summary(summary)
        if as_json:
            _print_json({k: v for k, v in summary.items() if k != "reports"})
        return
    result = run(prepared, output, opts, overwrite=overwrite, resume=resume)
    if as_json:
        _print_json(
            {
                "model": str(output),
                "best_epoch": result.best_epoch,
                "val_oa": result.val_oa,
                "selection": result.selection,
                "seconds": result.seconds,
                "history": result.history,
            }
        )


@app.command()
@handle_errors
def evaluate(
    model: Path = typer.Argument(..., help="Model bundle written by 'hsicls train'."),
    prepared: Path = typer.Argument(..., help="HDF5 file written by 'hsicls preprocess'."),
    device: str = Device,
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Patches per forward pass [default: 256 on the CPU, 4096 on a GPU]."
    ),
    report_prefix: Path | None = typer.Option(
        None, "--report", help="Write PREFIX.json (with the split masks), PREFIX.csv and PREFIX.md."
    ),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast on GPU, as predict-map), fp32 or bf16."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the confusion matrix as a PNG."),
    as_json: bool = Json,
    overwrite: bool = Overwrite,
) -> None:
    """OA, AA, kappa, per-class accuracy and confusion matrix on the test split."""
    from .evaluate import evaluate as run
    from .evaluate import plot_confusion, render_report, write_report_files
    from .fileutil import check_output

    if report_prefix is not None:
        for suffix in (".json", ".csv", ".md"):
            check_output(report_prefix.with_name(report_prefix.name + suffix), overwrite)
    if plot is not None:
        check_output(plot, overwrite)
    report = run(model, prepared, device=device, batch_size=batch_size, precision=precision)
    render_report(report)
    if report_prefix is not None:
        for p in write_report_files(report, report_prefix, overwrite):
            console.info(f"wrote {p}")
    if plot is not None:
        plot_confusion(report, plot, overwrite)
        console.info(f"wrote {plot}")
    if as_json:  # the split masks (pixel indices) go to --report files only
        _print_json({k: v for k, v in report.items() if k != "split_masks"})


@app.command("predict-map")
@handle_errors
def predict_map(
    scene: Path = typer.Argument(
        ..., help="Scene to classify (same bands as the training scene): GeoTIFF/ENVI/any GDAL raster, .mat, .npy."
    ),
    model: Path = typer.Option(..., "--model", "-m", help="Model bundle written by 'hsicls train'."),
    output: Path = typer.Option(..., "--output", "-o", help="Output class-map GeoTIFF."),
    key: str | None = typer.Option(None, "--key", help="Variable of the cube inside a .mat file."),
    window: int = typer.Option(
        256, "--window", help="Window side in pixels; peak memory grows with its square, the map does not change."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        help="Patches per forward pass [default: 256 on the CPU, 4096 on a GPU]; activations take about 0.9 MB each for md2f-mamba at 13x13.",
    ),
    cog: bool = typer.Option(False, "--cog", help="Write a Cloud-Optimized GeoTIFF with overviews (mode resampling)."),
    confidence: Path | None = typer.Option(None, "--confidence", help="Also write the maximum softmax probability per pixel."),
    confidence_dtype: str = typer.Option("float32", "--confidence-dtype", help="float32, or uint8 (1-255 for 0-1, 0 = nodata)."),
    probabilities: Path | None = typer.Option(
        None, "--probabilities", help="Also write one probability band per class (float32)."
    ),
    reject_below: float | None = typer.Option(
        None, "--reject-below", help="Pixels whose confidence is below T get the class 'unknown'."
    ),
    preview: Path | None = typer.Option(None, "--preview", help="Also write a PNG quicklook with a legend."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16."),
    device: str = Device,
    as_json: bool = Json,
    overwrite: bool = Overwrite,
) -> None:
    """Classify every pixel of a scene; write a georeferenced class-map GeoTIFF with a colour table."""
    from .predict import MapOptions
    from .predict import predict_map as run

    opts = MapOptions(
        device, batch_size, window, key, cog, confidence, confidence_dtype, probabilities, reject_below, preview, precision
    )
    summary = run(scene, model, output, opts, overwrite=overwrite)
    if as_json:
        _print_json(summary)


@app.command()
@handle_errors
def download(
    name: str = typer.Argument(..., help="Dataset name (see 'hsicls datasets')."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Target folder (default $HSICLS_DATA or ~/.cache/hsicls)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Network timeout in seconds."),
    retries: int = typer.Option(3, "--retries", help="Retries per source on transient failures (resuming each time)."),
    from_: list[Path] = typer.Option([], "--from", help="Import a file obtained by hand (its sha256 is checked); repeatable."),
) -> None:
    """Download a benchmark scene, verifying every file's sha256 (or import files with --from)."""
    from .datasets import default_data_dir, download_dataset, get_dataset, import_file

    info = get_dataset(name)
    root = data_dir or default_data_dir()
    if from_:
        for src in from_:
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

    from .datasets import list_datasets

    rows = list_datasets()
    if as_json:
        _print_json(
            [
                {
                    "name": d.name,
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
    for col in ("name", "scene", "sensor", "rows x cols x bands", "classes", "verified"):
        table.add_column(col)
    for d in rows:
        verified = "yes" if d.verified else "no checksum"
        table.add_row(d.name, d.title, d.sensor, "x".join(map(str, d.shape)), str(len(d.class_names)), verified)
    console.err_console().print(table)


@app.command()
@handle_errors
def models(
    bands: int = typer.Option(30, "--bands", help="Input bands (after PCA) for the parameter count."),
    classes: int = typer.Option(9, "--classes"),
    patch: int = typer.Option(13, "--patch"),
    as_json: bool = Json,
) -> None:
    """List the registered models with their parameter counts."""
    from rich.table import Table

    from .models import create_model, get_entry, list_models
    from .models.complexity import count_params

    rows = []
    for name in list_models():
        entry = get_entry(name)
        params = (
            count_params(create_model(name, in_bands=bands, n_classes=classes, patch_size=patch))
            if entry.kind == "deep"
            else None
        )
        rows.append({"name": name, "kind": entry.kind, "params": params, "description": entry.description})
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"hsicls models ({bands} bands, {patch}x{patch} patch, {classes} classes)")
    for col in ("name", "params", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}" if r["params"] is not None else "fitted", r["description"])
    console.err_console().print(table)


@app.command("model-info")
@handle_errors
def model_info(
    model: str = typer.Option("md2f-mamba", "--model", help="Registered model."),
    bands: int = typer.Option(30, "--bands", help="Bands the network sees (after PCA)."),
    patch: int = typer.Option(13, "--patch"),
    classes: int = typer.Option(9, "--classes"),
    model_opt: list[str] = typer.Option([], "--model-opt", help="Model option KEY=VALUE (repeatable)."),
    as_json: bool = Json,
) -> None:
    """Parameters per component, MACs and FLOPs per sample (torch.utils.flop_counter)."""
    from rich.table import Table

    from .models.complexity import model_info as run

    try:
        info = run(model, bands, patch, classes, _parse_model_opts(model_opt))
    except ValueError as exc:
        raise HsiclsError(f"model '{model}': {exc}") from None
    if as_json:
        _print_json(info)
        return
    table = Table(title=f"{model}: {bands} bands, {patch}x{patch} patch, {classes} classes")
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
    console.err_console().print(table)


def main() -> None:
    """Console entry point: usage errors become one ``error:`` line too (exit code 2)."""
    try:
        rc = app(standalone_mode=False)
    except typer.Abort:
        console.error("interrupted")
        sys.exit(130)
    except Exception as exc:  # click/typer usage errors (typer vendors its own click)
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'hsicls': the help was printed
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        name = getattr(ctx, "info_name", None)
        hint = f" (see 'hsicls {name} --help')" if name and name != "hsicls" and ctx.parent is not None else ""
        console.error(exc.format_message() + hint)
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
