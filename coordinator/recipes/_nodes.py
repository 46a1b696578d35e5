"""What a recipe stores in its participant nodes: an identifier and optional data."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import msgpack


@dataclass(frozen=True, slots=True)
class Participant:
    """A contender, lease holder, candidate or member, as read from its node."""

    node: str
    """The node's name (``_c_<guid>-<kind>-<sequence>``)."""
    identifier: str
    """The identifier the participant chose (default ``host:pid``)."""
    data: bytes
    """Data the participant attached (the leader's data, for an election)."""


def default_identifier() -> str:
    """``host:pid`` — enough to find the process behind a node."""
    return f"{socket.gethostname()}:{os.getpid()}"


def encode_participant(identifier: str, data: bytes = b"") -> bytes:
    """A node's data: msgpack ``{"id": identifier, "data": data}``."""
    if not isinstance(identifier, str):
        raise TypeError(f"an identifier must be a str, got {type(identifier).__name__}")
    if not isinstance(data, bytes):
        raise TypeError(f"participant data must be bytes, got {type(data).__name__}")
    packed: bytes = msgpack.packb({"id": identifier, "data": data}, use_bin_type=True)
    return packed


def decode_participant(node: str, raw: bytes) -> Participant:
    """Read a participant node; data written by other tools is shown as the identifier."""
    try:
        value = msgpack.unpackb(raw, raw=False)
    except ValueError:  # not msgpack (FormatError, ExtraData, bad UTF-8, ...)
        value = None
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        data = value.get("data", b"")
        return Participant(node, value["id"], data if isinstance(data, bytes) else b"")
    return Participant(node, raw.decode("utf-8", "replace"), raw)
