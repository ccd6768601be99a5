"""What one ``train`` or ``predict-map`` call runs: one job, K repeats, every fold, or this rank's share of a
torchrun group. The branching lives here, behind the API (:mod:`hsicls.api`), so the CLI only parses and prints.

* :func:`train_job`: ``--folds-all`` (:func:`hsicls.stages.repeats.train_folds`), ``--runs K``
  (:func:`~hsicls.stages.repeats.train_runs`), one run (:func:`hsicls.stages.train.train`); under torchrun each of
  them on this rank (DDP, or the runs or folds spread over the ranks).
* :func:`map_job`: one scene or many (:func:`hsicls.stages.predict_map.predict_maps`), or under torchrun the
  units claimed by the ranks (:func:`hsicls.stages.predict_map_distributed.predict_maps_distributed`).

Under torchrun the other ranks return ``None``: rank 0 alone holds the result.
"""

from __future__ import annotations

from pathlib import Path

from hsicls import console
from hsicls.config import MapOptions, TrainOptions
from hsicls.engine.distributed import launched
from hsicls.errors import HsiclsError, OptionError
from hsicls.io.guard import check_folder, note_input
from hsicls.io.maps import MapOutputs


def train_job(
    prepared: str | Path | None,
    output: str | Path,
    options: TrainOptions,
    *,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    runs: int = 1,
    runs_parallel: bool | None = None,
    folds_all: bool = False,
    resume: bool = False,
    overwrite: bool = False,
):
    """``hsicls train``: a :class:`~hsicls.stages.train.TrainResult` (one run), the summary dict (``runs > 1`` or
    ``folds_all``), or ``None`` on a torchrun rank other than 0."""
    prepared = None if prepared is None else Path(prepared)
    output = Path(output)
    if folds_all:
        if runs != 1:
            raise OptionError("--folds-all trains every fold once, with the same network seed; --runs does not apply to it")
        return _folds(prepared, output, options, overwrite, resume)
    if launched():
        return _ranks(prepared, output, options, dataset, runs, runs_parallel, resume, overwrite)
    if runs == 1:  # --runs: its own files (hsicls.stages.repeats)
        from hsicls.artifacts.bundle import guard_training_outputs

        guard_training_outputs(output, resume, overwrite, inputs=[prepared])
    data_dir = check_folder(data_dir, "--data-dir")
    if dataset is not None:
        if prepared is not None:
            raise OptionError("give either PREPARED or --dataset, not both")
        from hsicls.stages.preprocess import prepared_for_dataset

        prepared = prepared_for_dataset(dataset, data_dir, options.seed)
    elif prepared is None:
        raise OptionError("give PREPARED (from 'hsicls preprocess') or --dataset NAME")
    if runs != 1:
        from hsicls.stages.repeats import render_summary, train_runs

        summary = train_runs(prepared, output, options, runs, overwrite=overwrite)
        render_summary(summary)
        return summary
    from hsicls.stages.train import train

    return train(prepared, output, options, overwrite=overwrite, resume=resume)


def train_json(result, output: str | Path) -> dict | None:
    """What ``train --json`` prints for :func:`train_job`'s result (a summary without its per-run reports)."""
    if result is None:
        return None
    if isinstance(result, dict):
        return {k: v for k, v in result.items() if k != "reports"}
    return result.summary(Path(output))


def _folds(prepared: Path | None, output: Path, options: TrainOptions, overwrite: bool, resume: bool) -> dict | None:
    """``train --folds-all`` (under torchrun: the folds spread over the ranks)."""
    from hsicls.stages.repeats import train_folds

    if prepared is None:
        raise OptionError("--folds-all needs PREPARED, made with --split group --folds K")
    if launched():
        from hsicls.engine.distributed import membership, world

        w = world()
        if not w.is_main:
            console.set_verbosity(-1)
        with membership():
            summary = train_folds(prepared, output, options, overwrite=overwrite, world=w, resume=resume)
    else:
        summary = train_folds(prepared, output, options, overwrite=overwrite, resume=resume)
    if summary is not None:
        m = {k: f"{100 * summary[k]['mean']:.2f} ± {100 * summary[k]['std']:.2f}" for k in ("oa", "aa", "kappa")}
        console.info(f"{summary['protocol']}: OA {m['oa']}, AA {m['aa']}, kappa {m['kappa']}; wrote {output.name}.cv.json/.md")
    return summary


