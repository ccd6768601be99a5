"""Stage ``assess``: a class map + reference labels -> error matrix, accuracies with intervals, adjusted areas.

The map is any single-band class raster (hsicls's or another tool's, its nodata respected); the reference a
raster on any grid or points/polygons in any CRS, brought onto the map's grid by :mod:`hsicls.io.references`.
Classes are matched by **name** when both sides carry names (the map's ``CLASS_<code>`` tags, GDAL category
names or attribute table, ENVI class names; the reference's text attribute or its raster's names), otherwise
by **code**. ``--class-map`` merges classes first (:func:`parse_class_map`), so a 6-class map can be scored
against a 5-class reference. The figures are those of Olofsson et al. (2014), :func:`hsicls.science.olofsson.assess`:
the error matrix has rows = map class and columns = reference class; the area-adjusted block is stratified by
map class with weights W_i = the map's pixel share of class i (``--sampling random``: simple random sampling).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsicls import console
from hsicls.config import AssessOptions
from hsicls.errors import InputError, OptionError
from hsicls.io.atomic import write_texts
from hsicls.io.guard import OutputSet, report_outputs
from hsicls.io.references import ClassMap, Reference, distinct_maps, read_map, read_reference
from hsicls.science.olofsson import accuracy_text, assess, report_csv, report_markdown

CLASS_MAP_SYNTAX = "[map:|ref:]SOURCES=TARGET, e.g. '1,2=impervious' or 'ref:tree,low vegetation=vegetation'"
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Merge:
    """One ``--class-map`` entry: the classes ``sources`` of ``side`` (codes or names) become class ``target``."""

    side: str  # "map", "reference" or "both" (no prefix: a merge applies to both sides, so it can never lower OA)
    sources: tuple[int | str, ...]
    target: int | str
    text: str


def parse_class_map(entries: dict[str, str]) -> list[Merge]:
    """``{"[map:|ref:]A,B": "C"}`` (as ``--class-map 'A,B=C'`` gives them) -> merges.

    The side defaults to the map. A token of digits (optionally signed) is a class code, anything else a class name
    (compared case-insensitively, runs of blanks as one); a class whose name is a number, or contains a comma, is
    given by its code. The target is the merged class: a name (its code is then that of an existing class of that
    name, else the smallest source code) or a code (merging into an existing class of that code keeps its name)."""
    out = []
    for key, target in entries.items():
        text, side, body = f"{key}={target}", "both", key.strip()
        m = re.fullmatch(r"(map|ref|reference):(.*)", body, re.IGNORECASE | re.DOTALL)
        if m:
            side, body = ("map" if m.group(1).lower() == "map" else "reference"), m.group(2)
        sources = [t.strip() for t in body.split(",")]
        if not all(sources) or not str(target).strip():
            raise OptionError(f"--class-map '{text}': expected {CLASS_MAP_SYNTAX}")
        out.append(Merge(side, tuple(_token(t) for t in sources), _token(str(target)), text))
    return out


def _token(t: str) -> int | str:
    t = t.strip()
    return int(t) if _INT.fullmatch(t) else " ".join(t.split())


def _norm(name: str) -> str:
    return " ".join(str(name).split()).casefold()


@dataclass
class Side:
    """The classes of the map or of the reference after ``--class-map``: ``lut`` original code -> merged code,
    ``names`` merged code -> name (or None), ``codes`` the merged codes present (sorted)."""

    label: str
    path: Path
    lut: dict[int, int]
    names: dict[int, str | None]
    text: bool = False
    original_names: dict[int, str] = field(default_factory=dict)

    @property
    def codes(self) -> list[int]:
        return sorted(set(self.lut.values()))


def merge_side(
    label: str, path: Path, present: list[int], names: dict[int, str], merges: list[Merge], text=False, notes=None
) -> Side:
    """Apply the ``--class-map`` entries of one side to its classes ``present`` (original codes) named ``names``.
    A code that this side does not hold is skipped with a note (one class-map can serve several maps); a name it
    does not know is an error (a typo)."""
    lut = {int(c): int(c) for c in present}
    group_names: dict[int, str | None] = {c: names.get(c) for c in lut}
    by_name: dict[str, int] = {}
    for c in sorted(set(lut) | set(names)):
        if names.get(c):
            by_name.setdefault(_norm(names[c]), c)
    used: dict[int, str] = {}
    for m in (m for m in merges if m.side in (label, "both")):
        src = []
        for tok in m.sources:
            if m.side == "both" and (isinstance(tok, int) and text or not isinstance(tok, int) and _norm(tok) not in by_name):
                continue  # a merge of both sides: the codes of a side of text classes are its own; a name it lacks
            code = tok if isinstance(tok, int) else by_name.get(_norm(tok))
            if isinstance(tok, int) and code not in lut and code not in names and notes is not None:
                notes.append(f"--class-map '{m.text}': the {label} has no class {tok}; skipped")
                continue
            if code is None or (code not in lut and code not in names):
                known = ", ".join(f"{c} {names[c]!r}" if names.get(c) else str(c) for c in sorted(lut))
                raise InputError(f"--class-map '{m.text}': the {label} {path.name} has no class {tok!r} (its classes: {known})")
            if code in used:
                raise OptionError(f"--class-map: {label} class {tok!r} is merged twice ('{used[code]}' and '{m.text}')")
            used[code] = m.text
            src.append(code)
        if not src:
            continue
        if isinstance(m.target, int):
            target, name = m.target, group_names.get(m.target)
        else:
            target, name = by_name.get(_norm(m.target), min(src)), m.target
        for c in src:
            if c in lut:  # a class known by name only (no pixel, no sample) adds nothing
                lut[c] = target
        group_names[target] = name
    merged = {c: group_names.get(c) for c in set(lut.values())}
    return Side(label, path, lut, merged, text, dict(names))


def _refuse_unmatched(classes: list[ScoredClass], mp: Side, rf: Side, how: str, allow: bool, merges: list[Merge]) -> None:
    """Matched by name, a named map class whose name is not in the reference's legend scores 0 whatever the map
    is worth (a merged class under a new name, a spelling): refused unless ``--allow-unmatched``. A class of the
    legend that merely has no sample on this map is not refused (it is noted)."""
    if how != "name" or allow:
        return
    legend = {_norm(n) for n in [*rf.original_names.values(), *rf.names.values()] if n}
    legend |= {_norm(m.target) for m in merges if m.side in ("reference", "both") and isinstance(m.target, str)}
    lost = [
        c.name
        for c in classes
        if c.map_code is not None and c.ref_code is None and mp.names.get(c.map_code) and _norm(c.name) not in legend
    ]
    if lost:
        theirs = ", ".join(sorted({repr(n) for n in rf.original_names.values() if n}))
        raise InputError(
            f"map class(es) {', '.join(repr(n) for n in lost)} of {mp.path.name} match no reference class of {rf.path.name} "
            f"by name (its classes: {theirs}); rename or merge them with --class-map, or pass --allow-unmatched to score them as 0"
        )


def _names_known(merges: list[Merge], grid, ref) -> None:
    """A class name in a merge of both sides must be a class of one side at least (a typo is an error)."""
    known = {_norm(n) for n in [*grid.names.values(), *ref.names.values()] if n}
    for m in merges:
        for tok in m.sources:
            if m.side == "both" and not isinstance(tok, int) and _norm(tok) not in known:
                mine = ", ".join(repr(n) for n in grid.names.values() if n) or "none"
                theirs = ", ".join(repr(n) for n in ref.names.values() if n) or "none"
                raise InputError(
                    f"--class-map '{m.text}': the map {grid.path.name} has no class {tok!r} (its names: {mine}), "
                    f"nor has the reference {ref.path.name} (its names: {theirs})"
                )


def _codes_known(merges: list[Merge], map_name: str, map_codes: list, ref_name: str, ref_codes: list) -> None:
    """A class code in a merge that neither side holds merges nothing: one warning, not silence."""
    for m in merges:
        pools = {"map": [map_codes], "reference": [ref_codes], "both": [map_codes, ref_codes]}[m.side]
        for tok in m.sources:
            if isinstance(tok, int) and not any(tok in pool for pool in pools):
                where = {"map": f"the map {map_name}", "reference": f"the reference {ref_name}"}.get(
                    m.side, f"the map {map_name} or the reference {ref_name}"
                )
                console.warn(f"--class-map '{m.text}': {where} has no class {tok}; nothing merged for it")


@dataclass
class ScoredClass:
    code: int
    name: str
    map_code: int | None  # merged map code (None: only in the reference)
    ref_code: int | None  # merged reference code (None: not in the reference sample)


def match_classes(mp: Side, rf: Side, notes: list[str]) -> tuple[list[ScoredClass], dict[int, int], dict[int, int], str]:
    """The classes scored, and original map / reference code -> class index. By name when both sides name every class
    (classes of one name are one class), else by code. Unmatched classes are kept (a map class the reference never
    shows has user's accuracy 0; a reference class the map never shows, producer's accuracy 0) and noted."""
    # by name only when every class on both sides has one (a merged class named on both sides must not make the
    # unnamed ones unmatchable): else by code, which a merge of both sides keeps aligned
    # (a reference of text classes has no codes of its own: it is matched by name, the map's unnamed classes unmatched)
    named = all(rf.names.get(c) for c in rf.codes) and all(mp.names.get(c) for c in mp.codes)
    by_name = named or bool(rf.text and any(mp.names.values()))
    if rf.text and not by_name:
        raise InputError(
            f"{rf.path}: its classes are names ({', '.join(repr(n) for n in rf.names.values())}) but the map {mp.path.name} has "
            "no class names: name the map's classes with --class-map CODE=NAME, e.g. --class-map '1,2=impervious'"
        )

    def key(side: Side, code: int):
        if not by_name:
            return ("code", code)
        return ("name", _norm(side.names[code])) if side.names.get(code) else (side.label, code)

    keys: dict[tuple, ScoredClass] = {}
    for c in mp.codes:
        k = key(mp, c)
        if k not in keys:
            keys[k] = ScoredClass(c, mp.names.get(c) or str(c), c, None)
    taken = {s.code for s in keys.values()}
    for c in rf.codes:
        k = key(rf, c)
        if k in keys:
            keys[k].ref_code = keys[k].ref_code if keys[k].ref_code is not None else c
            continue
        code = c if not rf.text and c not in taken else max(taken | {0}) + 1
        taken.add(code)
        keys[k] = ScoredClass(code, rf.names.get(c) or str(c), None, c)
    classes = list(keys.values())
    map_index = {o: classes.index(keys[key(mp, m)]) for o, m in mp.lut.items()}
    ref_index = {o: classes.index(keys[key(rf, r)]) for o, r in rf.lut.items()}
    _note_unmatched(classes, mp, rf, by_name, notes)
    return classes, map_index, ref_index, "name" if by_name else "code"


def _note_unmatched(classes: list[ScoredClass], mp: Side, rf: Side, by_name: bool, notes: list[str]) -> None:
    if not any(c.map_code is not None and c.ref_code is not None for c in classes):
        how = "by name" if by_name else "by code"
        mine = ", ".join(f"{c} {mp.names[c]!r}" if mp.names.get(c) else str(c) for c in mp.codes)
        theirs = ", ".join(f"{c} {rf.names[c]!r}" if rf.names.get(c) else str(c) for c in rf.codes)
        hint = "; name or merge the map's classes with --class-map, e.g. --class-map '1,2=impervious'" if by_name else ""
        raise InputError(
            f"no class of the map {mp.path.name} matches a class of {rf.path.name} {how} (map: {mine}; reference: {theirs}){hint}"
        )
    only_map = [c.name for c in classes if c.ref_code is None]
    only_ref = [c.name for c in classes if c.map_code is None]
    if only_map:
        notes.append(f"map classes without a reference sample of their own class: {', '.join(only_map)}")
    if only_ref:
        notes.append(f"reference classes that no map class matches: {', '.join(only_ref)}")


def _lookup(index: dict[int, int], codes: np.ndarray) -> np.ndarray:
    """Original codes ``(n,)`` -> class indices ``(n,)``."""
    u, inv = np.unique(codes, return_inverse=True)
    return np.array([index[int(c)] for c in u], np.int64)[inv.ravel()] if u.size else np.zeros(0, np.int64)


AREA_UNITS = {"m2": ("m²", 1.0), "ha": ("ha", 1e4), "km2": ("km²", 1e6)}  # unit: (name, m² per unit)


def area_of_pixel(cmap: ClassMap, unit: str) -> tuple[float, str]:
    """Area of one map pixel in ``unit`` (``auto``: hectares for a CRS in metres, else the CRS's unit²; ``pixels``: 1)."""
    if unit == "pixels" or cmap.grid.transform is None:
        if unit not in ("pixels", "auto"):
            raise InputError(f"--area-unit {unit} needs a georeferenced map; {cmap.path.name} has no CRS or geotransform")
        return 1.0, "pixels"
    area, native = cmap.grid.pixel_area()
    if native != "m²":
        if unit != "auto":
            raise InputError(f"--area-unit {unit} needs a map in a projected CRS in metres; {cmap.path.name} is in {native}")
        return area, native
    name, per_unit = AREA_UNITS["ha" if unit == "auto" else unit]
    return area / per_unit, name


def assess_map(map_path: str | Path, reference_path: str | Path, options: AssessOptions | None = None, **overrides) -> dict:
    """The JSON-ready assessment of a class map against a reference (see the module docstring and README)."""
    return assess_maps([map_path], reference_path, options, **overrides)


@dataclass
class _Tile:
    """One map of an assessment and the reference samples on its classified pixels."""

    cmap: ClassMap
    ref: Reference
    on_map: np.ndarray  # (n read,) bool: the sample is on a classified pixel
    map_at: np.ndarray  # (n on map,) map codes at the samples
    ref_at: np.ndarray  # (n on map,) reference codes

    @classmethod
    def read(cls, path, reference_path, options: AssessOptions) -> _Tile:
        cmap = read_map(path)
        ref = read_reference(reference_path, cmap, options.reference_field, options.reference_layer)
        on = cmap.valid[ref.rows, ref.cols]
        return cls(cmap, ref, on, cmap.codes[ref.rows[on], ref.cols[on]], ref.codes[on])


def _once_each(tiles: list[_Tile]) -> list[_Tile]:
    """Each reference sample counts once: where maps overlap (tiles cut with a margin), a sample on the
    classified pixels of several maps belongs to the first of them in the order given. Samples are the
    same when their pixel centres are (tiles of one map share its pixel grid). Warns with the count."""
    if len(tiles) < 2:
        return tiles
    seen: set[tuple[int, int]] = set()
    out, twice = [], 0
    for t in tiles:
        rows, cols = t.ref.rows[t.on_map], t.ref.cols[t.on_map]
        x, y = t.cmap.grid.centres(rows.astype(np.float64), cols.astype(np.float64))
        aff = t.cmap.grid.affine
        step = (min(abs(aff.a), abs(aff.e)) or 1.0) / 4  # a quarter pixel: the same centre on one pixel grid
        qx, qy = (np.round(np.asarray(v) / step).astype(np.int64).tolist() for v in (x, y))
        keys = list(zip(qx, qy))
        keep = np.array([k not in seen for k in keys], bool)
        seen.update(keys)
        twice += int((~keep).sum())
        out.append(dataclasses.replace(t, map_at=t.map_at[keep], ref_at=t.ref_at[keep]))
    if twice:
        console.warn(
            f"{twice:,} reference samples fall on classified pixels of more than one map (overlapping tiles); each is "
            f"counted once, on the first map given that classifies it; the mapped areas count the overlap on each map"
        )
    return out


def _pooled(tiles: list[_Tile]) -> tuple[ClassMap, np.ndarray, np.ndarray]:
    """Several maps (tiles of one map) as one: their class names, pixel counts per code and pixel size must agree."""
    first = tiles[0].cmap
    for t in tiles[1:]:
        g, g0 = t.cmap.grid, first.grid
        if not g0.same_crs(g.crs) or (g.transform is None) != (g0.transform is None):
            raise InputError(f"{t.cmap.path}: another CRS than {first.path.name}; assess maps of one CRS together")
        if g.transform is not None and abs(g.pixel_area()[0] - g0.pixel_area()[0]) > 1e-9 * g0.pixel_area()[0]:
            raise InputError(f"{t.cmap.path}: its pixels differ in size from {first.path.name}'s; assess them apart")
        if t.ref.names != tiles[0].ref.names:
            raise InputError(f"{t.ref.path}: its classes read differently on {t.cmap.path.name} and {first.path.name}")
    names: dict[int, str] = {}
    counts: dict[int, int] = {}
    for t in tiles:
        for c, n in t.cmap.names.items():
            if n and c in names and _norm(names[c]) != _norm(n):
                owner = next(x.cmap.path.name for x in tiles if _norm(x.cmap.names.get(c) or "") == _norm(names[c]))
                raise InputError(
                    f"{t.cmap.path}: class {c} is {n!r} here but {names[c]!r} in {owner}; the maps' legends disagree "
                    f"(assess maps of one legend together, or rename with --class-map)"
                )
        names.update({c: n for c, n in t.cmap.names.items() if n})
        codes, n = np.unique(t.cmap.codes[t.cmap.valid], return_counts=True)
        for c, k in zip(codes.tolist(), n.tolist()):
            counts[int(c)] = counts.get(int(c), 0) + int(k)
    pooled = dataclasses.replace(first, names=names)
    codes = np.array(sorted(counts), np.int64)
    return pooled, codes, np.array([counts[int(c)] for c in codes], np.int64)


def assess_maps(map_paths: list, reference_path: str | Path, options: AssessOptions | None = None, **overrides) -> dict:
    """One error matrix and one area estimate over several maps (tiles of one map) against one reference, with a
    row per map (its samples and OA); with one map, :func:`assess_map`."""
    options = (options or AssessOptions()).replace(**overrides).validate()
    merges = parse_class_map(options.class_map)
    distinct_maps(map_paths)
    tiles = _once_each([_Tile.read(p, reference_path, options) for p in map_paths])
    cmap, map_codes, map_counts = _pooled(tiles)
    ref = tiles[0].ref
    map_at, ref_at = np.concatenate([t.map_at for t in tiles]), np.concatenate([t.ref_at for t in tiles])
    if map_at.size == 0:
        t = tiles[0]
        raise InputError(
            f"{ref.path}: no reference sample falls on a classified pixel of {', '.join(x.cmap.path.name for x in tiles)} "
            f"({t.ref.outside} of {t.ref.read} outside {t.cmap.path.name}, {int((~t.on_map).sum())} on its nodata)"
        )
    notes: list[str] = []
    _names_known(merges, cmap, ref)
    _codes_known(merges, cmap.path.name, map_codes.tolist(), ref.path.name, np.unique(ref_at).tolist())
    mp = merge_side("map", cmap.path, map_codes.tolist(), cmap.names, merges, notes=notes)
    rf = merge_side("reference", ref.path, np.unique(ref_at).tolist(), ref.names, merges, ref.text, notes)
    classes, map_index, ref_index, how = match_classes(mp, rf, notes)
    _refuse_unmatched(classes, mp, rf, how, options.allow_unmatched, merges)
    mapped = np.zeros(len(classes))
    np.add.at(mapped, _lookup(map_index, map_codes), map_counts)
    n = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(n, (_lookup(map_index, map_at), _lookup(ref_index, ref_at)), 1)
    area, unit = area_of_pixel(cmap, options.area_unit)
    result = assess(n, mapped, area, unit, options.sampling, [c.code for c in classes], [c.name for c in classes])
    for k, entry in enumerate(result["classes"].values()):  # the original codes (text values) each class stands for
        entry["map_values"] = [o for o in sorted(mp.lut) if map_index[o] == k]
        entry["reference_values"] = [rf.original_names[o] if rf.text else o for o in sorted(rf.lut) if ref_index[o] == k]
    _note_strata(result, notes)
    on_nodata = sum(int((~t.on_map).sum()) for t in tiles)
    result.update(_provenance(tiles[0].cmap, ref, on_nodata, int(map_at.size), how, options, notes))
    if len(tiles) > 1:
        result["maps"] = [_per_map(t, map_index, ref_index) for t in tiles]
    return result


def _per_map(t: _Tile, map_index: dict, ref_index: dict) -> dict:
    """One map's row of a several-map assessment: its pixels, samples and sample OA (same class matching)."""
    agree = int((_lookup(map_index, t.map_at) == _lookup(ref_index, t.ref_at)).sum()) if t.map_at.size else 0
    return {
        "map": str(t.cmap.path),
        "classified_pixels": int(t.cmap.valid.sum()),
        "samples": int(t.map_at.size),
        "oa": agree / t.map_at.size if t.map_at.size else None,
    }


def _note_strata(result: dict, notes: list[str]) -> None:
    """Say why area-adjusted figures are undefined: a mapped class without samples, or with one sample only."""
    if result["sampling"] != "stratified":
        return
    rows = np.asarray(result["error_matrix"]).sum(axis=1)
    for (_, c), ni in zip(result["classes"].items(), rows):
        if c["map_pixels"] > 0 and ni == 0:
            notes.append(
                f"map class {c['name']!r} ({c['map_pixels']:,} px) has no reference sample: the stratified area estimates "
                "are undefined (Olofsson et al. 2014 need samples in every map class); merge it with --class-map or add samples"
            )
        elif c["map_pixels"] > 0 and ni == 1:
            notes.append(
                f"map class {c['name']!r} has a single reference sample: the intervals that sum over classes are undefined"
            )


def _provenance(cmap: ClassMap, ref: Reference, on_nodata: int, used: int, how: str, options: AssessOptions, notes) -> dict:
    """What the figures were computed from: the two inputs, how many references were used or left out and why."""
    unit = "pixels" if ref.kind == "raster" else "samples"
    if ref.outside:
        notes.insert(
            0, f"{ref.outside:,} of {ref.read:,} reference {unit} lie outside the map {cmap.path.name} and are not scored"
        )
    if on_nodata:
        notes.insert(0, f"{on_nodata:,} reference samples fall on nodata pixels of the map and are not scored")
    if ref.empty:
        notes.append(f"{ref.empty:,} reference polygons inside the map's extent cover no pixel centre")
    if ref.without_value:
        notes.append(f"{ref.without_value:,} reference features have no class (or class 0) and are skipped")
    return {
        "map": {
            "path": str(cmap.path),
            "shape": list(cmap.shape),
            "crs": cmap.grid.crs,
            "classified_pixels": int(cmap.valid.sum()),
            "nodata_pixels": int((~cmap.valid).sum()),
            "class_names": {str(k): v for k, v in sorted(cmap.names.items())},
        },
        "reference": {
            "path": str(ref.path),
            "kind": ref.kind,
            "field": ref.field,
            "layer": ref.layer,
            "read": ref.read,
            "outside_map": ref.outside,
            "on_map_nodata": on_nodata,
            "used": used,
            "without_value": ref.without_value,
            "empty_polygons": ref.empty,
            "warped_nearest": ref.warped,
        },
        "matching": how,
        "class_map": dict(options.class_map),
        "config": options.to_record(),
        "notes": notes,
    }


# ------------------------------------------------------------------------------------------------------- reports


def _f(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _pm(v: float | None, ci: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{_f(v, digits)} ± {_f(ci, digits)}"


def render_assessment(result: dict) -> None:
    """Notes as warnings, the per-class table, the overall figures and the error matrix on stderr (rich)."""
    from rich.table import Table

    for note in result["notes"]:
        console.warn(note)
    ref, adj = result["reference"], result["area_adjusted"]
    unit = adj["area_unit"] if adj else ""
    digits = 0 if adj and (adj["total_area"] or 0) >= 1000 else 3
    table = Table(
        title=f"{Path(result['map']['path']).name} against {Path(ref['path']).name} ({ref['used']:,} samples, "
        f"classes matched by {result['matching']}; {result['sampling']} estimator)"
    )
    for col in ("code", "class", "map px", "samples", "UA ± 95%", "PA ± 95%", "F1", f"adj. area ({unit}) ± 95%", "adj. PA ± 95%"):
        table.add_column(col, justify="left" if col in ("code", "class") else "right")
    rows = np.asarray(result["error_matrix"])
    for i, (code, c) in enumerate(result["classes"].items()):
        a = adj["classes"][code] if adj else {}
        table.add_row(
            code,
            c["name"],
            f"{c['map_pixels']:,}",
            f"{int(rows[i].sum()):,}",
            accuracy_text(c, "users_accuracy"),
            accuracy_text(c, "producers_accuracy"),
            _f(c["f1"]),
            _pm(a.get("area"), a.get("area_ci95"), digits),
            _pm(a.get("producers_accuracy"), a.get("producers_accuracy_ci95")),
        )
    console.show(table)
    line = f"sample OA {_f(result['oa'], 4)}, kappa {_f(result['kappa'], 4)}"
    if adj:
        line += f"; area-adjusted OA {_pm(adj['oa'], adj['oa_ci95'], 4)}"
    console.show(line + " (UA/PA/F1: sample figures; 'adj.': estimates for the map, Olofsson et al. 2014)")
    console.show(_matrix_table(result))
    for line in _map_rows(result):
        console.show(line)


def _map_rows(result: dict, markdown: bool = False) -> list[str]:
    """Several maps: one row per map (its classified pixels, samples and sample OA)."""
    rows = result.get("maps") or []
    if not rows:
        return []
    oa = lambda r: "-" if r["oa"] is None else f"{100 * r['oa']:.2f}"
    if markdown:
        out = ["", f"Per map ({len(rows)} maps, one error matrix above):", "", "| map | classified px | samples | sample OA % |"]
        out.append("|---|---|---|---|")
        return out + [f"| {Path(r['map']).name} | {r['classified_pixels']:,} | {r['samples']:,} | {oa(r)} |" for r in rows]
    return [f"{Path(r['map']).name}: {r['classified_pixels']:,} px, {r['samples']:,} samples, OA {oa(r)}" for r in rows]


def _matrix_table(result: dict):
    from rich.table import Table

    codes = list(result["classes"])
    t = Table(title="error matrix (sample counts): rows = map class, columns = reference class")
    t.add_column("map \\ ref")
    for c in codes:
        t.add_column(c, justify="right")
    t.add_column("total", justify="right")
    for c, row in zip(codes, result["error_matrix"]):
        t.add_row(c, *(f"{v:,}" for v in row), f"{sum(row):,}")
    return t


def markdown(result: dict) -> str:
    """The Markdown report: inputs, what was left out, then :func:`hsicls.science.olofsson.report_markdown`."""
    ref = result["reference"]
    lines = [
        f"# Accuracy assessment of `{Path(result['map']['path']).name}`",
        "",
        f"Reference: `{Path(ref['path']).name}` ({ref['kind']}{', field ' + ref['field'] if ref['field'] else ''}"
        f"{', resampled nearest-neighbour onto the map grid' if ref['warped_nearest'] else ''}): {ref['read']:,} read, "
        f"{ref['outside_map']:,} outside the map, {ref['on_map_nodata']:,} on map nodata, {ref['used']:,} scored. "
        f"Classes matched by {result['matching']}"
        + (f"; merged: {', '.join(f'`{k}={v}`' for k, v in result['class_map'].items())}" if result["class_map"] else "")
        + ".",
    ]
    lines += [""] + [f"- {n}" for n in result["notes"]] if result["notes"] else []
    return "\n".join(lines) + "\n\n" + report_markdown(result) + "\n".join(_map_rows(result, markdown=True)) + "\n"


def declare_outputs(report_prefix: Path | None) -> OutputSet:
    """What ``assess`` writes: ``--report PREFIX`` (``.json``, ``.csv``, ``.md``)."""
    return report_outputs(report_prefix)


def write_assessment_files(result: dict, outputs: OutputSet, overwrite: bool) -> list[Path]:
    """``PREFIX.json`` (the ``--json`` contract), ``PREFIX.csv`` and ``PREFIX.md``, each written atomically."""
    import json

    from hsicls.io.disk import json_safe

    texts = {"json": json.dumps(json_safe(result), indent=2), "csv": report_csv(result), "md": markdown(result)}
    return write_texts(outputs, texts, overwrite)
