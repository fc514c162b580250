"""YAML configs on top of dataclasses: the dataclass is the source of truth, YAML only overrides it.

Every command of the CLI reads its config through :func:`load_config`, so a typo in a YAML key or a
``key=value`` override is an error that names the key, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from coat.errors import CoatError

T = TypeVar("T")


class ConfigError(CoatError, ValueError):
    """A config file or override that does not match its dataclass."""


def field_types(cls) -> dict[str, Any]:
    """A dataclass's init fields -> their resolved types."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _dataclass_in(tp) -> type | None:
    """The dataclass inside ``tp`` (``X``, ``X | None``, ``Optional[X]``), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def _list_of_dataclass(tp) -> type | None:
    if typing.get_origin(tp) in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if len(args) == 1 and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def _field_defaults(cls) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _shallow_dict(obj) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


_NOUNS = {bool: ("true or false (a boolean)", "booleans"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), str: ("a string", "strings")}


def _describe(tp, plural: bool = False) -> str:
    """The expected type of a field, in words a YAML user reads: ``a list of strings``, ``a number or null``."""
    if tp is typing.Any:
        return "values" if plural else "any value"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a, plural) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(items) > 1 and Ellipsis not in args:
            return f"a list of {len(items)} values ({', '.join(_describe(a) for a in items)})"
        return ("lists" if plural else "a list") + f" of {_describe(items[0], True) if items else 'values'}"
    if origin is dict:
        return ("mappings" if plural else "a mapping") + \
            f" of keys to {_describe(args[1], True) if len(args) == 2 else 'values'}"
    if dataclasses.is_dataclass(tp):
        name = f"{tp.__name__} mappings" if plural else f"a mapping of {tp.__name__} settings"
        return name + (" or strings" if getattr(tp, "config_accepts_string", False) else "")
    if tp in _NOUNS:
        return _NOUNS[tp][plural]
    return getattr(tp, "__name__", str(tp))


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


class _Mismatch(Exception):
    """``value`` does not fit the field's type; carries the sub-key where it went wrong (``[2]``, ``.name``)."""

    def __init__(self, where: str, value, expected: str):
        super().__init__(where)
        self.where, self.value, self.expected = where, value, expected


def _as_number(value, integer: bool):
    """A YAML number for an int/float field, or raise. Strings that read as numbers (YAML 1.1 reads ``5e-3`` and
    ``1e4`` as strings) become numbers; booleans are never numbers."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        value = float(value.strip())  # ValueError for 'abc'
        if not math.isfinite(value):
            raise ValueError
    if integer:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError
    if isinstance(value, (int, float)):
        return value
    raise ValueError


def _check(value, tp, where: str = ""):
    """``value`` checked against annotation ``tp`` (and converted where YAML spells a number as a string, or a
    number where a string is meant). Raises :class:`_Mismatch`. Dataclass values are left as mappings here:
    :func:`from_dict` builds them."""
    if tp is typing.Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(value, arg, where)
            except _Mismatch as err:
                errors.append(err)
        deepest = max(errors, key=lambda e: len(e.where))  # the member that got furthest names the real problem
        if deepest.where != where:
            raise deepest
        raise _Mismatch(where, value, _describe(tp))
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch(where, value, _describe(tp))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(where, value, _describe(tp))
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(items) > 1 and Ellipsis not in args:
            if len(value) != len(items):
                raise _Mismatch(where, value, _describe(tp))
            return type(value)(_check(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items)))
        item = items[0] if items else typing.Any
        return type(value)(_check(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch(where, value, _describe(tp))
        value_type = args[1] if len(args) == 2 else typing.Any
        return {k: _check(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, dict) or isinstance(value, tp):
            return value
        if isinstance(value, str) and getattr(tp, "config_accepts_string", False):
            return value  # a shorthand its owner expands (an expert name, an adapter path, a run name)
        raise _Mismatch(where, value, _describe(tp))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch(where, value, _describe(tp))
    if tp in (int, float):
        try:
            return _as_number(value, integer=tp is int)
        except (ValueError, TypeError):
            raise _Mismatch(where, value, _describe(tp)) from None
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `split: 2024`, `labels: [0, 1]`: YAML reads them as numbers
        raise _Mismatch(where, value, _describe(tp))
    if isinstance(tp, type) and not isinstance(value, tp):
        raise _Mismatch(where, value, _describe(tp))
    return value


def check_value(key: str, value, tp):
    """``value`` of config key ``key`` checked against its annotation ``tp``; a mismatch is a :class:`ConfigError`
    naming the key, the value and the expected type."""
    try:
        return _check(value, tp)
    except _Mismatch as err:
        got = f"{err.value!r} ({_kind(err.value)})"
        raise ConfigError(f"{key}{err.where}: expected {err.expected}, got {got}") from None


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "", default: Any = None) -> T:
    """Build dataclass ``cls`` from a (nested) dict, rejecting unknown keys with their full path and values that do
    not match their field's type (the error names the key, the value and the expected type). ``default``: an
    instance of ``cls`` whose values stand for the keys ``data`` leaves out (a parent's default for this section)."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected {_describe(cls)}, got {data!r} ({_kind(data)})")
    data = dict(data or {})
    types_ = field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        path = ", ".join(f"{where}{k}" for k in unknown)
        raise ConfigError(f"unknown config key(s): {path}. Valid keys here: {', '.join(sorted(types_))}")
    defaults = _shallow_dict(default) if dataclasses.is_dataclass(default) else _field_defaults(cls)
    kwargs = {}
    for key, value in data.items():
        tp = types_[key]
        value = check_value(f"{where}{key}", value, tp)
        sub = _dataclass_in(tp)
        items = _list_of_dataclass(tp)
        if sub is not None and isinstance(value, dict):
            # A partial section updates the parent's own default for it (at any depth: data.synth.test_size=7
            # keeps the rest of the demo's data.synth), not the section class's defaults.
            inner = defaults.get(key)
            inner = inner if dataclasses.is_dataclass(inner) else None
            base = _shallow_dict(inner) if inner is not None else {}
            value = from_dict(sub, {**base, **value}, f"{where}{key}.", inner)
        elif items is not None and isinstance(value, (list, tuple)):
            value = [from_dict(items, v, f"{where}{key}[{i}].") if isinstance(v, dict) else v
                     for i, v in enumerate(value)]
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid config{' at ' + where.rstrip('.') if where else ''}: {err}") from err


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "experts=[pitch]"]`` -> nested dict; values are parsed as YAML scalars/lists."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. num_thinking=16)")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is set to a value and also used as a section")
        node[parts[-1]] = value
    return nested


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Dataclass ``cls`` from its defaults, then the YAML file at ``path``, then ``key=value`` overrides."""
    data = read_yaml(path) if path is not None else {}
    data = merge(data, parse_overrides(overrides or []))
    return from_dict(cls, data)


def to_dict(obj) -> dict[str, Any]:
    return dataclasses.asdict(obj)
