"""Stage ``preprocess``: scene + labels -> standardised, PCA-reduced cube + split, in one HDF5 file.

Steps: read the cube ``(H, W, B)`` and labels ``(H, W)``; mark invalid pixels (nodata/NaN/all
zero); per-band standardisation (mean/std over valid pixels); PCA to ``components`` axes
(scikit-learn); stratified train/validation/test split; write :mod:`hsicls.artifacts.prepared`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from hsicls import console
from hsicls.artifacts.prepared import Prepared, Preprocessing, SceneInfo, fit_on_words, save_prepared, stack_scenes
from hsicls.config import PreprocessOptions
from hsicls.errors import HsiclsError, InputError, OptionError
from hsicls.io.atomic import atomic_output
from hsicls.io.disk import write_via_memory
from hsicls.io.guard import Declared, OutputSet
from hsicls.io.labels import label_names_and_colours, labels_on_grid
from hsicls.io.palette import default_palette
from hsicls.science.scene_assembly import (
    RAW_IN_MEMORY_BYTES,
    check_bands_agree,
    merge_labels,
    open_scenes,
    pair_labels,
    raw_bytes,
    warn_outside,
)
from hsicls.science.splits import SplitInputs, describe_split, get_split, split_record

PCA_FIT_MAX_PIXELS = 200_000  # PCA is fitted on a seeded random sample of at most this many pixels


def fit_preprocessing(
    data: np.ndarray, valid: np.ndarray | None, components: int, seed: int, whiten: bool = False, standardize: bool = True
) -> Preprocessing:
    """Fit per-band standardisation and PCA on the valid pixels of an ``(H, W, B)`` cube (or on
    ``data`` ``(N, B)`` pixels directly when ``valid`` is None).

    ``whiten``: every kept component is divided by its standard deviation (unit variance), as
    ``sklearn.decomposition.PCA(whiten=True)`` in HybridSN's and SSFTT's code; folded into the
    stored components, so applying the preprocessing is unchanged. ``standardize=False`` runs PCA
    on the raw band values (centred only), as HybridSN's and SSFTT's code do; bright, high-variance
    bands then dominate the components."""

    pixels = (data if valid is None else data[valid]).astype(np.float64)  # (N, B)
    n, b = pixels.shape
    if 0 < components < b and components > n:
        raise HsiclsError(f"only {n} valid pixels: cannot keep {components} PCA components (use --components {n} or fewer)")
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0) if standardize else np.ones(b)
    std[std < 1e-12] = 1.0  # constant bands: keep them, scaled by 1
    return _with_pca(pixels, mean, std, components, seed, whiten)


def _with_pca(pixels: np.ndarray, mean: np.ndarray, std: np.ndarray, components: int, seed: int, whiten: bool) -> Preprocessing:
    """PCA of the standardised ``pixels`` ``(N, B)`` (a seeded sample of at most ``PCA_FIT_MAX_PIXELS``)."""
    from sklearn.decomposition import PCA

    n, b = pixels.shape
    if components == 0 or components >= b:
        if components > b:
            console.warn(f"--components {components} exceeds the {b} bands; keeping all bands without PCA")
        comps = np.zeros((0, b))
        return Preprocessing(mean=mean, std=std, components=comps, pca_mean=np.zeros(b))
    rng = np.random.default_rng(seed)
    sample = pixels if n <= PCA_FIT_MAX_PIXELS else pixels[rng.choice(n, PCA_FIT_MAX_PIXELS, replace=False)]
    z = (sample - mean) / std
    pca = PCA(n_components=components, svd_solver="full").fit(z)
    comps = pca.components_.copy()
    # Deterministic sign: the largest-magnitude loading of each axis is positive.
    signs = np.sign(comps[np.arange(comps.shape[0]), np.abs(comps).argmax(axis=1)])
    comps *= signs[:, None]
    if whiten:
        comps /= np.sqrt(np.maximum(pca.explained_variance_, 1e-12))[:, None]
    console.debug(f"PCA keeps {pca.explained_variance_ratio_.sum():.4f} of the variance with {components} axes")
    return Preprocessing(mean=mean, std=std, components=comps, pca_mean=pca.mean_.copy())


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Map label codes (e.g. Salinas-A's 1, 10..14) to contiguous 1..K; returns the codes."""
    codes, inverse = np.unique(labels, return_inverse=True)
    if codes[0] != 0:  # no unlabelled pixel at all: shift so that code index 0 is not "unlabelled"
        codes = np.concatenate([[0], codes])
        inverse = inverse + 1
    return inverse.reshape(labels.shape).astype(np.int32), [int(v) for v in codes[1:]]


