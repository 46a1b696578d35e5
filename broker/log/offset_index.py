"""Sparse offset index: relative offset (u32) -> file position (u32), big-endian pairs.

Held in memory as two arrays (8 bytes per entry) and written to the
``.index`` file when the segment rolls or the log closes; after a crash the
index of every segment past the recovery point is rebuilt by scanning.
"""

from __future__ import annotations

import contextlib
import os
import sys
from array import array
from bisect import bisect_right

from broker.log.checkpoint import write_atomic

ENTRY_SIZE = 8


def _u32_array() -> array[int]:
    a = array("I")
    if a.itemsize != 4:
        a = array("L")
    return a


class OffsetIndex:
    __slots__ = ("path", "positions", "relative_offsets")

    def __init__(self, path: str) -> None:
        self.path = path
        self.relative_offsets = _u32_array()
        self.positions = _u32_array()

    def __len__(self) -> int:
        return len(self.relative_offsets)

    def append(self, relative_offset: int, position: int) -> None:
        self.relative_offsets.append(relative_offset)
        self.positions.append(position)

    def lookup(self, relative_offset: int) -> int:
        """Position of the last indexed batch starting at or before ``relative_offset``."""
        i = bisect_right(self.relative_offsets, relative_offset) - 1
        return self.positions[i] if i >= 0 else 0

    def floor_position(self, position: int) -> tuple[int, int]:
        """(relative_offset, position) of the last entry at or before ``position``."""
        i = bisect_right(self.positions, position) - 1
        if i < 0:
            return -1, 0
        return self.relative_offsets[i], self.positions[i]

    def truncate_to_position(self, position: int) -> None:
        """Drop entries pointing at or beyond ``position``."""
        i = bisect_right(self.positions, position - 1) if position > 0 else 0
        del self.relative_offsets[i:]
        del self.positions[i:]

    def clear(self) -> None:
        del self.relative_offsets[:]
        del self.positions[:]

    def to_bytes(self) -> bytes:
        out = _u32_array()
        out.frombytes(bytes(ENTRY_SIZE * len(self.relative_offsets)))
        out[0::2] = self.relative_offsets
        out[1::2] = self.positions
        if sys.byteorder == "little":
            out.byteswap()
        return out.tobytes()

    def save(self, *, sync: bool = False) -> None:
        write_atomic(self.path, self.to_bytes(), sync=sync)

    def load(self, log_size: int) -> bool:
        """Load from disk; False (index left empty) if missing or inconsistent."""
        self.clear()
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return False
        if len(data) % ENTRY_SIZE:
            return False
        a = _u32_array()
        a.frombytes(data)
        if sys.byteorder == "little":
            a.byteswap()
        rels, poss = a[0::2], a[1::2]
        for i in range(1, len(rels)):
            if rels[i] <= rels[i - 1] or poss[i] <= poss[i - 1]:
                return False
        if len(poss) and poss[-1] >= log_size:
            return False
        self.relative_offsets, self.positions = rels, poss
        return True

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
