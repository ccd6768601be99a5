"""Stage ``preprocess``: scene + labels -> standardised, PCA-reduced cube + split, in one HDF5 file.

Steps: read the cube ``(H, W, B)`` and labels ``(H, W)``; mark invalid pixels (nodata/NaN/all
zero); per-band standardisation (mean/std over valid pixels); PCA to ``components`` axes
(scikit-learn); stratified train/validation/test split; write :mod:`hsicls.prepared`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from . import console
from .config import PreprocessOptions
from .errors import HsiclsError, InputError
from .fileutil import atomic_output, guard_outputs, write_via_memory
from .io import ROI_SUFFIXES, VECTOR_SUFFIXES, rasterize_vector_labels, read_cube, read_label_metadata, read_labels
from .palette import default_palette
from .prepared import Prepared, Preprocessing, save_prepared
from .splits import count_split, disjoint_split, fixed_split, stratified_split

PCA_FIT_MAX_PIXELS = 200_000  # PCA is fitted on a seeded random sample of at most this many pixels


def fit_preprocessing(
    data: np.ndarray, valid: np.ndarray, components: int, seed: int, whiten: bool = False, standardize: bool = True
) -> Preprocessing:
    """Fit per-band standardisation and PCA on the valid pixels of an ``(H, W, B)`` cube.

    ``whiten``: every kept component is divided by its standard deviation (unit variance), as
    ``sklearn.decomposition.PCA(whiten=True)`` in HybridSN's and SSFTT's code; folded into the
    stored components, so applying the preprocessing is unchanged. ``standardize=False`` runs PCA
    on the raw band values (centred only), as HybridSN's and SSFTT's code do; bright, high-variance
    bands then dominate the components."""
    from sklearn.decomposition import PCA

    pixels = data[valid].astype(np.float64)  # (N, B)
    n, b = pixels.shape
    if 0 < components < b and components > n:
        raise HsiclsError(f"only {n} valid pixels: cannot keep {components} PCA components (use --components {n} or fewer)")
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0) if standardize else np.ones(b)
    std[std < 1e-12] = 1.0  # constant bands: keep them, scaled by 1
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


def _check_same_grid(labels_path: Path, scene) -> None:
    """Georeferenced labels must sit on the cube's grid (same CRS and transform)."""
    from rasterio.crs import CRS

    from .io import read_raster_georef

    if labels_path.suffix.lower() in ROI_SUFFIXES | VECTOR_SUFFIXES:  # not rasters: drawn on the scene's grid
        return
    crs, transform = read_raster_georef(labels_path)
    if crs is None or scene.crs is None or transform is None or scene.transform is None:
        return
    if CRS.from_wkt(crs) != CRS.from_wkt(scene.crs) or not np.allclose(
        transform, scene.transform, rtol=0, atol=1e-6 * max(1.0, abs(scene.transform[0]))
    ):
        raise InputError(f"{labels_path}: not on the grid of {scene.path.name} (different CRS or geotransform)")


def read_label_files(paths: list[Path], key: str | None, scene, field: str | None) -> np.ndarray:
    """Read one or several label files of the scene's grid; later files fill unlabelled pixels
    (e.g. Houston 2013's training and test ROIs). Overlapping, disagreeing labels are an error."""
    merged = None
    first_names = None
    for p in paths:
        lab = read_labels(p, key=key, like=scene, field=field)
        if p.suffix.lower() == ".txt":  # ENVI ROI exports: match classes by ROI name, not position
            names = read_label_metadata(p)[0]
            if first_names is None:
                first_names = {v: k for k, v in names.items()}
            else:
                if set(names.values()) - set(first_names):
                    raise InputError(
                        f"{p}: ROI names {sorted(set(names.values()) - set(first_names))} are not in {paths[0].name}"
                    )
                lut = np.zeros(max(names) + 1, np.int32)
                for k, n in names.items():
                    lut[k] = first_names[n]
                lab = lut[lab]
        if lab.shape != scene.data.shape[:2]:
            raise InputError(
                f"{p}: labels are {lab.shape[0]}x{lab.shape[1]} but the cube {scene.path.name} is "
                f"{scene.data.shape[0]}x{scene.data.shape[1]} (rows x cols)"
            )
        _check_same_grid(p, scene)
        if merged is None:
            merged = lab
            continue
        clash = (merged > 0) & (lab > 0) & (merged != lab)
        if clash.any():
            raise InputError(f"{p}: {int(clash.sum())} pixels carry a different label in {paths[0].name}")
        merged = np.where(merged > 0, merged, lab)
    return merged


