"""Every real file in ../shared/data loads through the readers with the shapes and per-class
counts listed in its README (skipped with a reason when that folder is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from hsicls.io.grid import GeoGrid
from hsicls.io.readers import rasterize_vector_labels, read_cube, read_envi_roi, read_label_metadata, read_labels

COUNTS = {
    "indian_pines/Indian_pines_gt.mat": [46, 1428, 830, 237, 483, 730, 28, 478, 20, 972, 2455, 593, 205, 1265, 386, 93],
    "indian_pines/Indian_pines_gt.npy": [46, 1428, 830, 237, 483, 730, 28, 478, 20, 972, 2455, 593, 205, 1265, 386, 93],
    "pavia_university/PaviaU_gt.mat": [6631, 18649, 2099, 3064, 1345, 5029, 1330, 3682, 947],
    "pavia_university/TRpavia_fixed.mat": [548, 540, 392, 524, 265, 532, 375, 514, 231],
    "salinas/Salinas_gt.mat": [2009, 3726, 1976, 1394, 2678, 3959, 3579, 11271, 6203, 3278, 1068, 1927, 916, 1070, 7268, 1807],
    "ksc/KSC_gt.mat": [761, 243, 256, 252, 161, 229, 105, 431, 520, 404, 419, 503, 927],
    "botswana/Botswana_gt.mat": [270, 101, 251, 215, 269, 269, 259, 203, 314, 248, 305, 181, 268, 95],
    "pavia_centre/Pavia_gt.mat": [65971, 7598, 3090, 2685, 6584, 9248, 7287, 42826, 2863],
}
SHAPES = {
    "indian_pines/Indian_pines_gt.mat": (145, 145),
    "pavia_university/PaviaU_gt.mat": (610, 340),
    "salinas/Salinas_gt.mat": (512, 217),
    "ksc/KSC_gt.mat": (512, 614),
    "botswana/Botswana_gt.mat": (1476, 256),
    "pavia_centre/Pavia_gt.mat": (1096, 715),
}
HOUSTON_TR = [198, 190, 192, 188, 186, 182, 196, 191, 193, 191, 181, 192, 184, 181, 187]
HOUSTON_TE = [1053, 1064, 505, 1056, 1056, 143, 1072, 1053, 1059, 1036, 1054, 1041, 285, 247, 473]


def _counts(labels: np.ndarray) -> list[int]:
    """Pixels per label code 1..K; the codes must be exactly 1..K (no shift, no gap)."""
    values, counts = np.unique(labels[labels > 0], return_counts=True)
    assert values.tolist() == list(range(1, len(values) + 1))
    return counts.tolist()


@pytest.mark.parametrize("rel", sorted(COUNTS))
def test_ground_truth_counts(shared_data, rel):
    labels = read_labels(shared_data / rel)
    assert _counts(labels) == COUNTS[rel]
    if rel in SHAPES:
        assert labels.shape == SHAPES[rel]


def test_indian_pines_cube_and_disjoint_mask(shared_data):
    cube = read_cube(shared_data / "indian_pines/Indian_pines_corrected.npy")
    assert cube.data.shape == (145, 145, 200) and cube.data.min() == 955 and cube.data.max() == 9604
    disjoint = read_labels(shared_data / "indian_pines/indianpines_disjoint_dset.mat")
    assert len(_counts(disjoint)) == 16 and int((disjoint > 0).sum()) == 5689


def test_pavia_fixed_test_mask(shared_data):
    ts = read_labels(shared_data / "pavia_university/TSpavia_fixed.mat")
    assert int((ts > 0).sum()) == 40002 and ts.shape == (610, 340)


def test_salinas_a_codes(shared_data):
    gt = read_labels(shared_data / "salinas/SalinasA_gt.mat")
    assert gt.shape == (83, 86)
    values, counts = np.unique(gt[gt > 0], return_counts=True)
    assert values.tolist() == [1, 10, 11, 12, 13, 14] and counts.tolist() == [391, 1343, 616, 1525, 674, 799]


def test_houston_gt_keys_and_roi_text(shared_data):
    tr = read_labels(shared_data / "houston2013/houston_gt.mat", key="houston_gt_tr")
    te = read_labels(shared_data / "houston2013/houston_gt.mat", key="houston_gt_te")
    assert tr.shape == te.shape == (349, 1905)
    assert _counts(tr) == HOUSTON_TR and _counts(te) == HOUSTON_TE
    assert not ((tr > 0) & (te > 0)).any()
    roi, names, colours = read_envi_roi(shared_data / "houston2013/2013_IEEE_GRSS_DF_Contest_Samples_VA.txt")
    assert np.array_equal(roi, te)  # the official VA ROI export, pixel for pixel
    assert names[0] == "grass_healthy" and names[-1] == "running_track" and colours[0] == (0, 205, 0)
    names_meta, _ = read_label_metadata(shared_data / "houston2013/2013_IEEE_GRSS_DF_Contest_Samples_VA.txt")
    assert names_meta[6] == "water"


def test_unmixing_scenes(shared_data):
    jr = read_cube(shared_data / "jasper_ridge/JasperRidge2_R198.mat")
    assert jr.data.shape == (100, 100, 198)
    jl = read_labels(shared_data / "jasper_ridge/_EndJasperRidge2_R198.mat")
    assert jl.shape == (100, 100) and sorted(np.unique(jl).tolist()) == [1, 2, 3, 4]
    sm = read_cube(shared_data / "samson/Samson.mat")
    assert sm.data.shape == (95, 95, 156)
    assert read_labels(shared_data / "samson/_EndSamson.mat").shape == (95, 95)


def test_enmap_tiles_georeferencing_and_labels(shared_data):
    root = shared_data / "enmap_potsdam"
    full = read_labels(root / "enmap_landcover_unstyled.tif")
    assert full.shape == (200, 330)
    totals = np.zeros(7, int)
    tiles = sorted((root / "images").glob("enmap_potsdam_tile_*.tif"))
    assert len(tiles) == 18
    for tile in tiles:
        col, row = map(int, tile.stem.split("_")[-2:])
        s = read_cube(tile)
        assert s.data.shape == (32, 32, 218)  # 224 bands less the 6 flagged bad (bbl = 0)
        assert s.dropped_bands == [130, 131, 132, 133, 134, 135]
        assert "32633" in s.grid.crs or "UTM zone 33N" in s.grid.crs
        assert s.grid.transform[0] == 30.0 and s.grid.transform[4] == -30.0
        assert s.grid.transform[2] == 362175 + 30 * col and s.grid.transform[5] == 5809965 - 30 * row
        assert s.wavelengths[0] == pytest.approx(418.24) and s.wavelengths[-1] == pytest.approx(2445.53, abs=0.01)
        lab = read_labels(root / "labels" / tile.name)
        assert np.array_equal(lab, full[row : row + 32, col : col + 32])
        totals += np.bincount(lab.ravel(), minlength=7)
    assert totals[1:].tolist() == [505, 953, 1694, 2070, 91, 359]


def test_enmap_vector_points_rasterised(shared_data):
    pytest.importorskip("fiona", reason="vector labels need the optional fiona")
    root = shared_data / "enmap_potsdam"
    with rasterio.open(root / "enmap_landcover_unstyled.tif") as ds:
        grid = GeoGrid.of(ds)
    labels, names = rasterize_vector_labels(root / "landcover_potsdam_point.gpkg", grid, "level_2")
    assert names == ["impervious", "low vegetation", "soil", "tree", "water"]
    assert int((labels > 0).sum()) == 120  # 120 reference points, each on its own pixel
    labels1, names1 = rasterize_vector_labels(root / "landcover_potsdam_point.gpkg", grid, "level_1")
    assert len(names1) == 4
