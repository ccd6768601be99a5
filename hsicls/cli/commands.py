"""Hidden alias of :mod:`hsicls.cli.main` for console scripts installed before the commands got a module each."""

from hsicls.cli.main import app, main, run

__all__ = ["app", "main", "run"]