def describe_split(o: PreprocessOptions) -> str:
    """The split protocol in words, printed beside every number."""
    if o.split == "random":
        what = f"random stratified, {o.train_ratio:g} of each class"
    elif o.split == "count":
        what = f"{o.train_count} random pixels per class"
    elif o.split == "disjoint":
        what = f"spatially disjoint, {o.train_ratio:g} of each class in {o.block_size or o.patch_size}-px blocks, {o.patch_size}x{o.patch_size} footprint guarded"
    else:
        what = f"fixed masks ({Path(o.train_mask).name if o.train_mask else '?'}{', ' + Path(o.test_mask).name if o.test_mask else ''})"
    return f"{what}, validation {o.val_ratio:g} of training, seed {o.seed}"


def split_record(o: PreprocessOptions) -> dict:
    rec = {"protocol": o.split, "val_ratio": o.val_ratio, "seed": o.seed, "description": describe_split(o)}
    if o.split in ("random", "disjoint"):
        rec["train_ratio"] = o.train_ratio
    if o.split == "count":
        rec["train_count"] = o.train_count
    if o.split == "disjoint":
        rec.update(patch_size=o.patch_size, block_size=o.block_size or o.patch_size)
    if o.split == "fixed":
        rec.update(train_mask=o.train_mask, test_mask=o.test_mask)
    return rec


def make_split(labels: np.ndarray, o: PreprocessOptions, scene, label_paths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if o.split == "random":
        return stratified_split(labels, o.train_ratio, o.val_ratio, o.seed)
    if o.split == "count":
        return count_split(labels, o.train_count, o.val_ratio, o.seed, warn=console.warn)
    if o.split == "disjoint":
        return disjoint_split(labels, o.train_ratio, o.val_ratio, o.seed, o.patch_size, o.block_size)
    train_mask = _read_mask(Path(o.train_mask), scene, label_paths)
    test_mask = _read_mask(Path(o.test_mask), scene, label_paths) if o.test_mask else None
    return fixed_split(labels, train_mask, test_mask, o.val_ratio, o.seed)


def _read_mask(path: Path, scene, label_paths) -> np.ndarray:
    """A split mask: any label raster/ROI file on the scene grid; non-zero = selected."""
    mask = read_labels(path, like=scene)
    if mask.shape != scene.data.shape[:2]:
        raise InputError(
            f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} but the cube {scene.path.name} is "
            f"{scene.data.shape[0]}x{scene.data.shape[1]}"
        )
    return mask


def _labels_on_valid(labels_raw: np.ndarray, valid: np.ndarray, scene, label_paths) -> tuple[np.ndarray, list[int]]:
    """Labels 1..K on valid pixels only (labelled nodata pixels are dropped with a warning) and the codes."""
    if not valid.any():
        raise InputError(f"{scene.path}: every pixel is nodata/NaN")
    lost = int(((labels_raw > 0) & ~valid).sum())
    if lost:
        console.warn(f"{lost} labelled pixels are nodata in {scene.path.name} and are dropped")
    labels_raw = np.where(valid, labels_raw, 0)
    if not (labels_raw > 0).any():
        raise InputError(f"{label_paths[0]}: no labelled pixel falls on valid data of {scene.path.name}")
    codes = np.unique(labels_raw[labels_raw > 0])
    if codes.size < 2:
        raise InputError(
            f"{label_paths[0]}: every labelled pixel has class {int(codes[0])}; classification needs at least 2 classes"
        )
    return _relabel(labels_raw)


