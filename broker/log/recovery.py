"""Start-up housekeeping: leftover temporaries, interrupted compaction swaps, segment listing."""

from __future__ import annotations

import logging
import os
import re

log = logging.getLogger(__name__)

_SEGMENT_RE = re.compile(r"^(\d{20})\.(log|index|timeindex|log\.cleaned|log\.swap)$")


def tidy_directory(directory: str) -> set[int]:
    """Finish or undo interrupted work; return base offsets whose indexes must be rebuilt.

    ``*.tmp`` and ``*.log.cleaned`` are incomplete and deleted. A ``*.log.swap`` is a
    complete, fsynced compacted segment, so the swap is finished by renaming it over
    the ``.log``; its old indexes no longer match and are deleted.
    """
    rebuild: set[int] = set()
    logs: set[int] = set()
    indexes: list[tuple[int, str]] = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.endswith(".tmp"):
            os.unlink(path)
            continue
        m = _SEGMENT_RE.match(name)
        if not m:
            continue
        base, kind = int(m.group(1)), m.group(2)
        if kind == "log.cleaned":
            os.unlink(path)
        elif kind == "log.swap":
            log.warning("completing interrupted compaction swap of %s", path)
            os.replace(path, path[: -len(".swap")])
            logs.add(base)
            rebuild.add(base)
        elif kind == "log":
            logs.add(base)
        else:
            indexes.append((base, path))
    for base, path in indexes:
        if base not in logs or base in rebuild:
            os.unlink(path)
    return rebuild


def segment_bases(directory: str) -> list[int]:
    out = []
    for name in os.listdir(directory):
        m = _SEGMENT_RE.match(name)
        if m and m.group(2) == "log":
            out.append(int(m.group(1)))
    return sorted(out)
