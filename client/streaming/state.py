"""Versioned operator state: an in-memory store (sans-IO) and its files.

``StateStore`` maps keys (tuples of scalars) to values (tuples of scalars),
each with an optional *expiry* time (a window's end) indexed in order, so the
entries a watermark makes obsolete are found without a scan. Changes since the
last ``commit`` are tracked twice: as a *delta* (what to write to disk) and as
an *undo log* (``abort`` restores the last committed contents, so a batch that
fails half-way leaves no trace).

``StateFiles`` persists a store as Spark's HDFS state store does: version ``v``
is ``<v>.delta`` (the changes of batch ``v - 1``) and, every
``snapshot_interval`` versions, ``<v>.snapshot`` (everything). Loading version
``v`` reads the newest snapshot at or below ``v`` and replays the deltas after
it. Every file is written to a temporary name, fsynced and renamed, and carries
a CRC, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
from sortedcontainers import SortedDict

from client.streaming.errors import CheckpointError

Key = tuple[Any, ...]
Value = tuple[Any, ...]

_MISSING: Any = object()


@dataclass(slots=True)
class StateDelta:
    """The changes of one version: entries written and keys removed."""

    puts: list[tuple[Key, Value, int | None]] = field(default_factory=list)
    removes: list[Key] = field(default_factory=list)


class StateStore:
    """Key -> (value, expiry) with an expiry index and commit/abort (see the module doc)."""

    def __init__(self, version: int = 0) -> None:
        self.version = version
        self._data: dict[Key, tuple[Value, int | None]] = {}
        self._expiry: Any = SortedDict()  # expiry -> dict of keys (insertion ordered)
        self._undo: dict[Key, Any] = {}
        self.updated = 0
        self.removed = 0

    # -- reads -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: Key) -> Value | None:
        """The value of ``key``, or None."""
        entry = self._data.get(key)
        return None if entry is None else entry[0]

    def get_entry(self, key: Key) -> tuple[Value, int | None] | None:
        """``(value, expiry)`` of ``key``, or None."""
        return self._data.get(key)

    def items(self) -> Iterator[tuple[Key, Value]]:
        """Every ``(key, value)``, in insertion order."""
        for k, (v, _) in self._data.items():
            yield k, v

    def entries(self) -> Iterator[tuple[Key, Value, int | None]]:
        """Every ``(key, value, expiry)``."""
        for k, (v, e) in self._data.items():
            yield k, v, e

    def to_dict(self) -> dict[Key, Value]:
        """A plain dict copy of the contents (for tests and models)."""
        return {k: v for k, (v, _) in self._data.items()}

    # -- writes ----------------------------------------------------------------------------

    def _remember(self, key: Key) -> None:
        if key not in self._undo:
            old = self._data.get(key)
            self._undo[key] = _MISSING if old is None else old

    def _unindex(self, key: Key, expiry: int | None) -> None:
        if expiry is None:
            return
        keys = self._expiry.get(expiry)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._expiry[expiry]

    def _index(self, key: Key, expiry: int | None) -> None:
        if expiry is None:
            return
        keys = self._expiry.get(expiry)
        if keys is None:
            keys = self._expiry[expiry] = {}
        keys[key] = None

    def put(self, key: Key, value: Value, expiry: int | None = None) -> None:
        """Set ``key`` to ``value``, expiring once a watermark reaches ``expiry``."""
        self._remember(key)
        old = self._data.get(key)
        if old is not None:
            self._unindex(key, old[1])
        self._data[key] = (value, expiry)
        self._index(key, expiry)
        self.updated += 1

    def remove(self, key: Key) -> Value | None:
        """Delete ``key``; its old value (None if absent)."""
        old = self._data.get(key)
        if old is None:
            return None
        self._remember(key)
        del self._data[key]
        self._unindex(key, old[1])
        self.removed += 1
        return old[0]

    def expired(self, watermark: int) -> list[tuple[Key, Value]]:
        """Entries whose expiry is at or below ``watermark`` (expiry order, then insertion)."""
        out: list[tuple[Key, Value]] = []
        for expiry in self._expiry.irange(maximum=watermark):
            for key in self._expiry[expiry]:
                out.append((key, self._data[key][0]))
        return out

    def evict(self, watermark: int) -> list[tuple[Key, Value]]:
        """Remove and return the entries ``expired(watermark)`` lists."""
        out = self.expired(watermark)
        for key, _ in out:
            self.remove(key)
        return out

    # -- versions --------------------------------------------------------------------------

    def delta(self) -> StateDelta:
        """The changes since the last commit."""
        d = StateDelta()
        for key in self._undo:
            entry = self._data.get(key)
            if entry is None:
                d.removes.append(key)
            else:
                d.puts.append((key, entry[0], entry[1]))
        return d

    def commit(self) -> StateDelta:
        """Close the current version: returns its delta; ``version`` increases by one."""
        d = self.delta()
        self._undo = {}
        self.version += 1
        self.updated = 0
        self.removed = 0
        return d

    def abort(self) -> None:
        """Undo every change since the last commit."""
        for key, old in self._undo.items():
            cur = self._data.pop(key, None)
            if cur is not None:
                self._unindex(key, cur[1])
            if old is not _MISSING:
                self._data[key] = old
                self._index(key, old[1])
        self._undo = {}
        self.updated = 0
        self.removed = 0

    def apply(self, delta: StateDelta) -> None:
        """Replay a delta (recovery); the changes count as uncommitted until ``commit``."""
        for key in delta.removes:
            self.remove(key)
        for key, value, expiry in delta.puts:
            self.put(key, value, expiry)

    def estimated_bytes(self) -> int:
        """A rough size of the contents (for progress reports)."""
        if not self._data:
            return 0
        sample_key, (sample_value, _) = next(iter(self._data.items()))
        per = 64 + 16 * (len(sample_key) + len(sample_value))
        return per * len(self._data)


# -- files -------------------------------------------------------------------------------

_FILE_RE = re.compile(r"^(\d+)\.(delta|snapshot)$")
_FORMAT = 1


def _tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x)


def write_file_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` durably: temp file, fsync, rename, fsync the directory."""
    directory = os.path.dirname(path) or "."
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    """fsync a directory so a rename in it is durable."""
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _pack(kind: str, version: int, body: Any) -> bytes:
    payload: bytes = msgpack.packb([_FORMAT, kind, version, body], use_bin_type=True)
    return zlib.crc32(payload).to_bytes(4, "big") + payload


