"""``hsicls models`` and ``hsicls model-info``: the registered models, and one model's size and cost
(:func:`hsicls.api.list_models`, :func:`hsicls.api.model_info`)."""

from __future__ import annotations

from hsicls import api, console
from hsicls.cli.app import Json, app, handle_errors, print_json
from hsicls.cli.args import options_command
from hsicls.config import ModelInfoOptions


@options_command(app, "models", ModelInfoOptions, exclude=("model", "model_options"), wrap=handle_errors)
def models(*, opts, given, as_json: bool = Json) -> None:
    """List the registered models with their parameter counts."""
    from rich.table import Table

    rows = api.list_models(opts.bands, opts.patch_size, opts.classes)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"hsicls models ({opts.bands} bands, {opts.patch_size}x{opts.patch_size} patch, {opts.classes} classes)")
    for col in ("name", "params", "description"):
        table.add_column(col)
    for r in rows:
        size = (
            f"{r['params']:,}" if r["params"] is not None else {"classic": "fitted", "auto": "members"}.get(r["kind"], "members")
        )
        table.add_row(r["name"], size, r["description"])
    console.listing(table)


@options_command(app, "model-info", ModelInfoOptions, wrap=handle_errors)
def model_info(*, opts, given, as_json: bool = Json) -> None:
    """Parameters per component, MACs and FLOPs per sample (torch.utils.flop_counter)."""
    from rich.table import Table

    info = api.model_info(opts.model, opts.bands, opts.patch_size, opts.classes, opts.model_options)
    if as_json:
        print_json(info)
        return
    table = Table(title=f"{opts.model}: {opts.bands} bands, {opts.patch_size}x{opts.patch_size} patch, {opts.classes} classes")
    table.add_column("component")
    table.add_column("params", justify="right")
    for k, v in info["components"].items():
        table.add_row(k, f"{v:,}")
    table.add_section()
    table.add_row("total", f"{info['params']:,}")
    if info["macs"] is not None:
        table.add_row("MACs / sample", f"{info['macs'] / 1e6:.2f}M")
        table.add_row("FLOPs / sample", f"{info['flops'] / 1e6:.2f}M")
    if info.get("inference_macs"):
        table.add_row("MACs, merged inference path", f"{info['inference_macs'] / 1e6:.2f}M")
    console.listing(table)
