"""Models: a registry of patch classifiers. Importing this package imports every module of it, which registers
every entry (``@register_model``): adding a model is adding one module here."""

from hsicls.models.registry import create_model, get_entry, list_models, register_model
from hsicls.registry import import_modules

import_modules(__name__, __path__)

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