def _unpack(path: str, kind: str, version: int) -> Any:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read state file {path}: {exc}") from exc
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != zlib.crc32(raw[4:]):
        raise CheckpointError(f"state file {path} is corrupt (CRC mismatch)")
    try:
        fmt, got_kind, got_version, body = msgpack.unpackb(raw[4:], raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CheckpointError(f"state file {path} is corrupt: {exc}") from exc
    if fmt != _FORMAT or got_kind != kind or got_version != version:
        raise CheckpointError(f"state file {path} has an unexpected header")
    return body


class StateFiles:
    """The files of one operator's state under ``directory`` (see the module doc)."""

    def __init__(self, directory: str, *, snapshot_interval: int = 10) -> None:
        if snapshot_interval < 1:
            raise ValueError("snapshot_interval must be >= 1")
        self.directory = directory
        self.snapshot_interval = snapshot_interval
        os.makedirs(directory, exist_ok=True)

    def _path(self, version: int, kind: str) -> str:
        return os.path.join(self.directory, f"{version}.{kind}")

    def listing(self) -> tuple[set[int], set[int]]:
        """Versions with a delta file and versions with a snapshot file."""
        deltas: set[int] = set()
        snaps: set[int] = set()
        for name in os.listdir(self.directory):
            m = _FILE_RE.match(name)
            if m:
                (deltas if m.group(2) == "delta" else snaps).add(int(m.group(1)))
        return deltas, snaps

    def write(self, store: StateStore, delta: StateDelta) -> None:
        """Persist ``store`` at its (just committed) version: the delta, plus a
        snapshot every ``snapshot_interval`` versions."""
        version = store.version
        body = [
            [[list(k), list(v), e] for k, v, e in delta.puts],
            [list(k) for k in delta.removes],
        ]
        write_file_atomic(self._path(version, "delta"), _pack("delta", version, body))
        if version % self.snapshot_interval == 0:
            snap = [[list(k), list(v), e] for k, v, e in store.entries()]
            write_file_atomic(self._path(version, "snapshot"), _pack("snapshot", version, snap))

    def load(self, version: int) -> StateStore:
        """The store as it was at ``version`` (0 is the empty store)."""
        store = StateStore()
        if version == 0:
            return store
        deltas, snaps = self.listing()
        base = max((s for s in snaps if s <= version), default=0)
        if base:
            for k, v, e in _unpack(self._path(base, "snapshot"), "snapshot", base):
                store.put(_tuple(k), _tuple(v), e)
        for v in range(base + 1, version + 1):
            if v not in deltas:
                raise CheckpointError(
                    f"state version {version} needs {self._path(v, 'delta')}, which is missing"
                )
            puts, removes = _unpack(self._path(v, "delta"), "delta", v)
            store.apply(
                StateDelta(
                    [(_tuple(k), _tuple(val), e) for k, val, e in puts],
                    [_tuple(k) for k in removes],
                )
            )
        store.commit()
        store.version = version
        return store

    def purge(self, oldest_needed: int) -> None:
        """Delete files no longer needed to load any version >= ``oldest_needed``."""
        deltas, snaps = self.listing()
        base = max((s for s in snaps if s <= oldest_needed), default=0)
        for v in deltas:
            if v <= base:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(v, "delta"))
        for v in snaps:
            if v < base:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(v, "snapshot"))

    def discard_after(self, version: int) -> None:
        """Delete files of versions above ``version`` (left by a batch that never committed)."""
        deltas, snaps = self.listing()
        for v in deltas:
            if v > version:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(v, "delta"))
        for v in snaps:
            if v > version:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(v, "snapshot"))
