"""hsicls: hyperspectral image classification, from the shell and from Python.

The Python API (:mod:`hsicls.api`) is importable from here; it is loaded on first use, so ``import hsicls`` and the
CLI stay quick::

    import hsicls
    hsicls.train("prepared.h5", "model.pt", epochs=50)
    pred = hsicls.load_model("model.pt").predict(cube)

Errors are :class:`HsiclsError` and its kinds (``InputError``, ``OptionError``, ``OutputExistsError``).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = (
    "Model",
    "Prediction",
    "assess",
    "download",
    "evaluate",
    "list_datasets",
    "list_models",
    "model_info",
    "load_model",
    "predict_map",
    "preprocess",
    "sample",
    "train",
)
_ERRORS = ("HsiclsError", "InputError", "OptionError", "OutputExistsError")
_OPTIONS = ("PreprocessOptions", "TrainOptions", "EvaluateOptions", "MapOptions", "AssessOptions", "SampleOptions")

__all__ = ["__version__", *_API, *_ERRORS, *_OPTIONS]


def __getattr__(name: str):
    """The API's names, loaded on first use (by name, so the package itself imports none of the layers)."""
    module = (
        "hsicls.api" if name in _API else "hsicls.errors" if name in _ERRORS else "hsicls.config" if name in _OPTIONS else None
    )
    if module is None:
        raise AttributeError(f"module 'hsicls' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
