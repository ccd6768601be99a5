"""Stage ``sample``: a stratified random reference sample drawn from class maps, for ``hsicls assess``.

Olofsson et al. (2014, Section 5.1) recommend stratified random sampling with the map classes as
strata: a minimum number of points per class (so that rare classes get a user's accuracy at all),
the rest shared in proportion to class area, or, when user's accuracies can be guessed, by Neyman
allocation, ``n_h`` proportional to ``W_h S_h`` with ``S_h = sqrt(U_h (1 - U_h))`` (Cochran 1977,
Eq. 5.26). Several maps (tiles of one map) are one population: a class's points are drawn
uniformly without replacement from all its pixels in all the maps. Nodata pixels are never drawn.

The points (pixel centres) are written as a GeoPackage, GeoJSON or CSV with the map class (code
and name), the map file, row and column, and an empty integer attribute (``--reference-field``,
default ``reference``) for the interpreter to fill with the reference class code; the filled file
goes to ``hsicls assess MAP... -r points.gpkg --reference-field reference``, whose stratified
estimator uses the maps' class areas as the stratum weights. The same ``--seed`` draws the same
points.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path

import numpy as np

from hsicls import console
from hsicls.config import SampleOptions
from hsicls.errors import InputError, OptionError
from hsicls.io.atomic import atomic_output
from hsicls.io.disk import write_via_memory
from hsicls.io.guard import Declared, OutputSet
from hsicls.io.references import ClassMap, distinct_maps, read_map

__all__ = ["SampleOptions", "allocate", "sample_maps"]

FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".csv": "CSV"}


def _weights(counts: dict[int, int], allocation: str, expected_ua: dict[int, float]) -> dict[int, float]:
    total = sum(counts.values())
    if allocation == "equal":
        return {c: 1.0 for c in counts}
    if allocation == "neyman":
        return {
            c: n / total * math.sqrt(max(expected_ua.get(c, 0.8) * (1 - expected_ua.get(c, 0.8)), 1e-6))
            for c, n in counts.items()
        }
    return {c: n / total for c, n in counts.items()}


def allocate(counts: dict[int, int], size: int, minimum: int, allocation: str, expected_ua: dict[int, float]) -> dict[int, int]:
    """Points per class: ``min(minimum, N_h)`` each, the rest shared by ``allocation`` weights (largest
    remainders, never more than a class's pixels ``N_h``). ``size`` below the minimums: shared equally."""
    if size < minimum * len(counts):
        console.warn(f"--size {size} is less than --min-per-class {minimum} x {len(counts)} classes; shared equally")
        minimum, allocation = 0, "equal"
    n = {c: min(minimum, k) for c, k in counts.items()}
    left = min(size, sum(counts.values())) - sum(n.values())
    w = _weights(counts, allocation, expected_ua)
    while left > 0:
        open_ = {c: w[c] for c in counts if n[c] < counts[c]}
        total = sum(open_.values())
        share = {c: left * v / total for c, v in open_.items()}
        add = {c: min(int(share[c]), counts[c] - n[c]) for c in open_}
        if not any(add.values()):  # fewer points left than classes: largest remainders
            for c in sorted(open_, key=lambda c: (-(share[c] - int(share[c])), c))[:left]:
                add[c] = 1
        for c, a in add.items():
            n[c] += a
        left -= sum(add.values())
    return n


def _owned(cmaps: list[ClassMap]) -> list[np.ndarray]:
    """Each map's classified pixels that no earlier map classifies: where tiles overlap, a pixel belongs to the
    first map given (as in ``assess``), so no pixel is counted or drawn twice. Warns with the overlap's size."""
    owned, twice = [], 0
    for m, g in enumerate(cmaps):
        own = g.valid.copy()
        rows, cols = np.nonzero(own)
        x, y = g.grid.centres(rows.astype(np.float64), cols.astype(np.float64))
        for k in range(m):
            inside, r, c = cmaps[k].grid.rowcol(np.asarray(x), np.asarray(y))
            taken = inside & cmaps[k].valid[r, c]
            own[rows[taken], cols[taken]] = False
        twice += int(g.valid.sum() - own.sum())
        owned.append(own)
    if twice:
        console.warn(
            f"{twice:,} classified pixels lie on more than one map (overlapping tiles); each is counted and drawn once, on the first map given"
        )
    return owned


def _draw(cmaps: list[ClassMap], owned: list[np.ndarray], alloc: dict[int, int], seed: int) -> list[tuple[int, int, int, int]]:
    """``(map index, row, col, code)`` of the points: per class, uniform without replacement over its pixels
    (each pixel on the first map that classifies it, :func:`_owned`)."""
    rng = np.random.default_rng(seed)
    out = []
    for code in sorted(alloc):
        flats = [np.flatnonzero((g.codes == code) & own) for g, own in zip(cmaps, owned)]
        sizes = np.cumsum([0] + [f.size for f in flats])
        pick = np.sort(rng.choice(int(sizes[-1]), alloc[code], replace=False))
        for m, f in enumerate(flats):
            mine = pick[(pick >= sizes[m]) & (pick < sizes[m + 1])] - sizes[m]
            rows, cols = np.unravel_index(f[mine], cmaps[m].shape)
            out += [(m, int(r), int(c), code) for r, c in zip(rows, cols)]
    return out


def _records(cmaps: list[ClassMap], points: list, field: str) -> list[dict]:
    out = []
    for i, (m, r, c, code) in enumerate(points):
        x, y = cmaps[m].grid.centres(r, c)  # the pixel's centre in the map's CRS
        record = {"id": i + 1, "map": cmaps[m].path.name, "row": r, "col": c, "map_code": code}
        out.append({**record, "map_class": cmaps[m].names.get(code) or str(code), "x": float(x), "y": float(y), field: None})
    return out


def _vector_bytes(records: list[dict], driver: str, crs: str | None, field: str) -> bytes:
    import fiona

    props = {"id": "int", "map": "str", "row": "int", "col": "int", "map_code": "int", "map_class": "str", field: "int"}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("points.gpkg" if driver == "GPKG" else "points.geojson")
        schema = {"geometry": "Point", "properties": props}
        with fiona.open(path, "w", driver=driver, crs_wkt=crs or "", schema=schema) as dst:
            for r in records:
                geom = {"type": "Point", "coordinates": (r["x"], r["y"])}
                dst.write({"geometry": geom, "properties": {k: r[k] for k in props}})
        return path.read_bytes()


def _csv_bytes(records: list[dict], field: str) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["id", "map", "row", "col", "x", "y", "map_code", "map_class", field])
    w.writeheader()
    for r in records:
        w.writerow({**r, field: ""})
    return buf.getvalue().encode()


