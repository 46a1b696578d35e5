"""The checkpoint directory: metadata, offsets log, commit log, source and sink files.

Layout (every file JSON, written to a temporary name, fsynced and renamed)::

    <dir>/metadata            {"id": query id, "format": 1, "options": {...}}
    <dir>/offsets/<batch>     what batch <batch> reads, written *before* it runs:
                              ranges per source partition, batch timestamp, watermark
    <dir>/commits/<batch>     written *after* the sink committed the batch: the
                              watermark state and the sink's own state after it
    <dir>/sources/<i>         source i's initial offsets (resolved once)
    <dir>/sinks/<name>        a sink's identity (e.g. the topic sink's producer id)
    <dir>/state/<op>/...      operator state (client.streaming.state)
    <dir>/lock                held (flock) by the running query

The decisions (``recovery_plan``, ``purge_plan``) are plain functions of the
batch ids found; ``CheckpointDirectory`` does the I/O.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from client.streaming.errors import CheckpointError, CheckpointLockedError
from client.streaming.state import write_file_atomic

FORMAT = 1


@dataclass(slots=True)
class OffsetEntry:
    """What one batch reads (``offsets/<batch_id>``)."""

    batch_id: int
    timestamp_ms: int
    watermark_ms: int | None
    # one dict per source: partition name -> [start, end)
    sources: list[dict[str, tuple[int, int]]]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "batch_id": self.batch_id,
            "timestamp_ms": self.timestamp_ms,
            "watermark_ms": self.watermark_ms,
            "sources": [{p: [s, e] for p, (s, e) in src.items()} for src in self.sources],
        }

    @classmethod
    def from_json(cls, raw: Any) -> OffsetEntry:
        try:
            return cls(
                int(raw["batch_id"]),
                int(raw["timestamp_ms"]),
                None if raw["watermark_ms"] is None else int(raw["watermark_ms"]),
                [
                    {str(p): (int(r[0]), int(r[1])) for p, r in src.items()}
                    for src in raw["sources"]
                ],
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CheckpointError(f"malformed offsets entry: {exc!r}") from exc

    def end_offsets(self) -> list[dict[str, int]]:
        return [{p: e for p, (_, e) in src.items()} for src in self.sources]


@dataclass(slots=True)
class CommitEntry:
    """What a committed batch leaves behind (``commits/<batch_id>``)."""

    batch_id: int
    max_event_time: int | None = None
    sink: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "batch_id": self.batch_id,
            "max_event_time": self.max_event_time,
            "sink": self.sink,
        }

    @classmethod
    def from_json(cls, raw: Any) -> CommitEntry:
        try:
            met = raw.get("max_event_time")
            return cls(int(raw["batch_id"]), None if met is None else int(met), dict(raw["sink"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"malformed commit entry: {exc!r}") from exc


# How many batches may have logged offsets without a commit: the one running.
MAX_UNCOMMITTED = 1


@dataclass(frozen=True, slots=True)
class RecoveryPlan:
    """Where a (re)started query resumes.

    ``last_committed``: the newest committed batch (-1: none). ``reruns``: the
    batch whose offsets were logged but which never committed (empty if none) —
    it runs again first, with exactly those offsets. ``next_batch``: the id of
    the first new batch.
    """

    last_committed: int
    reruns: tuple[int, ...]
    next_batch: int


def recovery_plan(offset_ids: list[int], commit_ids: list[int]) -> RecoveryPlan:
    """Decide how to resume from the batch ids present in the two logs."""
    last_offset = max(offset_ids, default=-1)
    last_commit = max(commit_ids, default=-1)
    if last_commit > last_offset:
        raise CheckpointError(
            f"commit log is ahead of the offsets log ({last_commit} > {last_offset})"
        )
    uncommitted = last_offset - last_commit
    if uncommitted > MAX_UNCOMMITTED:
        raise CheckpointError(
            f"offsets log at batch {last_offset} but commit log at {last_commit}: "
            f"more than {MAX_UNCOMMITTED} uncommitted batch"
        )
    missing = [b for b in range(last_commit + 1, last_offset + 1) if b not in set(offset_ids)]
    if missing:
        raise CheckpointError(f"offsets of batches {missing} are missing")
    return RecoveryPlan(
        last_commit, tuple(range(last_commit + 1, last_offset + 1)), last_offset + 1
    )


def purge_plan(ids: list[int], keep: int) -> list[int]:
    """Ids to delete so that only the newest ``keep`` remain."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    ordered = sorted(ids)
    return ordered[: max(0, len(ordered) - keep)]


