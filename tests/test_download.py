"""Downloads against a local HTTP server on 127.0.0.1 (no network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest

from hsicls.datasets import registry
from hsicls.datasets.registry import DatasetInfo, RemoteFile

from .conftest import no_temp_files, run_cli


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _register(monkeypatch, cube: RemoteFile, labels: RemoteFile):
    info = DatasetInfo("fake-scene", "Fake", "none", (2, 2, 2), ("a",), cube, labels)
    monkeypatch.setitem(registry.DATASETS, "fake-scene", info)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_good_download_and_mirror_fallback(server, tmp_path, monkeypatch):
    root, url = server
    (root / "cube.mat").write_bytes(b"cube-bytes" * 1000)
    (root / "gt.mat").write_bytes(b"labels")
    cube = RemoteFile("cube.mat", (f"{url}/missing/cube.mat", f"{url}/cube.mat"), _sha(b"cube-bytes" * 1000))
    labels = RemoteFile("gt.mat", (f"{url}/gt.mat",), _sha(b"labels"))
    _register(monkeypatch, cube, labels)
    data = tmp_path / "data"
    r = run_cli("download", "fake-scene", "--data-dir", data)
    assert r.exit_code == 0, r.stderr
    assert (data / "fake-scene" / "cube.mat").read_bytes() == b"cube-bytes" * 1000
    assert (data / "fake-scene" / "gt.mat").read_bytes() == b"labels"
    assert no_temp_files(data / "fake-scene")
    # second run: files are verified in place, not fetched again
    (root / "cube.mat").unlink()
    assert run_cli("download", "fake-scene", "--data-dir", data).exit_code == 0


def test_checksum_mismatch_deletes_file(server, tmp_path, monkeypatch):
    root, url = server
    (root / "cube.mat").write_bytes(b"tampered")
    expected = _sha(b"original")
    _register(monkeypatch, RemoteFile("cube.mat", (f"{url}/cube.mat",), expected), RemoteFile("gt.mat", (f"{url}/gt.mat",), expected))
    data = tmp_path / "data"
    r = run_cli("download", "fake-scene", "--data-dir", data)
    assert r.exit_code != 0
    assert "cube.mat" in r.stderr and expected in r.stderr and _sha(b"tampered") in r.stderr
    assert "Traceback" not in r.stderr
    assert not (data / "fake-scene" / "cube.mat").exists()
    assert no_temp_files(data / "fake-scene")


def test_all_mirrors_fail(server, tmp_path, monkeypatch):
    _, url = server
    f = RemoteFile("cube.mat", (f"{url}/a.mat", f"{url}/b.mat"), _sha(b"x"))
    _register(monkeypatch, f, f)
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path)
    assert r.exit_code != 0 and "cube.mat" in r.stderr and "404" in r.stderr


def test_unknown_checksum_is_refused(tmp_path, monkeypatch):
    f = RemoteFile("cube.mat", ("http://127.0.0.1:9/cube.mat",), None)
    _register(monkeypatch, f, f)
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path)
    assert r.exit_code != 0 and "sha256" in r.stderr
