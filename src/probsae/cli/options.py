"""Turn typed config dataclasses into argparse options (one flag per field, help from the
field's docstring), and back."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from ..errors import ConfigError
from ..fielddocs import field_docs


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _caster(tp: Any):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin is typing.Union or (origin is not None and type(None) in typing.get_args(tp)):
        tp = args[0] if args else str
    if tp is bool:
        return _parse_bool
    if tp in (int, float, str):
        return tp
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        return lambda s: tuple(inner(v) for v in s.split(","))
    return None  # not settable from the command line


def list_valued(cls: type) -> set[str]:
    """The fields of ``cls`` whose value is itself a list (a ``tuple[...]`` such as
    ``prefix_fractions``): their flag takes one comma list as the whole value, never a sweep."""
    hints = typing.get_type_hints(cls)
    return {f.name for f in dataclasses.fields(cls) if _is_tuple(hints[f.name])}


def _is_tuple(tp: Any) -> bool:
    if typing.get_origin(tp) is tuple:
        return True
    return any(typing.get_origin(a) is tuple for a in typing.get_args(tp))


def add_dataclass_options(parser: argparse.ArgumentParser | Any, cls: type, *, skip: set[str] = frozenset(),
                          dest_prefix: str = "", comma_lists: bool = False, whole: set[str] = frozenset(),
                          carry_default: set[str] = frozenset()) -> list[str]:
    """Add ``--field-name`` for each settable field of ``cls``, with default None ("not given":
    the dataclass's own default applies, the one home of every default; --help shows it). The
    fields in ``carry_default`` take the dataclass default itself as their argparse default, for a
    command that reads it before it builds the config (train's Ctrl-C message names checkpoint_every).
    ``comma_lists``: each flag also takes a comma list (then parses to a list: one run per value),
    except the fields in ``whole``, whose comma list is their one value (``list_valued``). Returns
    the field names added."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    added = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        cast = _caster(hints[f.name])
        if cast is None:
            continue
        shown = f.default if f.default is not dataclasses.MISSING else None
        default = shown if f.name in carry_default else None
        help_text = docs.get(f.name, "")
        if shown is not None and default is None:
            help_text += f" [library default: {shown}]"
        metavar = f.name.upper() if cast is not _parse_bool else "BOOL"
        if comma_lists and f.name in whole:
            help_text += " (a comma list is the one value, not a sweep)"
        elif comma_lists:
            cast = comma_list(cast)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=dest_prefix + f.name, type=cast, default=default,
                            metavar=metavar, help=help_text)
        added.append(f.name)
    return added


def comma_list(cast):
    """An argparse type that also takes a comma list (then returns a list of ``cast`` values)."""
    def parse(text: str):
        parts = [t.strip() for t in text.split(",")]
        return [cast(t) for t in parts] if len(parts) > 1 else cast(text)

    parse.__name__ = getattr(cast, "__name__", "value")
    return parse


def collect(args: argparse.Namespace, names: list[str], dest_prefix: str = "") -> dict[str, Any]:
    """The options among ``names`` that were given (not None)."""
    out = {}
    for n in names:
        v = getattr(args, dest_prefix + n)
        if v is not None:
            out[n] = v
    return out


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as JSON when possible: numbers, true/false, null)."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip().replace("-", "_")] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip().replace("-", "_")] = v
    return out