def _check(maps: list[Path], output: Path, options: SampleOptions) -> tuple[str, dict[int, float]]:
    driver = FORMATS.get(output.suffix.lower())
    if driver is None:
        raise OptionError(f"{output}: write the sample as .gpkg, .geojson (.json) or .csv")
    ua = {}
    for k, v in options.expected_ua.items():
        try:
            ua[int(k)] = float(v)
        except ValueError:
            raise OptionError(f"--expected-ua {k}={v}: expected CODE=U with U in (0, 1)") from None
        if not 0 < ua[int(k)] < 1:
            raise OptionError(f"--expected-ua {k}={v}: U must be in (0, 1)")
    return driver, ua


def declare_outputs(output: Path) -> OutputSet:
    """What ``sample`` writes: the sample points."""
    return OutputSet(Declared("sample", Path(output)))


def sample_maps(maps: list, output, options: SampleOptions = SampleOptions(), overwrite: bool = False) -> dict:
    """Draw the sample from ``maps`` and write it to ``output``; returns the design (per class: pixels, points)."""
    maps, output = [Path(p) for p in maps], Path(output)
    options.validate()
    driver, ua = _check(maps, output, options)
    outputs = declare_outputs(output).guard(overwrite, inputs=maps)
    distinct_maps(maps)
    cmaps = [read_map(p) for p in maps]
    crss = {g.grid.crs for g in cmaps}
    if len(crss) > 1:
        raise InputError(f"the maps are in different CRSs ({', '.join(g.path.name for g in cmaps)}); sample them apart")
    owned = _owned(cmaps)
    counts: dict[int, int] = {}
    for g, own in zip(cmaps, owned):
        codes, n = np.unique(g.codes[own], return_counts=True)
        for c, k in zip(codes.tolist(), n.tolist()):
            counts[int(c)] = counts.get(int(c), 0) + int(k)
    if not counts:
        raise InputError(f"{maps[0]}: no classified pixel to sample")
    if ua and options.allocation != "neyman":
        console.warn(f"--expected-ua is used by --allocation neyman only; ignored under --allocation {options.allocation}")
    for c in sorted(set(ua) - set(counts)):
        console.warn(f"--expected-ua {c}=...: the map(s) have no class {c}; ignored")
    alloc = allocate(counts, options.size, options.min_per_class, options.allocation, ua)
    records = _records(cmaps, _draw(cmaps, owned, alloc, options.seed), options.reference_field)
    data = (
        _csv_bytes(records, options.reference_field)
        if driver == "CSV"
        else _vector_bytes(records, driver, cmaps[0].grid.crs, options.reference_field)
    )
    with atomic_output(outputs["sample"], overwrite, inputs=maps) as tmp:
        write_via_memory(tmp, lambda buf: buf.write(data))
    names = {}
    for g in cmaps:
        names.update({c: n for c, n in g.names.items() if n})
    design = {
        "maps": [str(p) for p in maps],
        "output": str(output),
        "points": len(records),
        "allocation": options.allocation,
        "min_per_class": options.min_per_class,
        "seed": options.seed,
        "reference_field": options.reference_field,
        "classes": {str(c): {"name": names.get(c), "pixels": counts[c], "points": alloc[c]} for c in sorted(counts)},
    }
    console.info(f"drew {len(records)} points over {len(counts)} classes from {len(maps)} map(s); wrote {output}")
    return design
