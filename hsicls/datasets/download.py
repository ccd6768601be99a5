"""Checksummed, resumable downloads with mirrors, retries and a progress bar.

Why not pooch: pooch (the scientific-Python standard) verifies hashes and caches, but it does
not resume an interrupted transfer with HTTP ``Range`` nor fall back to the next mirror on a
403/404, both needed for the 35-130 MB GIC cubes behind an endpoint known to refuse scripted
requests; the standard library does both in ~150 lines.

Each file streams to ``<name>.part`` next to its destination; an existing ``.part`` is resumed
with ``Range: bytes=N-`` when the server answers 206 (restarted when it answers 200). Transient
failures (timeouts, resets, 5xx, short reads) are retried with exponential backoff, resuming
each time; 403/404/410 and exhausted retries move on to the next mirror. The file is renamed to
its final name only when its sha256 matches the registry; a mismatch deletes it and names the
file with both hashes. A file whose checksum is unknown is never downloaded.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from hsicls import __version__, console
from hsicls.errors import DownloadError, HsiclsError, InputError
from hsicls.io.atomic import atomic_output
from hsicls.io.disk import DISK_ERRNOS, disk_error_cause

from .catalogue import DatasetInfo, RemoteFile

CHUNK = 1 << 16
NEXT_MIRROR = {401, 403, 404, 410}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def default_data_dir() -> Path:
    """``$HSICLS_DATA``, else ``$XDG_CACHE_HOME/hsicls`` (``~/.cache/hsicls``)."""
    if os.environ.get("HSICLS_DATA"):
        return Path(os.environ["HSICLS_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hsicls"


class _Transient(Exception):
    """A failure worth retrying on the same URL."""


def _fetch(url: str, part: Path, remote: RemoteFile, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its size when the server allows)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"hsicls/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part is complete (or wrong)
            return
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise
    except (TimeoutError, ConnectionError) as exc:
        raise _Transient(str(exc) or type(exc).__name__) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError, ConnectionError)):
            raise _Transient(str(exc.reason)) from None
        raise
    with resp:
        resumed = resp.status == 206
        if have and not resumed:
            have = 0  # the server ignored Range: start again
        length = resp.headers.get("Content-Length")
        expected = have + int(length) if length is not None else remote.size
        got = have
        with open(part, "ab" if resumed else "wb") as out, console.progress("bytes") as bar:
            task = bar.add_task(remote.name, total=expected, completed=have) if bar else None
            try:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    got += len(block)
                    if bar:
                        bar.update(task, advance=len(block))
            except (TimeoutError, ConnectionError, http.client.IncompleteRead) as exc:
                raise _Transient(f"transfer interrupted after {got} bytes ({type(exc).__name__})") from None
        if expected is not None and got < expected:
            raise _Transient(f"transfer interrupted after {got} of {expected} bytes")


def download_file(remote: RemoteFile, dest_dir: Path, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0) -> Path:
    """Download one registry file into ``dest_dir`` (skipped when already present and verified)."""
    dest = dest_dir / remote.name
    if remote.sha256 is None:
        raise DownloadError(
            f"{remote.name}: no verified sha256 is known for this file, so hsicls will not download it; "
            f"fetch it by hand and import it with --from"
        )
    if dest.exists():
        if sha256_file(dest) == remote.sha256:
            console.info(f"{dest}: present and verified")
            return dest
        console.warn(f"{dest}: exists but its sha256 does not match; downloading again")
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    mismatches: list[str] = []
    for url in remote.urls:
        for attempt in range(retries + 1):
            try:
                console.info(f"downloading {url}" + (f" (retry {attempt})" if attempt else ""))
                _fetch(url, part, remote, timeout)
            except _Transient as exc:
                failures.append(f"{url}: {exc}")
                if attempt < retries:
                    time.sleep(backoff * 2**attempt)
                    continue
                break
            except OSError as exc:
                if exc.errno in DISK_ERRNOS:  # no mirror helps a full disk
                    raise DownloadError(f"{part}: cannot write: {disk_error_cause(exc)}") from None
                if not isinstance(exc, urllib.error.HTTPError):
                    failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
                    break
                failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
                if exc.code not in NEXT_MIRROR:
                    console.debug(f"unexpected HTTP {exc.code}; trying the next source")
                break
            except (http.client.HTTPException, ValueError) as exc:
                failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
                break
            digest = sha256_file(part)
            if digest != remote.sha256:
                part.unlink(missing_ok=True)
                mismatches.append(f"{url} gave sha256 {digest}")
                console.warn(f"{remote.name}: checksum mismatch from {url}; file deleted, trying the next source")
                break
            os.replace(part, dest)
            return dest
    if mismatches:
        raise DownloadError(
            f"{remote.name}: checksum mismatch (expected sha256 {remote.sha256}; {'; '.join(mismatches)}); file deleted"
        )
    # keep a partial file for a later resume, but only if it can still be one
    msg = f"{remote.name}: download failed from every source ({'; '.join(failures)})"
    if remote.manual:
        msg += f". {remote.manual}"
    raise DownloadError(msg)


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Extract a zip into ``target``; refuse (extracting nothing) if any member would land
    outside it (absolute paths, ``..``, symlinks)."""
    target = target.resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{archive}: not a readable zip archive ({exc})") from None
    with zf:
        members = zf.infolist()
        for m in members:
            dest = (target / m.filename).resolve()
            is_link = (m.external_attr >> 16) & 0o170000 == 0o120000
            if is_link or os.path.isabs(m.filename) or not (dest == target or target in dest.parents):
                raise DownloadError(f"{archive}: member '{m.filename}' would be extracted outside {target}; archive refused")
        out = []
        for m in members:
            dest = target / m.filename
            if m.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(dest, overwrite=True) as tmp, zf.open(m) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            out.append(dest)
    return out