def make_split(labels: np.ndarray, o: PreprocessOptions, scenes: list, sources) -> tuple[np.ndarray, ...]:
    """``(train, val, test, groups, held_out)`` of the chosen protocol (``groups``: the ``(H, W)`` ids a group
    protocol holds out whole, else None; ``held_out``: the held-out groups by name, for the record)."""
    protocol = get_split(o.split)
    inputs = SplitInputs(scenes=scenes, warn=console.warn, read_mask=lambda path: _mask_on_canvas(Path(path), sources))
    inputs.groups = protocol.groups(labels, o, inputs)
    train, val, test = protocol.split(labels, o, inputs)
    return train, val, test, inputs.groups, protocol.held_out(test, val, o, inputs)


def _mask_on_canvas(path: Path, sources) -> np.ndarray:
    """A split mask: any label raster/ROI/vector file, put on each scene's grid; non-zero = selected."""
    return stack_scenes([labels_on_grid(path, s) for s in sources])


def _labels_on_valid(labels_raw: np.ndarray, valid: np.ndarray, src, label_paths) -> np.ndarray:
    """Raw label codes kept on valid pixels only (labelled nodata pixels are dropped with a warning)."""
    if not valid.any():
        raise InputError(f"{src.path}: every pixel is nodata/NaN")
    lost = int(((labels_raw > 0) & ~valid).sum())
    if lost:
        console.warn(f"{lost} labelled pixels are nodata in {src.path.name} and are dropped")
    return np.where(valid, labels_raw, 0)


def _names_and_palette(options: PreprocessOptions, label_paths, values: list[int]):
    """Class names and colours: --class-names / a dataset's palette, else the label file's, else defaults."""
    names_meta, palette_meta = label_names_and_colours(label_paths[0], options.label_field, options.label_layer)
    if options.class_names is not None:
        if len(options.class_names) == len(values):  # one name per class present
            class_names = list(options.class_names)
        elif len(options.class_names) >= max(values):  # names for every code 1..N (registry lists)
            class_names = [options.class_names[v - 1] for v in values]
        else:
            raise HsiclsError(f"--class-names gives {len(options.class_names)} names for {len(values)} classes")
    elif names_meta and all(v in names_meta for v in values):
        class_names = [names_meta[v] for v in values]
    else:
        class_names = [f"class {v}" for v in values]
    if options.palette is not None and len(options.palette) == len(values):
        palette = [tuple(c) for c in options.palette]
    elif options.palette is not None and len(options.palette) >= max(values):
        palette = [tuple(options.palette[v - 1]) for v in values]
    elif palette_meta and all(v in palette_meta for v in values):
        palette = [palette_meta[v] for v in values]
    else:
        palette = default_palette(len(values))
    return class_names, palette


def declare_outputs(output: Path) -> OutputSet:
    """What ``preprocess`` writes: the prepared file."""
    return OutputSet(Declared("prepared", Path(output)))


