"""Per-partition log configuration with documented defaults (see docs/storage.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FlushPolicy = Literal["every", "interval", "never"]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class LogConfig:
    # Roll the active segment once it would exceed this many bytes.
    segment_bytes: int = GIB
    # Roll the active segment once its first batch is this old (ms).
    segment_ms: int = 7 * DAY_MS
    # Bytes of batches between two sparse index entries.
    index_interval_bytes: int = 4 * KIB
    # Delete non-active segments whose newest timestamp is older than this; -1 keeps forever.
    retention_ms: int = 7 * DAY_MS
    # Delete oldest non-active segments while the log is larger than this; -1 means no limit.
    retention_bytes: int = -1
    # "delete", "compact" or "compact,delete".
    cleanup_policy: str = "delete"
    # How long a tombstone (value None) survives compaction, measured from its timestamp.
    delete_retention_ms: int = DAY_MS
    # "every": fsync before append returns; "interval": fsync when flush_interval_ms has
    # elapsed (decided at append time); "never": only when the broker calls flush().
    flush: FlushPolicy = "interval"
    flush_interval_ms: int = 1000
    # Largest batch accepted by append (bytes, including the header).
    max_batch_bytes: int = 1 * MIB + 12

    def __post_init__(self) -> None:
        if not 1 <= self.segment_bytes <= 2**31 - 1:
            raise ValueError("segment_bytes must be in [1, 2**31 - 1] (positions are u32)")
        if self.segment_ms < 1:
            raise ValueError("segment_ms must be >= 1")
        if self.index_interval_bytes < 1:
            raise ValueError("index_interval_bytes must be >= 1")
        if self.retention_ms < -1 or self.retention_bytes < -1:
            raise ValueError("retention_ms and retention_bytes must be >= -1")
        if self.flush not in ("every", "interval", "never"):
            raise ValueError(f"unknown flush policy {self.flush!r}")
        if self.flush_interval_ms < 0 or self.delete_retention_ms < 0:
            raise ValueError("flush_interval_ms and delete_retention_ms must be >= 0")
        if self.max_batch_bytes < 61:
            raise ValueError("max_batch_bytes must be >= 61")
        policies = {p.strip() for p in self.cleanup_policy.split(",")}
        if not policies or not policies <= {"delete", "compact"}:
            raise ValueError(f"unknown cleanup_policy {self.cleanup_policy!r}")

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy
