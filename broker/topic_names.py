"""Topic name rules (Kafka's): ``[a-zA-Z0-9._-]``, 1..249 characters, not ``.`` or ``..``."""

from __future__ import annotations

import re

from client.protocol import InvalidTopicError

MAX_TOPIC_NAME_LENGTH = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")


def topic_name_problem(name: object) -> str | None:
    """Why ``name`` is not a legal topic name, or None when it is."""
    if not isinstance(name, str):
        return f"a topic name must be a string, got {type(name).__name__}"
    if not name:
        return "a topic name must not be empty"
    if name in (".", ".."):
        return f"a topic name cannot be {name!r}"
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        return f"a topic name is at most {MAX_TOPIC_NAME_LENGTH} characters, got {len(name)}"
    if _LEGAL.fullmatch(name) is None:
        return f"topic name {name!r} has characters outside [a-zA-Z0-9._-]"
    return None


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is legal, else raise INVALID_TOPIC_EXCEPTION."""
    problem = topic_name_problem(name)
    if problem is not None or not isinstance(name, str):
        raise InvalidTopicError(problem or "a topic name must be a string")
    return name


def is_internal(name: str) -> bool:
    """Internal topics (``__consumer_offsets`` and friends) start with two underscores."""
    return name.startswith("__")
