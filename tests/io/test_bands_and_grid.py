"""Band records, the one grid type, and the file-format registry."""

from __future__ import annotations

import numpy as np


def _cube_tif(path, cube, wavelengths, fwhm, shift=(0.0, 0.0)):
    """A GeoTIFF cube ``(H, W, B)`` with per-band ENVI-style wavelength / FWHM tags."""
    import rasterio
    from rasterio.transform import Affine

    h, w, b = cube.shape
    t = Affine(30.0, 0, 500_000 + shift[0], 0, -30.0, 5_800_000 + shift[1])
    with rasterio.open(
        path, "w", driver="GTiff", height=h, width=w, count=b, dtype="float32", crs="EPSG:32633", transform=t
    ) as ds:
        ds.write(cube.transpose(2, 0, 1).astype("float32"))
        for i in range(b):
            ds.update_tags(i + 1, wavelength=f"{wavelengths[i]:.2f}", fwhm=f"{fwhm[i]:.2f}")
    return path


def test_an_all_nan_band_leaves_with_its_wavelength_and_fwhm(tmp_path):
    """Dropping a band drops all its facts: the FWHM list stays as long as the band list, so band matching keeps its
    half-FWHM tolerance instead of falling back to 1 nm (3 nm apart is then one band, not an error)."""
    from hsicls.io.readers import open_cube
    from hsicls.science.scene_assembly import check_bands_agree

    rng = np.random.default_rng(0)
    cube = rng.random((8, 9, 12)).astype("float32") + 0.1
    wl, fw = np.linspace(450, 900, 12), np.full(12, 10.0)
    cube[..., 5] = np.nan
    a = open_cube(_cube_tif(tmp_path / "a.tif", cube, wl, fw))
    assert a.bands.count == 11 and 6 not in a.bands.numbers
    assert len(a.bands.fwhm) == len(a.bands.wavelengths) == 11 and wl[5] not in a.bands.wavelengths
    b = open_cube(_cube_tif(tmp_path / "b.tif", np.delete(cube, 5, axis=2), np.delete(wl, 5) + 3.0, np.delete(fw, 5), (270, 0)))
    assert check_bands_agree([a, b]).count == 11  # within half the FWHM (5 nm)
    np.testing.assert_array_equal(a.read().data, np.delete(cube, 5, axis=2))


def test_band_records_round_trip_with_bad_bands():
    from hsicls.io.cube import Band, BandSet

    bands = BandSet([Band(1, "a", 400, 5), Band(2, "b", 410, 5, bad=True), Band(3, "c", 420, 6)])
    assert bands.count == 2 and bands.numbers == [1, 3] and bands.bad_bands == [2] and bands.fwhm == [5, 6]
    back = BandSet.from_dict(bands.to_dict(), 0)
    assert back.to_dict() == bands.to_dict() and back.numbers == [1, 3]
    assert bands.keep([1, 0]).wavelengths == [420, 400] and bands.keep([1, 0]).bad_bands == [2]


def test_one_grid_type_places_windows_and_rasters():
    from rasterio.crs import CRS

    from hsicls.io.grid import GeoGrid

    g = GeoGrid(10, 7, CRS.from_epsg(32633).to_wkt(), (30.0, 0.0, 1000.0, 0.0, -30.0, 2000.0))
    assert list(g.windows(4))[:3] == [(0, 4, 0, 4), (0, 4, 4, 7), (4, 8, 0, 4)] and len(list(g.windows(4))) == 6
    assert g.with_halo(0, 4, 4, 7, 2) == (0, 6, 2, 7)
    sub = g.window(2, 5, 3, 7)
    assert sub.shape == (3, 4) and sub.transform[2] == 1090.0 and sub.transform[5] == 1940.0
    assert g.placement(g) == "same" and g.placement(sub) == "warp" and GeoGrid(10, 7).placement(GeoGrid(10, 7)) == "same"
    assert GeoGrid(10, 7).placement(GeoGrid(9, 7)) is None
    ok, r, c = g.rowcol(np.array([1000.0 + 45, 999.0]), np.array([2000.0 - 75, 1990.0]))
    assert ok.tolist() == [True, False] and (r[0], c[0]) == (2, 1)
    codes = np.arange(12, dtype=np.int32).reshape(3, 4) + 1
    np.testing.assert_array_equal(g.warp_codes(codes, sub)[2:5, 3:7], codes)
    assert g.pixel_area() == (900.0, "m²") and GeoGrid(3, 3).pixel_area() == (1.0, "pixels")


def test_file_formats_come_from_one_registry_and_a_new_one_is_one_class(tmp_path):
    """Every reader asks format_of; a format registered once (here: a NumPy .npz holding 'cube' or 'labels')
    opens as a cube and as labels everywhere, without another edit."""
    from hsicls.io.formats import FORMATS, format_of
    from hsicls.io.formats.arrays import ArrayFormat
    from hsicls.io.readers import open_cube, read_labels

    assert [format_of(tmp_path / n).name for n in ("a.tif", "a.hdr", "a.mat", "a.npy", "a.txt", "a.gpkg", "a")] == [
        "gdal", "envi", "mat", "npy", "envi-roi", "vector", "gdal"
    ]  # fmt: skip

    class NpzFormat(ArrayFormat, name="npz", description="a NumPy archive", suffixes=[".npz"]):
        def load(self, path, key, ndim):
            with np.load(path) as z:
                return z["cube" if ndim == 3 else "labels"]

    try:
        cube = np.random.default_rng(1).random((5, 6, 4)).astype("float32") + 0.1
        np.savez(tmp_path / "s.npz", cube=cube, labels=np.ones((5, 6), np.uint8))
        src = open_cube(tmp_path / "s.npz")
        assert src.bands.count == 4 and not src.grid.georeferenced
        np.testing.assert_array_equal(src.read().data, cube)
        assert read_labels(tmp_path / "s.npz").sum() == 30
    finally:
        del FORMATS["npz"]
