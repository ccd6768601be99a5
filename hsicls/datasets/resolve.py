"""Scene names wherever a file is expected: ``--dataset indian-pines`` -> files under ``--data-dir``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hsicls import console
from hsicls.errors import InputError

from .catalogue import DatasetInfo, get_dataset
from .download import default_data_dir, download_dataset


@dataclass
class ResolvedScene:
    info: DatasetInfo
    cube: Path
    labels: list[Path]  # merged in order (Houston 2013: training ROIs, then test ROIs)
    cube_key: str | None
    labels_key: str | None
    root: Path  # <data-dir>/<name>


def resolve_dataset(name: str, data_dir: Path | None = None, download: bool = True) -> ResolvedScene:
    """Paths of a registered scene's cube and labels, downloading (verified) what is missing."""
    info = get_dataset(name)
    root = (data_dir or default_data_dir()) / info.name
    label_files = [info.train_mask, info.test_mask] if info.train_mask and info.test_mask else [info.labels]
    wanted = [root / info.cube, *(root / p for p in label_files)]
    if not all(p.exists() for p in wanted):
        if not download:
            missing = ", ".join(str(p) for p in wanted if not p.exists())
            raise InputError(f"{missing}: not found (run 'hsicls download {info.name}')")
        console.info(f"{info.name}: fetching into {root}")
        download_dataset(info, root.parent)
    return ResolvedScene(info, root / info.cube, [root / p for p in label_files], info.cube_key, info.labels_key, root)
