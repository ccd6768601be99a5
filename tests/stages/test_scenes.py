"""[scenes]: several scenes and GIS labels in one prepared file, group hold-out, maps in the labels'
own codes, band identity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from hsicls.artifacts.prepared import load_prepared
from hsicls.io.classtable import gdal_category_names
from tests.conftest import run_cli

RF = ("--model", "rf")


def _write_cube(path: Path, cube: np.ndarray, transform, crs="EPSG:32632", wavelengths=None, fwhm=None):
    h, w, b = cube.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=b, dtype="float32", crs=crs, transform=transform) as d:
        d.write(cube.transpose(2, 0, 1).astype(np.float32))
        for i in range(b):
            tags = {}
            if wavelengths is not None:
                tags.update(wavelength=f"{wavelengths[i]:.3f}", wavelength_units="Nanometers")
            if fwhm is not None:
                tags.update(fwhm=f"{fwhm[i]:.3f}")
            d.update_tags(i + 1, **tags)
    return path


def _write_labels(path: Path, labels: np.ndarray, transform, crs="EPSG:32632"):
    h, w = labels.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=1, dtype="uint8", crs=crs, transform=transform) as d:
        d.write(labels.astype(np.uint8), 1)
    return path


@pytest.fixture(scope="module")
def world():
    """A 40 x 60 px world in EPSG:32632 (2 m pixels), 12 bands with wavelengths; class codes 1, 10, 11
    in 10 x 10 px blocks; the cube depends on the class so it is learnable."""
    rng = np.random.default_rng(0)
    codes = np.array([1, 10, 11])
    blocks = rng.integers(0, 3, (4, 6))
    labels = codes[np.kron(blocks, np.ones((10, 10), int))]
    means = rng.uniform(0.1, 0.9, (3, 12))
    cube = means[np.kron(blocks, np.ones((10, 10), int))] + 0.02 * rng.standard_normal((40, 60, 12))
    t = Affine.translation(500000, 5600000) @ Affine.scale(2, -2)
    wl = np.linspace(450, 2400, 12)
    return {"labels": labels, "cube": cube.astype(np.float32), "t": t, "wl": wl, "fwhm": np.full(12, 10.0)}


@pytest.fixture(scope="module")
def tiles(world, tmp_path_factory):
    """Two tiles of the world with their own transforms, and the world's label raster."""
    d = tmp_path_factory.mktemp("tiles")
    t = world["t"]
    a = _write_cube(d / "tile_a.tif", world["cube"][:, :30], t, wavelengths=world["wl"], fwhm=world["fwhm"])
    b = _write_cube(
        d / "tile_b.tif", world["cube"][10:, 30:], t @ Affine.translation(30, 10), wavelengths=world["wl"], fwhm=world["fwhm"]
    )
    lab = _write_labels(d / "world_labels.tif", world["labels"], t)
    return a, b, lab


def test_two_scenes_with_their_own_grids_in_one_prepared_file(tiles, world, tmp_path):
    a, b, lab = tiles
    out = tmp_path / "p.h5"
    r = run_cli("preprocess", a, b, "--labels", lab, "-o", out, "--components", "4", "--train-ratio", "0.2")
    assert r.exit_code == 0, r.stderr
    p = load_prepared(out)
    assert [s.name for s in p.scenes] == ["tile_a", "tile_b"]
    assert (p.scenes[0].height, p.scenes[0].width, p.scenes[1].height, p.scenes[1].width) == (40, 30, 30, 30)
    assert p.scenes[1].grid.transform[2] == world["t"].c + 60 and p.scenes[1].grid.transform[5] == world["t"].f - 20
    assert p.class_values == [1, 10, 11]
    codes = np.array([0] + p.class_values)
    np.testing.assert_array_equal(codes[p.labels[p.scenes[0].rows, :30]], world["labels"][:, :30])
    np.testing.assert_array_equal(codes[p.labels[p.scenes[1].rows, :30]], world["labels"][10:, 30:])
    assert p.meta["bands"]["wavelengths"][0] == pytest.approx(450)


