"""Event-time windows: specifications and assignment (sans-IO).

Times are integer milliseconds since the epoch. A *time window* has a ``size``
and a slide ``every`` (tumbling when they are equal); a row at time ``t``
belongs to every window ``[start, start + size)`` with ``start`` congruent to
``offset`` modulo ``every`` and ``start <= t < start + size``. A *session
window* starts at an event and closes after ``gap`` without events: each event
at ``t`` opens ``[t, t + gap)`` and overlapping intervals of one key merge.

The pure functions (``window_starts``, ``sessionize``, ``merge_sessions``) are
the specification the tests check the vectorised versions against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from client.streaming.durations import Duration, parse_duration

# Internal column names used between the task and the driver stages.
WINDOW_START = "__window_start"
WINDOW_END = "__window_end"
EVENT_TIME = "__event_time"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A tumbling (``every == size``) or sliding window on ``column``."""

    column: str
    size_ms: int
    every_ms: int
    offset_ms: int = 0
    name: str = "window"

    def alias(self, name: str) -> TimeWindow:
        """The same window, output under another column name."""
        return replace(self, name=name)

    @property
    def windows_per_row(self) -> int:
        """How many windows each row belongs to."""
        return -(-self.size_ms // self.every_ms)


@dataclass(frozen=True, slots=True)
class SessionWindow:
    """A session window on ``column`` that closes after ``gap_ms`` of silence."""

    column: str
    gap_ms: int
    name: str = "session_window"

    def alias(self, name: str) -> SessionWindow:
        """The same session window, output under another column name."""
        return replace(self, name=name)


def window(
    column: str, size: Duration, every: Duration | None = None, offset: Duration = 0
) -> TimeWindow:
    """A tumbling window of ``size`` on ``column``, or a sliding one when ``every``
    (the slide) is given: ``window("ts", "1 minute", "1 second")``.

    ``column`` holds event time: a Datetime/Date column, or integer milliseconds
    since the epoch. The output column ``window`` is a struct ``{start, end}``.
    """
    if not isinstance(column, str) or not column:
        raise TypeError(f"window column must be a column name, got {column!r}")
    size_ms = parse_duration(size, what="window size", allow_zero=False)
    every_ms = size_ms if every is None else parse_duration(every, what="slide", allow_zero=False)
    if every_ms > size_ms:
        raise ValueError(
            f"the slide ({every_ms} ms) must not exceed the window size ({size_ms} ms)"
        )
    offset_ms = parse_duration(offset, what="window offset")
    if offset_ms >= every_ms:
        raise ValueError(f"the window offset ({offset_ms} ms) must be below the slide")
    return TimeWindow(column, size_ms, every_ms, offset_ms)


def session_window(column: str, gap: Duration) -> SessionWindow:
    """A session window on ``column`` with inactivity ``gap``: ``session_window("ts", "5 min")``.

    The output column ``session_window`` is a struct ``{start, end}`` where
    ``end`` is the last event's time plus the gap.
    """
    if not isinstance(column, str) or not column:
        raise TypeError(f"session window column must be a column name, got {column!r}")
    return SessionWindow(column, parse_duration(gap, what="session gap", allow_zero=False))


# -- the specification ---------------------------------------------------------------


def window_starts(t: int, size_ms: int, every_ms: int, offset_ms: int = 0) -> list[int]:
    """Start times of every window ``[start, start + size)`` holding time ``t``, ascending."""
    last = t - (t - offset_ms) % every_ms
    out = []
    start = last
    while start > t - size_ms:
        out.append(start)
        start -= every_ms
    out.reverse()
    return out


def sessionize(times: Sequence[int], gap_ms: int) -> list[tuple[int, int]]:
    """Sessions ``(start, end)`` of one key's event times (any order)."""
    out: list[tuple[int, int]] = []
    for t in sorted(times):
        if out and t < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], t + gap_ms))
        else:
            out.append((t, t + gap_ms))
    return out


@dataclass(slots=True)
class Session:
    """One session of one key: its interval and aggregation buffers."""

    start: int
    end: int
    buffers: tuple[Any, ...]


