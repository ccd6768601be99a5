"""Commands, their flags derived from the option declarations, and the torchrun entry (the top layer)."""

from hsicls.cli.commands import app, main, run

__all__ = ["app", "main", "run"]
