"""The registry of public hyperspectral benchmark scenes, read from the catalogue ``catalogue.toml`` beside this
module (one table per scene, with its files; the facts and their origin are described there).

Registering a scene is adding its table to the catalogue. A file without ``sha256`` has no trustworthy
checksum yet and is not downloaded (hsicls verifies every download).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import resources

from hsicls.errors import OptionError


@dataclass(frozen=True)
class RemoteFile:
    name: str
    urls: tuple[str, ...]  # primary first, then mirrors, tried in order
    sha256: str | None = None  # None: no trustworthy checksum known yet (not downloaded)
    size: int | None = None
    key: str | None = None  # variable name inside a .mat file
    extract: bool = False  # a zip archive to unpack into the dataset folder
    manual: str | None = None  # how to obtain it by hand when it cannot be downloaded


@dataclass(frozen=True)
class DatasetInfo:
    """One public scene. ``cube``/``labels`` are paths inside ``<data-dir>/<name>/`` after
    download (and extraction); ``train_mask``/``test_mask`` name an official fixed split."""

    name: str
    title: str
    sensor: str
    shape: tuple[int, int, int]  # rows, cols, bands
    class_names: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    cube: str
    labels: str
    cube_key: str | None = None
    labels_key: str | None = None
    wavelengths_nm: tuple[float, float] | None = None
    patch_size: int = 13
    notes: str = ""
    train_mask: str | None = None
    test_mask: str | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    lr: float = 0.002  # the paper's Adam learning rate for this scene

    @property
    def colours(self) -> list[tuple[int, int, int]]:
        from hsicls.io.palette import default_palette

        return list(self.palette) if self.palette else default_palette(len(self.class_names))

    @property
    def verified(self) -> bool:
        return all(f.sha256 for f in self.files)

    def record(self) -> dict:
        """What ``hsicls datasets --json`` prints for this scene."""
        d = self
        return {
            "name": d.name,
            "aliases": aliases_of(d.name),
            "title": d.title,
            "sensor": d.sensor,
            "shape": list(d.shape),
            "bands": d.shape[2],
            "classes": len(d.class_names),
            "class_names": list(d.class_names),
            "palette": [list(c) for c in d.colours],
            "wavelengths_nm": list(d.wavelengths_nm) if d.wavelengths_nm else None,
            "patch_size": d.patch_size,
            "cube": d.cube,
            "labels": d.labels,
            "cube_key": d.cube_key,
            "labels_key": d.labels_key,
            "train_mask": d.train_mask,
            "test_mask": d.test_mask,
            "verified": d.verified,
            "notes": d.notes,
            "files": [{"name": f.name, "urls": list(f.urls), "sha256": f.sha256, "size": f.size} for f in d.files],
        }


def _load_catalogue() -> tuple[dict[str, DatasetInfo], dict[str, str]]:
    """``(scenes by name, alias -> name)`` from ``catalogue.toml``; a malformed entry is a ValueError naming it."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    table = tomllib.loads(resources.files(__package__).joinpath("catalogue.toml").read_text(encoding="utf-8"))
    info_keys = {f.name for f in fields(DatasetInfo)} - {"name", "files"}
    scenes, aliases = {}, {}
    for name, entry in table.items():
        entry = dict(entry)
        for alias in entry.pop("aliases", []):
            aliases[alias] = name
        files = tuple(_remote_file(name, f) for f in entry.pop("files", []))
        unknown = set(entry) - info_keys
        if unknown:
            raise ValueError(f"catalogue.toml [{name}]: unknown keys {sorted(unknown)}")
        tuples = {k: tuple(entry[k]) for k in ("shape", "class_names", "wavelengths_nm") if k in entry}
        if "palette" in entry:
            tuples["palette"] = tuple(tuple(c) for c in entry["palette"])
        scenes[name] = DatasetInfo(name=name, files=files, **{**entry, **tuples})
    return scenes, aliases


def _remote_file(scene: str, f: dict) -> RemoteFile:
    unknown = set(f) - {x.name for x in fields(RemoteFile)}
    if unknown:
        raise ValueError(f"catalogue.toml [{scene}] file {f.get('name')}: unknown keys {sorted(unknown)}")
    return RemoteFile(**{**f, "urls": tuple(f.get("urls", ()))})


DATASETS, ALIASES = _load_catalogue()
# The short names users type (the design card's "--dataset houston") are each scene's ``aliases``; registered
# names match without their punctuation too (salinas, salinasa, ksc, indianpines).


def _compact(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def get_dataset(name: str) -> DatasetInfo:
    """A registered scene by its name or a short alias; case, ``-``, ``_`` and spaces do not
    matter (``Indian_Pines``, ``indianpines``, ``indian``, ``PaviaU``)."""
    key = _compact(name)
    by_compact = {_compact(k): k for k in DATASETS}
    found = by_compact.get(key) or ALIASES.get(key)
    if found is None:
        short = ", ".join(ALIASES)
        raise OptionError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)}; short names: {short})")
    return DATASETS[found]


def aliases_of(name: str) -> list[str]:
    """The short names accepted for registered scene ``name``."""
    return [a for a, n in ALIASES.items() if n == name]


def list_datasets() -> list[DatasetInfo]:
    return list(DATASETS.values())