def import_file(info: DatasetInfo, src: Path, data_dir: Path) -> Path:
    """``hsicls download NAME --from PATH``: copy a file obtained by hand into the dataset
    folder after checking that its sha256 is the registry's for that file."""
    if src.is_dir():
        raise InputError(f"{src}: is a directory; give --from the downloaded file itself")
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    digest = sha256_file(src)
    by_hash = [f for f in info.files if f.sha256 == digest]
    by_name = [f for f in info.files if f.name == src.name]
    if by_hash:
        remote = by_hash[0]
    elif by_name and by_name[0].sha256:
        raise DownloadError(
            f"{src}: sha256 {digest} does not match the registry's {by_name[0].sha256} for {by_name[0].name}; not imported"
        )
    elif by_name:
        remote = by_name[0]
        console.warn(f"{src}: no verified checksum is known for {remote.name}; imported with sha256 {digest}")
    else:
        names = ", ".join(f.name for f in info.files)
        raise DownloadError(f"{src}: neither its name nor its sha256 matches a file of {info.name} ({names}); not imported")
    target = data_dir / info.name
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HsiclsError(f"{target}: cannot create the folder ({exc.strerror or exc})") from None
    dest = target / remote.name
    if dest.exists() and os.path.samefile(dest, src):
        console.info(f"{src} is already in place")
    else:
        with atomic_output(dest, overwrite=True) as tmp:
            shutil.copyfile(src, tmp)
        console.info(f"imported {src} as {dest}")
    if remote.extract:
        safe_extract(dest, target)
    return dest


def import_folder(info: DatasetInfo, folder: Path, data_dir: Path) -> list[Path]:
    """``--from FOLDER``: every file of the scene found in ``folder`` by name, verified and imported; no network."""
    found = [folder / f.name for f in info.files if (folder / f.name).is_file()]
    if not found:
        names = ", ".join(f.name for f in info.files)
        raise InputError(f"{folder}: holds none of the files of {info.name} ({names})")
    return [import_file(info, p, data_dir) for p in found]


def _already_here(remote: RemoteFile, data_dir: Path, target: Path) -> Path | None:
    """A verified copy of ``remote`` already in ``data_dir`` itself (a flat folder): imported without the network."""
    flat = data_dir / remote.name
    if target.joinpath(remote.name).exists() or not flat.is_file() or remote.sha256 is None:
        return None
    if sha256_file(flat) != remote.sha256:
        return None
    target.mkdir(parents=True, exist_ok=True)
    dest = target / remote.name
    try:
        os.link(flat, dest)
    except OSError:
        with atomic_output(dest, overwrite=True) as tmp:
            shutil.copyfile(flat, tmp)
    console.info(f"{flat}: present and verified; used without downloading")
    return dest


def download_dataset(info: DatasetInfo, data_dir: Path, timeout: float = 60.0, retries: int = 3) -> list[Path]:
    """Download (or verify) every file of a scene; extract archives; returns the files. Files already in the
    scene's folder or in ``data_dir`` itself are verified and used without the network; a failure leaves no
    folder it created empty behind."""
    target = data_dir / info.name
    made = [p for p in (data_dir, target) if not p.exists()]
    paths = []
    try:
        for f in info.files:
            p = _already_here(f, data_dir, target) or download_file(f, target, timeout, retries)
            if f.extract:
                safe_extract(p, target)
            paths.append(p)
    except BaseException:
        for d in reversed(made):  # the scene's folder, then the data folder, if this run made them and left them empty
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    return paths
