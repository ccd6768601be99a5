"""Downloads against a local threaded HTTP server on 127.0.0.1 with Range support (no network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from hsicls.datasets import catalogue
from hsicls.datasets.catalogue import DatasetInfo, RemoteFile
from tests.conftest import no_temp_files, run_cli


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_once: set[str] = set()  # paths whose first transfer is cut in the middle
    log: list[tuple[str, str | None]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        self.log.append((path, self.headers.get("Range")))
        data = self.files.get(path)
        if data is None:
            self.send_error(404, "File not found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if path in self.cut_once:
            self.cut_once.discard(path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    _Handler.files, _Handler.cut_once, _Handler.log = {}, set(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield _Handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _register(monkeypatch, *files: RemoteFile, cube=None, labels=None):
    info = DatasetInfo(
        "fake-scene", "Fake", "none", (2, 2, 2), ("a",), tuple(files), cube or files[0].name, labels or files[-1].name
    )
    monkeypatch.setitem(catalogue.DATASETS, "fake-scene", info)
    return info


def test_good_download_and_mirror_fallback(server, tmp_path, monkeypatch):
    h, url = server
    h.files = {"/cube.mat": b"cube-bytes" * 1000, "/gt.mat": b"labels"}
    _register(
        monkeypatch,
        RemoteFile("cube.mat", (f"{url}/missing/cube.mat", f"{url}/cube.mat"), _sha(b"cube-bytes" * 1000)),
        RemoteFile("gt.mat", (f"{url}/gt.mat",), _sha(b"labels")),
    )
    data = tmp_path / "data"
    r = run_cli("download", "fake-scene", "--data-dir", data)
    assert r.exit_code == 0, r.stderr
    assert (data / "fake-scene" / "cube.mat").read_bytes() == b"cube-bytes" * 1000
    assert (data / "fake-scene" / "gt.mat").read_bytes() == b"labels"
    assert ("/missing/cube.mat", None) in h.log  # the first mirror was tried (404), then the second
    assert no_temp_files(data / "fake-scene")
    h.files = {}  # second run: verified in place, nothing fetched
    assert run_cli("download", "fake-scene", "--data-dir", data).exit_code == 0


def test_interrupted_transfer_is_resumed(server, tmp_path, monkeypatch):
    h, url = server
    payload = bytes(range(256)) * 4000
    h.files = {"/big.mat": payload}
    h.cut_once = {"/big.mat"}
    f = RemoteFile("big.mat", (f"{url}/big.mat",), _sha(payload))
    _register(monkeypatch, f)
    monkeypatch.setattr("hsicls.datasets.download.time.sleep", lambda s: None)
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "fake-scene" / "big.mat").read_bytes() == payload
    ranges = [rg for p, rg in h.log if p == "/big.mat"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(payload) // 2}-"  # resumed, not restarted


def test_resume_of_partial_file_left_by_earlier_run(server, tmp_path, monkeypatch):
    h, url = server
    payload = b"x" * 5000 + b"y" * 5000
    h.files = {"/c.mat": payload}
    _register(monkeypatch, RemoteFile("c.mat", (f"{url}/c.mat",), _sha(payload)))
    (tmp_path / "fake-scene").mkdir()
    (tmp_path / "fake-scene" / "c.mat.part").write_bytes(payload[:3000])
    assert run_cli("download", "fake-scene", "--data-dir", tmp_path).exit_code == 0
    assert (tmp_path / "fake-scene" / "c.mat").read_bytes() == payload
    assert h.log == [("/c.mat", "bytes=3000-")]


def test_checksum_mismatch_deletes_file(server, tmp_path, monkeypatch):
    h, url = server
    h.files = {"/cube.mat": b"tampered"}
    expected = _sha(b"original")
    _register(monkeypatch, RemoteFile("cube.mat", (f"{url}/cube.mat",), expected))
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path)
    assert r.exit_code != 0
    assert "cube.mat" in r.stderr and expected in r.stderr and _sha(b"tampered") in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "fake-scene" / "cube.mat").exists()
    assert not (tmp_path / "fake-scene").exists() or no_temp_files(tmp_path / "fake-scene")  # the empty folder goes too


def test_all_sources_fail_one_line(server, tmp_path, monkeypatch):
    _, url = server
    _register(monkeypatch, RemoteFile("cube.mat", (f"{url}/a.mat", f"{url}/b.mat"), _sha(b"x"), manual="Ask the authors."))
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path)
    assert r.exit_code != 0
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "cube.mat" in err[0] and "404" in err[0] and "Ask the authors." in err[0]


def test_unreachable_server(tmp_path, monkeypatch):
    _register(monkeypatch, RemoteFile("c.mat", ("http://127.0.0.1:9/c.mat",), _sha(b"x")))
    monkeypatch.setattr("hsicls.datasets.download.time.sleep", lambda s: None)
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path, "--timeout", "2", "--retries", "1")
    assert r.exit_code != 0 and "c.mat" in r.stderr and "Traceback" not in r.stderr


def test_unknown_checksum_is_refused(tmp_path, monkeypatch):
    _register(monkeypatch, RemoteFile("cube.mat", ("http://127.0.0.1:9/cube.mat",), None))
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path)
    assert r.exit_code != 0 and "sha256" in r.stderr and "--from" in r.stderr


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_is_extracted_and_zip_slip_refused(server, tmp_path, monkeypatch):
    h, url = server
    good = _zip({"scene/cube.tif": b"c", "scene/gt.txt": b"g"})
    h.files = {"/good.zip": good}
    _register(monkeypatch, RemoteFile("good.zip", (f"{url}/good.zip",), _sha(good), extract=True))
    data = tmp_path / "data"
    assert run_cli("download", "fake-scene", "--data-dir", data).exit_code == 0
    assert (data / "fake-scene" / "scene" / "cube.tif").read_bytes() == b"c"

    evil = _zip({"ok.txt": b"fine", "../../escaped.txt": b"owned"})
    h.files = {"/evil.zip": evil}
    _register(monkeypatch, RemoteFile("evil.zip", (f"{url}/evil.zip",), _sha(evil), extract=True))
    data2 = tmp_path / "data2"
    r = run_cli("download", "fake-scene", "--data-dir", data2)
    assert r.exit_code != 0 and "escaped.txt" in r.stderr and "outside" in r.stderr
    assert not (tmp_path / "escaped.txt").exists() and not (data2.parent / "escaped.txt").exists()
    assert not (data2 / "fake-scene" / "ok.txt").exists()  # nothing extracted at all


def test_import_from_file(tmp_path, monkeypatch):
    _register(monkeypatch, RemoteFile("cube.mat", ("http://127.0.0.1:9/cube.mat",), _sha(b"real cube")))
    wrong = tmp_path / "cube.mat"
    wrong.write_bytes(b"something else")
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path / "d", "--from", wrong)
    assert r.exit_code != 0 and "does not match" in r.stderr
    assert not (tmp_path / "d" / "fake-scene" / "cube.mat").exists()
    right = tmp_path / "renamed_by_browser.mat"
    right.write_bytes(b"real cube")
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path / "d", "--from", right)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "d" / "fake-scene" / "cube.mat").read_bytes() == b"real cube"


def test_files_already_in_the_data_dir_are_used_without_the_network(tmp_path, monkeypatch):
    """[practitioner] 10: a verified file in --data-dir (flat, as a user copies it there) or in a --from folder is
    used without touching the network (its only URL is unreachable), and a failure leaves no empty folder."""
    _register(monkeypatch, RemoteFile("cube.mat", ("http://127.0.0.1:9/cube.mat",), _sha(b"real cube")))
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "cube.mat").write_bytes(b"real cube")
    r = run_cli("download", "fake-scene", "--data-dir", flat, "--timeout", "1", "--retries", "0")
    assert r.exit_code == 0, r.stderr
    assert (flat / "fake-scene" / "cube.mat").read_bytes() == b"real cube" and "without downloading" in r.stderr
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path / "d", "--from", flat)  # a folder
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "d" / "fake-scene" / "cube.mat").read_bytes() == b"real cube"
    monkeypatch.setattr("hsicls.datasets.download.time.sleep", lambda s: None)
    r = run_cli("download", "fake-scene", "--data-dir", tmp_path / "new", "--timeout", "1", "--retries", "0")
    assert r.exit_code != 0 and not (tmp_path / "new").exists()
