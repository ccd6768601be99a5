"""``hsicls datasets``: the registered benchmark scenes (:func:`hsicls.api.list_datasets`)."""

from __future__ import annotations

from hsicls import api, console
from hsicls.cli.app import Json, app, handle_errors, print_json


@app.command()
@handle_errors
def datasets(as_json: bool = Json) -> None:
    """List the registered benchmark scenes."""
    from rich.table import Table

    from hsicls.datasets import aliases_of

    rows = api.list_datasets()
    if as_json:
        print_json([d.record() for d in rows])
        return
    table = Table(title="hsicls datasets")
    for col in ("name", "also", "scene", "sensor", "rows x cols x bands", "classes", "verified"):
        table.add_column(col)
    for d in rows:
        verified = "yes" if d.verified else "no checksum"
        table.add_row(
            d.name,
            ", ".join(aliases_of(d.name)),
            d.title,
            d.sensor,
            "x".join(map(str, d.shape)),
            str(len(d.class_names)),
            verified,
        )
    console.listing(table)
