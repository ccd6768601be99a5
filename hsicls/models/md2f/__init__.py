"""MD2F-Mamba (Wan et al., IEEE JSTARS 19, 2026): one module per component."""

from .csff import CSFF
from .extractor import InitialExtractor
from .gfe import HSMGFE
from .lfem import MSLFEM
from .mdconv import MDConv
from .net import MD2FMamba

__all__ = ["CSFF", "HSMGFE", "InitialExtractor", "MD2FMamba", "MDConv", "MSLFEM"]
