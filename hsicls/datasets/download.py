"""Checksummed downloads with a progress bar.

Each file is fetched to a temporary name next to its destination, hashed while it streams,
and renamed only when its sha256 matches the registry; mirrors are tried in order. A file whose
checksum is unknown is not downloaded: hsicls only keeps verified data.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from .. import __version__, console
from ..errors import DownloadError
from .registry import DatasetInfo, RemoteFile

CHUNK = 1 << 16


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


def _fetch(url: str, tmp: Path, remote: RemoteFile, timeout: float) -> str:
    """Stream ``url`` into ``tmp``; returns the sha256 of what was written."""
    req = urllib.request.Request(url, headers={"User-Agent": f"hsicls/{__version__}"})
    h = hashlib.sha256()
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
        total = remote.size or int(resp.headers.get("Content-Length") or 0) or None
        with console.progress("bytes") as bar:
            task = bar.add_task(remote.name, total=total) if bar else None
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                h.update(block)
                if bar:
                    bar.update(task, advance=len(block))
    return h.hexdigest()


def download_file(remote: RemoteFile, dest_dir: Path, timeout: float = 60.0) -> Path:
    """Download one registry file into ``dest_dir`` (skipped when already present and verified)."""
    dest = dest_dir / remote.name
    if remote.sha256 is None:
        raise DownloadError(f"{remote.name}: no verified sha256 is known for this file, so hsicls will not download it")
    if dest.exists():
        if sha256_file(dest) == remote.sha256:
            console.info(f"{dest}: present and verified")
            return dest
        console.warn(f"{dest}: exists but its sha256 does not match; downloading again")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    errors = []
    for url in remote.urls:
        try:
            console.info(f"downloading {url}")
            digest = _fetch(url, tmp, remote, timeout)
        except urllib.error.HTTPError as exc:
            errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
            tmp.unlink(missing_ok=True)
            continue
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            errors.append(f"{url}: {reason}")
            tmp.unlink(missing_ok=True)
            continue
        if digest != remote.sha256:
            tmp.unlink(missing_ok=True)
            raise DownloadError(f"{remote.name}: checksum mismatch from {url} (expected sha256 {remote.sha256}, got {digest}); file deleted")
        os.replace(tmp, dest)
        return dest
    raise DownloadError(f"{remote.name}: download failed from every source ({'; '.join(errors)})")


def download_dataset(info: DatasetInfo, data_dir: Path, timeout: float = 60.0) -> list[Path]:
    target = data_dir / info.name
    return [download_file(f, target, timeout) for f in info.files]
