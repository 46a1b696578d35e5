"""Pluggable serializers (producer) and deserializers (consumer).

A serializer is any callable ``value -> bytes | None``; a deserializer any
callable ``bytes -> value``. The built-in ones are named by a string:
``"bytes"`` (the default: no conversion), ``"str"`` (UTF-8), ``"json"`` and
``"msgpack"``. ``None`` keys and values always pass through as ``None`` (a null
record value is a tombstone in a compacted topic).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack

Serializer = Callable[[Any], bytes | None]
Deserializer = Callable[[bytes | None], Any]


def serialize_bytes(value: Any) -> bytes | None:
    """``bytes`` as they are; ``bytearray``/``memoryview`` copied to ``bytes``."""
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(
        f"value of type {type(value).__name__} is not bytes; "
        "configure a serializer (e.g. value_serializer='str' or 'json')"
    )


def serialize_str(value: Any) -> bytes | None:
    """A ``str`` encoded as UTF-8."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"the str serializer needs a str, got {type(value).__name__}")
    return value.encode()


def serialize_json(value: Any) -> bytes | None:
    """Any JSON-serialisable value as compact UTF-8 JSON."""
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def serialize_msgpack(value: Any) -> bytes | None:
    """Any msgpack-serialisable value."""
    if value is None:
        return None
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


def deserialize_bytes(data: bytes | None) -> Any:
    """The bytes as they are."""
    return data


def deserialize_str(data: bytes | None) -> Any:
    """UTF-8 text (``None`` stays ``None``)."""
    return None if data is None else data.decode()


def deserialize_json(data: bytes | None) -> Any:
    """A JSON document (``None`` stays ``None``)."""
    return None if data is None else json.loads(data)


def deserialize_msgpack(data: bytes | None) -> Any:
    """A msgpack document (``None`` stays ``None``)."""
    return None if data is None else msgpack.unpackb(data, raw=False)


SERIALIZERS: dict[str, Serializer] = {
    "bytes": serialize_bytes,
    "str": serialize_str,
    "json": serialize_json,
    "msgpack": serialize_msgpack,
}

DESERIALIZERS: dict[str, Deserializer] = {
    "bytes": deserialize_bytes,
    "str": deserialize_str,
    "json": deserialize_json,
    "msgpack": deserialize_msgpack,
}


def resolve_serializer(spec: str | Serializer | None) -> Serializer | None:
    """The serializer for a config value; ``None`` means raw bytes (the fast path)."""
    if spec is None or spec == "bytes":
        return None
    if isinstance(spec, str):
        try:
            return SERIALIZERS[spec]
        except KeyError:
            raise ValueError(
                f"unknown serializer {spec!r}; choose one of {sorted(SERIALIZERS)} or a callable"
            ) from None
    if not callable(spec):
        raise TypeError(f"a serializer must be a name or a callable, got {spec!r}")
    return spec


def resolve_deserializer(spec: str | Deserializer | None) -> Deserializer | None:
    """The deserializer for a config value; ``None`` means raw bytes (the fast path)."""
    if spec is None or spec == "bytes":
        return None
    if isinstance(spec, str):
        try:
            return DESERIALIZERS[spec]
        except KeyError:
            raise ValueError(
                f"unknown deserializer {spec!r}; choose one of {sorted(DESERIALIZERS)} "
                "or a callable"
            ) from None
    if not callable(spec):
        raise TypeError(f"a deserializer must be a name or a callable, got {spec!r}")
    return spec
