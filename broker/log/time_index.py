"""Sparse time index: timestamp (i64) -> relative offset (u32), 12-byte big-endian entries.

An entry ``(ts, rel)`` says: the batches up to and including the one at
relative offset ``rel`` have max_timestamp <= ts, and that batch reached ts.
Timestamps in the index only grow, so a lookup is a binary search.
"""

from __future__ import annotations

import contextlib
import os
import struct
from array import array
from bisect import bisect_left

from broker.log.checkpoint import write_atomic

ENTRY = struct.Struct(">qI")
ENTRY_SIZE = ENTRY.size


class TimeIndex:
    __slots__ = ("path", "relative_offsets", "timestamps")

    def __init__(self, path: str) -> None:
        self.path = path
        self.timestamps: array[int] = array("q")
        self.relative_offsets: array[int] = array("q")

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def max_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else -1

    def maybe_append(self, timestamp: int, relative_offset: int) -> None:
        if not self.timestamps or timestamp > self.timestamps[-1]:
            self.timestamps.append(timestamp)
            self.relative_offsets.append(relative_offset)

    def lookup(self, timestamp: int) -> int:
        """Relative offset to start scanning from for the first batch with max_ts >= timestamp.

        Every batch before the returned one has max_timestamp < timestamp.
        """
        i = bisect_left(self.timestamps, timestamp) - 1
        return self.relative_offsets[i] if i >= 0 else 0

    def truncate_to_relative(self, relative_offset: int) -> None:
        """Drop entries for batches at or after ``relative_offset``."""
        i = len(self.relative_offsets)
        while i > 0 and self.relative_offsets[i - 1] >= relative_offset:
            i -= 1
        del self.timestamps[i:]
        del self.relative_offsets[i:]

    def clear(self) -> None:
        del self.timestamps[:]
        del self.relative_offsets[:]

    def to_bytes(self) -> bytes:
        return b"".join(
            ENTRY.pack(t, r) for t, r in zip(self.timestamps, self.relative_offsets, strict=True)
        )

    def save(self, *, sync: bool = False) -> None:
        write_atomic(self.path, self.to_bytes(), sync=sync)

    def load(self) -> bool:
        self.clear()
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return False
        if len(data) % ENTRY_SIZE:
            return False
        ts: array[int] = array("q")
        rel: array[int] = array("q")
        last_t = None
        last_r = -1
        for t, r in ENTRY.iter_unpack(data):
            if (last_t is not None and t <= last_t) or r < last_r:
                self.clear()
                return False
            ts.append(t)
            rel.append(r)
            last_t, last_r = t, r
        self.timestamps, self.relative_offsets = ts, rel
        return True

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
