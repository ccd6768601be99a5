"""Option declarations: one place per option for its flag, type, default, help, choices and checks.

An options class is a dataclass deriving from :class:`Options` whose fields are made with
:func:`opt` (or :func:`shared`, for the flags that mean the same in every command). The field's
annotation is its type; a ``Literal[...]`` annotation is its list of choices. From these
declarations

* the CLI (:mod:`hsicls.cli.commands`) derives each command's flags, with the same name, type, default,
  help and choices, and binds them by keyword;
* :meth:`Options.validate` checks every value (type, finite, range, odd, choice) in one place,
  then the class's cross-field rules (``_check``), raising :class:`OptionError` before any data
  is read;
* ``--config FILE`` reads them from TOML (:func:`read_config`) and ``--print-config`` writes
  them back (:func:`to_toml`), so a printed configuration reproduces the run.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hsicls.errors import OptionError


@dataclass(frozen=True)
class Spec:
    """CLI and validation facts of one option (the field's metadata)."""

    help: str
    flags: tuple[str, ...] = ()  # default: --field-name; a bool gets --name/--no-name
    aliases: tuple[str, ...] = ()  # old spellings, accepted but hidden from --help
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # value must be > min (not >=)
    max_open: bool = False  # value must be < max
    odd: bool = False
    cli: bool = True  # False: set by the program (e.g. a dataset's palette), not a flag
    repeat: bool = False  # list flag given several times (KEY=VALUE for dicts)
    comma_list: bool = False  # list given as one comma-separated value
    metavar: str | None = None

    def flag(self, name: str) -> str:
        return self.flags[0] if self.flags else "--" + name.replace("_", "-")


def opt(default: Any, help: str, **spec: Any) -> Any:
    """A field declaring one option (mutable defaults are copied per instance)."""
    meta = {"spec": Spec(help=help, **spec)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


# Flags that mean one thing in every command: declared here once, used by reference.
SHARED: dict[str, dict[str, Any]] = {
    "device": dict(default="auto", help="auto (a GPU when present), cpu or cuda."),
    "precision": dict(
        default="auto",
        help="auto (bf16 autocast on a GPU; on a CPU with native bf16, AMX or AVX512-BF16, training under bf16 "
        "autocast and inference by a bf16 network whose narrow-margin pixels are recomputed in fp32, so classes equal "
        "fp32's; else fp32), fp32 or bf16.",
    ),
    "compile": dict(
        default="auto",
        help="torch.compile the network (CPU): auto (when the job's estimated eager time repays the expected "
        "compilation; the cache in ~/.cache/hsicls makes a second run quick), on or off. Classes stay those of eager fp32.",
    ),
    "batch_size": dict(
        default=None,
        help="Patches per batch: per optimiser step in train, per forward pass in evaluate and predict-map "
        "(inference default: 256 on the CPU, 4096 on a GPU).",
        min=1,
    ),
    "model": dict(default="md2f-mamba", help="Registered model name (see 'hsicls models')."),
    "model_options": dict(
        default={},
        help="Model option KEY=VALUE, e.g. fusion=add (repeatable).",
        flags=("--model-opt",),
        repeat=True,
        metavar="KEY=VALUE",
    ),
    "patch_size": dict(default=13, help="Patch side in pixels (odd).", min=1, max=101, odd=True),
    "seed": dict(default=0, help="Random seed (split and network).", min=0, max=2**32 - 1),
    "key": dict(default=None, help="Variable of the cube inside a .mat file (auto-detected)."),
    "mask": dict(
        default="all",
        help="Quality flags of a sensor product (EnMAP, EMIT) that make pixels nodata: all (cloud, cirrus, cloud shadow, "
        "haze and bad pixels), clouds (the cloud flags only) or none. Counted apart from nodata in the map's summary.",
    ),
    "nodata": dict(
        default=None,
        help="Treat pixels equal to this value in every band as nodata, whatever the file's tag says "
        "(e.g. -9999 for an untagged fill frame).",
    ),
}


def shared(name: str, **override: Any) -> Any:
    """The field of a shared flag; only its default (and, rarely, the help) may differ per command."""
    decl = {**SHARED[name], **override}
    return opt(decl.pop("default"), decl.pop("help"), **decl)


Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16"]
Compile = Literal["auto", "on", "off"]
Mask = Literal["all", "clouds", "none"]


def _base_type(tp: Any) -> tuple[Any, bool]:
    """``(T, optional)`` of an annotation ``T`` or ``T | None``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def choices_of(tp: Any) -> tuple[str, ...] | None:
    base, _ = _base_type(tp)
    return tuple(typing.get_args(base)) if typing.get_origin(base) is Literal else None


class Options:
    """Base of every options dataclass: validation, records, and reading from a mapping."""

    @classmethod
    def declared(cls) -> list[tuple[dataclasses.Field, Spec, Any]]:
        """``(field, spec, resolved annotation)`` of every option, in declaration order."""
        hints = typing.get_type_hints(cls, include_extras=False)
        return [(f, f.metadata["spec"], hints[f.name]) for f in dataclasses.fields(cls) if "spec" in f.metadata]

    def validate(self):
        """Check every value against its declaration, then the cross-field rules; returns self."""
        for f, spec, tp in self.declared():
            _check_value(spec.flag(f.name), getattr(self, f.name), spec, tp)
        self._check()
        return self

    def _check(self) -> None:
        """Rules that involve several options (overridden per class)."""

    def to_record(self) -> dict[str, Any]:
        """Every option with its value, JSON/TOML-ready (paths as strings)."""
        out = {}
        for f, _, _ in self.declared():
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
        return out

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "configuration"):
        """Options from a mapping (a config file's table); unknown keys are an error naming them."""
        known = {f.name: (spec, tp) for f, spec, tp in cls.declared()}
        clean = {}
        for k, v in values.items():
            name = k.replace("-", "_")
            if name not in known:
                raise OptionError(f"{source}: unknown option '{k}' (known: {', '.join(sorted(known))})")
            clean[name] = _coerce(v, known[name][1])
        return cls(**clean)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


def _coerce(v: Any, tp: Any) -> Any:
    base, _ = _base_type(tp)
    if base is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if typing.get_origin(base) is dict and isinstance(v, dict):
        return {str(k): str(x) for k, x in v.items()}
    return v


def _type_ok(v: Any, base: Any) -> bool:
    origin = typing.get_origin(base)
    if origin is Literal:
        return v in typing.get_args(base)
    if origin is list:
        return isinstance(v, list) and all(isinstance(x, (str, int, float, tuple, list)) for x in v)
    if origin is dict:
        return isinstance(v, dict)
    if base is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if base is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if base is Path:
        return isinstance(v, (str, Path))
    return isinstance(v, base)


def _check_value(flag: str, v: Any, spec: Spec, tp: Any) -> None:
    base, optional = _base_type(tp)
    if v is None:
        if not optional:
            raise OptionError(f"{flag} needs a value")
        return
    if not _type_ok(v, base):
        choices = choices_of(tp)
        if choices:
            raise OptionError(f"{flag} must be one of {', '.join(choices)}; got {v!r}")
        raise OptionError(f"{flag} must be {getattr(base, '__name__', str(base))}, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise OptionError(f"{flag} must be a finite number, got {v}")
    if spec.min is not None and (v <= spec.min if spec.min_open else v < spec.min):
        raise OptionError(f"{flag} must be {'>' if spec.min_open else '>='} {spec.min:g}, got {v}")
    if spec.max is not None and (v >= spec.max if spec.max_open else v > spec.max):
        raise OptionError(f"{flag} must be {'<' if spec.max_open else '<='} {spec.max:g}, got {v}")
    if spec.odd and v % 2 == 0:
        raise OptionError(f"{flag} must be an odd number, got {v}")


# --------------------------------------------------------------------------- TOML
def read_config(path: Path, section: str) -> dict[str, Any]:
    """The ``[section]`` table of a TOML file (or its top-level keys when it has no such table)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    if not path.is_file():
        raise OptionError(f"{path}: no such configuration file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise OptionError(f"{path}: not a valid TOML file ({exc})") from None
    if section in data:
        table = data[section]
    else:  # a flat file: top-level keys, other commands' tables left aside
        table = {k: v for k, v in data.items() if k not in _COMMANDS}
        others = sorted(k for k in data if k in _COMMANDS)
        if others and not table:  # a file meant for another command: say so rather than ignore it
            listed = ", ".join(f"[{k}]" for k in others)
            raise OptionError(f"{path}: has no [{section}] table (only {listed}); nothing in it applies to '{section}'")
    if not isinstance(table, dict):
        raise OptionError(f"{path}: [{section}] is not a table")
    return table


_COMMANDS = {"preprocess", "train", "evaluate", "predict-map", "assess", "sample"}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    import re

    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_value(k)


def to_toml(section: str, record: dict[str, Any], header: str = "") -> str:
    """``record`` as the ``[section]`` table (``None`` values are left out: they mean the default)."""
    lines = [f"# {header}"] if header else []
    lines.append(f"[{section}]")
    tables = []
    for k, v in record.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
            continue
        lines.append(f"{k} = {_toml_value(v)}")
    for k, v in tables:
        lines += ["", f"[{section}.{k}]"] + [f"{_toml_key(str(kk))} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def parse_key_values(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise OptionError(f"{flag} expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k, v = k.strip(), v.strip()
        if k in out:  # never keep one of two and drop the other silently
            same = "given twice" if out[k] == v else f"given twice with different values ({out[k]!r} and {v!r})"
            raise OptionError(f"{flag} {k}: {same}")
        out[k] = v
    return out
