"""Znode path rules (ZooKeeper's PathUtils.validatePath) and helpers.

A path is absolute and ``/``-separated; ``/`` alone is the root. Segments are
never empty, ``.`` or ``..``; there is no trailing slash except the root; no NUL
or other control character appears; the UTF-8 encoding is at most
``MAX_PATH_BYTES`` long. A sequential create may end in ``/``: the server then
appends the sequence number as the last segment.
"""

from __future__ import annotations

import re

from coordinator.errors import InvalidPathError

ROOT = "/"
MAX_PATH_BYTES = 4096
# C0 controls, DEL, C1 controls and the characters ZooKeeper rejects (U+D800-U+F8FF
# surrogates/private use, U+FFF0-U+FFFF specials).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\uffff]")


def validate_path(path: object, *, sequential: bool = False) -> str:
    """Return ``path`` if it is a valid znode path, else raise InvalidPathError."""
    if not isinstance(path, str):
        raise InvalidPathError("path must be a string")
    if sequential and path.endswith("/"):
        # The sequence suffix becomes the final segment, as in ZooKeeper.
        _check(path + "0")
        return path
    _check(path)
    return path


def _check(path: str) -> None:
    if not path:
        raise InvalidPathError("path must not be empty")
    if path[0] != "/":
        raise InvalidPathError(f"path must start with '/': {path!r}")
    if len(path) > MAX_PATH_BYTES or len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPathError(f"path is longer than {MAX_PATH_BYTES} bytes")
    if path == ROOT:
        return
    if path[-1] == "/":
        raise InvalidPathError(f"path must not end with '/': {path!r}")
    bad = _FORBIDDEN.search(path)
    if bad is not None:
        raise InvalidPathError(f"invalid character {bad.group()!r} in path {path!r}")
    for segment in path[1:].split("/"):
        if not segment:
            raise InvalidPathError(f"empty segment in path {path!r}")
        if segment in (".", ".."):
            raise InvalidPathError(f"relative segment {segment!r} in path {path!r}")


def parent_of(path: str) -> str:
    """The parent of a valid non-root path."""
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else ROOT


def name_of(path: str) -> str:
    """The last segment of a valid non-root path."""
    return path[path.rfind("/") + 1 :]


def join(parent: str, name: str) -> str:
    return parent + name if parent == ROOT else f"{parent}/{name}"


def ancestors(path: str) -> list[str]:
    """``path`` and every ancestor up to the root, nearest first."""
    out = [path]
    while path != ROOT:
        path = parent_of(path)
        out.append(path)
    return out


def is_under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or a descendant of it."""
    if prefix == ROOT or path == prefix:
        return True
    return path.startswith(prefix) and path[len(prefix)] == "/"
