"""The prepared-scene HDF5 file: the hand-off from ``preprocess`` to ``train``/``evaluate``.

Layout (h5py)::

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

from .errors import InputError

FORMAT = "hsicls-prepared"
FORMAT_VERSION = 1


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


@dataclass
class Prepared:
    cube: np.ndarray  # (H, W, C) float32
    labels: np.ndarray  # (H, W) int32
    valid: np.ndarray  # (H, W) bool
    train: np.ndarray  # (H, W) bool
    val: np.ndarray  # (H, W) bool
    test: np.ndarray  # (H, W) bool
    preprocessing: Preprocessing
    class_names: list[str]
    class_values: list[int]
    palette: list[tuple[int, int, int]]
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    meta: dict = field(default_factory=dict)  # source, labels_source, split, fit_on, whiten, standardize

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def preprocessing_record(self) -> dict:
        """How the features were made, for reports, bundles and run summaries (defaults for files
        written before an option existed)."""
        return {
            "fit_on": self.meta.get("fit_on", "all"),
            "whiten": bool(self.meta.get("whiten", False)),
            "standardize": bool(self.meta.get("standardize", True)),
        }


def save_prepared(path: Path, p: Prepared) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("cube", data=p.cube.astype(np.float32), compression="gzip", compression_opts=4, chunks=True)
        f.create_dataset("labels", data=p.labels.astype(np.int32), compression="gzip")
        f.create_dataset("valid", data=p.valid.astype(bool), compression="gzip")
        g = f.create_group("split")
        for name in ("train", "val", "test"):
            g.create_dataset(name, data=getattr(p, name).astype(bool), compression="gzip")
        g = f.create_group("preprocess")
        for k, v in p.preprocessing.to_dict().items():
            g.create_dataset(k, data=np.asarray(v, dtype=np.float64))
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["class_names"] = json.dumps(p.class_names)
        f.attrs["class_values"] = json.dumps([int(v) for v in p.class_values])
        f.attrs["palette"] = json.dumps([list(map(int, c)) for c in p.palette])
        f.attrs["crs"] = p.crs or ""
        f.attrs["transform"] = np.asarray(p.transform if p.transform else [], dtype=np.float64)
        for k, v in p.meta.items():
            f.attrs[k] = json.dumps(v) if not isinstance(v, str) else v


def load_prepared(path: str | Path) -> Prepared:
    """Load a file written by :func:`save_prepared`; errors name the file and the problem."""
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
        try:
            transform = tuple(float(v) for v in f.attrs["transform"]) or None
            meta = {}
            for k in ("source", "labels_source", "fit_on", "whiten", "standardize", "split", "options"):
                if k in f.attrs:
                    v = f.attrs[k]
                    meta[k] = json.loads(v) if k in ("whiten", "standardize", "split", "options") else str(v)
            return Prepared(
                cube=f["cube"][...],
                labels=f["labels"][...],
                valid=f["valid"][...],
                train=f["split/train"][...],
                val=f["split/val"][...],
                test=f["split/test"][...],
                preprocessing=Preprocessing.from_dict({k: f["preprocess"][k][...] for k in f["preprocess"]}),
                class_names=json.loads(f.attrs["class_names"]),
                class_values=json.loads(f.attrs["class_values"]),
                palette=[tuple(c) for c in json.loads(f.attrs["palette"])],
                crs=str(f.attrs["crs"]) or None,
                transform=transform,
                meta=meta,
            )
        except KeyError as exc:
            raise InputError(f"{path}: incomplete hsicls prepared file (missing {exc})") from None
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: damaged hsicls prepared file ({type(exc).__name__})") from None
