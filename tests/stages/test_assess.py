"""``hsicls assess``: any class map against references on other grids, in other CRSs, with other class lists.

The maps here are plain uint8 GeoTIFFs written with rasterio (no hsicls metadata) unless a test adds some; expected
error matrices are counted by hand from the arrays the files were made from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from hsicls.science.olofsson import assess
from tests.conftest import run_cli

CRS_UTM = CRS.from_epsg(32633)
ORIGIN = (366015.0, 5808045.0)
PIXEL = 30.0
H, W = 24, 30
NAMES6 = ["roof", "pavement", "low vegetation", "tree", "soil", "water"]


def _transform(origin=ORIGIN, pixel=PIXEL) -> Affine:
    return Affine.translation(*origin) @ Affine.scale(pixel, -pixel)


def _write(path, array, transform=None, crs=CRS_UTM, nodata=None, dtype="uint8"):
    prof = dict(driver="GTiff", height=array.shape[0], width=array.shape[1], count=1, dtype=dtype, crs=crs)
    prof["transform"] = transform if transform is not None else _transform()
    if nodata is not None:
        prof["nodata"] = nodata
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(array.astype(dtype), 1)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 6-class map (codes 1..6 in vertical bands, 255 = nodata in one corner) and a reference sample of 80
    pixels whose reference class is the map's 75 % of the time."""
    d = tmp_path_factory.mktemp("assess")
    rng = np.random.default_rng(4)
    cls = (np.arange(W)[None, :] * 6 // W + 1).repeat(H, 0).astype(np.uint8)
    cls[:3, :4] = 255
    flat = rng.choice(H * W, 80, replace=False)
    rows, cols = np.unravel_index(flat, (H, W))
    keep = cls[rows, cols] != 255
    rows, cols = rows[keep], cols[keep]
    truth = np.where(rng.random(rows.size) < 0.75, cls[rows, cols], rng.integers(1, 7, rows.size)).astype(np.uint8)
    ref = np.zeros((H, W), np.uint8)
    ref[rows, cols] = truth
    return {
        "dir": d,
        "map": _write(d / "map.tif", cls, nodata=255),
        "ref_raster": _write(d / "ref.tif", ref, nodata=0),
        "cls": cls,
        "rows": rows,
        "cols": cols,
        "truth": truth,
    }


def _hand_matrix(map_codes, ref_codes, classes):
    n = np.zeros((len(classes), len(classes)), int)
    for m, r in zip(map_codes, ref_codes):
        n[classes.index(int(m)), classes.index(int(r))] += 1
    return n


def _assess_json(*args):
    r = run_cli("assess", *args, "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def _write_points(path, xy, values, crs_epsg, field="cls", kind="int"):
    import fiona

    schema = {"geometry": "Point", "properties": {field: kind}}
    with fiona.open(path, "w", driver="GPKG", crs=f"EPSG:{crs_epsg}", schema=schema) as dst:
        for (x, y), v in zip(xy, values):
            dst.write({"geometry": {"type": "Point", "coordinates": (float(x), float(y))}, "properties": {field: v}})
    return path


def _xy(t: Affine, col: float, row: float) -> tuple[float, float]:
    return t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f


def _centres(rows, cols, transform=None):
    t = transform or _transform()
    return [_xy(t, c + 0.5, r + 0.5) for r, c in zip(rows, cols)]


def test_plain_geotiff_map_against_a_raster_sample(scene):
    """A uint8 GeoTIFF written by rasterio, its nodata (255) respected: the error matrix is the hand count, and the
    JSON has the documented contract."""
    res, err = _assess_json(scene["map"], "--reference", scene["ref_raster"])
    classes = [1, 2, 3, 4, 5, 6]
    assert res["matching"] == "code" and list(res["classes"]) == [str(c) for c in classes]
    assert res["error_matrix"] == _hand_matrix(scene["cls"][scene["rows"], scene["cols"]], scene["truth"], classes).tolist()
    counts = np.bincount(scene["cls"][scene["cls"] != 255], minlength=7)[1:]
    assert [c["map_pixels"] for c in res["classes"].values()] == counts.tolist()
    assert res["map"]["nodata_pixels"] == 12 and res["reference"]["outside_map"] == 0
    for key in ("oa", "kappa", "error_matrix", "classes", "area_adjusted"):
        assert key in res
    for c in res["classes"].values():
        assert {"name", "users_accuracy", "users_accuracy_ci95", "producers_accuracy", "producers_accuracy_ci95", "f1"} <= set(c)
        assert {"map_pixels", "reference_pixels"} <= set(c)
    adj = res["area_adjusted"]
    assert {"oa", "oa_ci95", "area_unit", "classes"} <= set(adj) and adj["area_unit"] == "ha"
    for a in adj["classes"].values():
        assert {"proportion", "proportion_ci95", "area", "area_ci95", "users_accuracy", "producers_accuracy"} <= set(a)
        assert "producers_accuracy_ci95" in a
    total_ha = int((scene["cls"] != 255).sum()) * PIXEL**2 / 1e4
    assert sum(a["area"] for a in adj["classes"].values()) == pytest.approx(total_ha)
    direct = assess(np.array(res["error_matrix"]), counts, PIXEL**2 / 1e4, "ha", codes=classes, names=[str(c) for c in classes])
    assert res["area_adjusted"] == direct["area_adjusted"]  # the stage adds nothing to the estimators
    assert "rows = map class, columns = reference class" in err


def test_points_in_another_crs_give_the_same_figures_as_the_raster_sample(scene, tmp_path):
    """The same sample as points in EPSG:4326 (reprojected onto the map's UTM grid), plus 3 points outside the map,
    which are counted and reported, not scored."""
    from rasterio.warp import transform as warp_xy

    xy = _centres(scene["rows"], scene["cols"])
    xs, ys = warp_xy(CRS_UTM, CRS.from_epsg(4326), [p[0] for p in xy], [p[1] for p in xy])
    out_x, out_y = warp_xy(
        CRS_UTM, CRS.from_epsg(4326), [ORIGIN[0] - 100, ORIGIN[0] + 5000, ORIGIN[0]], [ORIGIN[1], ORIGIN[1], ORIGIN[1] + 45]
    )
    pts = _write_points(
        tmp_path / "ref.gpkg", list(zip(xs + out_x, ys + out_y)), [int(v) for v in scene["truth"]] + [1, 2, 3], 4326
    )
    vec, err = _assess_json(scene["map"], "-r", pts)
    ras, _ = _assess_json(scene["map"], "-r", scene["ref_raster"])
    for key in ("oa", "kappa", "error_matrix", "classes", "area_adjusted"):
        assert json.dumps(vec[key], sort_keys=True) == json.dumps(ras[key], sort_keys=True), key
    assert vec["reference"]["kind"] == "points" and vec["reference"]["read"] == len(xy) + 3
    assert vec["reference"]["outside_map"] == 3 and vec["reference"]["used"] == len(xy)
    assert "3 of" in err and "outside the map" in err


def test_points_on_nodata_are_counted(scene, tmp_path):
    cls = scene["cls"]
    rows, cols = np.array([0, 1, 10]), np.array([0, 2, 10])  # two on the nodata corner
    pts = _write_points(tmp_path / "p.gpkg", _centres(rows, cols), [1, 1, int(cls[10, 10])], 32633)
    res, err = _assess_json(scene["map"], "-r", pts)
    assert res["reference"]["on_map_nodata"] == 2 and res["reference"]["used"] == 1 and res["sample_size"] == 1
    assert "2 reference samples fall on nodata" in err


def test_raster_reference_on_a_finer_larger_grid_is_warped_and_counted(scene, tmp_path):
    """A 10 m reference extending 20 px (200 m) beyond the map on every side: warped nearest-neighbour (each map
    pixel's centre is a 10 m pixel's centre), and its labelled pixels outside the map are counted."""
    pad = 20
    fine = np.zeros((H * 3 + 2 * pad, W * 3 + 2 * pad), np.uint8)
    sample = np.zeros((H, W), np.uint8)
    sample[scene["rows"], scene["cols"]] = scene["truth"]
    fine[pad : pad + 3 * H, pad : pad + 3 * W] = np.kron(sample, np.ones((3, 3), np.uint8))
    fine[:5, :7] = 4  # 35 labelled pixels outside the map
    fine[-2:, -3:] = 2  # 6 more
    t = _transform((ORIGIN[0] - pad * 10, ORIGIN[1] + pad * 10), 10.0)
    path = _write(tmp_path / "fine.tif", fine, transform=t)
    res, err = _assess_json(scene["map"], "-r", path)
    classes = [1, 2, 3, 4, 5, 6]
    assert res["error_matrix"] == _hand_matrix(scene["cls"][scene["rows"], scene["cols"]], scene["truth"], classes).tolist()
    assert res["reference"]["warped_nearest"] and res["reference"]["outside_map"] == 41
    assert res["reference"]["read"] == int((fine > 0).sum())
    assert "41 of" in err


def _text_reference(scene, tmp_path):
    """The sample as points with text classes: 1, 2 -> impervious, the rest by name."""
    names = {1: "impervious", 2: "impervious", 3: "low vegetation", 4: "tree", 5: "soil", 6: "water"}
    values = [names[int(v)] for v in scene["truth"]]
    return _write_points(tmp_path / "text.gpkg", _centres(scene["rows"], scene["cols"]), values, 32633, "level_2", "str")


def test_class_map_merges_a_6_class_map_for_a_5_class_reference(scene, tmp_path):
    pts = _text_reference(scene, tmp_path)
    merge = ["--class-map", "1,2=impervious", "--class-map", "3=low vegetation", "--class-map", "4=tree"]
    merge += ["--class-map", "5=soil", "--class-map", "6=water"]
    res, _ = _assess_json(scene["map"], "-r", pts, "--reference-field", "level_2", *merge)
    assert res["matching"] == "name"
    assert [c["name"] for c in res["classes"].values()] == ["impervious", "low vegetation", "tree", "soil", "water"]
    assert res["classes"]["1"]["map_values"] == [1, 2] and res["classes"]["1"]["reference_values"] == ["impervious"]
    merged = lambda a: np.where(np.asarray(a, int) == 2, 1, np.asarray(a, int))
    expected = _hand_matrix(merged(scene["cls"][scene["rows"], scene["cols"]]), merged(scene["truth"]), [1, 3, 4, 5, 6])
    assert res["error_matrix"] == expected.tolist()
    counts = np.bincount(scene["cls"][scene["cls"] != 255], minlength=7)[1:]
    assert res["classes"]["1"]["map_pixels"] == counts[0] + counts[1]
    # Map names work on the left as codes do (any case); 'ref:' merges reference classes.
    both = ["--class-map", "roof,PAVEMENT=impervious", "--class-map", "3=low vegetation", "--class-map", "4=tree"]
    both += ["--class-map", "5,6=wet or bare", "--class-map", "ref:SOIL,water=wet or bare"]
    tagged = tmp_path / "named.tif"
    _write(tagged, scene["cls"], nodata=255)
    with rasterio.open(tagged, "r+") as ds:
        ds.update_tags(1, **{f"CLASS_{k}": n for k, n in enumerate(NAMES6, start=1)})
    r2, _ = _assess_json(tagged, "-r", pts, "--reference-field", "level_2", *both)
    assert [c["name"] for c in r2["classes"].values()] == ["impervious", "low vegetation", "tree", "wet or bare"]
    assert r2["classes"]["5"]["reference_values"] == ["soil", "water"]
    merged4 = lambda a: np.select([np.asarray(a, int) == 2, np.asarray(a, int) == 6], [1, 5], np.asarray(a, int))
    expected = _hand_matrix(merged4(scene["cls"][scene["rows"], scene["cols"]]), merged4(scene["truth"]), [1, 3, 4, 5])
    assert r2["error_matrix"] == expected.tolist()


def test_class_map_errors_name_the_problem(scene, tmp_path):
    pts = _text_reference(scene, tmp_path)
    r = run_cli("assess", scene["map"], "-r", pts, "--reference-field", "level_2")
    assert r.exit_code == 1 and "--class-map" in r.stderr and "impervious" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("assess", scene["map"], "-r", pts, "--reference-field", "level_2", "--class-map", "rooof=soil")
    assert r.exit_code == 1 and "has no class 'rooof'" in r.stderr
    merge = [f"--class-map={c}={n}" for c, n in ((1, "impervious"), (2, "impervious"), (3, "tree"), (9, "water"))]
    res, err = _assess_json(scene["map"], "-r", pts, "--reference-field", "level_2", *merge)
    assert "no class 9; skipped" in err and "no class 9; skipped" in " ".join(res["notes"])
    r = run_cli("assess", scene["map"], "-r", pts, "--reference-field", "level_2", "--class-map", "1,=soil")
    assert r.exit_code == 2 and "SOURCES=TARGET" in r.stderr
    r = run_cli("assess", scene["map"], "-r", pts, "--reference-field", "nope")
    assert r.exit_code == 1 and "no attribute 'nope'" in r.stderr and "level_2" in r.stderr


def test_names_from_the_map_metadata_are_matched_by_name(scene, tmp_path):
    """hsicls's CLASS_<code> tags and GDAL's PAM category names are read; names match whatever the codes are."""
    cls = scene["cls"]
    tagged = tmp_path / "tagged.tif"
    _write(tagged, cls, nodata=255)
    with rasterio.open(tagged, "r+") as ds:
        ds.update_tags(1, **{f"CLASS_{k}": n for k, n in enumerate(NAMES6, start=1)})
    # The reference codes the same classes in reverse order and carries its names in a PAM sidecar.
    ref = np.zeros((H, W), np.uint8)
    ref[scene["rows"], scene["cols"]] = 7 - scene["truth"]
    path = _write(tmp_path / "ref_pam.tif", ref)
    cats = "".join(f"<Category>{n}</Category>" for n in ["", *NAMES6[::-1]])
    (tmp_path / "ref_pam.tif.aux.xml").write_text(
        f'<PAMDataset><PAMRasterBand band="1"><CategoryNames>{cats}</CategoryNames></PAMRasterBand></PAMDataset>'
    )
    res, _ = _assess_json(tagged, "-r", path)
    plain, _ = _assess_json(scene["map"], "-r", scene["ref_raster"])
    assert res["matching"] == "name" and [c["name"] for c in res["classes"].values()] == NAMES6
    assert res["error_matrix"] == plain["error_matrix"]
    assert res["classes"]["6"]["reference_values"] == [1]


def test_raster_attribute_table_and_envi_names(tmp_path):
    from hsicls.io.references import class_names_of

    path = _write(tmp_path / "rat.tif", np.ones((4, 4), np.uint8))
    (tmp_path / "rat.tif.aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1"><GDALRasterAttributeTable tableType="thematic">'
        '<FieldDefn index="0"><Name>Value</Name><Type>0</Type><Usage>5</Usage></FieldDefn>'
        '<FieldDefn index="1"><Name>Class</Name><Type>2</Type><Usage>2</Usage></FieldDefn>'
        '<Row index="0"><F>3</F><F>tree</F></Row><Row index="1"><F>7</F><F>water</F></Row>'
        "</GDALRasterAttributeTable></PAMRasterBand></PAMDataset>"
    )
    with rasterio.open(path) as ds:
        assert class_names_of(path, ds) == {3: "tree", 7: "water"}
    envi = tmp_path / "c.img"
    with rasterio.open(
        envi, "w", driver="ENVI", width=2, height=2, count=1, dtype="uint8", crs=CRS_UTM, transform=_transform()
    ) as ds:
        ds.write(np.array([[0, 1], [2, 1]], np.uint8), 1)
    hdr = tmp_path / "c.hdr"
    hdr.write_text(hdr.read_text() + "classes = 3\nclass names = {Unclassified, roof, tree}\n")
    with rasterio.open(envi) as ds:
        assert class_names_of(envi, ds) == {0: "Unclassified", 1: "roof", 2: "tree"}


def test_polygons_and_random_sampling(scene, tmp_path):
    """Polygons give the pixels whose centre they contain; one far away is counted outside; --sampling random
    changes only the area-adjusted block."""
    import fiona

    t = _transform()
    x0, y0 = _xy(t, 2, 10)  # pixels rows 10..13, cols 2..5 (centres inside)
    x1, y1 = _xy(t, 6, 14)
    far = [(x0 + 1e5, y0), (x1 + 1e5, y0), (x1 + 1e5, y1), (x0 + 1e5, y0)]
    schema = {"geometry": "Polygon", "properties": {"cls": "int"}}
    path = tmp_path / "poly.gpkg"
    with fiona.open(path, "w", driver="GPKG", crs="EPSG:32633", schema=schema) as dst:
        ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        dst.write({"geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {"cls": 1}})
        dst.write({"geometry": {"type": "Polygon", "coordinates": [far]}, "properties": {"cls": 2}})
    res, _ = _assess_json(scene["map"], "-r", path, "--area-unit", "m2")
    assert res["reference"]["kind"] == "polygons" and res["reference"]["outside_map"] == 1
    assert res["sample_size"] == 16 and res["classes"]["1"]["reference_pixels"] == 16
    assert res["area_adjusted"]["area_unit"] == "m²"
    rnd, _ = _assess_json(scene["map"], "-r", path, "--sampling", "random")
    assert rnd["error_matrix"] == res["error_matrix"] and rnd["classes"] == res["classes"]
    assert rnd["area_adjusted"]["classes"]["1"]["proportion"] == pytest.approx(1.0)


def test_report_files_and_bad_inputs(scene, tmp_path):
    prefix = tmp_path / "acc"
    r = run_cli("assess", scene["map"], "-r", scene["ref_raster"], "--report", prefix)
    assert r.exit_code == 0, r.stderr
    data = json.loads((tmp_path / "acc.json").read_text())
    assert data["error_matrix_orientation"].startswith("rows = map class")
    assert "map \\ reference" in (tmp_path / "acc.csv").read_text()
    md = (tmp_path / "acc.md").read_text()
    assert "rows = map class, columns = reference class" in md and "Area-adjusted" in md
    again = run_cli("assess", scene["map"], "-r", scene["ref_raster"], "--report", prefix)
    assert again.exit_code == 1 and "already exists" in again.stderr
    cube = tmp_path / "three.tif"
    with rasterio.open(
        cube, "w", driver="GTiff", height=4, width=4, count=3, dtype="uint8", crs=CRS_UTM, transform=_transform()
    ) as ds:
        ds.write(np.ones((3, 4, 4), np.uint8))
    r = run_cli("assess", cube, "-r", scene["ref_raster"])
    assert r.exit_code == 1 and "1 band" in r.stderr and "Traceback" not in r.stderr
    far = _write_points(tmp_path / "far.gpkg", [(0.0, 0.0)], [1], 32633)
    r = run_cli("assess", scene["map"], "-r", far)
    assert r.exit_code == 1 and "no reference sample falls on a classified pixel" in r.stderr


def test_reference_arrays_on_the_map_grid(scene, tmp_path):
    """A .npy reference (no georeferencing) is taken to be on the map's grid, and must have its shape."""
    ref = np.zeros((H, W), np.int32)
    ref[scene["rows"], scene["cols"]] = scene["truth"]
    np.save(tmp_path / "ref.npy", ref)
    res, _ = _assess_json(scene["map"], "-r", tmp_path / "ref.npy")
    ras, _ = _assess_json(scene["map"], "-r", scene["ref_raster"])
    assert res["error_matrix"] == ras["error_matrix"] and res["area_adjusted"] == ras["area_adjusted"]
    np.save(tmp_path / "small.npy", ref[:10])
    r = run_cli("assess", scene["map"], "-r", tmp_path / "small.npy")
    assert r.exit_code == 1 and "map's own grid" in r.stderr


@pytest.mark.realdata
def test_enmap_tile_map_against_the_geopackage_and_the_label_raster(shared_data, tmp_path):
    """A random forest trained on one EnMAP Potsdam tile, its map assessed against the 120 reference points
    (level_2 text classes; the map's 6 classes merged to 5) and against the 330 x 200 px label raster."""
    d = shared_data / "enmap_potsdam"
    tile = "enmap_potsdam_tile_192_96.tif"  # the tile holding all six classes
    prep, model, out = tmp_path / "p.h5", tmp_path / "rf.pt", tmp_path / "map.tif"
    r = run_cli("preprocess", d / "images" / tile, "-l", d / "labels" / tile, "-o", prep, "--train-ratio", "0.5")
    assert r.exit_code == 0, r.stderr
    assert run_cli("train", prep, "-o", model, "--model", "rf").exit_code == 0
    assert run_cli("predict-map", d / "images" / tile, "-m", model, "-o", out, "--device", "cpu").exit_code == 0
    merge = ["--class-map", "1,2=impervious", "--class-map", "3=low vegetation", "--class-map", "4=tree"]
    merge += ["--class-map", "5=soil", "--class-map", "6=water"]
    pts, err = _assess_json(out, "-r", d / "landcover_potsdam_point.gpkg", "--reference-field", "level_2", *merge)
    ref = pts["reference"]
    assert ref["read"] == 120 and ref["used"] + ref["outside_map"] + ref["on_map_nodata"] == 120
    assert ref["outside_map"] >= 110 and ref["used"] >= 1 and "outside the map" in err
    assert pts["matching"] == "name" and len(pts["classes"]) == 5
    lab, _ = _assess_json(out, "-r", d / "enmap_landcover_unstyled.tif")
    assert lab["reference"]["warped_nearest"] and lab["reference"]["read"] == 5672
    assert lab["reference"]["used"] == 414 and lab["reference"]["outside_map"] == 5672 - 414
    assert lab["oa"] > 0.6  # half of the tile's labels trained the forest


def _named_pair(scene, tmp_path):
    """Copies of the map and the reference raster, both carrying the six class names as CLASS_<code> tags."""
    m, r = tmp_path / "m.tif", tmp_path / "r.tif"
    for src, dst in ((scene["map"], m), (scene["ref_raster"], r)):
        with rasterio.open(src) as ds:
            arr, nd = ds.read(1), ds.nodata
        _write(dst, arr, nodata=nd)
        with rasterio.open(dst, "r+") as ds:
            ds.update_tags(1, **{f"CLASS_{i}": n for i, n in enumerate(NAMES6, start=1)})
    return m, r


@pytest.mark.parametrize("named", [False, True])
def test_any_merge_of_classes_never_lowers_oa(scene, tmp_path, named):
    """[practitioner] 1: a merge without a side prefix merges both sides, so OA can only rise (property over
    random merges; with class names on both sides too, and a new name for the merged class)."""
    from hsicls.stages.assess import assess_map

    m, r = scene["map"], scene["ref_raster"]
    if named:  # the same six names on both sides, as GDAL category names
        m, r = _named_pair(scene, tmp_path)
    base = assess_map(m, r)["oa"]
    rng = np.random.default_rng(0)
    for _ in range(12):
        k = int(rng.integers(2, 5))
        codes = sorted(rng.choice(np.arange(1, 7), k, replace=False).tolist())
        target = "merged class" if rng.random() < 0.5 else str(codes[0])
        merged = assess_map(m, r, class_map={",".join(map(str, codes)): target})
        assert merged["oa"] >= base - 1e-12, (codes, target, merged["oa"], base)


def test_geojson_named_json_is_recognised_by_content(scene, tmp_path):
    """[practitioner] 12: a GeoJSON reference called ``points.json`` is read as vector points (OGR's own check)."""
    import fiona

    gpkg = _write_points(tmp_path / "p.gpkg", _centres(scene["rows"], scene["cols"]), scene["truth"].tolist(), 32633)
    with (
        fiona.open(gpkg) as src,
        fiona.open(tmp_path / "points.json", "w", driver="GeoJSON", crs=src.crs, schema=src.schema) as dst,
    ):
        for f in src:
            dst.write(f)
    a, _ = _assess_json(scene["map"], "-r", gpkg, "--reference-field", "cls")
    b, _ = _assess_json(scene["map"], "-r", tmp_path / "points.json", "--reference-field", "cls")
    assert a["error_matrix"] == b["error_matrix"] and a["oa"] == b["oa"]


def test_sample_then_assess_two_tiles_as_one_map(scene, tmp_path):
    """[practitioner] 4 and 5: ``hsicls sample`` draws a stratified sample over two tiles (nodata never drawn,
    the same points for the same seed, the minimum per class met); filled in, ``assess`` over both tiles gives the
    error matrix and areas of the whole map, with a row per tile."""
    import fiona

    cls = scene["cls"]
    left, right = tmp_path / "left.tif", tmp_path / "right.tif"
    _write(left, cls[:, :15], nodata=255)
    _write(right, cls[:, 15:], transform=_transform((ORIGIN[0] + 15 * PIXEL, ORIGIN[1])), nodata=255)
    pts = tmp_path / "pts.gpkg"
    r = run_cli("sample", left, right, "-n", "60", "--min-per-class", "5", "-o", pts, "--seed", "3", "--json")
    assert r.exit_code == 0, r.stderr
    design = json.loads(r.stdout)
    assert design["points"] == 60 and all(c["points"] >= 5 for c in design["classes"].values())
    again = tmp_path / "again.csv"
    assert run_cli("sample", left, right, "-n", "60", "--min-per-class", "5", "-o", again, "--seed", "3").exit_code == 0
    with fiona.open(pts) as src:
        feats = list(src)
        schema, crs = src.schema, src.crs
    assert [(f.properties["map"], f.properties["row"], f.properties["col"]) for f in feats] == [
        (row["map"], int(row["row"]), int(row["col"])) for row in __import__("csv").DictReader(again.open())
    ]
    assert all(f.properties["reference"] is None and f.properties["map_code"] != 255 for f in feats)
    rng = np.random.default_rng(1)  # the interpreter: right 80 % of the time
    filled = tmp_path / "filled.gpkg"
    with fiona.open(filled, "w", driver="GPKG", crs=crs, schema=schema) as dst:
        for f in feats:
            code = f.properties["map_code"] if rng.random() < 0.8 else int(rng.integers(1, 7))
            dst.write({"geometry": f.geometry, "properties": {**dict(f.properties), "reference": code}})
    both, _ = _assess_json(left, right, "-r", filled, "--reference-field", "reference")
    whole, _ = _assess_json(scene["map"], "-r", filled, "--reference-field", "reference")
    assert both["error_matrix"] == whole["error_matrix"]
    assert [c["map_pixels"] for c in both["classes"].values()] == [c["map_pixels"] for c in whole["classes"].values()]
    assert abs(both["area_adjusted"]["oa"] - whole["area_adjusted"]["oa"]) < 1e-12
    assert [Path(m["map"]).name for m in both["maps"]] == ["left.tif", "right.tif"]
    assert sum(m["samples"] for m in both["maps"]) == 60


def test_assess_report_never_replaces_the_reference(scene, tmp_path):
    """[hardening-2] 2: ``--report P --overwrite`` with a reference called P.json is refused, the reference kept."""
    import fiona

    ref = tmp_path / "acc.json"
    gpkg = _write_points(tmp_path / "p.gpkg", _centres(scene["rows"], scene["cols"]), scene["truth"].tolist(), 32633)
    with fiona.open(gpkg) as src, fiona.open(ref, "w", driver="GeoJSON", crs=src.crs, schema=src.schema) as dst:
        for f in src:
            dst.write(f)
    before = ref.read_bytes()
    r = run_cli("assess", scene["map"], "-r", ref, "--reference-field", "cls", "--report", tmp_path / "acc", "--overwrite")
    assert r.exit_code == 1 and "acc.json" in r.stderr and "input" in r.stderr
    assert ref.read_bytes() == before


def test_a_named_map_class_without_its_reference_class_is_refused_unless_asked(scene, tmp_path):
    """[practitioner] 1: matched by name, a map class merged under a name the reference lacks would score 0:
    refused with one line, unless --allow-unmatched."""
    m, r = _named_pair(scene, tmp_path)
    bad = run_cli("assess", m, "-r", r, "--class-map", "map:3,4=vegetation")
    assert bad.exit_code == 1 and "'vegetation'" in bad.stderr and "--allow-unmatched" in bad.stderr
    ok = run_cli("assess", m, "-r", r, "--class-map", "map:3,4=vegetation", "--allow-unmatched", "--json")
    assert ok.exit_code == 0, ok.stderr
    both = run_cli("assess", m, "-r", r, "--class-map", "3,4=vegetation", "--json")  # both sides: fine
    plain = run_cli("assess", m, "-r", r, "--json")
    assert json.loads(both.stdout)["oa"] >= json.loads(plain.stdout)["oa"]


def test_overlapping_tiles_count_each_sample_once(scene, tmp_path):
    """[hardening-3] Tiles cut from one map with an overlap: a reference sample on both counts once (on the
    first map given), with a warning; the same map given twice is refused; legends that disagree are refused."""
    cls = scene["cls"]
    t = _transform()
    left = _write(tmp_path / "left.tif", cls[:, :18], nodata=255)
    right = _write(tmp_path / "right.tif", cls[:, 12:], transform=t @ Affine.translation(12, 0), nodata=255)
    whole, _ = _assess_json(scene["map"], "-r", scene["ref_raster"])
    tiles, err = _assess_json(left, right, "-r", scene["ref_raster"])
    assert "counted once" in err and "first map" in err
    assert tiles["error_matrix"] == whole["error_matrix"]  # the overlap's samples once, as on the whole map
    assert sum(m["samples"] for m in tiles["maps"]) == int(np.asarray(whole["error_matrix"]).sum())
    r = run_cli("assess", left, left, "-r", scene["ref_raster"])
    assert r.exit_code == 1 and "given twice" in r.stderr
    pts = tmp_path / "pts.csv"  # sample: a pixel of the overlap is drawn once at most, from the first map
    r = run_cli("sample", left, right, "-o", pts, "-n", "708", "--min-per-class", "1")
    assert r.exit_code == 0 and "first map" in r.stderr, r.stderr
    import csv

    xy = [(row["x"], row["y"]) for row in csv.DictReader(pts.open())]
    assert len(xy) == len(set(xy)) == int((cls != 255).sum())  # every classified pixel of the mosaic, once
    other = tmp_path / "other.tif"
    _write(other, cls[:, 12:], transform=t @ Affine.translation(12, 0), nodata=255)
    with rasterio.open(left, "r+") as ds:
        ds.update_tags(1, CLASS_1="roof")
    with rasterio.open(other, "r+") as ds:
        ds.update_tags(1, CLASS_1="water")
    r = run_cli("assess", left, other, "-r", scene["ref_raster"])
    assert r.exit_code == 1 and "legends disagree" in r.stderr, r.stderr


@pytest.mark.parametrize("suffix", [".csv", ".gpkg", ".geojson"])
def test_sample_round_trip_through_assess_for_every_format(scene, tmp_path, suffix):
    """[hardening-3] What ``sample`` writes, once its reference field is filled, is what ``assess -r`` reads, in
    every sample format (a CSV's points from its x/y columns, in the map's CRS)."""
    import csv

    import fiona

    out = tmp_path / f"s{suffix}"
    r = run_cli("sample", scene["map"], "-o", out, "-n", "40", "--min-per-class", "4")
    assert r.exit_code == 0, r.stderr
    filled = tmp_path / f"filled{suffix}"
    if suffix == ".csv":
        rows = list(csv.DictReader(out.open()))
        for row in rows:
            row["reference"] = row["map_code"]
        with filled.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        with fiona.open(out) as src:
            meta, feats = src.meta, list(src)
        with fiona.open(filled, "w", **meta) as dst:
            for f in feats:
                props = dict(f.properties)
                props["reference"] = props["map_code"]
                dst.write({"geometry": dict(f.geometry.__geo_interface__), "properties": props})
    res, _ = _assess_json(scene["map"], "-r", filled, "--reference-field", "reference")
    assert res["oa"] == 1.0 and res["reference"]["used"] == 40
