"""A bounded LRU of open file descriptors shared by many partition logs.

Segments hold paths, not descriptors, so 10,000 partitions with several
segments each need at most ``max_open`` descriptors plus those pinned by
operations in progress. A pinned descriptor is never closed by eviction, so a
reader in another thread cannot have its descriptor closed and reused under it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict


class _Entry:
    __slots__ = ("fd", "pins")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pins = 0


class FileCache:
    def __init__(self, max_open: int = 1000) -> None:
        if max_open < 1:
            raise ValueError("max_open must be >= 1")
        self.max_open = max_open
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._doomed: dict[str, list[_Entry]] = {}

    def acquire(self, path: str) -> int:
        """Return an open read-write descriptor for ``path``, pinned until release()."""
        with self._lock:
            e = self._entries.get(path)
            if e is not None:
                self._entries.move_to_end(path)
                e.pins += 1
                return e.fd
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        with self._lock:
            e = self._entries.get(path)
            if e is not None:
                # Another thread opened it meanwhile; keep theirs.
                os.close(fd)
            else:
                e = _Entry(fd)
                self._entries[path] = e
            e.pins += 1
            self._evict_locked()
            return e.fd

    def release(self, path: str, fd: int) -> None:
        with self._lock:
            e = self._entries.get(path)
            if e is not None and e.fd == fd:
                e.pins -= 1
                self._evict_locked()
                return
            doomed = self._doomed.get(path)
            if doomed:
                for d in doomed:
                    if d.fd == fd:
                        d.pins -= 1
                        if d.pins == 0:
                            os.close(d.fd)
                            doomed.remove(d)
                        break
                if not doomed:
                    del self._doomed[path]

    def forget(self, path: str) -> None:
        """Close the cached descriptor of ``path`` (before unlink or rename over it).

        A descriptor still pinned stays open until its last release.
        """
        with self._lock:
            e = self._entries.pop(path, None)
            if e is None:
                return
            if e.pins == 0:
                os.close(e.fd)
            else:
                self._doomed.setdefault(path, []).append(e)

    def _evict_locked(self) -> None:
        excess = len(self._entries) - self.max_open
        if excess <= 0:
            return
        victims = []
        for path, e in self._entries.items():
            if e.pins == 0:
                victims.append(path)
                if len(victims) >= excess:
                    break
        for path in victims:
            os.close(self._entries.pop(path).fd)

    def open_count(self) -> int:
        with self._lock:
            return len(self._entries) + sum(len(v) for v in self._doomed.values())

    def close_all(self) -> None:
        with self._lock:
            for e in self._entries.values():
                if e.pins == 0:
                    os.close(e.fd)
            self._entries = OrderedDict((p, e) for p, e in self._entries.items() if e.pins > 0)


DEFAULT_FILE_CACHE = FileCache(1000)
