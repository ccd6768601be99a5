"""The prepared-scene HDF5 file: the hand-off from ``preprocess`` to ``train``/``evaluate``.

One file holds one or several scenes, each on its own grid, sharing one preprocessing and one
class list. In memory (:class:`Prepared`) the scenes are stacked top to bottom into one *canvas*
(widths padded with unlabelled, invalid columns): ``cube``, ``labels``, ``valid`` and the split
masks are canvas arrays, and ``scenes`` gives each scene's rows. Patches never cross scenes:
:meth:`Prepared.padded` pads every scene on its own and :meth:`Prepared.padded_rows` maps canvas
rows into it (with one scene, the canvas is the scene and both are the identity).

Layout (h5py), format version 2::

    /scenes/<i>/{cube, labels, valid, split/train, split/val, split/test, groups}  per scene, as below
    /scenes/<i>/spectra  (H, W, B) float32  standardised full spectra (no PCA); absent with --spectra drop
    /preprocess/...                                                                shared, as below
    attributes of /scenes/<i>: name, source, labels_source, crs, transform
    attributes of /: format, format_version=2, class_names, class_values, palette, bands (JSON:
    wavelengths, fwhm, bad bands), split, fit_on, whiten, standardize, options, sources

Version 1 (one scene, still read)::

    /cube               (H, W, C) float32   standardised + PCA-reduced cube (0 at invalid pixels)
    /labels             (H, W)    int32     0 = unlabelled, 1..K = classes (contiguous)
    /valid              (H, W)    bool      False where the input pixel was nodata/NaN
    /split/train        (H, W)    bool      training pixels
    /split/val          (H, W)    bool      validation pixels (carved from training pixels)
    /split/test         (H, W)    bool      test pixels
    /preprocess/mean    (B,)      float64   per-band mean of the input bands
    /preprocess/std     (B,)      float64   per-band standard deviation
    /preprocess/pca_components (C, B) float64  PCA axes (rows); empty (0, B) without PCA
    /preprocess/pca_mean       (B,)   float64  mean subtracted before projecting

Attributes on ``/``: ``format="hsicls-prepared"``, ``format_version``, ``class_names`` and
``class_values`` (JSON: names and the original label codes of classes 1..K), ``palette`` (JSON
list of RGB), ``crs`` (WKT or ""), ``transform`` (6 floats or empty), ``source``,
``labels_source``, ``split`` (JSON: protocol, ratios, seed), ``fit_on``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsicls.errors import InputError
from hsicls.io.grid import GeoGrid, OnGrid

FORMAT = "hsicls-prepared"
FORMAT_VERSION = 2


@dataclass
class Preprocessing:
    """Per-band standardisation followed by PCA: ``z = ((x - mean) / std - pca_mean) @ components.T``.

    ``x`` is ``(..., B)``; ``z`` is ``(..., C)`` (``C = B`` and no projection without PCA).
    """

    mean: np.ndarray  # (B,)
    std: np.ndarray  # (B,)
    components: np.ndarray  # (C, B) or (0, B)
    pca_mean: np.ndarray  # (B,)

    @property
    def n_bands(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0]) or self.n_bands

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``(..., B)`` raw spectra -> ``(..., C)`` float32 features."""
        z = (x.astype(np.float64, copy=False) - self.mean) / self.std
        if self.components.shape[0]:
            z = (z - self.pca_mean) @ self.components.T
        return z.astype(np.float32)

    def standardisation(self) -> Preprocessing:
        """The per-band standardisation alone (no PCA): ``(..., B)`` -> ``(..., B)``."""
        b = self.n_bands
        return Preprocessing(mean=self.mean, std=self.std, components=np.zeros((0, b)), pca_mean=np.zeros(b))

    @property
    def projects(self) -> bool:
        """True when a PCA projection follows the standardisation."""
        return bool(self.components.shape[0])

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W (B, C), b (C,))`` with ``apply(x) = x @ W + b``: standardisation folded into the PCA (float64)."""
        comps = self.components if self.components.shape[0] else np.eye(self.n_bands)
        center = self.pca_mean if self.components.shape[0] else np.zeros(self.n_bands)
        w = (comps / self.std).T
        return w, -(self.mean / self.std + center) @ comps.T

    def apply_torch(self, x):
        """:meth:`apply` as one matrix product on ``x``'s device (a GPU: no host round trip), float32:
        ``(N, B)`` tensor -> ``(N, C)``. Equal to the float64 host path to float32 rounding."""
        import torch

        cache = self.__dict__.setdefault("_affine_t", {})
        key = (x.device.type, x.device.index)
        if key not in cache:
            w, b = self.affine()
            cache[key] = (
                torch.as_tensor(w, dtype=torch.float32, device=x.device),
                torch.as_tensor(b, dtype=torch.float32, device=x.device),
            )
        w, b = cache[key]
        return torch.addmm(b, x.to(torch.float32), w)

    def to_dict(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "std": self.std, "pca_components": self.components, "pca_mean": self.pca_mean}

    @classmethod
    def from_dict(cls, d) -> Preprocessing:
        return cls(
            mean=np.asarray(d["mean"], dtype=np.float64),
            std=np.asarray(d["std"], dtype=np.float64),
            components=np.asarray(d["pca_components"], dtype=np.float64),
            pca_mean=np.asarray(d["pca_mean"], dtype=np.float64),
        )


def fit_on_words(fit_on: str | None) -> str:
    """How a record's ``fit_on`` reads in reports."""
    return {
        "all": "all valid pixels (transductive: the test pixels included)",
        "train": "the training and validation pixels only",
    }.get(str(fit_on), f"{fit_on} pixels")