def _ids(directory: str) -> list[int]:
    out = []
    for name in os.listdir(directory):
        if name.isdigit():
            out.append(int(name))
    return out


class CheckpointDirectory:
    """The files of one query's checkpoint (see the module doc)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.offsets_dir = os.path.join(self.path, "offsets")
        self.commits_dir = os.path.join(self.path, "commits")
        self.sources_dir = os.path.join(self.path, "sources")
        self.sinks_dir = os.path.join(self.path, "sinks")
        self.state_dir = os.path.join(self.path, "state")
        self._lock_fd: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, options: dict[str, Any]) -> dict[str, Any]:
        """Create or open the directory, take its lock, and return the metadata."""
        for d in (
            self.path,
            self.offsets_dir,
            self.commits_dir,
            self.sources_dir,
            self.sinks_dir,
            self.state_dir,
        ):
            os.makedirs(d, exist_ok=True)
        self._lock()
        meta_path = os.path.join(self.path, "metadata")
        if os.path.exists(meta_path):
            meta = self._read_json(meta_path)
            if not isinstance(meta, dict) or "id" not in meta:
                raise CheckpointError(f"{meta_path} has no query id")
            return meta
        meta = {"format": FORMAT, "id": str(uuid.uuid4()), "options": options}
        self._write_json(meta_path, meta)
        return meta

    def _lock(self) -> None:
        fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise CheckpointLockedError(
                f"checkpoint {self.path} is in use by another running query"
            ) from exc
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- files -----------------------------------------------------------------------------

    @staticmethod
    def _read_json(path: str) -> Any:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from exc

    @staticmethod
    def _write_json(path: str, value: Any) -> None:
        write_file_atomic(path, json.dumps(value, sort_keys=True).encode())

    def offset_ids(self) -> list[int]:
        return sorted(_ids(self.offsets_dir))

    def commit_ids(self) -> list[int]:
        return sorted(_ids(self.commits_dir))

    def recovery(self) -> RecoveryPlan:
        return recovery_plan(self.offset_ids(), self.commit_ids())

    def write_offsets(self, entry: OffsetEntry) -> None:
        self._write_json(os.path.join(self.offsets_dir, str(entry.batch_id)), entry.to_json())

    def read_offsets(self, batch_id: int) -> OffsetEntry:
        return OffsetEntry.from_json(self._read_json(os.path.join(self.offsets_dir, str(batch_id))))

    def write_commit(self, entry: CommitEntry) -> None:
        self._write_json(os.path.join(self.commits_dir, str(entry.batch_id)), entry.to_json())

    def read_commit(self, batch_id: int) -> CommitEntry:
        return CommitEntry.from_json(self._read_json(os.path.join(self.commits_dir, str(batch_id))))

    def read_source(self, index: int) -> dict[str, Any] | None:
        path = os.path.join(self.sources_dir, str(index))
        if not os.path.exists(path):
            return None
        raw = self._read_json(path)
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path} is not a JSON object")
        return raw

    def write_source(self, index: int, value: dict[str, Any]) -> None:
        self._write_json(os.path.join(self.sources_dir, str(index)), value)

    def read_sink(self, name: str) -> dict[str, Any] | None:
        path = os.path.join(self.sinks_dir, name)
        if not os.path.exists(path):
            return None
        raw = self._read_json(path)
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path} is not a JSON object")
        return raw

    def write_sink(self, name: str, value: dict[str, Any]) -> None:
        self._write_json(os.path.join(self.sinks_dir, name), value)

    def purge(self, keep: int) -> int:
        """Delete all but the newest ``keep`` entries of both logs; the oldest batch
        id still present (state older than it is no longer needed)."""
        for directory in (self.offsets_dir, self.commits_dir):
            for batch_id in purge_plan(_ids(directory), keep):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, str(batch_id)))
        remaining = self.commit_ids()
        return remaining[0] if remaining else 0
