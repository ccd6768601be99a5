"""Readers for ENVI (any interleave), vector labels, and scene names in place of files."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading

import h5py
import numpy as np
import pytest
import rasterio

from hsicls.datasets import catalogue
from hsicls.datasets.catalogue import DatasetInfo, RemoteFile
from hsicls.io.readers import read_cube
from tests.conftest import run_cli


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
def test_envi_any_interleave(tmp_path, interleave):
    rows, cols, bands = 5, 7, 4
    cube = np.arange(rows * cols * bands, dtype=np.int16).reshape(rows, cols, bands)
    order = {"bsq": (2, 0, 1), "bil": (0, 2, 1), "bip": (0, 1, 2)}[interleave]
    (tmp_path / "scene.img").write_bytes(cube.transpose(order).astype("<i2").tobytes())
    (tmp_path / "scene.hdr").write_text(
        "ENVI\n"
        f"samples = {cols}\nlines = {rows}\nbands = {bands}\nheader offset = 0\nfile type = ENVI Standard\n"
        f"data type = 2\ninterleave = {interleave}\nbyte order = 0\n"
        "map info = {UTM, 1.000, 1.000, 500000.000, 4100000.000, 2.0, 2.0, 33, North, WGS-84, units=Meters}\n"
        "wavelength units = Micrometers\nwavelength = {0.45, 0.55, 0.65, 0.85}\n"
    )
    for path in (tmp_path / "scene.img", tmp_path / "scene.hdr"):
        s = read_cube(path)
        assert np.array_equal(s.data, cube.astype(np.float32))
        assert s.grid.transform[0] == 2.0 and s.grid.transform[2] == 500000.0
        assert s.grid.crs is not None
        assert s.wavelengths == pytest.approx([450.0, 550.0, 650.0, 850.0])


def test_vector_labels_through_preprocess(tiny_scene, tmp_path):
    fiona = pytest.importorskip("fiona", reason="vector labels need the optional fiona")
    with rasterio.open(tiny_scene[0]) as ds:
        t, crs = ds.transform, ds.crs
    x0, y0 = t.c, t.f

    def box(c0, r0, c1, r1):
        xs, ys = [x0 + c * t.a for c in (c0, c1)], [y0 + r * t.e for r in (r0, r1)]
        return {
            "type": "Polygon",
            "coordinates": [[(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1]), (xs[0], ys[0])]],
        }

    schema = {"geometry": "Polygon", "properties": {"cover": "str"}}
    gpkg = tmp_path / "labels.gpkg"
    with fiona.open(gpkg, "w", driver="GPKG", crs=crs.to_wkt(), schema=schema) as dst:
        dst.write({"geometry": box(0, 0, 10, 10), "properties": {"cover": "water"}})
        dst.write({"geometry": box(20, 20, 30, 30), "properties": {"cover": "forest"}})
        dst.write({"geometry": box(0, 30, 8, 38), "properties": {"cover": "forest"}})
    out = tmp_path / "p.h5"
    r = run_cli(
        "preprocess",
        tiny_scene[0],
        "--labels",
        gpkg,
        "--label-field",
        "cover",
        "-o",
        out,
        "--components",
        "4",
        "--train-ratio",
        "0.2",
    )
    assert r.exit_code == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["class_names"]) == ["forest", "water"]
        counts = np.bincount(f["scenes/0/labels"][...].ravel())
    assert counts[1:].tolist() == [164, 100]


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def log_message(self, *a):
        pass

    def do_GET(self):
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_dataset_name_instead_of_files(tiny_scene, tmp_path, monkeypatch):
    """--dataset downloads (verified) into --data-dir, then preprocess/train use the files."""
    cube_b, gt_b = tiny_scene[0].read_bytes(), tiny_scene[1].read_bytes()
    _Files.files = {"/cube.tif": cube_b, "/gt.tif": gt_b}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    names = tuple(f"cover {i}" for i in range(1, 11))
    info = DatasetInfo(
        "tiny",
        "Tiny",
        "synthetic",
        (40, 40, 24),
        names,
        (RemoteFile("cube.tif", (f"{url}/cube.tif",), sha(cube_b)), RemoteFile("gt.tif", (f"{url}/gt.tif",), sha(gt_b))),
        "cube.tif",
        "gt.tif",
        patch_size=5,
    )
    monkeypatch.setitem(catalogue.DATASETS, "tiny", info)
    try:
        data = tmp_path / "data"
        r = run_cli("preprocess", "--dataset", "tiny", "--data-dir", data, "-o", tmp_path / "p.h5", "--components", "5")
        assert r.exit_code == 0, r.stderr
        with h5py.File(tmp_path / "p.h5", "r") as f:
            got = json.loads(f.attrs["class_names"])
            values = json.loads(f.attrs["class_values"])
        assert got == [names[v - 1] for v in values]  # registry names, by label code
        monkeypatch.setenv("HSICLS_DATA", str(data))
        r = run_cli("train", "--dataset", "tiny", "-o", tmp_path / "m.pt", "--epochs", "1", "--patch-size", "3")
        assert r.exit_code == 0, r.stderr
        assert (data / "tiny" / "prepared_seed0.h5").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
    r = run_cli("preprocess", "-o", tmp_path / "x.h5")
    assert r.exit_code != 0 and "--dataset" in r.stderr