def preprocess(
    scene_path: str | Path | list,
    labels_path: str | Path | list[Path],
    output: str | Path,
    options: PreprocessOptions = PreprocessOptions(),
    overwrite: bool = False,
) -> Prepared:
    """Run the whole stage on one or several scenes and write ``output``; returns what was written."""
    paths = [Path(p) for p in scene_path] if isinstance(scene_path, (list, tuple)) else [Path(scene_path)]
    label_paths = [Path(p) for p in labels_path] if isinstance(labels_path, (list, tuple)) else [Path(labels_path)]
    outputs = declare_outputs(output).guard(overwrite, inputs=[*paths, *label_paths, options.train_mask, options.test_mask])
    options.validate()
    sources = open_scenes(paths, options.key, options.nodata, options.mask)
    bands = check_bands_agree(sources)
    label_sets = pair_labels(sources, label_paths)
    in_memory = len(sources) == 1 or raw_bytes(sources) <= RAW_IN_MEMORY_BYTES
    cubes, valids, raw_labels = _read_scenes(sources, label_sets, options, keep=in_memory)
    warn_outside(label_paths, sources, options.label_field, options.label_layer)
    scenes = _scene_infos(sources, label_sets)
    labels_raw = stack_scenes(raw_labels)
    if not (labels_raw > 0).any():
        raise InputError(f"{label_paths[0]}: no labelled pixel falls on valid data of {', '.join(s.path.name for s in sources)}")
    labels, values = _relabel(labels_raw)
    if len(values) < 2:
        raise InputError(f"{label_paths[0]}: every labelled pixel has class {values[0]}; classification needs at least 2 classes")
    class_names, palette = _names_and_palette(options, label_paths, values)
    train, val, test, groups, held_out = make_split(labels, options, scenes, sources)
    valid = stack_scenes(valids)
    if options.whiten and not 0 < options.components < bands.count:
        console.warn("--whiten applies to PCA components; without PCA it is ignored")
        options = replace(options, whiten=False)
    fit_on = resolve_fit_on(options)
    fit_masks = valids if fit_on == "all" else [v & (train | val)[s.rows, : s.width] for v, s in zip(valids, scenes)]
    prep = _fit(sources, cubes, fit_masks, options)
    keep_spectra = _keep_spectra(options, valid_pixels=sum(int(v.sum()) for v in valids), bands=prep.n_bands)
    reduced = _reduce(sources, cubes, valids, prep, keep_spectra)
    cube = stack_scenes([z for z, _ in reduced])
    spectra = stack_scenes([sp for _, sp in reduced]) if keep_spectra else None
    _log_split(labels, train, val, test, values, options)
    meta = {
        "source": str(paths[0]) if len(paths) == 1 else ";".join(map(str, paths)),
        "sources": [str(p) for p in paths],
        "labels_source": ";".join(str(p) for p in label_paths),
        "fit_on": fit_on,
        "fit_on_rule": options.fit_on,
        "whiten": options.whiten,
        "standardize": options.standardize,
        "split": {**split_record(options), **held_out},
        "options": options.to_record(),
        "bands": bands.to_dict(),
    }
    prepared = Prepared(
        cube=cube,
        labels=labels,
        valid=valid,
        train=train,
        val=val,
        test=test,
        preprocessing=prep,
        class_names=class_names,
        class_values=values,
        palette=palette,
        meta=meta,
        scenes=scenes,
        groups=groups,
        spectra=spectra,
    )
    with atomic_output(outputs["prepared"], overwrite) as tmp:  # HDF5 built in memory: a full disk fails one plain write
        write_via_memory(tmp, lambda buf: save_prepared(buf, prepared))
    console.info(f"wrote {outputs['prepared']}")
    return prepared


def _read_scenes(sources, label_sets, o: PreprocessOptions, keep: bool):
    """Per scene: the raw cube (when ``keep``, else None), the valid mask and the raw label codes."""
    cubes, valids, labels = [], [], []
    for src, files in zip(sources, label_sets):
        scene = src.read()
        console.info(f"read {src.path.name}: {src.height}x{src.width} px, {src.bands.count} bands")
        valid = scene.valid_mask()
        lab = merge_labels(files, src, o.labels_key, o.label_field, o.label_layer)
        labels.append(_labels_on_valid(lab, valid, src, files))
        valids.append(valid)
        cubes.append(scene.data if keep else None)
    return cubes, valids, labels


def _scene_infos(sources, label_sets) -> list[SceneInfo]:
    out, row0 = [], 0
    for src, files in zip(sources, label_sets):
        out.append(SceneInfo(src.path.stem, src.grid, row0, str(src.path), ";".join(map(str, files))))
        row0 += src.height
    return out


def _fit(sources, cubes, fit_masks, o: PreprocessOptions) -> Preprocessing:
    """Standardisation + PCA fitted once over all scenes' fit pixels (in memory, or streamed scene by scene)."""
    if all(c is not None for c in cubes):
        data = cubes[0] if len(cubes) == 1 else np.concatenate([c[m] for c, m in zip(cubes, fit_masks)])
        return fit_preprocessing(data, fit_masks[0] if len(cubes) == 1 else None, o.components, o.seed, o.whiten, o.standardize)
    return _fit_streamed(sources, fit_masks, o)


def _fit_streamed(sources, fit_masks, o: PreprocessOptions) -> Preprocessing:
    """Two reads per scene: mean, then standard deviation and a PCA sample (a share of
    ``PCA_FIT_MAX_PIXELS`` per scene); memory stays one raw scene plus the sample."""
    n = sum(int(m.sum()) for m in fit_masks)
    total = sum(src.read().data[m].astype(np.float64).sum(0) for src, m in zip(sources, fit_masks))
    mean = total / n
    sq, sample = 0.0, []
    rng = np.random.default_rng(o.seed)
    for src, m in zip(sources, fit_masks):
        px = src.read().data[m].astype(np.float64)
        sq = sq + ((px - mean) ** 2).sum(0)
        share = max(1, int(PCA_FIT_MAX_PIXELS * len(px) / n))
        sample.append(px if len(px) <= share else px[rng.choice(len(px), share, replace=False)])
    std = np.sqrt(sq / n) if o.standardize else np.ones_like(mean)
    std[std < 1e-12] = 1.0
    return _with_pca(np.concatenate(sample), mean, std, o.components, o.seed, o.whiten)


