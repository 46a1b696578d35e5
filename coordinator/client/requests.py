"""Argument checking and payload building shared by the async and blocking clients.

Bad arguments fail here, before anything is sent, with ValueError or TypeError.
"""

from __future__ import annotations

import math
from typing import Any

from coordinator.protocol import CreateMode, Stat


def check_path(path: object, *, sequential: bool = False) -> str:
    """Validate a znode path (ZooKeeper's PathUtils.validatePath) and return it."""
    if not isinstance(path, str):
        raise TypeError(f"a path must be a str, got {type(path).__name__}")
    if not path.startswith("/"):
        raise ValueError(f"a path must start with '/': {path!r}")
    if path == "/":
        return path
    # A sequential create may end in '/': the server appends the sequence number.
    body = path[1:-1] if sequential and path.endswith("/") else path[1:]
    if path.endswith("/") and not sequential:
        raise ValueError(f"a path must not end with '/': {path!r}")
    for part in body.split("/"):
        if not part:
            raise ValueError(f"empty node name in {path!r}")
        if part in (".", ".."):
            raise ValueError(f"relative node name {part!r} in {path!r}")
        if "\x00" in part:
            raise ValueError(f"NUL character in {path!r}")
    return path


def check_data(data: object) -> bytes:
    """Node data as bytes (bytearray and memoryview are copied); else TypeError."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"node data must be bytes, got {type(data).__name__}")


def check_version(version: object) -> int:
    """An expected version: -1 (any) or >= 0."""
    if type(version) is not int:
        raise TypeError(f"a version must be an int, got {type(version).__name__}")
    if version < -1:
        raise ValueError(f"a version is -1 (any) or >= 0, got {version}")
    return version


def create_mode(
    *, ephemeral: bool, sequential: bool, container: bool, ttl: float | None
) -> CreateMode:
    """The CreateMode for kazoo-style flags; impossible combinations raise ValueError."""
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float):
            raise TypeError("ttl must be a number of seconds")
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl}")
        if ephemeral or container:
            raise ValueError("ttl applies to persistent nodes only")
        return (
            CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL
            if sequential
            else CreateMode.PERSISTENT_WITH_TTL
        )
    if container:
        if ephemeral or sequential:
            raise ValueError("a container node cannot be ephemeral or sequential")
        return CreateMode.CONTAINER
    if ephemeral:
        return CreateMode.EPHEMERAL_SEQUENTIAL if sequential else CreateMode.EPHEMERAL
    return CreateMode.PERSISTENT_SEQUENTIAL if sequential else CreateMode.PERSISTENT


def create_payload(
    path: str,
    data: object,
    *,
    ephemeral: bool,
    sequential: bool,
    make_parents: bool,
    container: bool,
    ttl: float | None,
) -> dict[str, Any]:
    """The CREATE request (also a MULTI "create" op) for kazoo-style arguments."""
    mode = create_mode(ephemeral=ephemeral, sequential=sequential, container=container, ttl=ttl)
    payload: dict[str, Any] = {
        "path": check_path(path, sequential=sequential),
        "data": check_data(data),
        "mode": int(mode),
        "make_parents": bool(make_parents),
    }
    if ttl is not None:
        payload["ttl_ms"] = max(1, round(ttl * 1000))
    return payload


def parse_stat(value: Any) -> Stat:
    """A Stat from its wire list."""
    return Stat.from_wire(value)


def parse_optional_stat(value: Any) -> Stat | None:
    """A Stat from its wire list, or None for nil (exists() of a missing node)."""
    return None if value is None else Stat.from_wire(value)
