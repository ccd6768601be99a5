"""The scenes of one preprocess run and their labels: band agreement, label pairing, per-scene labels.

Georeferenced scenes take every label file, each put on the scene's own grid (rasters warped,
vectors rasterised; :mod:`hsicls.io.labels`), later files filling pixels earlier ones left
unlabelled. Non-georeferenced scenes (.mat/.npy) pair with label files by position (one scene:
all label files, as before). Scenes must agree on their bands: by wavelength where every scene has
them (within half the FWHM, or 1 nm without FWHM), else by count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsicls import console
from hsicls.errors import InputError
from hsicls.io.cube import Band, BandSet, CubeSource
from hsicls.io.formats import format_of, read_vector_features
from hsicls.io.labels import count_outside, labels_on_grid
from hsicls.io.readers import open_cube, read_label_metadata

RAW_IN_MEMORY_BYTES = 1 << 30  # scenes whose raw bands sum to less than this are held in memory while fitting


def tolerance(count: int, *fwhm: list[float] | None) -> np.ndarray:
    """Per-band wavelength tolerance of ``count`` paired bands: half the FWHM where known (the larger side), else 1 nm."""
    fw = [np.asarray(x, float) for x in fwhm if x is not None]
    return 0.5 * np.maximum.reduce(fw) if fw else np.full(count, 1.0)


def check_bands_agree(sources: list[CubeSource]) -> BandSet:
    """The bands of the first scene; every other scene must have the same ones (one error naming it)."""
    first = sources[0].bands
    for s in sources[1:]:
        other = s.bands
        if other.count != first.count:
            raise InputError(f"{s.path}: has {other.count} bands but {sources[0].path.name} has {first.count}")
        if first.wavelengths is not None and other.wavelengths is not None:
            diff = np.abs(np.asarray(other.wavelengths) - np.asarray(first.wavelengths))
            bad = np.flatnonzero(diff > tolerance(first.count, first.fwhm, other.fwhm))
            if bad.size:
                i = int(bad[0])
                raise InputError(
                    f"{s.path}: band {i + 1} is at {other.wavelengths[i]:g} nm but at {first.wavelengths[i]:g} nm in "
                    f"{sources[0].path.name} ({bad.size} bands differ)"
                )
    return first


def pair_labels(sources: list[CubeSource], label_paths: list[Path]) -> list[list[Path]]:
    """The label files of every scene."""
    geo = [s.grid.georeferenced for s in sources]
    if len(sources) == 1 or all(geo):
        return [list(label_paths) for _ in sources]
    if any(geo):
        raise InputError("mix of georeferenced and non-georeferenced scenes: give only one kind per run")
    if len(label_paths) != len(sources):
        raise InputError(
            f"{len(sources)} scenes without georeferencing need one label file each, in order (got {len(label_paths)})"
        )
    return [[p] for p in label_paths]


def _legend_kind(path: Path, field, layer) -> str:
    """``names`` for labels whose classes are text (ENVI ROI names, a text attribute of a vector file), else ``codes``."""
    fmt = format_of(path)
    if fmt.vector:
        return "names" if read_vector_features(path, field, layer)[1] else "codes"
    return "names" if fmt.named_classes else "codes"


def _same_legend_kind(paths: list[Path], field, layer) -> None:
    """Label files of codes and of text class names are not merged code for code (their legends differ):
    refused with one line naming which file has which."""
    if len(paths) < 2:
        return
    kinds = {p: _legend_kind(Path(p), field, layer) for p in paths}
    if len(set(kinds.values())) > 1:
        codes = ", ".join(Path(p).name for p, k in kinds.items() if k == "codes")
        names = ", ".join(Path(p).name for p, k in kinds.items() if k == "names")
        raise InputError(
            f"{names}: its classes are text names but {codes} holds numeric class codes; their legends cannot be "
            f"merged code for code (use label files of one kind, e.g. a numeric --label-field)"
        )


def merge_labels(paths: list[Path], scene, key, field, layer) -> np.ndarray:
    """Labels of several files on one grid; later files fill unlabelled pixels (e.g. Houston 2013's
    training and test ROIs). Overlapping, disagreeing labels are an error. ENVI ROI files are matched
    by ROI name, not position."""
    merged, first_names = None, None
    _same_legend_kind(paths, field, layer)
    for p in paths:
        lab = labels_on_grid(p, scene, key=key, field=field, layer=layer)
        if format_of(p).named_classes:
            names = read_label_metadata(p)[0]
            if first_names is None:
                first_names = {v: k for k, v in names.items()}
            else:
                unknown = set(names.values()) - set(first_names)
                if unknown:
                    raise InputError(f"{p}: ROI names {sorted(unknown)} are not in {paths[0].name}")
                lut = np.zeros(max(names) + 1, np.int32)
                for k, n in names.items():
                    lut[k] = first_names[n]
                lab = lut[lab]
        if merged is None:
            merged = lab
            continue
        clash = (merged > 0) & (lab > 0) & (merged != lab)
        if clash.any():
            raise InputError(f"{p}: {int(clash.sum())} pixels carry a different label in {paths[0].name}")
        merged = np.where(merged > 0, merged, lab)
    return merged


def open_scenes(paths: list[Path], key: str | None, nodata: float | None = None, mask: str = "all") -> list[CubeSource]:
    sources = [open_cube(p, key, nodata, mask) for p in paths]
    names = [s.path.stem for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"scenes need distinct file names (stems) to be told apart: {', '.join(dup)} given twice")
    for s in sources:
        if s.bands.bad_bands:
            console.info(f"{s.path.name}: skipped {len(s.bands.bad_bands)} bands flagged bad (bbl = 0)")
    return sources


def warn_outside(label_paths: list[Path], sources: list[CubeSource], field, layer) -> None:
    """Say how many labels of every georeferenced label file fall on no scene."""
    if not all(s.grid.georeferenced for s in sources):
        return
    for p in dict.fromkeys(label_paths):
        total, outside = count_outside(p, sources, field, layer)
        if outside:
            what = "features" if format_of(p).vector else "labelled pixels"
            console.warn(f"{p.name}: {outside} of {total} {what} fall on no scene and are not used")


def raw_bytes(sources: list[CubeSource]) -> int:
    return sum(s.height * s.width * s.bands.count * 4 for s in sources)


def resample_source(source: CubeSource, model: BandSet, bundle_path: Path) -> CubeSource:
    """``--resample-bands``: the scene's spectra resampled to the model's bands with Gaussian spectral responses
    (:mod:`hsicls.science.spectral_response`); both sides need wavelengths (FWHMs estimated from the band spacing
    where missing). A model band no scene band covers within half their FWHMs is refused, with the range named."""
    import dataclasses

    from hsicls.science.spectral_response import ResampledPixels, ranges, srf_matrix, uncovered, widths

    if model.wavelengths is None or source.bands.wavelengths is None:
        side = f"the model {bundle_path.name}" if model.wavelengths is None else source.path.name
        raise InputError(f"{source.path}: --resample-bands needs band wavelengths on both sides; {side} records none")
    sw, mw = source.bands.wavelengths, model.wavelengths
    sf, mf = widths(sw, source.bands.fwhm), widths(mw, model.fwhm)
    missing = uncovered(sw, sf, mw, mf)
    if missing:
        raise InputError(
            f"{source.path}: the model {bundle_path.name}'s bands at {ranges([mw[i] for i in missing])} are not covered by "
            f"the scene's bands ({len(missing)} of {model.count}; within half the FWHMs); cannot resample"
        )
    matrix = srf_matrix(sw, sf, mw, mf)
    pixels = ResampledPixels(source.pixels, source.bands.numbers, matrix)
    bands = BandSet([Band(i + 1, f"{w:g} nm", w, f) for i, (w, f) in enumerate(zip(mw, mf.tolist()))])
    what = (
        f"Gaussian spectral responses: {source.bands.count} bands of {source.product or source.path.name} "
        f"({min(sw):.0f}-{max(sw):.0f} nm) -> the model's {model.count} bands ({min(mw):.0f}-{max(mw):.0f} nm)"
    )
    console.info(f"{source.path.name}: resampled with {what}")
    record = {"method": "Gaussian SRF (FWHM of both sides)", "from_bands": source.bands.count, "to_bands": model.count,
              "description": what}  # fmt: skip
    return dataclasses.replace(source, pixels=pixels, bands=bands, resampled=record)


def match_bands(model: BandSet | None, scene: BandSet, scene_path: Path, bundle_path: Path) -> list[int] | None:
    """The scene's band order that gives the model's bands (None: already in order).

    By wavelength when both sides have them: every model band takes the scene band nearest in
    wavelength, within half the FWHM (1 nm without FWHM), and a permutation of the scene's bands
    is applied; any model band without a partner is an error. Without wavelengths on one side the
    band counts must agree, with a warning that the bands could not be checked."""
    expected = model.count if model is not None else None
    if model is None or model.wavelengths is None or scene.wavelengths is None:
        if expected is not None and scene.count != expected:
            raise InputError(f"{scene_path}: has {scene.count} bands but the model {bundle_path.name} expects {expected}")
        if model is not None:
            side = "the model" if model.wavelengths is None else f"{scene_path.name}"
            console.warn(
                f"{side} records no band wavelengths: {scene_path.name}'s bands are matched by count only ({scene.count})"
            )
        return None
    mw, sw = np.asarray(model.wavelengths, float), np.asarray(scene.wavelengths, float)
    order = np.abs(sw[None, :] - mw[:, None]).argmin(axis=1)
    tol = tolerance(model.count, model.fwhm, None if scene.fwhm is None else [scene.fwhm[k] for k in order])
    miss = np.flatnonzero(np.abs(sw[order] - mw) > tol)
    if miss.size or len(set(order.tolist())) != len(order):
        i = int(miss[0]) if miss.size else 0
        raise InputError(
            f"{scene_path}: its bands do not match the model {bundle_path.name}'s: no band at {mw[i]:g} nm "
            f"(nearest {sw[order[i]]:g} nm; {max(miss.size, 1)} of {model.count} bands unmatched)"
        )
    if np.array_equal(order, np.arange(len(order))) and scene.count == model.count:
        return None
    console.info(f"{scene_path.name}: bands reordered by wavelength to the model's order")
    return order.tolist()
