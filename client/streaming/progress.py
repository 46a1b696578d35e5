"""Progress reports, shaped like Spark's ``StreamingQueryProgress`` (sans-IO).

One ``QueryProgress`` per batch: ids, input rows and rates, a duration
breakdown, event-time statistics, state operator metrics, per-source offsets
and lag, and the sink's output rows. ``ProgressRecorder`` turns timings and
counts handed to it into a report; it never reads a clock itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

DURATION_KEYS = ("planning", "offsets_commit", "processing", "sink", "commit", "trigger_execution")


@dataclass(slots=True)
class SourceProgress:
    """One source's part of a batch."""

    description: str
    start_offset: dict[str, int]
    end_offset: dict[str, int]
    latest_offset: dict[str, int]
    num_input_rows: int
    input_rows_per_second: float
    processed_rows_per_second: float
    #: per partition: latest available offset minus the batch's end offset
    lag: dict[str, int] = field(default_factory=dict)

    @property
    def max_lag(self) -> int:
        return max(self.lag.values(), default=0)


@dataclass(slots=True)
class StateOperatorProgress:
    """A stateful operator's state after a batch."""

    operator_name: str
    num_rows_total: int
    num_rows_updated: int
    num_rows_removed: int
    num_rows_dropped_by_watermark: int
    memory_used_bytes: int


@dataclass(slots=True)
class SinkProgress:
    description: str
    num_output_rows: int


@dataclass(slots=True)
class QueryProgress:
    """Everything about one completed batch (Spark's field names, in snake case)."""

    id: str
    run_id: str
    name: str | None
    timestamp: str
    batch_id: int
    num_input_rows: int
    input_rows_per_second: float
    processed_rows_per_second: float
    duration_ms: dict[str, float]
    event_time: dict[str, Any]
    state_operators: list[StateOperatorProgress]
    sources: list[SourceProgress]
    sink: SinkProgress
    num_rows_dropped_by_watermark: int = 0
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def json(self) -> str:
        """The report as a JSON document (Spark's ``progress.json``)."""
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(slots=True)
class QueryStatus:
    """What the query is doing right now (Spark's ``StreamingQueryStatus``)."""

    message: str = "Initializing"
    is_data_available: bool = False
    is_trigger_active: bool = False


def format_time_ms(ms: int | None) -> str | None:
    """ISO-8601 UTC text of epoch milliseconds (as Spark prints event times)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC).isoformat(timespec="milliseconds")


def rate(rows: int, seconds: float) -> float:
    """Rows per second; 0 when the interval is empty."""
    return rows / seconds if seconds > 0 else 0.0


class BatchTimer:
    """The duration breakdown of one trigger (seconds in, milliseconds kept)."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.durations: dict[str, float] = {}

    def add(self, key: str, seconds: float) -> None:
        """Add ``seconds`` to the ``key`` component of the breakdown."""
        if key not in DURATION_KEYS:
            raise ValueError(f"unknown duration key {key!r}")
        self.durations[key] = self.durations.get(key, 0.0) + seconds * 1000.0


class ProgressRecorder:
    """Builds batch reports from timers and counts (times in seconds, any clock)."""

    def __init__(self, query_id: str, run_id: str, name: str | None) -> None:
        self.query_id = query_id
        self.run_id = run_id
        self.name = name
        self.previous_trigger_start: float | None = None

    def start_trigger(self, now: float) -> BatchTimer:
        """A trigger fired at ``now``: its timer."""
        return BatchTimer(now)

    def finish(
        self,
        timer: BatchTimer,
        *,
        now: float,
        wall_ms: int,
        batch_id: int,
        sources: list[tuple[str, dict[str, tuple[int, int]], dict[str, int]]],
        event_time: tuple[int | None, int | None, float | None],
        watermark_ms: int | None,
        state_operators: list[StateOperatorProgress],
        sink_description: str,
        num_output_rows: int,
        dropped_by_watermark: int,
        replayed: bool = False,
    ) -> QueryProgress:
        """The batch's report. ``sources``: (description, ranges, latest) per source."""
        execution = now - timer.start
        since_last = (
            timer.start - self.previous_trigger_start
            if self.previous_trigger_start is not None
            else execution
        )
        self.previous_trigger_start = timer.start
        durations = {k: round(timer.durations.get(k, 0.0), 3) for k in DURATION_KEYS}
        durations["trigger_execution"] = round(execution * 1000.0, 3)
        source_reports: list[SourceProgress] = []
        total_rows = 0
        for description, ranges, latest in sources:
            rows = sum(e - s for s, e in ranges.values())
            total_rows += rows
            source_reports.append(
                SourceProgress(
                    description=description,
                    start_offset={p: s for p, (s, _) in ranges.items()},
                    end_offset={p: e for p, (_, e) in ranges.items()},
                    latest_offset=dict(latest),
                    num_input_rows=rows,
                    input_rows_per_second=rate(rows, since_last),
                    processed_rows_per_second=rate(rows, execution),
                    lag={p: max(0, latest.get(p, e) - e) for p, (_, e) in ranges.items()},
                )
            )
        lo, hi, avg = event_time
        et: dict[str, Any] = {}
        if lo is not None:
            et = {
                "min": format_time_ms(lo),
                "max": format_time_ms(hi),
                "avg": format_time_ms(round(avg)) if avg is not None else None,
            }
        if watermark_ms is not None:
            et["watermark"] = format_time_ms(watermark_ms)
        return QueryProgress(
            id=self.query_id,
            run_id=self.run_id,
            name=self.name,
            timestamp=format_time_ms(wall_ms) or "",
            batch_id=batch_id,
            num_input_rows=total_rows,
            input_rows_per_second=rate(total_rows, since_last),
            processed_rows_per_second=rate(total_rows, execution),
            duration_ms=durations,
            event_time=et,
            state_operators=state_operators,
            sources=source_reports,
            sink=SinkProgress(sink_description, num_output_rows),
            num_rows_dropped_by_watermark=dropped_by_watermark,
            replayed=replayed,
        )
