"""Triggers and the policy that decides when a batch runs (sans-IO).

- ``ProcessingTime(interval)``: a batch every ``interval``; a batch that
  overruns is followed by the next one at once. A trigger that finds no new
  data runs no batch, unless the watermark moved (then a *no-data batch* runs,
  so append mode emits closed windows and old state is evicted). Interval 0
  means "as soon as the previous batch is done".
- ``Once()``: one batch with everything available, then stop.
- ``AvailableNow()``: everything available when the query starts, in batches
  bounded by ``max_records_per_trigger``, then stop.

``TriggerPolicy`` takes times (seconds, any monotonic clock) and facts and
returns decisions; the engine owns the clock and the sleeping.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from client.streaming.durations import Duration, parse_duration


@dataclass(frozen=True, slots=True)
class ProcessingTime:
    """A batch every ``interval_ms`` (0: back to back)."""

    interval_ms: int = 0


@dataclass(frozen=True, slots=True)
class Once:
    """A single batch with all available data, then stop."""


@dataclass(frozen=True, slots=True)
class AvailableNow:
    """All data available at start, in bounded batches, then stop."""


Trigger = ProcessingTime | Once | AvailableNow


def make_trigger(
    processing_time: Duration | None = None, once: bool = False, available_now: bool = False
) -> Trigger:
    """A trigger from the keyword arguments of ``writer.trigger(...)`` (exactly one)."""
    chosen = sum([processing_time is not None, bool(once), bool(available_now)])
    if chosen != 1:
        raise ValueError("choose exactly one of processing_time=, once=True, available_now=True")
    if processing_time is not None:
        return ProcessingTime(parse_duration(processing_time, what="trigger interval"))
    return Once() if once else AvailableNow()


class Decision(enum.Enum):
    RUN = "run"  # run a batch with the planned ranges
    SKIP = "skip"  # nothing to do now; wait for the next trigger
    STOP = "stop"  # the trigger is done; terminate the query


class TriggerPolicy:
    """When to plan and whether to run (see the module doc)."""

    def __init__(self, trigger: Trigger) -> None:
        self.trigger = trigger
        self.batches_run = 0
        self._last_start: float | None = None

    @property
    def interval(self) -> float:
        t = self.trigger
        return t.interval_ms / 1000.0 if isinstance(t, ProcessingTime) else 0.0

    @property
    def bounded(self) -> bool:
        """Whether the query stops by itself (Once, AvailableNow)."""
        return not isinstance(self.trigger, ProcessingTime)

    @property
    def limits_batches(self) -> bool:
        """Whether ``max_records_per_trigger`` applies (not to Once, as in Spark)."""
        return not isinstance(self.trigger, Once)

    def next_trigger_at(self, now: float) -> float:
        """When the next trigger fires: one interval after the previous trigger's
        start, or ``now`` if that moment has passed (an overrunning batch)."""
        if self._last_start is None:
            return now
        return max(now, self._last_start + self.interval)

    def triggered(self, now: float) -> None:
        """A trigger fired at ``now`` (planning starts)."""
        self._last_start = now

    def decide(self, *, has_data: bool, watermark_moved: bool, caught_up: bool) -> Decision:
        """What to do with a fresh plan.

        ``caught_up``: the plan reaches everything the trigger should process
        (for Once: always; for AvailableNow: the start-time target).
        """
        t = self.trigger
        if isinstance(t, ProcessingTime):
            run = has_data or watermark_moved
            return Decision.RUN if run else Decision.SKIP
        if isinstance(t, Once):
            if self.batches_run >= 1:
                return Decision.STOP
            return Decision.RUN if has_data or watermark_moved else Decision.STOP
        if has_data or watermark_moved:
            return Decision.RUN
        return Decision.STOP if caught_up else Decision.SKIP

    def ran(self) -> None:
        """A batch completed."""
        self.batches_run += 1
