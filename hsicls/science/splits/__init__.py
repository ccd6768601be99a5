"""Train / validation / test split protocols, one module each, in a registry (:data:`SPLITS`).

``random`` (:mod:`.stratified`), ``count``, ``disjoint``, ``fixed`` and ``group``; adding a protocol
is adding a module here with a named :class:`SplitProtocol` subclass (see :mod:`.base`): the built-in
modules are imported below in the order of the ``--split`` choices, any other module of the package
after them. All masks are ``(H, W)`` bool over the scene grid; they never overlap.
"""

from hsicls.registry import import_modules
from hsicls.science.splits.base import (
    SPLITS,
    SplitInputs,
    SplitProtocol,
    carve_validation,
    describe_split,
    footprint,
    get_split,
    guarded_footprint,
    option_mixins,
    split_record,
)

# The registry order is the order of the --split choices.
# isort: off
from hsicls.science.splits.stratified import stratified_split
from hsicls.science.splits.count import count_split
from hsicls.science.splits.disjoint import disjoint_split
from hsicls.science.splits.fixed import fixed_split
from hsicls.science.splits.group import group_names, group_split, guard_pixels
# isort: on

import_modules(__name__, __path__)

__all__ = [
    "SPLITS",
    "SplitInputs",
    "SplitProtocol",
    "carve_validation",
    "count_split",
    "describe_split",
    "disjoint_split",
    "fixed_split",
    "footprint",
    "get_split",
    "group_names",
    "group_split",
    "guard_pixels",
    "guarded_footprint",
    "option_mixins",
    "split_record",
    "stratified_split",
]