SPECTRA_AUTO_BYTES = 2 * 2**30  # --spectra auto keeps the standardised spectra up to this size (float32)


def resolve_fit_on(o: PreprocessOptions) -> str:
    """``--fit-on auto``: the training and validation pixels on group splits (the held-out groups stay unseen, as a
    new scene would be), all valid pixels otherwise (the paper family's protocol on one scene)."""
    if o.fit_on != "auto":
        return o.fit_on
    return "train" if get_split(o.split).own_validation else "all"


def _keep_spectra(o: PreprocessOptions, valid_pixels: int, bands: int) -> bool:
    if o.spectra != "auto":
        return o.spectra == "keep"
    size = valid_pixels * bands * 4
    if size > SPECTRA_AUTO_BYTES:
        console.info(
            f"the full spectra ({size / 2**30:.1f} GiB) are not kept (--spectra keep to keep them): '--model auto' "
            f"then trains its spectral members on the PCA axes"
        )
        return False
    return True


def _reduce(sources, cubes, valids, prep: Preprocessing, spectra: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per scene: the preprocessed cube ``(H, W, C)`` and, with ``spectra``, the standardised spectra ``(H, W, B)``
    (float32, 0 at invalid pixels)."""
    out = []
    std_only = prep.standardisation()
    for src, cube, valid in zip(sources, cubes, valids):
        data = cube if cube is not None else src.read().data
        z = np.zeros(valid.shape + (prep.n_components,), np.float32)
        z[valid] = prep.apply(data[valid])
        sp = None
        if spectra:
            sp = np.zeros(valid.shape + (prep.n_bands,), np.float32)
            sp[valid] = std_only.apply(data[valid])
        out.append((z, sp))
    return out


def _log_split(labels, train, val, test, values, o: PreprocessOptions) -> None:
    counts = np.bincount(labels[train | val], minlength=len(values) + 1)[1:]
    console.info(
        f"{len(values)} classes, {int((labels > 0).sum())} labelled px: "
        f"{int(train.sum())} train, {int(val.sum())} validation, {int(test.sum())} test "
        f"({describe_split(o)}); preprocessing fitted on {fit_on_words(resolve_fit_on(o))}"
    )
    console.debug(f"training+validation pixels per class: {counts.tolist()}")


def scene_inputs(scene, labels, dataset, data_dir, opts: PreprocessOptions):
    """``(scene, label files, options)`` from SCENE + --labels, or from --dataset NAME (files resolved
    and fetched if missing; the dataset's keys, class names, colours and official masks fill the
    options the user left unset)."""
    if dataset is None:
        if not scene or not labels:
            raise OptionError("give SCENE and --labels, or --dataset NAME")
        return list(scene) if isinstance(scene, (list, tuple)) else scene, list(labels), opts
    if scene or labels:
        raise OptionError("give either SCENE with --labels, or --dataset, not both")
    from hsicls.datasets import resolve_dataset

    r = resolve_dataset(dataset, data_dir)
    changes = dict(
        key=opts.key or r.cube_key,
        labels_key=opts.labels_key or r.labels_key,
        class_names=opts.class_names or list(r.info.class_names),
        palette=r.info.colours,
    )
    if opts.split == "fixed" and opts.train_mask is None and r.info.train_mask:
        changes["train_mask"] = str(r.root / r.info.train_mask)
        changes["test_mask"] = opts.test_mask or (str(r.root / r.info.test_mask) if r.info.test_mask else None)
    return r.cube, r.labels, opts.replace(**changes)


def prepared_for_dataset(dataset: str, data_dir: Path | None, seed: int) -> Path:
    """``<data-dir>/<name>/prepared_seed<seed>.h5``, made with the preprocess defaults if missing."""
    from hsicls.datasets import default_data_dir, get_dataset

    info = get_dataset(dataset)
    path = (data_dir or default_data_dir()) / info.name / f"prepared_seed{seed}.h5"
    if path.exists():
        console.info(f"using {path}")
        return path
    scene, labels, opts = scene_inputs(None, None, dataset, data_dir, PreprocessOptions(seed=seed))
    preprocess(scene, labels, path, opts)
    return path
