"""[sensors]: EnMAP, DESIS, PRISMA, EMIT and AVIRIS-NG products, quality masks, band resampling between sensors.

No real product can be downloaded here: each fixture builds a small product shaped like its specification (the same
file names, groups, attributes, dtypes and interleaves), a few dozen pixels each.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from hsicls.io.readers import open_cube
from hsicls.science.spectral_response import srf_matrix, uncovered
from tests.conftest import run_cli

H, W = 14, 12
ENMAP_WL = np.linspace(420, 2400, 24)


def _spectra(n_classes: int, wl: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A class map ``(H, W)`` (classes 1..n in vertical stripes) and reflectance ``(H, W, B)`` from smooth class
    spectra of wavelength ``wl`` (so that any sensor's bands sample the same underlying spectra)."""
    rng = np.random.default_rng(seed)
    classes = 1 + (np.arange(W)[None, :] * n_classes // W).repeat(H, 0)
    centres = np.linspace(600, 2000, n_classes)
    spec = lambda c, x: 0.1 + 0.35 * np.exp(-(((x - centres[c - 1]) / 350.0) ** 2))  # noqa: E731
    cube = np.stack([spec(c, wl) for c in classes.ravel()]).reshape(H, W, len(wl))
    return classes, (cube + rng.normal(0, 0.004, cube.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def enmap(tmp_path_factory):
    """An EnMAP L2A product folder: int16 SPECTRAL_IMAGE.TIF (gain 1e-4), METADATA.XML, quality layers."""
    d = tmp_path_factory.mktemp("enmap") / "ENMAP01-____L2A-DT0000001867_20220724T104526Z_008_V010302_20230628T165614Z"
    d.mkdir()
    stem = d.name
    classes, refl = _spectra(3, ENMAP_WL)
    dn = np.round(refl / 1e-4).astype(np.int16).transpose(2, 0, 1)
    dn[:, 0, :2] = -32768  # fill
    prof = dict(driver="GTiff", height=H, width=W, count=len(ENMAP_WL), dtype="int16", crs="EPSG:32633",
                transform=from_origin(360000, 5810000, 30, 30), nodata=-32768)  # fmt: skip
    with rasterio.open(d / f"{stem}-SPECTRAL_IMAGE.TIF", "w", **prof) as ds:
        ds.write(dn)
    flags = {"CLOUD": (5, 1), "CIRRUS": (6, 3), "HAZE": (9, 9), "CLOUDSHADOW": (10, 4)}
    for part, (r, c) in flags.items():
        q = np.zeros((1, H, W), np.uint8)
        q[0, r, c] = 1
        with rasterio.open(d / f"{stem}-QL_QUALITY_{part}.TIF", "w", **dict(prof, count=1, dtype="uint8", nodata=None)) as ds:
            ds.write(q)
    pm = np.zeros((len(ENMAP_WL), H, W), np.uint8)
    pm[7, 12, 11] = 1  # one defective detector element at one pixel
    with rasterio.open(d / f"{stem}-QL_PIXELMASK.TIF", "w", **dict(prof, dtype="uint8", nodata=None)) as ds:
        ds.write(pm)
    xml = ["<?xml version='1.0' encoding='UTF-8'?><level_X><specific><bandCharacterisation>"]
    for i, w in enumerate(ENMAP_WL):
        xml.append(f'<bandID number="{i + 1}"><wavelengthCenterOfBand>{w:.3f}</wavelengthCenterOfBand><FWHMOfBand>{95.0 if w < 1000 else 105.0}'
                   f"</FWHMOfBand><GainOfBand>0.0001</GainOfBand><OffsetOfBand>0</OffsetOfBand></bandID>")  # fmt: skip
    xml.append("</bandCharacterisation></specific></level_X>")
    (d / f"{stem}-METADATA.XML").write_text("".join(xml))
    labels = d.parent / "labels.tif"
    with rasterio.open(labels, "w", **dict(prof, count=1, dtype="uint8", nodata=0)) as ds:
        ds.write(classes[None].astype(np.uint8))
    return d, labels, refl


def test_enmap_values_bands_and_masks(enmap):
    folder, _, refl = enmap
    for path in (folder, next(folder.glob("*SPECTRAL_IMAGE.TIF")), next(folder.glob("*METADATA.XML"))):
        src = open_cube(path)
        assert src.product == "EnMAP L2A"
        assert np.allclose(src.bands.wavelengths, ENMAP_WL, atol=1e-3) and src.bands.fwhm[0] == 95.0
        data = src.read().data
        assert np.allclose(data[3, 4], refl[3, 4], atol=6e-5)  # stored * gain + offset
        assert np.isnan(data[0, 0]).all()  # fill
        assert np.isnan(data[5, 1]).all() and np.isnan(data[12, 11]).all()  # cloud; one defective element
        assert src.quality.masked == 5 and "bad pixel" in src.quality.flags
    clouds = open_cube(folder, mask="clouds")
    assert clouds.quality.masked == 4 and not np.isnan(clouds.read().data[12, 11]).any()
    none = open_cube(folder, mask="none")
    assert none.quality.masked == 0 and not np.isnan(none.read().data[5, 1]).any()


def test_enmap_errors_name_the_file_and_field(enmap, tmp_path):
    folder, labels, _ = enmap
    broken = tmp_path / folder.name
    broken.mkdir()
    for p in folder.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    xml = next(broken.glob("*METADATA.XML"))
    text = xml.read_text()
    xml.write_text(text.replace("<FWHMOfBand>95.0</FWHMOfBand>", "", 1))
    r = run_cli("preprocess", broken, "-l", labels, "-o", tmp_path / "p.h5")
    assert r.exit_code == 1 and "FWHMOfBand" in r.stderr and "METADATA.XML" in r.stderr and not (tmp_path / "p.h5").exists()
    xml.write_text(text.replace(text[text.index('<bandID number="24">') : text.index("</bandCharacterisation>")], ""))
    r = run_cli("preprocess", broken, "-l", labels, "-o", tmp_path / "p.h5")
    assert r.exit_code == 1 and "23 bands" in r.stderr and "24" in r.stderr
    xml.unlink()
    r = run_cli("preprocess", next(broken.glob("*SPECTRAL_IMAGE.TIF")), "-l", labels, "-o", tmp_path / "p.h5")
    assert r.exit_code == 0  # without its metadata, the image is a plain GeoTIFF (bands by count)


def _prisma(path, classes_wl=None):
    """A PRISMA L2D .he5: VNIR (rows, bands, cols) uint16 in descending wavelength, SWIR ascending, overlapping."""
    cw_v = np.concatenate([np.linspace(1010, 405, 12), [0.0]])  # PRISMA lists unused bands with 0
    cw_s = np.linspace(940, 2490, 20)
    wl_all = np.concatenate([cw_v[cw_v > 0], cw_s])
    classes, refl = _spectra(3, wl_all, seed=1)
    v, s = refl[..., : len(cw_v) - 1], refl[..., len(cw_v) - 1 :]
    lo_v, hi_v, lo_s, hi_s = 0.0, 0.8, 0.0, 0.6
    with h5py.File(path, "w") as f:
        g = f.create_group("HDFEOS/SWATHS/PRS_L2D_HCO/Data Fields")
        dv = np.round((v - lo_v) / (hi_v - lo_v) * 65535).astype(np.uint16)
        dv = np.concatenate([dv, np.zeros(dv.shape[:2] + (1,), np.uint16)], axis=2)
        g.create_dataset("VNIR_Cube", data=dv.transpose(0, 2, 1))  # BIL: (rows, bands, cols)
        g.create_dataset("SWIR_Cube", data=np.round((s - lo_s) / (hi_s - lo_s) * 65535).astype(np.uint16).transpose(0, 2, 1))
        a = f.attrs
        # sparse test sensors: FWHMs as wide as the band spacing, as a real sensor's contiguous bands are
        a["List_Cw_Vnir"], a["List_Fwhm_Vnir"] = cw_v.astype(np.float32), np.where(cw_v > 0, 65.0, 0).astype(np.float32)
        a["List_Cw_Swir"], a["List_Fwhm_Swir"] = cw_s.astype(np.float32), np.full(len(cw_s), 95.0, np.float32)
        a["L2ScaleVnirMin"], a["L2ScaleVnirMax"], a["L2ScaleSwirMin"], a["L2ScaleSwirMax"] = lo_v, hi_v, lo_s, hi_s
        a["Epsg_Code"], a["Product_ULcorner_easting"], a["Product_ULcorner_northing"] = 32633, 360000.0, 5810000.0
        a["Processing_Level"] = "2D"
    return classes, refl, cw_v, cw_s


def test_prisma_join_scale_and_grid(tmp_path):
    path = tmp_path / "PRS_L2D_STD_20200209102459_20200209102503_0001.he5"
    _, refl, cw_v, cw_s = _prisma(path)
    src = open_cube(path)
    wl = np.asarray(src.bands.wavelengths)
    assert (np.diff(wl) > 0).all()  # one band set in wavelength order
    cut = (cw_s.min() + cw_v.max()) / 2  # the overlap split at its midpoint: no wavelength read twice
    assert (wl[wl < cut] <= cw_v.max()).all() and set(wl[wl >= cut]).issubset(
        set(np.round(cw_s, 3)) | set(cw_s.astype(np.float32))
    )
    assert 1010 not in np.round(wl) and 940 not in np.round(wl) and 955 in np.round(wl)  # each side loses its far overlap
    data = src.read().data
    j = int(np.argmin(np.abs(wl - 2490)))
    assert abs(data[2, 3, j] - refl[2, 3, -1]) < 2e-5 and src.grid.crs is not None and src.grid.transform[0] == 30.0


def _emit(folder, seed=0, bad=(14, 15)):
    """An EMIT L2A RFL granule (swath 10 x 8, GLT onto a 12 x 11 north-up grid, rotated) and its MASK file."""
    wl = np.linspace(380, 2500, 30)
    down, cross = 10, 8
    rng = np.random.default_rng(seed)
    classes = 1 + (np.arange(cross)[None, :] * 3 // cross).repeat(down, 0)
    centres = np.linspace(600, 2000, 3)
    refl = np.stack([0.1 + 0.35 * np.exp(-(((wl - centres[c - 1]) / 350.0) ** 2)) for c in classes.ravel()]).reshape(
        down, cross, -1
    )
    refl = (refl + rng.normal(0, 0.004, refl.shape)).astype(np.float32)
    refl[0, 0] = -9999.0
    good = np.ones(len(wl), np.uint8)
    good[list(bad)] = 0  # water-vapour bands
    refl[..., list(bad)] = np.nan
    rows, cols = np.full((12, 11), 0, np.int32), np.full((12, 11), 0, np.int32)
    for r in range(down):
        for c in range(cross):
            R, C = c + 2, down - 1 - r  # a rotation: swath rows run east-west on the map
            rows[R, C], cols[R, C] = r + 1, c + 1
    rows[1, 0], cols[1, 0] = 4, 4  # one swath pixel shown twice
    name = "EMIT_L2A_RFL_001_20230101T000000_2300100_001.nc"
    with h5py.File(folder / name, "w") as f:
        d = f.create_dataset("reflectance", data=refl)
        d.attrs["_FillValue"] = np.float32(-9999)
        g = f.create_group("sensor_band_parameters")
        g["wavelengths"], g["fwhm"], g["good_wavelengths"] = wl.astype(np.float32), np.full(len(wl), 85.0, np.float32), good
        loc = f.create_group("location")
        loc["glt_x"], loc["glt_y"] = cols, rows
        f.attrs["geotransform"] = np.array([500000.0, 60.0, 0.0, 4000000.0, 0.0, -60.0])
        f.attrs["spatial_ref"] = rasterio.crs.CRS.from_epsg(32611).to_wkt()
    names = [
        b"Cloud flag",
        b"Cirrus flag",
        b"Water flag",
        b"Spacecraft Flag",
        b"Dilated Cloud Flag",
        b"AOD550",
        b"H2O (g cm-2)",
        b"Aggregate Flag",
    ]
    m = np.zeros((down, cross, len(names)), np.float32)
    m[2, 2, 0] = 1  # cloud
    m[3, 5, 3] = 1  # spacecraft
    m[:, :, 5] = 0.1  # AOD is a value, never a flag
    with h5py.File(folder / name.replace("_RFL_", "_MASK_"), "w") as f:
        f["mask"] = m
        f.create_group("sensor_band_parameters")["mask_bands"] = np.array(names)
    return folder / name, classes, refl, rows - 1, cols - 1, wl, good


def test_emit_values_bad_bands_and_masks(tmp_path):
    path, _, refl, *_, wl, good = _emit(tmp_path)
    src = open_cube(path)
    assert src.product == "EMIT L2A" and src.bands.count == 28 and src.bands.bad_bands == [15, 16]
    assert np.allclose(src.bands.wavelengths, wl[good == 1], atol=1e-3)
    data = src.read().data
    assert np.allclose(data[4, 3], refl[4, 3][good == 1])
    assert np.isnan(data[0, 0]).all() and np.isnan(data[2, 2]).all() and np.isnan(data[3, 5]).all()
    assert src.quality.masked == 2 and open_cube(path, mask="clouds").quality.masked == 1
    assert src.glt.grid.shape == (12, 11) and src.glt.grid.crs is not None


def test_emit_map_is_the_swath_classes_through_the_glt(tmp_path):
    path, classes, *_ = _emit(tmp_path)
    src = open_cube(path, mask="none")
    labels = tmp_path / "labels.tif"  # drawn on the map grid, as a user would
    prof = dict(driver="GTiff", height=12, width=11, count=1, dtype="uint8", crs=src.glt.grid.crs,
                transform=rasterio.Affine(*src.glt.grid.transform), nodata=0)  # fmt: skip
    with rasterio.open(labels, "w", **prof) as ds:
        ds.write(src.glt.to_grid(classes.astype(np.uint8))[None])
    p, m, out = tmp_path / "p.h5", tmp_path / "m.pt", tmp_path / "map.tif"
    assert (
        run_cli(
            "preprocess", path, "-l", labels, "-o", p, "--components", "0", "--train-ratio", "0.5", "--mask", "none"
        ).exit_code
        == 0
    )
    assert run_cli("train", p, "-o", m, "--model", "rf").exit_code == 0
    r = run_cli("predict-map", path, "-m", m, "-o", out, "--mask", "none", "--json")
    assert r.exit_code == 0, r.stderr
    from hsicls.artifacts.bundle import load_bundle

    b = load_bundle(m)
    swath = src.read().data
    import torch

    x = torch.from_numpy(b.preprocessing.apply(np.nan_to_num(swath).reshape(-1, swath.shape[2])))[:, :, None, None]
    with torch.no_grad():
        k = b.build_model()(x).argmax(1).numpy().reshape(swath.shape[:2])
    codes = np.asarray(b.class_values)[k].astype(np.uint8)
    codes[~np.isfinite(swath).all(-1)] = 0
    want = src.glt.to_grid(codes)  # by hand: each map pixel takes the class of the swath pixel the GLT names
    with rasterio.open(out) as ds:
        got = ds.read(1)
        assert ds.crs is not None and ds.transform.a == 60.0 and (ds.height, ds.width) == (12, 11)
    assert np.array_equal(got, want)
    assert json.loads(r.stdout)["pixels"] == 12 * 11


def test_aviris_ng_envi_reflectance(tmp_path):
    """AVIRIS-NG / AVIRIS-3 L2 reflectance: ENVI BIL with wavelength, fwhm, bbl and 'data ignore value' -9999."""
    wl = np.linspace(380, 2500, 12)
    data = np.random.default_rng(0).random((12, 6, 5)).astype(np.float32)  # (bands, rows, cols)
    data[:, 0, 0] = -9999
    img = tmp_path / "ang20190101t000000_rfl_v2v2_img"
    data.transpose(1, 0, 2).tofile(img)  # BIL: row, band, column
    bbl = ["1"] * 12
    bbl[5] = "0"
    img.with_name(img.name + ".hdr").write_text(
        "ENVI\nsamples = 5\nlines = 6\nbands = 12\nheader offset = 0\nfile type = ENVI Standard\ndata type = 4\n"
        "interleave = bil\nbyte order = 0\ndata ignore value = -9999\n"
        "map info = {UTM, 1, 1, 500000, 4000000, 5, 5, 11, North, WGS-84}\n"
        f"wavelength units = Nanometers\nwavelength = {{{', '.join(f'{w:.2f}' for w in wl)}}}\n"
        f"fwhm = {{{', '.join(['5.0'] * 12)}}}\nbbl = {{{', '.join(bbl)}}}\n"
    )
    src = open_cube(img)
    assert src.bands.count == 11 and src.bands.bad_bands == [6] and src.nodata == -9999
    assert src.read().valid_mask().sum() == 29


def test_gaussian_srf_resampling():
    src = np.linspace(400, 2500, 211)  # 10 nm bands
    dst = np.array([450.0, 860.0, 1650.0, 2200.0])
    m = srf_matrix(src, np.full(211, 10.0), dst, np.array([30.0, 30.0, 40.0, 60.0]))
    assert np.allclose(m.sum(0), 1)
    assert np.allclose(src @ m, dst, atol=0.5)  # a linear spectrum is kept, at the target centres
    assert uncovered(src, np.full(211, 10.0), np.array([300.0, 1000.0]), np.array([10.0, 10.0])) == [0]


def test_train_on_enmap_map_prisma_with_resample_bands(enmap, tmp_path):
    folder, labels, _ = enmap
    p, m = tmp_path / "p.h5", tmp_path / "m.pt"
    assert run_cli("preprocess", folder, "-l", labels, "-o", p, "--components", "0", "--train-ratio", "0.5").exit_code == 0
    assert run_cli("train", p, "-o", m, "--model", "rf").exit_code == 0
    prisma = tmp_path / "PRS_L2D_STD_20200209102459_20200209102503_0001.he5"
    classes, *_ = _prisma(prisma)
    r = run_cli("predict-map", prisma, "-m", m, "-o", tmp_path / "plain.tif", "--json")  # nearest bands within half FWHM
    assert r.exit_code == 0 and json.loads(r.stdout)["resampled"] is None
    r = run_cli("predict-map", prisma, "-m", m, "-o", tmp_path / "map.tif", "--resample-bands", "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["resampled"]["method"].startswith("Gaussian") and summary["resampled"]["to_bands"] == 24
    with rasterio.open(tmp_path / "map.tif") as ds:
        got = ds.read(1)
        assert "RESAMPLED_BANDS" in ds.tags()
    assert (got == classes).mean() > 0.9  # the same surfaces, seen by another sensor


def test_resample_refuses_bands_the_scene_does_not_cover(enmap, tmp_path):
    folder, labels, _ = enmap
    p, m = tmp_path / "p.h5", tmp_path / "m.pt"
    assert run_cli("preprocess", folder, "-l", labels, "-o", p, "--components", "0").exit_code == 0
    assert run_cli("train", p, "-o", m, "--model", "rf").exit_code == 0
    path, *_ = _emit(tmp_path, bad=range(11, 19))  # the bad bands leave 1180-1700 nm unmeasured: the model's bands there
    r = run_cli("predict-map", path, "-m", m, "-o", tmp_path / "x.tif", "--resample-bands")
    assert r.exit_code == 1 and "nm" in r.stderr and "not covered" in r.stderr and not (tmp_path / "x.tif").exists()


def test_truncated_products_are_one_clear_line(tmp_path):
    path, *_ = _emit(tmp_path)
    cut = tmp_path / "cut" / path.name
    cut.parent.mkdir()
    cut.write_bytes(path.read_bytes()[:2000])
    r = run_cli("predict-map", cut, "-m", tmp_path / "none.pt", "-o", tmp_path / "x.tif")
    assert r.exit_code != 0 and len(r.stderr.strip().splitlines()) == 1
    prisma = tmp_path / "PRS_L2D_STD_20200209102459_20200209102503_0002.he5"
    _prisma(prisma)
    with h5py.File(prisma, "r+") as f:
        del f.attrs["List_Cw_Swir"]
    from hsicls.errors import InputError

    with pytest.raises(InputError, match="List_Cw_Swir"):
        open_cube(prisma)


def test_map_summary_counts_masked_pixels_apart(enmap, tmp_path):
    folder, labels, _ = enmap
    p, m = tmp_path / "p.h5", tmp_path / "m.pt"
    r = run_cli("preprocess", folder, "-l", labels, "-o", p, "--components", "0", "--train-ratio", "0.5")
    assert r.exit_code == 0, r.stderr
    assert run_cli("train", p, "-o", m, "--model", "rf").exit_code == 0
    for mask, masked in (("all", 5), ("clouds", 4), ("none", 0)):
        r = run_cli("predict-map", folder, "-m", m, "-o", tmp_path / f"{mask}.tif", "--mask", mask, "--json")
        assert r.exit_code == 0, r.stderr
        s = json.loads(r.stdout)
        assert s["masked"] == masked and s["nodata"] == 2 and s["classified"] == H * W - 2 - masked
        assert s["product"] == "EnMAP L2A" and s["quality"]["mask"] == mask
        with rasterio.open(tmp_path / f"{mask}.tif") as ds:
            assert ds.tags()["QUALITY_MASK"].startswith(mask) and ds.read(1)[5, 1] == (0 if mask != "none" else ds.read(1)[5, 1])


def test_desis_image_and_metadata(tmp_path):
    wl = np.linspace(402, 1000, 10)
    classes, refl = _spectra(2, wl, seed=3)
    stem = "DESIS-HSI-L2A-DT0483531728_001-20200715T143000-V0215"
    dn = np.round(refl / 1e-4).astype(np.int16).transpose(2, 0, 1)
    dn[:, 1, 1] = 0  # outside the swath: 0 in every band
    prof = dict(driver="GTiff", height=H, width=W, count=len(wl), dtype="int16", crs="EPSG:32618",
                transform=from_origin(300000, 4500000, 30, 30))  # fmt: skip
    with rasterio.open(tmp_path / f"{stem}-SPECTRAL_IMAGE.tif", "w", **prof) as ds:
        ds.write(dn)
    bands = "".join(
        f"<band><bandNumber>{i + 1}</bandNumber><wavelengthCenterOfBand>{w:.2f}</wavelengthCenterOfBand>"
        f"<wavelengthWidthOfBand>3.5</wavelengthWidthOfBand><gainOfBand>0.0001</gainOfBand><offsetOfBand>0</offsetOfBand></band>"
        for i, w in enumerate(wl)
    )
    (tmp_path / f"{stem}-METADATA.xml").write_text(
        f"<hsi_doc><specific><bandCharacterisation>{bands}</bandCharacterisation></specific></hsi_doc>"
    )
    for path in (tmp_path / f"{stem}-SPECTRAL_IMAGE.tif", tmp_path):
        src = open_cube(path)
        assert src.product == "DESIS L2A" and np.allclose(src.bands.wavelengths, wl, atol=0.01) and src.bands.fwhm == [3.5] * 10
        data = src.read().data
        assert np.allclose(data[4, 5], refl[4, 5], atol=6e-5) and np.isnan(data[1, 1]).all()


def test_resample_bands_of_a_shifted_sensor_agrees_with_the_unshifted_map(enmap, tmp_path):
    """A scene whose bands are the bundle's shifted by 4 nm (another unit of the same sensor), same surfaces."""
    folder, labels, _ = enmap
    p, m = tmp_path / "p.h5", tmp_path / "m.pt"
    assert run_cli("preprocess", folder, "-l", labels, "-o", p, "--components", "0", "--train-ratio", "0.5").exit_code == 0
    assert run_cli("train", p, "-o", m, "--model", "rf").exit_code == 0
    assert run_cli("predict-map", folder, "-m", m, "-o", tmp_path / "ref.tif").exit_code == 0
    shifted = tmp_path / folder.name
    shifted.mkdir()
    _, refl = _spectra(3, ENMAP_WL + 4.0)
    for src in folder.iterdir():
        (shifted / src.name).write_bytes(src.read_bytes())
    img = next(shifted.glob("*SPECTRAL_IMAGE.TIF"))
    with rasterio.open(img, "r+") as ds:
        dn = np.round(refl / 1e-4).astype(np.int16).transpose(2, 0, 1)
        dn[:, 0, :2] = -32768
        ds.write(dn)
    xml = next(shifted.glob("*METADATA.XML"))
    text = xml.read_text()
    for w in ENMAP_WL:
        text = text.replace(f"<wavelengthCenterOfBand>{w:.3f}<", f"<wavelengthCenterOfBand>{w + 4.0:.3f}<")
    xml.write_text(text)
    r = run_cli("predict-map", shifted, "-m", m, "-o", tmp_path / "shifted.tif", "--resample-bands", "--json")
    assert r.exit_code == 0, r.stderr
    with rasterio.open(tmp_path / "ref.tif") as a, rasterio.open(tmp_path / "shifted.tif") as b:
        ref, got = a.read(1), b.read(1)
    ok = ref > 0
    assert (ref[ok] == got[ok]).mean() > 0.9  # chance is 1/3
