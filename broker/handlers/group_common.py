"""Helpers shared by the consumer-group handlers: optional fields and error entries."""

from __future__ import annotations

from typing import Any

from broker.groups.records import Assignment
from client.wire import InvalidRequestError, Payload, ServerError

INT32_MAX = 2**31 - 1


def optional_text(p: Payload, key: str) -> str | None:
    value = p.raw(key, None)
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"field {key!r} must be a string or nil")
    return value


def optional_texts(p: Payload, key: str) -> list[str] | None:
    value = p.raw(key, None)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequestError(f"field {key!r} must be a list of strings or nil")
    return value


def topic_partitions(raw: Any, key: str) -> Assignment:
    """``[{topic, partitions: [int]}]`` as an assignment."""
    if not isinstance(raw, list):
        raise InvalidRequestError(f"field {key!r} must be a list")
    out: dict[str, frozenset[int]] = {}
    for entry in raw:
        tp = Payload(entry)
        topic = tp.text("topic")
        parts = tp.array("partitions")
        if not all(type(x) is int and 0 <= x <= INT32_MAX for x in parts):
            raise InvalidRequestError(f"field {key!r}: partitions must be non-negative integers")
        if parts:
            out[topic] = out.get(topic, frozenset()) | frozenset(parts)
    return out


def error_fields(error: ServerError | None) -> dict[str, Any]:
    if error is None:
        return {"error_code": 0, "error_message": None}
    return {"error_code": error.code, "error_message": error.message}


def peer_host(peer: str) -> str:
    host, _, _ = peer.rpartition(":")
    return host or peer
