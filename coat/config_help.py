"""``--help`` for every command, built from the dataclass configs themselves.

Every config key is a dataclass field with ``field(metadata={"help": ...})``; :func:`config_keys` walks a config
class (nested sections and lists of sections included) and :func:`command_help` prints a command's usage, its
options, and every key with its type, default and help, in plain text. Nothing here imports torch: a command's
help costs what importing its config class costs.

    print(command_help("coat train", "distillation training", TrainConfig,
                       usage="coat train <config.yaml> [key=value ...]", examples=["coat train configs/tiny.yaml"]))
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
import types
import typing
from collections.abc import Sequence
from typing import Any, NamedTuple

import yaml

HELP_FLAGS = ("-h", "--help")
_WIDTH = 100
_MISSING = object()


class ConfigKey(NamedTuple):
    """One key of a config: dotted name (``[]`` marks a list item), type, default, help (plain text)."""

    key: str
    type: str
    default: str
    help: str
    section: bool  # a nested section: its keys follow, with this key as their prefix


def wants_help(argv: Sequence[str]) -> bool:
    """Whether the arguments ask for help (``-h`` or ``--help`` anywhere)."""
    return any(arg in HELP_FLAGS for arg in argv)


def plain(text: str) -> str:
    """Docstring markup to plain text: ``:mod:`x``` / ````x```` / ```x``` -> ``x``, whitespace runs to one space."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return " ".join(text.split())


def type_name(tp) -> str:
    """A config field's type as a YAML user reads it: ``int``, ``str | null``, ``list[str]``, ``section``."""
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if dataclasses.is_dataclass(tp):
        return "section"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, Sequence):
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(items) > 1 and Ellipsis not in args:
            return "[" + ", ".join(type_name(a) for a in items) + "]"
        inner = items[0] if items else Any
        return "list of sections" if dataclasses.is_dataclass(inner) else f"list[{type_name(inner)}]"
    if origin is dict or tp is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _yamlable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _yamlable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (list, tuple)):
        return [_yamlable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _yamlable(v) for k, v in value.items()}
    return value


def format_default(value, limit: int = 70) -> str:
    """A default as it would be written in YAML (``null``, ``true``, ``[a, b]``, ``''``), shortened past ``limit``."""
    if value is _MISSING:
        return "(required)"
    text = yaml.safe_dump(_yamlable(value), default_flow_style=True, width=10**6, sort_keys=False).strip()
    text = text.removesuffix("\n...").strip()
    return text if len(text) <= limit else text[:limit - 4].rstrip() + " ..."


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _MISSING


def _section_class(tp) -> tuple[type | None, bool]:
    """(dataclass, is a list of them) inside a field type (``X``, ``X | None``, ``list[X]``), or (None, False)."""
    if dataclasses.is_dataclass(tp):
        return tp, False
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found = _section_class(arg)
            if found[0] is not None:
                return found
    if origin in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        if len(items) == 1 and dataclasses.is_dataclass(items[0]):
            return items[0], True
    return None, False


def config_keys(cls: type, prefix: str = "", defaults: Any = None) -> list[ConfigKey]:
    """Every key of dataclass ``cls``, depth first. ``defaults``: an instance whose values are the defaults (a
    parent's default for this section), else the class's own field defaults."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        default = getattr(defaults, f.name) if defaults is not None else _default_of(f)
        sub, is_list = _section_class(tp)
        key = prefix + f.name
        keys.append(ConfigKey(key, type_name(tp), format_default(default), plain(f.metadata.get("help", "")),
                              sub is not None))
        if sub is not None:
            inner = None if is_list or not dataclasses.is_dataclass(default) else default
            keys += config_keys(sub, f"{key}[]." if is_list else f"{key}.", inner)
    return keys


def format_config_keys(cls: type) -> str:
    """The keys of ``cls`` as indented text: ``key: type = default`` then the help, wrapped."""
    lines = []
    for k in config_keys(cls):
        # a section's default is its keys' defaults, listed below it; only an absent (null) one is worth a word
        shown = k.default if not k.section or k.type == "list of sections" else ("null" if k.default == "null" else "")
        lines.append(f"  {k.key}: {k.type}" + (f" = {shown}" if shown else ""))
        if k.help:
            lines += textwrap.wrap(k.help, _WIDTH, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def command_help(prog: str, summary: str, config: type | None = None, *, usage: str = "",
                 options: Sequence[tuple[str, str]] = (), examples: Sequence[str] = (), notes: str = "") -> str:
    """The full help of a command: usage, what it does, options, config keys (from ``config``), examples."""
    out = [f"usage: {usage or prog + ' [config.yaml] [key=value ...]'}", ""]
    out += textwrap.wrap(plain(summary), _WIDTH)
    if notes:
        out += [""] + textwrap.wrap(plain(notes), _WIDTH)
    if options:
        out += ["", "options:"]
        for flag, text in options:
            out += textwrap.wrap(plain(text), _WIDTH, initial_indent=f"  {flag:<18} ",
                                 subsequent_indent=" " * 21)
    if config is not None:
        out += ["", "config keys (in the YAML file, or key=value on the command line; dotted keys for sections, "
                    "YAML for lists: experts=[pitch]):", format_config_keys(config)]
    if examples:
        out += ["", "examples:"] + [f"  {line}" for line in examples]
    return "\n".join(out) + "\n"
