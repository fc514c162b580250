"""YAML configs on top of dataclasses: the dataclass is the source of truth, YAML only overrides it.

Every command of the CLI reads its config through :func:`load_config`, so a typo in a YAML key or a
``key=value`` override is an error that names the key, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from coat.errors import CoatError

T = TypeVar("T")


class ConfigError(CoatError, ValueError):
    """A config file or override that does not match its dataclass."""


def _field_types(cls) -> dict[str, Any]:
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


def _coerce_number(tp, value):
    """YAML 1.1 reads ``5e-3`` (no dot) as a string: turn such strings into the float the field declares."""
    accepts = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    if isinstance(value, str) and float in accepts and str not in accepts:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict, rejecting unknown keys with their full path."""
    data = dict(data or {})
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        path = ", ".join(f"{where}{k}" for k in unknown)
        raise ConfigError(f"unknown config key(s): {path}. Valid keys here: {', '.join(sorted(types_))}")
    defaults = _field_defaults(cls)
    kwargs = {}
    for key, value in data.items():
        tp = types_[key]
        sub = _dataclass_in(tp)
        items = _list_of_dataclass(tp)
        if sub is not None and isinstance(value, dict):
            # A partial section updates the parent's own default for it, not the section class's defaults.
            default = defaults.get(key)
            base = _shallow_dict(default) if dataclasses.is_dataclass(default) else {}
            value = from_dict(sub, {**base, **value}, f"{where}{key}.")
        elif items is not None and isinstance(value, list):
            value = [from_dict(items, v, f"{where}{key}[{i}].") if isinstance(v, dict) else v
                     for i, v in enumerate(value)]
        kwargs[key] = _coerce_number(tp, value)
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
