"""Models: a registry of patch classifiers. Importing this package registers every entry."""

from . import classic, md2f, ssftt  # noqa: F401  (registers md2f-mamba, ssftt, svm, rf)
from .registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
