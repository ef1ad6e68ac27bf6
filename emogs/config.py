"""One config system: dataclasses, saved as JSON next to everything they configure, changed through one
function (`override`).

`to_dict` / `from_dict` round-trip nested dataclasses. `from_dict` checks every value against the field's
type (an int field takes an int, a float field an int or a float, ...) and refuses unknown keys, so a typo
or a wrong type is an error instead of a silent default or a crash later.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, TypeVar

from emogs.io.atomic import read_json, write_json

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _check(cls_name: str, key: str, t: Any, v: Any) -> Any:
    """Value `v` for a field of type `t` (validated, lists -> tuples for tuple fields)."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if v is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(cls_name, key, a, v)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"{cls_name}.{key}: bad value {v!r}")
    bad = ValueError(f"{cls_name}.{key} must be {getattr(t, '__name__', t)}, got {v!r}")
    if t is bool:
        if not isinstance(v, bool):
            raise bad
        return v
    if t is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad
        return v
    if t is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise bad
        return float(v)
    if t is str:
        if not isinstance(v, str):
            raise bad
        return v
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise bad
        return tuple(v)
    if origin is dict or t is dict:
        if not isinstance(v, dict):
            raise bad
        return dict(v)
    if origin is list or t is list:
        if not isinstance(v, (list, tuple)):
            raise bad
        return list(v)
    return v


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass `cls` from a dict, recursing into nested dataclass fields, checking every value."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs = {}
    for k, v in data.items():
        t = hints.get(k)
        if dataclasses.is_dataclass(t):
            if isinstance(v, t):
                kwargs[k] = v
                continue
            kwargs[k] = from_dict(t, v)
        else:
            kwargs[k] = _check(cls.__name__, k, t, v)
    return cls(**kwargs)


def _merge(base: dict[str, Any], changes: dict[str, Any], where: str = "") -> None:
    for key, val in changes.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"bad config key {key!r}")
        head, _, rest = key.partition(".")
        if rest:
            val, key = {rest: val}, head
        if key not in base:
            raise ValueError(f"unknown config key '{where}{key}'")
        if isinstance(base[key], dict) and isinstance(val, dict):
            _merge(base[key], val, f"{where}{key}.")
        elif isinstance(base[key], dict):
            raise ValueError(f"config key '{where}{key}' is a section: give it an object of settings")
        else:
            base[key] = val


def override(cfg: T, changes: dict[str, Any] | None = None, **kw: Any) -> T:
    """Copy of `cfg` with `changes` applied: nested objects ({"model": {"heads": 4}}) and/or dotted keys
    ({"model.heads": 4}), also as keywords for plain names. Unknown keys and ill-typed values raise
    ValueError. This is the one way configs are changed (CLI --config-json, presets, the demo, tests)."""
    d = to_dict(cfg)
    _merge(d, {**(changes or {}), **kw})
    return from_dict(type(cfg), d)


def save(cfg: Any, path: str | Path) -> None:
    write_json(path, to_dict(cfg))


def load(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, read_json(path))
