"""Typed configuration dataclasses read from TOML: the loader every service shares.

A config is a frozen dataclass whose fields are ``str``, ``int``, ``bool`` or
``Path``; the string literal right below a field is its documentation (flags
and the configuration reference are generated from it). Unknown keys and
wrong types are refused with a message naming the source and the known keys.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import tomllib
from dataclasses import MISSING, fields, replace
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")

_TYPES: dict[str, type] = {"str": str, "int": int, "bool": bool, "Path": Path}


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


def field_type(cls: type, name: str) -> type:
    """The Python type of a config field (annotations are strings under PEP 563)."""
    for f in fields(cls):
        if f.name == name:
            return _TYPES[str(f.type)]
    raise KeyError(name)


def convert(cls: type, name: str, value: Any, source: str) -> Any:
    """A TOML value checked (and converted) for field ``name``; ConfigError if wrong."""
    kind = field_type(cls, name)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
        return value
    if kind is int:
        if type(value) is not int:
            raise ConfigError(f"{source}: {name} must be an integer, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {name} must be a string, got {value!r}")
    return Path(value) if kind is Path else value


def from_mapping(cls: type[C], values: dict[str, Any], *, source: str = "config") -> C:
    """An instance from plain (TOML) values; unknown keys and wrong types are errors."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )
    return cls(**{name: convert(cls, name, value, source) for name, value in values.items()})


def with_overrides(config: C, overrides: dict[str, Any]) -> C:
    """A copy with the given (already typed) fields replaced; None values are ignored."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[type-var]


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's top-level table; ConfigError when unreadable or invalid."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its docstring (one paragraph), read from the class's source."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0]
    docs: dict[str, str] = {}
    if not isinstance(body, ast.ClassDef):
        return docs
    for item, nxt in itertools.pairwise(body.body):
        if (
            isinstance(item, ast.AnnAssign)
            and isinstance(item.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[item.target.id] = " ".join(nxt.value.value.split())
    return docs


def defaults(cls: type) -> dict[str, Any]:
    """Field name -> default value."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}