@dataclass
class SceneInfo(OnGrid):
    """One scene of a prepared file: its own grid and its place on the canvas (rows ``row0 : row0 + height``,
    columns ``0 : width``)."""

    name: str  # file stem (the group name for --group-by scene)
    grid: GeoGrid
    row0: int = 0  # first canvas row
    source: str = ""
    labels_source: str = ""

    @property
    def rows(self) -> slice:
        return slice(self.row0, self.row0 + self.height)

    @classmethod
    def from_attrs(cls, attrs, name: str, shape: tuple[int, int], row0: int) -> SceneInfo:
        """A scene record from the HDF5 attributes of a scene group (or of a format-1 file)."""
        transform = tuple(float(v) for v in attrs["transform"]) or None
        grid = GeoGrid(shape[0], shape[1], str(attrs["crs"]) or None, transform)
        return cls(name, grid, row0, str(attrs.get("source", "")), str(attrs.get("labels_source", "")))

    def attrs(self) -> dict:
        g = self.grid
        transform = np.asarray(g.transform if g.transform else [], dtype=np.float64)
        return dict(name=self.name, source=self.source, labels_source=self.labels_source, crs=g.crs or "", transform=transform)


@dataclass
class Prepared:
    cube: np.ndarray  # (H, W, C) float32 canvas
    labels: np.ndarray  # (H, W) int32
    valid: np.ndarray  # (H, W) bool
    train: np.ndarray  # (H, W) bool
    val: np.ndarray  # (H, W) bool
    test: np.ndarray  # (H, W) bool
    preprocessing: Preprocessing
    class_names: list[str]
    class_values: list[int]
    palette: list[tuple[int, int, int]]
    meta: dict = field(default_factory=dict)  # source(s), labels_source, split, fit_on, whiten, standardize, options, bands
    scenes: list[SceneInfo] = field(default_factory=list)  # empty: one scene covering the canvas, on a pixel grid
    groups: np.ndarray | None = None  # (H, W) int32 group id of every pixel (group splits), 0 = none
    spectra: np.ndarray | None = None  # (H, W, B) float32 standardised full spectra (preprocess --spectra), or None

    def __post_init__(self) -> None:
        if not self.scenes:
            name = Path(str(self.meta.get("source", "scene"))).stem or "scene"
            source, labels = str(self.meta.get("source", "")), str(self.meta.get("labels_source", ""))
            self.scenes = [SceneInfo(name, GeoGrid(*self.labels.shape), 0, source, labels)]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def preprocessing_record(self) -> dict:
        """How the features were made, for reports, bundles and run summaries (defaults for files
        written before an option existed)."""
        return {
            "fit_on": self.meta.get("fit_on", "all"),
            "fit_on_rule": self.meta.get("fit_on_rule", self.meta.get("fit_on", "all")),
            "whiten": bool(self.meta.get("whiten", False)),
            "standardize": bool(self.meta.get("standardize", True)),
        }

    def spectral_view(self) -> Prepared:
        """The same scenes and split with the standardised full spectra as features (preprocessing: the
        standardisation alone), for spectral models; ``self`` when no PCA was applied. Needs :attr:`spectra`."""
        import dataclasses

        if not self.preprocessing.projects:
            return self
        if self.spectra is None:
            raise InputError("the prepared file keeps no full spectra (preprocess with --spectra keep)")
        return dataclasses.replace(self, cube=self.spectra, preprocessing=self.preprocessing.standardisation(), spectra=None)

    def features_for(self, preprocessing: Preprocessing) -> Prepared:
        """The features a model trained with ``preprocessing`` expects: the cube, or the full spectra when the model
        takes standardised bands without PCA and this file reduced them (an ensemble of ``--model auto``)."""
        if preprocessing.projects or not self.preprocessing.projects or self.spectra is None:
            return self
        return self.spectral_view()

    def scene_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scene index of canvas rows ``(N,)``."""
        starts = np.array([s.row0 for s in self.scenes])
        return np.searchsorted(starts, rows, side="right") - 1

    def padded_rows(self, rows: np.ndarray, patch_size: int) -> np.ndarray:
        """Canvas rows -> rows of :meth:`padded` (each earlier scene adds ``2 * (P // 2)`` pad rows)."""
        if len(self.scenes) == 1:
            return rows
        return rows + 2 * (patch_size // 2) * self.scene_of_rows(rows)

    def padded(self, patch_size: int, mode: str = "reflect"):
        """``(C, H', W + P - 1)`` torch tensor: every scene padded by ``P // 2`` on its own
        (:func:`hsicls.engine.patches.pad_cube`), stacked; patches centred on :meth:`padded_rows` rows."""
        import torch

        from hsicls.engine.patches import pad_cube

        r = patch_size // 2
        blocks = []
        for s in self.scenes:
            x = torch.from_numpy(np.ascontiguousarray(self.cube[s.rows, : s.width].transpose(2, 0, 1)))
            x = pad_cube(x, patch_size, mode)
            if x.shape[2] < self.cube.shape[1] + 2 * r:
                x = torch.nn.functional.pad(x, (0, self.cube.shape[1] + 2 * r - x.shape[2]))
            blocks.append(x)
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)


def stack_scenes(arrays: list[np.ndarray]) -> np.ndarray:
    """Arrays ``(H_i, W_i, ...)`` stacked top to bottom on a canvas ``(sum H_i, max W_i, ...)`` (zero-filled)."""
    if len(arrays) == 1:
        return arrays[0]
    w = max(a.shape[1] for a in arrays)
    out = np.zeros((sum(a.shape[0] for a in arrays), w) + arrays[0].shape[2:], arrays[0].dtype)
    r = 0
    for a in arrays:
        out[r : r + a.shape[0], : a.shape[1]] = a
        r += a.shape[0]
    return out


_PER_SCENE = ("cube", "labels", "valid", "train", "val", "test")


def save_prepared(path: Path, p: Prepared) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for i, s in enumerate(p.scenes):
            g = f.create_group(f"scenes/{i}")
            view = lambda a: a[s.rows, : s.width]  # noqa: B023 - used at once
            g.create_dataset("cube", data=view(p.cube).astype(np.float32), compression="gzip", compression_opts=4, chunks=True)
            g.create_dataset("labels", data=view(p.labels).astype(np.int32), compression="gzip")
            g.create_dataset("valid", data=view(p.valid).astype(bool), compression="gzip")
            for name in ("train", "val", "test"):
                g.create_dataset(f"split/{name}", data=view(getattr(p, name)).astype(bool), compression="gzip")
            if p.spectra is not None:
                g.create_dataset(
                    "spectra", data=view(p.spectra).astype(np.float32), compression="gzip", compression_opts=4, chunks=True
                )
            if p.groups is not None:
                g.create_dataset("groups", data=view(p.groups).astype(np.int32), compression="gzip")
            g.attrs.update(s.attrs())
        g = f.create_group("preprocess")
        for k, v in p.preprocessing.to_dict().items():
            g.create_dataset(k, data=np.asarray(v, dtype=np.float64))
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["class_names"] = json.dumps(p.class_names)
        f.attrs["class_values"] = json.dumps([int(v) for v in p.class_values])
        f.attrs["palette"] = json.dumps([list(map(int, c)) for c in p.palette])
        for k, v in p.meta.items():
            f.attrs[k] = json.dumps(v) if not isinstance(v, str) else v


_JSON_META = ("whiten", "standardize", "split", "options", "bands", "sources")


def _read_meta(f) -> dict:
    meta = {}
    for k in ("source", "labels_source", "fit_on", "fit_on_rule", *_JSON_META):
        if k in f.attrs:
            v = f.attrs[k]
            meta[k] = json.loads(v) if k in _JSON_META else str(v)
    return meta


def _read_scenes(f) -> tuple[dict[str, np.ndarray], list[SceneInfo], np.ndarray | None, np.ndarray | None]:
    """Canvas arrays, scene records, groups and spectra of a v2 file (or the single scene of a v1 file)."""
    if "scenes" not in f:  # version 1
        arrays = {k: f[k if k in ("cube", "labels", "valid") else f"split/{k}"][...] for k in _PER_SCENE}
        name = Path(str(f.attrs.get("source", "scene"))).stem or "scene"
        return arrays, [SceneInfo.from_attrs(f.attrs, name, arrays["labels"].shape, 0)], None, None
    per = {k: [] for k in _PER_SCENE}
    groups, spectra, infos, row0 = [], [], [], 0
    for i in range(len(f["scenes"])):
        g = f[f"scenes/{i}"]
        for k in _PER_SCENE:
            per[k].append(g[k if k in ("cube", "labels", "valid") else f"split/{k}"][...])
        groups.append(g["groups"][...] if "groups" in g else None)
        spectra.append(g["spectra"][...] if "spectra" in g else None)
        infos.append(SceneInfo.from_attrs(g.attrs, str(g.attrs["name"]), per["labels"][-1].shape, row0))
        row0 += infos[-1].height
    arrays = {k: stack_scenes(v) for k, v in per.items()}
    grp = stack_scenes(groups) if all(x is not None for x in groups) else None
    spec = stack_scenes(spectra) if all(x is not None for x in spectra) else None
    return arrays, infos, grp, spec


def load_prepared(path: str | Path) -> Prepared:
    """Load a file written by :func:`save_prepared` (format 1 or 2); errors name the file and the problem."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise InputError(f"{path}: not an hsicls prepared file (run 'hsicls preprocess' first)")
        if int(f.attrs.get("format_version", 1)) > FORMAT_VERSION:
            raise InputError(f"{path}: prepared-file format {f.attrs['format_version']} is newer than this hsicls understands")
        try:
            arrays, scenes, groups, spectra = _read_scenes(f)
            return Prepared(
                **arrays,
                preprocessing=Preprocessing.from_dict({k: f["preprocess"][k][...] for k in f["preprocess"]}),
                class_names=json.loads(f.attrs["class_names"]),
                class_values=json.loads(f.attrs["class_values"]),
                palette=[tuple(c) for c in json.loads(f.attrs["palette"])],
                meta=_read_meta(f),
                scenes=scenes,
                groups=groups,
                spectra=spectra,
            )
        except KeyError as exc:
            raise InputError(f"{path}: incomplete hsicls prepared file (missing {exc})") from None
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: damaged hsicls prepared file ({type(exc).__name__})") from None
