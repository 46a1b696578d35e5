"""The event-time watermark (sans-IO).

The watermark is the largest event time seen so far minus the allowed delay;
it never moves back. Batch ``b`` runs with the watermark computed after batch
``b - 1`` (recorded in the offsets log, so a re-run of ``b`` uses the same
one); rows with an event time below it are *late*: dropped and counted. Batch
``b``'s own rows move the watermark for batch ``b + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class EventTimeStats:
    """Event times of one batch's rows (all rows reaching the watermark operator)."""

    min: int | None = None
    max: int | None = None
    total: int = 0
    count: int = 0

    def add(self, lo: int | None, hi: int | None, total: int, count: int) -> None:
        """Merge another partition's statistics."""
        if count == 0 or lo is None or hi is None:
            return
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        self.total += total
        self.count += count

    @property
    def avg(self) -> float | None:
        return self.total / self.count if self.count else None


class WatermarkTracker:
    """Max event time and watermark of one query."""

    def __init__(self, delay_ms: int, max_event_time: int | None = None) -> None:
        if delay_ms < 0:
            raise ValueError("the watermark delay must be >= 0")
        self.delay_ms = delay_ms
        self.max_event_time = max_event_time

    @property
    def watermark(self) -> int | None:
        """The current watermark (None until an event was seen)."""
        if self.max_event_time is None:
            return None
        return self.max_event_time - self.delay_ms

    def observe(self, batch_max: int | None) -> bool:
        """Account for a batch's largest event time; True if the watermark moved."""
        if batch_max is None:
            return False
        if self.max_event_time is None or batch_max > self.max_event_time:
            self.max_event_time = batch_max
            return True
        return False

    @staticmethod
    def is_late(event_time: int, watermark: int | None) -> bool:
        """Whether a row at ``event_time`` is dropped by ``watermark``."""
        return watermark is not None and event_time < watermark
