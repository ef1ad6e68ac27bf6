"""One config system: dataclasses, saved as JSON next to every checkpoint and dataset.

`to_dict` / `from_dict` round-trip nested dataclasses; unknown keys are an error so a typo never
silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

from emogs.io.atomic import read_json, write_json

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass `cls` from a dict, recursing into nested dataclass fields."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs = {}
    for k, v in data.items():
        t = hints.get(k)
        if dataclasses.is_dataclass(t) and isinstance(v, dict):
            v = from_dict(t, v)
        elif isinstance(v, list) and typing.get_origin(t) is tuple:
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


def save(cfg: Any, path: str | Path) -> None:
    write_json(path, to_dict(cfg))


def load(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, read_json(path))


def override(cfg: T, **changes: Any) -> T:
    """Copy of `cfg` with dotted-key changes, e.g. override(cfg, **{"model.use_au": False})."""
    d = to_dict(cfg)
    for key, val in changes.items():
        node = d
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise ValueError(f"unknown config key '{key}'")
        node[leaf] = val
    return from_dict(type(cfg), d)
