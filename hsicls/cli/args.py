"""Typer commands derived from option declarations (:mod:`hsicls.config`).

:func:`options_command` turns an options dataclass into the command's flags (name, type,
default, help, choices, hidden aliases), adds ``--config FILE`` / ``--print-config`` for the
stage commands, and hands the decorated function one validated options object, built by
keyword: defaults < config file < flags given on the command line.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from hsicls import console
from hsicls.errors import HsiclsError, StdoutClosed
from hsicls.io.guard import note_input
from hsicls.options import Options, Spec, _base_type, choices_of, parse_key_values, read_config, to_toml

KW = inspect.Parameter.KEYWORD_ONLY
_ENUMS: dict[tuple[str, ...], type] = {}


def _choice_enum(name: str, choices: tuple[str, ...]) -> type:
    if choices not in _ENUMS:
        _ENUMS[choices] = enum.Enum(name, {c: c for c in choices}, type=str)
    return _ENUMS[choices]


def _cli_type(name: str, spec: Spec, tp: Any) -> tuple[Any, Any]:
    """``(annotation, default transform)`` of a field's CLI parameter."""
    base, _ = _base_type(tp)
    choices = choices_of(tp)
    if choices:
        return Optional[_choice_enum(name, choices)], None
    if spec.repeat:
        return list[str], None
    if spec.comma_list:
        return Optional[str], None
    return Optional[base], None


def _field_param(f, spec: Spec, tp: Any) -> inspect.Parameter:
    annotation, _ = _cli_type(f.name, spec, tp)
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    base, _ = _base_type(tp)
    flag = spec.flag(f.name)
    decls = (f"{flag}/--no-{flag[2:]}",) if base is bool else tuple(spec.flags) or (flag,)  # short forms after the name
    if spec.repeat:
        default = []
    elif spec.comma_list:
        default = ",".join(default) if default else None
    show = default not in (None, [], {})
    choices = choices_of(tp)
    metavar = spec.metavar or ("[" + "|".join(choices) + "]" if choices else None)
    info = typer.Option(default, *decls, help=spec.help, show_default=show, metavar=metavar)
    return inspect.Parameter(f.name, KW, default=info, annotation=annotation)


def _alias_params(f, spec: Spec, tp: Any) -> list[inspect.Parameter]:
    annotation, _ = _cli_type(f.name, spec, tp)
    return [
        inspect.Parameter(f"alias__{f.name}__{i}", KW, default=typer.Option(None, a, hidden=True), annotation=annotation)
        for i, a in enumerate(spec.aliases)
    ]


def _from_cli(value: Any, spec: Spec, flag: str) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if spec.repeat:
        return parse_key_values(list(value), flag)
    if spec.comma_list:
        if value is None:
            return None
        return [v.strip() for v in value.split(",")]  # '' stays an (empty) list: its check names the flag
    return value


def _given_on_command_line(ctx, name: str) -> bool:
    src = ctx.get_parameter_source(name)
    return src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def build_options(cls: type[Options], kw: dict, ctx, config: Path | None, section: str | None) -> tuple[Options, set[str]]:
    """Options from defaults < ``config`` < command-line flags; returns them and the names set explicitly."""
    from_file = read_config(config, section or "") if config is not None else {}
    opts = cls.from_mapping(from_file, source=str(config))
    given = {k.replace("-", "_") for k in from_file}
    changes = {}
    for f, spec, _ in cls.declared():
        if not spec.cli:
            continue
        names = [f.name] + [f"alias__{f.name}__{i}" for i in range(len(spec.aliases))]
        for n in names:
            if n in kw and _given_on_command_line(ctx, n):
                changes[f.name] = _from_cli(kw[n], spec, spec.flag(f.name))
                given.add(f.name)
    return opts.replace(**changes), given


def options_command(
    app: typer.Typer,
    name: str,
    cls: type[Options],
    *,
    section: str | None = None,
    exclude: tuple[str, ...] = (),
    resolve: Callable[[Options, set[str], dict], Options] | None = None,
    wrap: Callable[[Callable], Callable] | None = None,
):
    """Register ``fn(*, opts, given, **own_params)`` as command ``name`` with ``cls``'s flags.

    ``section`` (the command name in config files) adds ``--config`` and ``--print-config``;
    ``resolve(opts, given, own)`` may fill defaults that depend on other inputs (a dataset's) before
    validation and printing."""

    def deco(fn: Callable) -> Callable:
        own = [p.replace(kind=KW) for p in inspect.signature(fn).parameters.values() if p.name not in ("opts", "given")]
        fields = [(f, s, t) for f, s, t in cls.declared() if s.cli and f.name not in exclude]
        params = [inspect.Parameter("ctx", KW, annotation=typer.Context)] + own
        params += [_field_param(f, s, t) for f, s, t in fields]
        params += [p for f, s, t in fields for p in _alias_params(f, s, t)]
        if section:
            params += [
                inspect.Parameter(
                    "config",
                    KW,
                    default=typer.Option(None, "--config", help="Read options from a TOML file; flags given here override it."),
                    annotation=Optional[Path],
                ),
                inspect.Parameter(
                    "print_config",
                    KW,
                    default=typer.Option(
                        False, "--print-config", help="Print the effective configuration as TOML on stdout and exit."
                    ),
                    annotation=bool,
                ),
            ]
        own_names = {p.name for p in own}
        body = wrap(fn) if wrap else fn

        @functools.wraps(fn)
        def command(**kw):
            ctx = kw.pop("ctx")
            config, print_config = kw.pop("config", None), kw.pop("print_config", False)
            note_input(config)
            opts, given = build_options(cls, kw, ctx, config, section)
            mine = {k: v for k, v in kw.items() if k in own_names}
            if resolve is not None:
                opts = resolve(opts, given, mine)
            opts.validate()
            if print_config:
                console.stdout_write(to_toml(section, opts.to_record(), header=f"hsicls {name}: effective configuration"))
                return None
            return body(opts=opts, given=given, **mine)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must read the derived signature, not fn's
        app.command(name)(_guard(command))
        return fn

    return deco


def _guard(command: Callable) -> Callable:
    """Errors raised while building the options (a bad value: exit 2; an unknown --dataset for
    its defaults: exit 1) are one line too; a closed stdout ends quietly."""

    @functools.wraps(command)
    def run(**kw):
        try:
            return command(**kw)
        except StdoutClosed as exc:
            raise typer.Exit(code=exc.exit_code) from None
        except HsiclsError as exc:
            console.error(str(exc))
            raise typer.Exit(code=exc.exit_code) from None

    run.__signature__ = command.__signature__  # type: ignore[attr-defined]
    if hasattr(run, "__wrapped__"):
        del run.__wrapped__
    return run