def merge_sessions(
    existing: Sequence[Session],
    incoming: Sequence[Session],
    merge: Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]],
) -> list[Session]:
    """Merge two lists of sessions of one key; overlapping intervals become one.

    ``existing`` holds disjoint sessions; ``incoming`` may overlap each other.
    Buffers combine with ``merge(earlier, later)`` in start order (earlier
    sessions first), so order-sensitive aggregates (first/last) stay meaningful.
    Returns the disjoint sessions, sorted by start.
    """
    everything = sorted([*existing, *incoming], key=lambda s: (s.start, s.end))
    out: list[Session] = []
    for s in everything:
        if out and s.start < out[-1].end:
            last = out[-1]
            out[-1] = Session(last.start, max(last.end, s.end), merge(last.buffers, s.buffers))
        else:
            out.append(Session(s.start, s.end, s.buffers))
    return out


# -- vectorised assignment -----------------------------------------------------------


def event_time_ms(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """``expr`` (a Datetime, Date or integer column) as Int64 milliseconds since the epoch."""
    if isinstance(dtype, pl.Datetime):
        return expr.dt.cast_time_unit("ms").to_physical()
    if isinstance(dtype, pl.Date):
        return expr.cast(pl.Datetime("ms")).to_physical()
    if dtype.is_integer():
        return expr.cast(pl.Int64)
    raise TypeError(
        f"an event-time column must be Datetime, Date or integer milliseconds, not {dtype}"
    )


def assign_time_windows(
    df: pl.DataFrame, spec: TimeWindow, *, with_end: bool = True
) -> pl.DataFrame:
    """``df`` with ``WINDOW_START`` (and ``WINDOW_END``) columns, one row per (row, window).

    Rows whose event time is null are dropped (they belong to no window).
    """
    et = event_time_ms(pl.col(spec.column), df.schema[spec.column])
    last_start = et - (et - spec.offset_ms).mod(spec.every_ms)
    if spec.size_ms == spec.every_ms:
        if df.get_column(spec.column).null_count():
            df = df.filter(pl.col(spec.column).is_not_null())
        out = df.with_columns(last_start.alias(WINDOW_START))
        if with_end:
            out = out.with_columns((pl.col(WINDOW_START) + spec.size_ms).alias(WINDOW_END))
        return out
    n = spec.windows_per_row
    out = (
        df.filter(pl.col(spec.column).is_not_null())
        .with_columns(
            (last_start - pl.int_ranges(0, n, dtype=pl.Int64) * spec.every_ms).alias(WINDOW_START),
            et.alias(EVENT_TIME),
        )
        .explode(WINDOW_START)
        .filter(pl.col(WINDOW_START) + spec.size_ms > pl.col(EVENT_TIME))
        .drop(EVENT_TIME)
    )
    if with_end:
        out = out.with_columns((pl.col(WINDOW_START) + spec.size_ms).alias(WINDOW_END))
    return out


def assign_sessions(df: pl.DataFrame, spec: SessionWindow, keys: Sequence[str]) -> pl.DataFrame:
    """``df`` sorted by (keys, time) with a per-key session number column ``WINDOW_START``
    replaced later by the session's start; returns columns ``EVENT_TIME`` and ``__session``.

    Rows of one key whose times are less than ``gap`` apart share a session number.
    """
    et = event_time_ms(pl.col(spec.column), df.schema[spec.column])
    out = df.filter(pl.col(spec.column).is_not_null()).with_columns(et.alias(EVENT_TIME))
    out = out.sort([*keys, EVENT_TIME], nulls_last=True, maintain_order=True)
    gap = pl.col(EVENT_TIME) - pl.col(EVENT_TIME).shift(1)
    if keys:
        new = (gap.over(list(keys)) >= spec.gap_ms) | gap.over(list(keys)).is_null()
        session = new.cast(pl.Int64).cum_sum().over(list(keys))
    else:
        new = (gap >= spec.gap_ms) | gap.is_null()
        session = new.cast(pl.Int64).cum_sum()
    return out.with_columns(session.alias("__session"))