def test_label_raster_in_another_crs_and_resolution_is_warped(world, tmp_path):
    """Labels at 4 m in EPSG:4326 (made from the truth by nearest resampling) land on the 2 m UTM grid:
    every pixel away from a block edge gets its block's code."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    scene = _write_cube(tmp_path / "s.tif", world["cube"], world["t"])
    t4326, w, h = calculate_default_transform(
        "EPSG:32632", "EPSG:4326", 60, 40, *rasterio.transform.array_bounds(40, 60, world["t"])
    )
    coarse = np.zeros((h // 2, w // 2), np.uint8)
    t_coarse = t4326 @ Affine.scale(w / (w // 2), h / (h // 2))
    reproject(
        world["labels"].astype(np.uint8),
        coarse,
        src_transform=world["t"],
        src_crs="EPSG:32632",
        dst_transform=t_coarse,
        dst_crs="EPSG:4326",
        resampling=Resampling.nearest,
    )
    lab = _write_labels(tmp_path / "l4326.tif", coarse, t_coarse, crs="EPSG:4326")
    out = tmp_path / "p.h5"
    r = run_cli("preprocess", scene, "-l", lab, "-o", out, "--components", "3")
    assert r.exit_code == 0, r.stderr
    p = load_prepared(out)
    got = np.array([0] + p.class_values)[p.labels]
    interior = np.zeros((40, 60), bool)
    for i in range(4):
        for j in range(6):
            interior[i * 10 + 3 : i * 10 + 7, j * 10 + 3 : j * 10 + 7] = True
    np.testing.assert_array_equal(got[interior], world["labels"][interior])


def _points(path: Path, pts, crs="EPSG:4326", layer=None, field="cls"):
    import fiona

    schema = {"geometry": "Point", "properties": {field: "int"}}
    with fiona.open(
        path, "w", driver="GPKG" if path.suffix == ".gpkg" else "GeoJSON", crs=crs, schema=schema, layer=layer
    ) as dst:
        for (x, y), c in pts:
            dst.write({"geometry": {"type": "Point", "coordinates": (x, y)}, "properties": {field: c}})
    return path


def _lonlat(world, row, col):
    from rasterio.warp import transform

    x, y = world["t"] @ (col + 0.5, row + 0.5)
    lon, lat = transform("EPSG:32632", "EPSG:4326", [x], [y])
    return lon[0], lat[0]


def test_vector_points_outside_the_scenes_are_counted(tiles, world, tmp_path):
    a, _, _ = tiles
    inside = [(_lonlat(world, r, c), int(world["labels"][r, c])) for r, c in ((5, 5), (25, 15), (35, 25), (15, 12))]
    outside = [(_lonlat(world, 5, 50), 1), (_lonlat(world, -20, 5), 10)]
    pts = _points(tmp_path / "pts.geojson", inside + outside)
    r = run_cli(
        "preprocess", a, "-l", pts, "-o", tmp_path / "p.h5", "--components", "3", "--val-ratio", "0", "--train-ratio", "0.5"
    )
    assert r.exit_code == 0, r.stderr
    assert "2 of 6 features fall on no scene" in r.stderr
    assert int((load_prepared(tmp_path / "p.h5").labels > 0).sum()) == 4


def test_geopackage_layer_is_chosen(tiles, world, tmp_path):
    a, _, _ = tiles
    gpkg = tmp_path / "refs.gpkg"
    _points(gpkg, [(_lonlat(world, r, c), int(world["labels"][r, c])) for r, c in ((5, 5), (25, 15), (35, 25))], layer="first")
    _points(gpkg, [(_lonlat(world, r, c), int(world["labels"][r, c])) for r, c in ((5, 25), (15, 5))], layer="second")
    r = run_cli("preprocess", a, "-l", gpkg, "-o", tmp_path / "p.h5", "--components", "3", "--val-ratio", "0")
    assert r.exit_code == 1 and "--label-layer" in r.stderr and "first" in r.stderr and "second" in r.stderr
    r = run_cli(
        "preprocess", a, "-l", gpkg, "--label-layer", "second", "-o", tmp_path / "p.h5", "--components", "3", "--val-ratio", "0"
    )
    assert r.exit_code == 0, r.stderr
    assert int((load_prepared(tmp_path / "p.h5").labels > 0).sum()) == 2


def test_codes_kept_from_labels_to_map_with_names_and_colours(tiles, tmp_path):
    a, b, lab = tiles
    prep, model, out = tmp_path / "p.h5", tmp_path / "rf.pt", tmp_path / "map.tif"
    assert (
        run_cli("preprocess", a, b, "-l", lab, "-o", prep, "--components", "4", "--class-names", "roof,grass,water").exit_code
        == 0
    )
    assert run_cli("train", prep, "-o", model, *RF).exit_code == 0
    rep = json.loads(run_cli("evaluate", model, prep, "--json").stdout)
    assert rep["class_values"] == [1, 10, 11] and rep["class_names"] == ["roof", "grass", "water"] and rep["oa"] > 0.9
    r = run_cli("predict-map", b, "-m", model, "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert set(summary["classes"]) == {"1", "10", "11"} and summary["classes"]["10"]["name"] == "grass"
    with rasterio.open(out) as m, rasterio.open(lab) as truth:
        pred = m.read(1)
        ref = truth.read(1, window=rasterio.windows.from_bounds(*m.bounds, transform=truth.transform))
        cmap = m.colormap(1)
        assert m.tags(1)["CLASS_10"] == "grass"
    assert set(np.unique(pred)) <= {1, 10, 11}
    assert (pred == ref).mean() > 0.9  # agrees with the label raster in its own codes
    names = gdal_category_names(out)
    assert names is not None and names[1] == "roof" and names[10] == "grass" and names[11] == "water"
    assert cmap[10][3] == 255 and cmap[0][3] == 0
    qml = out.with_suffix(".qml").read_text()
    assert 'value="11"' in qml and 'label="water"' in qml


def test_palette_file_replaces_colours_and_names(tiles, tmp_path):
    a, b, lab = tiles
    prep, model, out = tmp_path / "p.h5", tmp_path / "rf.pt", tmp_path / "map.tif"
    assert run_cli("preprocess", a, "-l", lab, "-o", prep, "--components", "4").exit_code == 0
    assert run_cli("train", prep, "-o", model, *RF).exit_code == 0
    pal = tmp_path / "pal.clr"
    pal.write_text("1 255 0 0 roofs\n10 0 255 0 255 meadow\n")
    assert run_cli("predict-map", a, "-m", model, "-o", out, "--palette", pal).exit_code == 0
    with rasterio.open(out) as m:
        assert tuple(m.colormap(1)[1][:3]) == (255, 0, 0) and tuple(m.colormap(1)[10][:3]) == (0, 255, 0)
        assert m.tags(1)["CLASS_10"] == "meadow"


def test_bands_in_reverse_order_give_the_same_map_and_other_wavelengths_an_error(tiles, world, tmp_path):
    a, _, lab = tiles
    prep, model = tmp_path / "p.h5", tmp_path / "rf.pt"
    assert run_cli("preprocess", a, "-l", lab, "-o", prep, "--components", "4").exit_code == 0
    assert run_cli("train", prep, "-o", model, *RF).exit_code == 0
    rev = _write_cube(
        tmp_path / "rev.tif", world["cube"][:, :30, ::-1], world["t"], wavelengths=world["wl"][::-1], fwhm=world["fwhm"]
    )
    assert run_cli("predict-map", a, "-m", model, "-o", tmp_path / "m1.tif").exit_code == 0
    r = run_cli("predict-map", rev, "-m", model, "-o", tmp_path / "m2.tif")
    assert r.exit_code == 0 and "reordered" in r.stderr, r.stderr
    with rasterio.open(tmp_path / "m1.tif") as m1, rasterio.open(tmp_path / "m2.tif") as m2:
        np.testing.assert_array_equal(m1.read(1), m2.read(1))
    shifted = _write_cube(
        tmp_path / "shift.tif", world["cube"][:, :30], world["t"], wavelengths=world["wl"] + 40, fwhm=world["fwhm"]
    )
    r = run_cli("predict-map", shifted, "-m", model, "-o", tmp_path / "m3.tif")
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.exit_code == 1 and len(errors) == 1 and "shift.tif" in errors[0] and "nm" in errors[0]
    assert not (tmp_path / "m3.tif").exists()


def test_scenes_must_agree_on_their_bands(tiles, world, tmp_path):
    a, _, lab = tiles
    other = _write_cube(
        tmp_path / "other.tif", world["cube"][:, 30:], world["t"] @ Affine.translation(30, 0), wavelengths=world["wl"] + 30
    )
    r = run_cli("preprocess", a, other, "-l", lab, "-o", tmp_path / "p.h5")
    assert r.exit_code == 1 and "other.tif" in r.stderr and "nm" in r.stderr


@pytest.mark.parametrize("by", ["scene", "block", "polygon"])
def test_no_group_in_both_training_and_test(tiles, tmp_path, by):
    a, b, lab = tiles
    out = tmp_path / "p.h5"
    extra = ("--block-size", "10") if by == "block" else ()
    r = run_cli(
        "preprocess",
        a,
        b,
        "-l",
        lab,
        "-o",
        out,
        "--components",
        "3",
        "--split",
        "group",
        "--group-by",
        by,
        "--folds",
        "2",
        *extra,
    )
    assert r.exit_code == 0, r.stderr
    p = load_prepared(out)
    g = p.groups
    tr, va, te = set(np.unique(g[p.train])), set(np.unique(g[p.val])), set(np.unique(g[p.test]))
    assert tr and te and not (tr & te) and not (va & te)
    if by != "scene":  # two scenes, two folds: one training scene, so validation is drawn inside it
        assert not (tr & va)
    if by != "scene":  # groups that touch: no test pixel within the patch footprint of a training pixel
        from hsicls.science.splits import footprint

        assert not (footprint(p.train | p.val, 13) & p.test).any()


def test_test_groups_by_scene_name(tiles, tmp_path):
    a, b, lab = tiles
    out = tmp_path / "p.h5"
    r = run_cli(
        "preprocess",
        a,
        b,
        "-l",
        lab,
        "-o",
        out,
        "--components",
        "3",
        "--split",
        "group",
        "--test-groups",
        "tile_b",
        "--val-ratio",
        "0.3",
    )
    assert r.exit_code == 0, r.stderr
    p = load_prepared(out)
    s_a, s_b = p.scenes
    assert p.test[s_b.rows].sum() == (p.labels[s_b.rows] > 0).sum() and not p.test[s_a.rows].any()
    assert p.val[s_a.rows].any()  # one training scene: validation drawn inside it, with a warning
    r = run_cli("preprocess", a, b, "-l", lab, "-o", tmp_path / "q.h5", "--split", "group", "--test-groups", "tile_c")
    assert r.exit_code == 1 and "tile_c" in r.stderr


def test_predict_map_many_scenes_skips_existing_and_reports_failures(tiles, tmp_path):
    a, b, lab = tiles
    prep, model, maps = tmp_path / "p.h5", tmp_path / "rf.pt", tmp_path / "maps"
    maps.mkdir()
    assert run_cli("preprocess", a, "-l", lab, "-o", prep, "--components", "4").exit_code == 0
    assert run_cli("train", prep, "-o", model, *RF).exit_code == 0
    r = run_cli("predict-map", a, b, "-m", model, "--out-dir", maps, "--confidence", str(maps / "{stem}_conf.tif"), "--json")
    assert r.exit_code == 0, r.stderr
    assert {p.name for p in maps.glob("*.tif")} == {"tile_a_map.tif", "tile_b_map.tif", "tile_a_conf.tif", "tile_b_conf.tif"}
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    r = run_cli("predict-map", a, bad, b, "-m", model, "--out-dir", maps, "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 1 and len(out["skipped"]) == 2 and out["failed"][0]["scene"].endswith("bad.tif")
    assert sum(ln.startswith("error:") for ln in r.stderr.splitlines()) == 1 and "bad.tif" in r.stderr
    r = run_cli("predict-map", a, b, "-m", model, "--out-dir", maps, "--confidence", str(tmp_path / "c.tif"), "--overwrite")
    assert r.exit_code == 1 and "{stem}" in r.stderr


@pytest.mark.realdata
def test_salinas_a_end_to_end_keeps_its_codes(shared_data, tmp_path):
    d = shared_data / "salinas"
    cube, gt = d / "SalinasA_corrected.mat", d / "SalinasA_gt.mat"
    if not cube.exists():
        pytest.skip("Salinas-A cube not present")
    prep, model, out = tmp_path / "p.h5", tmp_path / "rf.pt", tmp_path / "map.tif"
    r = run_cli("preprocess", cube, "-l", gt, "-o", prep)
    assert r.exit_code == 0, r.stderr
    assert load_prepared(prep).class_values == [1, 10, 11, 12, 13, 14]
    assert run_cli("train", prep, "-o", model, *RF).exit_code == 0
    rep = json.loads(run_cli("evaluate", model, prep, "--json").stdout)
    assert rep["class_values"] == [1, 10, 11, 12, 13, 14] and rep["oa"] > 0.8
    assert run_cli("predict-map", cube, "-m", model, "-o", out).exit_code == 0
    from hsicls.io.readers import read_labels

    with rasterio.open(out) as m:
        pred = m.read(1)
    truth = read_labels(gt)
    assert set(np.unique(pred)) <= {1, 10, 11, 12, 13, 14}
    assert (pred[truth > 0] == truth[truth > 0]).mean() > 0.8


def test_numeric_raster_and_text_vector_labels_are_not_merged_code_for_code(tiles, world, tmp_path):
    """[practitioner] 2: a label raster of codes and vector labels with text class names have different legends:
    refused with one line naming which file has codes and which has names, no prepared file written."""
    import fiona

    a, _, lab = tiles
    pts = tmp_path / "named.gpkg"
    schema = {"geometry": "Point", "properties": {"cls": "str"}}
    with fiona.open(pts, "w", driver="GPKG", crs="EPSG:4326", schema=schema) as dst:
        for r, c, name in ((5, 5, "water"), (25, 15, "forest")):
            dst.write({"geometry": {"type": "Point", "coordinates": _lonlat(world, r, c)}, "properties": {"cls": name}})
    out = tmp_path / "p.h5"
    r = run_cli("preprocess", a, "-l", lab, "-l", pts, "--label-field", "cls", "-o", out, "--components", "3")
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.exit_code == 1 and len(errors) == 1, r.stderr
    assert "named.gpkg" in errors[0] and "world_labels.tif" in errors[0] and "names" in errors[0] and "codes" in errors[0]
    assert not out.exists()