def _ranks(prepared, output: Path, options: TrainOptions, dataset, runs: int, runs_parallel, resume: bool, overwrite: bool):
    """``train`` on one rank of a torchrun group (see :mod:`hsicls.engine.distributed`)."""
    from hsicls.engine.distributed import membership, world
    from hsicls.engine.runtime import resolve_device
    from hsicls.stages.train import train

    if dataset is not None or prepared is None:
        raise OptionError("under torchrun, give PREPARED (preprocess once, before the launch), not --dataset")
    w = world()
    if not w.is_main:
        console.set_verbosity(-1)
    with membership():
        if runs != 1:
            from hsicls.stages.repeats import render_summary, train_runs

            parallel = runs_parallel if runs_parallel is not None else resolve_device(options.device).type == "cpu"
            summary = train_runs(prepared, output, options, runs, overwrite=overwrite, world=w, parallel=parallel)
            if summary is not None:
                render_summary(summary)
            return summary
        result = train(prepared, output, options, overwrite=overwrite, resume=resume, world=w)
        if not w.is_main:
            return None
        result.world_size, result.global_batch_size = w.size, options.batch_size
        return result


def map_job(
    scenes: list[str | Path],
    bundle: str | Path | None,
    options: MapOptions,
    *,
    output: str | Path | None = None,
    out_dir: str | Path | None = None,
    confidence: str | Path | None = None,
    probabilities: str | Path | None = None,
    preview: str | Path | None = None,
    overwrite: bool = False,
) -> dict | None:
    """``hsicls predict-map``: one scene's summary, or ``{"maps", "skipped", "failed"}`` for several (``out_dir``, or
    more than one scene); ``None`` on a torchrun rank other than 0."""
    from hsicls.stages.predict_map import predict_maps

    if bundle is None:
        raise OptionError("predict-map needs the model bundle: -m/--bundle FILE")
    if (output is None) == (out_dir is None):
        raise OptionError("give the map's name with -o/--output, or --out-dir DIR (one map per scene)")
    scenes, bundle = [Path(s) for s in scenes], Path(bundle)
    if not scenes:
        raise OptionError("give at least one scene to classify")
    many = out_dir is not None or len(scenes) > 1
    note_input(options.palette)  # a sidecar (.qml) may not replace the palette it was made from
    if out_dir is not None:  # created, as GDAL tools create an output folder
        out_dir = check_folder(out_dir, "--out-dir")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HsiclsError(f"--out-dir {out_dir}: cannot create the folder ({exc.strerror})") from None
    paths = (confidence, probabilities, preview)
    template = MapOutputs(Path(output) if output is not None else out_dir / "{stem}_map.tif", *(_path(p) for p in paths))
    if launched():  # torchrun: units claimed by the ranks, parts assembled by one
        from hsicls.engine.distributed import membership, world
        from hsicls.stages.predict_map_distributed import predict_maps_distributed

        note_input(bundle, *(s for s in scenes if s.exists()))
        with membership():
            return predict_maps_distributed(world(), scenes, bundle, template, options, overwrite, many)
    if many:  # each scene is checked (and may fail) on its own; outputs are still refused if they are an input
        note_input(bundle, *(s for s in scenes if s.exists()))
    else:
        template.for_stem(scenes[0].stem, False).declared().guard(overwrite, inputs=[scenes[0], bundle])
    return predict_maps(scenes, bundle, template, options, overwrite=overwrite, many=many)


def _path(p) -> Path | None:
    return None if p is None else Path(p)
