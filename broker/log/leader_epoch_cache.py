"""Leader epoch -> start offset, checkpointed; answers OffsetsForLeaderEpoch (KIP-101/279)."""

from __future__ import annotations

import logging
from bisect import bisect_right

from broker.log.checkpoint import read_checkpoint, write_checkpoint
from broker.log.errors import CorruptCheckpoint

log = logging.getLogger(__name__)

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1
_VERSION = "leader-epoch v1"


class LeaderEpochCache:
    def __init__(self, path: str) -> None:
        self.path = path
        self.epochs: list[int] = []
        self.start_offsets: list[int] = []

    @classmethod
    def load(cls, path: str) -> LeaderEpochCache:
        cache = cls(path)
        try:
            lines = read_checkpoint(path)
        except CorruptCheckpoint as exc:
            log.warning("ignoring leader epoch checkpoint: %s", exc)
            lines = None
        if lines and lines[0] == _VERSION:
            prev_e, prev_o = -1, -1
            for line in lines[1:]:
                parts = line.split()
                if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
                    log.warning("ignoring malformed leader epoch checkpoint %s", path)
                    cache.epochs, cache.start_offsets = [], []
                    break
                e, o = int(parts[0]), int(parts[1])
                if e <= prev_e or o < prev_o:
                    log.warning("ignoring non-monotonic leader epoch checkpoint %s", path)
                    cache.epochs, cache.start_offsets = [], []
                    break
                cache.epochs.append(e)
                cache.start_offsets.append(o)
                prev_e, prev_o = e, o
        return cache

    def save(self) -> None:
        lines = [_VERSION] + [
            f"{e} {o}" for e, o in zip(self.epochs, self.start_offsets, strict=True)
        ]
        write_checkpoint(self.path, lines)

    @property
    def latest_epoch(self) -> int:
        return self.epochs[-1] if self.epochs else UNDEFINED_EPOCH

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self.epochs, self.start_offsets, strict=True))

    def assign(self, epoch: int, start_offset: int, *, save: bool = True) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; True if the cache changed."""
        if epoch < 0 or (self.epochs and epoch <= self.epochs[-1]):
            return False
        # A newer epoch starting at or below older entries supersedes them.
        while self.start_offsets and self.start_offsets[-1] >= start_offset:
            self.epochs.pop()
            self.start_offsets.pop()
        self.epochs.append(epoch)
        self.start_offsets.append(start_offset)
        if save:
            self.save()
        return True

    def truncate_from_end(self, end_offset: int, *, save: bool = True) -> None:
        """Forget epochs starting at or after ``end_offset`` (log truncated to it)."""
        i = len(self.start_offsets)
        while i > 0 and self.start_offsets[i - 1] >= end_offset:
            i -= 1
        if i != len(self.epochs):
            del self.epochs[i:]
            del self.start_offsets[i:]
            if save:
                self.save()

    def truncate_from_start(self, start_offset: int, *, save: bool = True) -> None:
        """Log start moved to ``start_offset``: the epoch covering it now starts there."""
        i = bisect_right(self.start_offsets, start_offset)
        if i == 0:
            return
        changed = i > 1 or self.start_offsets[0] != start_offset
        del self.epochs[: i - 1]
        del self.start_offsets[: i - 1]
        self.start_offsets[0] = max(self.start_offsets[0], start_offset)
        if changed and save:
            self.save()

    def clear(self, *, save: bool = True) -> None:
        self.epochs, self.start_offsets = [], []
        if save:
            self.save()

    def end_offset_for_epoch(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """Kafka's OffsetsForLeaderEpoch: (largest epoch <= ``epoch``, its end offset)."""
        if epoch == UNDEFINED_EPOCH or not self.epochs:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if epoch == self.epochs[-1]:
            return epoch, log_end_offset
        hi = bisect_right(self.epochs, epoch)
        if hi == len(self.epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if hi == 0:
            return epoch, self.start_offsets[0]
        return self.epochs[hi - 1], self.start_offsets[hi]