def _names_and_palette(options: PreprocessOptions, label_paths, scene, values: list[int]):
    """Class names and colours: --class-names / a dataset's palette, else the label file's, else defaults."""
    names_meta, palette_meta = read_label_metadata(label_paths[0])
    if label_paths[0].suffix.lower() in VECTOR_SUFFIXES:
        _, vector_names = rasterize_vector_labels(label_paths[0], scene, options.label_field)
        names_meta = {k: n for k, n in enumerate(vector_names, start=1)}
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


def preprocess(
    scene_path: str | Path,
    labels_path: str | Path | list[Path],
    output: str | Path,
    options: PreprocessOptions = PreprocessOptions(),
    overwrite: bool = False,
) -> Prepared:
    """Run the whole stage and write ``output``; returns what was written."""
    label_paths = [Path(p) for p in labels_path] if isinstance(labels_path, (list, tuple)) else [Path(labels_path)]
    guard_outputs([output], overwrite, inputs=[scene_path, *label_paths, options.train_mask, options.test_mask])
    options.validate()
    scene = read_cube(scene_path, key=options.key, nodata=options.nodata)
    labels_raw = read_label_files(label_paths, options.labels_key, scene, options.label_field)
    if scene.dropped_bands:
        console.info(f"{scene.path.name}: skipped {len(scene.dropped_bands)} bands flagged bad (bbl = 0)")
    h, w, b = scene.data.shape
    console.info(f"read {scene.path.name}: {h}x{w} px, {b} bands")
    valid = scene.valid_mask()
    labels, values = _labels_on_valid(labels_raw, valid, scene, label_paths)
    class_names, palette = _names_and_palette(options, label_paths, scene, values)
    train, val, test = make_split(labels, options, scene, label_paths)
    fit_mask = valid if options.fit_on == "all" else (valid & (train | val))
    if options.whiten and not 0 < options.components < scene.data.shape[2]:
        console.warn("--whiten applies to PCA components; without PCA it is ignored")
        options = replace(options, whiten=False)
    prep = fit_preprocessing(scene.data, fit_mask, options.components, options.seed, options.whiten, options.standardize)
    cube = np.zeros((h, w, prep.n_components), np.float32)
    cube[valid] = prep.apply(scene.data[valid])
    counts = np.bincount(labels[train | val], minlength=len(values) + 1)[1:]
    console.info(
        f"{len(values)} classes, {int((labels > 0).sum())} labelled px: "
        f"{int(train.sum())} train, {int(val.sum())} validation, {int(test.sum())} test "
        f"({describe_split(options)}); preprocessing fitted on {options.fit_on} pixels"
    )
    console.debug(f"training+validation pixels per class: {counts.tolist()}")
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
        crs=scene.crs,
        transform=scene.transform,
        meta={
            "source": str(scene_path),
            "labels_source": ";".join(str(p) for p in label_paths),
            "fit_on": options.fit_on,
            "whiten": options.whiten,
            "standardize": options.standardize,
            "split": split_record(options),
            "options": options.to_record(),
        },
    )
    with atomic_output(output, overwrite) as tmp:  # HDF5 built in memory: a full disk fails one plain write
        write_via_memory(tmp, lambda buf: save_prepared(buf, prepared))
    console.info(f"wrote {output}")
    return prepared


def scene_inputs(scene, labels, dataset, data_dir, opts: PreprocessOptions):
    """``(scene, label files, options)`` from SCENE + --labels, or from --dataset NAME (files resolved
    and fetched if missing; the dataset's keys, class names, colours and official masks fill the
    options the user left unset)."""
    if dataset is None:
        if scene is None or not labels:
            raise HsiclsError("give SCENE and --labels, or --dataset NAME")
        return scene, list(labels), opts
    if scene is not None or labels:
        raise HsiclsError("give either SCENE with --labels, or --dataset, not both")
    from .datasets import resolve_dataset

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
    from .datasets import default_data_dir, get_dataset

    info = get_dataset(dataset)
    path = (data_dir or default_data_dir()) / info.name / f"prepared_seed{seed}.h5"
    if path.exists():
        console.info(f"using {path}")
        return path
    scene, labels, opts = scene_inputs(None, None, dataset, data_dir, PreprocessOptions(seed=seed))
    preprocess(scene, labels, path, opts)
    return path
