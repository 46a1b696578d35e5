"""The query plan: operators, the per-partition task, and the stateful aggregation.

A plan is a chain of stateless operators, at most one aggregation, and more
stateless operators after it::

    source -> pre_ops (in tasks) -> partial aggregation (in tasks)
           -> state merge + output mode (driver) -> post_ops (driver) -> sink

*Tasks* (one per source partition per batch) decode their range, run the
stateless operators — including the watermark filter — and pre-aggregate
their rows; they are pure functions of their input, so a retried or re-run task
computes the same result. The *driver* merges the partial aggregates into the
state store, applies the output mode and the operators after the aggregation.

Everything here is sans-IO: plain functions of DataFrames and a ``StateStore``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from client.streaming.errors import AnalysisError
from client.streaming.functions import AggFunc
from client.streaming.state import Key, StateStore, Value
from client.streaming.watermark import EventTimeStats
from client.streaming.windows import (
    EVENT_TIME,
    WINDOW_END,
    WINDOW_START,
    Session,
    SessionWindow,
    TimeWindow,
    assign_sessions,
    assign_time_windows,
    event_time_ms,
    merge_sessions,
)

OUTPUT_MODES = ("append", "update", "complete")

# -- stateless operators --------------------------------------------------------------------


class Operator(abc.ABC):
    """A stateless transformation of one DataFrame."""

    name = "operator"

    @abc.abstractmethod
    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        """The transformed frame."""


@dataclass(frozen=True, eq=False)
class Select(Operator):
    exprs: tuple[Any, ...]
    name = "select"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.select(*self.exprs)


@dataclass(frozen=True, eq=False)
class WithColumns(Operator):
    exprs: tuple[Any, ...]
    named: tuple[tuple[str, Any], ...] = ()
    name = "with_columns"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(*self.exprs, **dict(self.named))


@dataclass(frozen=True, eq=False)
class Filter(Operator):
    predicate: pl.Expr
    name = "filter"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.filter(self.predicate)


@dataclass(frozen=True, eq=False)
class Drop(Operator):
    columns: tuple[str, ...]
    name = "drop"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.drop(*self.columns)


@dataclass(frozen=True, eq=False)
class Explode(Operator):
    """One row per element of list columns (vectorised ``flat_map``)."""

    columns: tuple[str, ...]
    name = "explode"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.explode(list(self.columns))


@dataclass(frozen=True, eq=False)
class Rename(Operator):
    mapping: tuple[tuple[str, str], ...]
    name = "rename"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.rename(dict(self.mapping))


@dataclass(frozen=True, eq=False)
class MapRows(Operator):
    """Record-level map: ``fn(row: dict) -> dict`` (the slow path)."""

    fn: Callable[[dict[str, Any]], Mapping[str, Any]]
    schema: dict[str, pl.DataType]
    name = "map"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        rows = [dict(self.fn(r)) for r in df.iter_rows(named=True)]
        return _frame(rows, self.schema)


@dataclass(frozen=True, eq=False)
class FlatMapRows(Operator):
    """Record-level flat map: ``fn(row: dict) -> iterable of dicts``."""

    fn: Callable[[dict[str, Any]], Iterable[Mapping[str, Any]]]
    schema: dict[str, pl.DataType]
    name = "flat_map"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        rows = [dict(out) for r in df.iter_rows(named=True) for out in self.fn(r)]
        return _frame(rows, self.schema)


@dataclass(frozen=True, eq=False)
class FilterRows(Operator):
    """Record-level filter: keeps rows for which ``fn(row: dict)`` is true."""

    fn: Callable[[dict[str, Any]], bool]
    name = "filter_rows"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        if df.is_empty():
            return df
        mask = [bool(self.fn(r)) for r in df.iter_rows(named=True)]
        return df.filter(pl.Series(mask, dtype=pl.Boolean))


@dataclass(frozen=True, eq=False)
class MapBatches(Operator):
    """A function of a whole partition's DataFrame (must be deterministic)."""

    fn: Callable[[pl.DataFrame], pl.DataFrame]
    name = "map_batches"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        out = self.fn(df)
        if not isinstance(out, pl.DataFrame):
            raise TypeError(f"map_batches function returned {type(out).__name__}, not a DataFrame")
        return out


@dataclass(frozen=True, eq=False)
class JoinStatic(Operator):
    """Stream-static join with a Polars DataFrame."""

    other: pl.DataFrame
    on: tuple[str, ...] | None
    left_on: tuple[str, ...] | None
    right_on: tuple[str, ...] | None
    how: str
    suffix: str
    name = "join"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        if self.on is not None:
            return df.join(self.other, on=list(self.on), how=self.how, suffix=self.suffix)  # type: ignore[arg-type]
        return df.join(
            self.other,
            left_on=list(self.left_on or ()),
            right_on=list(self.right_on or ()),
            how=self.how,  # type: ignore[arg-type]
            suffix=self.suffix,
        )


@dataclass(frozen=True, eq=False)
class WithWatermark(Operator):
    """Declares the event-time column and the allowed lateness; drops late rows."""

    column: str
    delay_ms: int
    name = "with_watermark"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df

    def run(
        self, df: pl.DataFrame, watermark: int | None
    ) -> tuple[pl.DataFrame, EventTimeStats, int]:
        """Rows at or above the watermark, the event-time statistics of all rows,
        and how many rows were dropped as late."""
        stats = EventTimeStats()
        if df.is_empty():
            return df, stats, 0
        et = event_time_ms(pl.col(self.column), df.schema[self.column])
        agg = df.select(
            et.min().alias("lo"), et.max().alias("hi"), et.sum().alias("s"), et.count().alias("n")
        ).row(0)
        stats.add(agg[0], agg[1], int(agg[2] or 0), int(agg[3]))
        if watermark is None or (agg[0] is not None and agg[0] >= watermark):
            return df, stats, 0  # nothing late: no copy
        kept = df.filter(et.is_null() | (et >= watermark))
        return kept, stats, df.height - kept.height


def _frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema, strict=False)


# -- aggregation ----------------------------------------------------------------------------

BUFFER_PREFIX = "__b"


@dataclass(frozen=True, eq=False)
class Aggregate:
    """``group_by(keys...).agg(aggs...)``, optionally with an event-time window key."""

    keys: tuple[Any, ...]  # column names or Polars expressions (not the window)
    window: TimeWindow | SessionWindow | None
    window_position: int  # where the window column goes among the output keys
    aggs: tuple[AggFunc, ...]

    @property
    def key_names(self) -> list[str]:
        out = []
        for k in self.keys:
            out.append(k if isinstance(k, str) else k.meta.output_name())
        return out

    @property
    def buffer_names(self) -> list[list[str]]:
        names: list[list[str]] = []
        i = 0
        for a in self.aggs:
            names.append([f"{BUFFER_PREFIX}{i + j}" for j in range(a.width)])
            i += a.width
        return names

    def partial(self, df: pl.DataFrame) -> pl.DataFrame:
        """Pre-aggregate one partition's rows: one row per group with buffer columns."""
        exprs = [k for k in self.keys if not isinstance(k, str)]
        if exprs:
            df = df.with_columns(exprs)
        keys = self.key_names
        buffers: list[pl.Expr] = []
        for agg, names in zip(self.aggs, self.buffer_names, strict=True):
            produced = agg.partial_exprs(names[0])
            for expr, name in zip(produced, names, strict=True):
                buffers.append(expr.alias(name))
        if isinstance(self.window, TimeWindow):
            df = assign_time_windows(df, self.window, with_end=False)
            size = self.window.size_ms
            out = df.group_by([*keys, WINDOW_START], maintain_order=True).agg(buffers)
            return out.select(
                *keys,
                WINDOW_START,
                (pl.col(WINDOW_START) + size).alias(WINDOW_END),
                *[b.meta.output_name() for b in buffers],
            )
        if isinstance(self.window, SessionWindow):
            df = assign_sessions(df, self.window, keys)
            return (
                df.group_by([*keys, "__session"], maintain_order=True)
                .agg(
                    pl.col(EVENT_TIME).min().alias(WINDOW_START),
                    (pl.col(EVENT_TIME).max() + self.window.gap_ms).alias(WINDOW_END),
                    *buffers,
                )
                .select([*keys, WINDOW_START, WINDOW_END, *[b.meta.output_name() for b in buffers]])
            )
        return df.group_by(keys, maintain_order=True).agg(buffers)


# -- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class QueryPlan:
    """The operators of one query (see the module doc)."""

    pre_ops: tuple[Operator, ...] = ()
    aggregate: Aggregate | None = None
    post_ops: tuple[Operator, ...] = ()

    @property
    def watermark(self) -> WithWatermark | None:
        for op in self.pre_ops:
            if isinstance(op, WithWatermark):
                return op
        return None

    @property
    def stateful(self) -> bool:
        return self.aggregate is not None

    def evicts_by_watermark(self, mode: str) -> bool:
        """Whether window state is evicted (and append mode can emit) by watermark."""
        wm = self.watermark
        agg = self.aggregate
        return (
            wm is not None
            and agg is not None
            and agg.window is not None
            and agg.window.column == wm.column
            and mode != "complete"
        )

    def check_output_mode(self, mode: str) -> None:
        """Spark's rules: AnalysisError for a mode the query cannot produce."""
        if mode not in OUTPUT_MODES:
            raise AnalysisError(f"output mode must be one of {OUTPUT_MODES}, got {mode!r}")
        if self.aggregate is None:
            if mode == "complete":
                raise AnalysisError(
                    "complete output mode needs an aggregation (there is no result table)"
                )
            return
        if mode == "append" and not self.evicts_by_watermark(mode):
            raise AnalysisError(
                "append output mode on an aggregation needs an event-time window on the "
                "watermarked column (with_watermark(col, delay) then group_by(window(col, ...)))"
            )


# -- tasks ----------------------------------------------------------------------------------


@dataclass(slots=True)
class TaskResult:
    """What one partition task returns to the driver."""

    frame: pl.DataFrame
    num_input_rows: int
    event_time: EventTimeStats = field(default_factory=EventTimeStats)
    dropped_by_watermark: int = 0


def run_pipeline(plan: QueryPlan, df: pl.DataFrame, watermark: int | None) -> TaskResult:
    """The task side of ``plan`` on one partition's rows."""
    n = df.height
    stats = EventTimeStats()
    dropped = 0
    for op in plan.pre_ops:
        if isinstance(op, WithWatermark):
            df, stats, dropped = op.run(df, watermark)
        else:
            df = op.apply(df)
    if plan.aggregate is not None:
        df = plan.aggregate.partial(df)
    return TaskResult(df, n, stats, dropped)


def analyze(
    plan: QueryPlan, input_schema: Mapping[str, pl.DataType], mode: str
) -> tuple[dict[str, pl.DataType], dict[str, pl.DataType]]:
    """Run the plan on an empty input to check it and learn its schemas: the
    schema of task results and of the output. Raises AnalysisError."""
    plan.check_output_mode(mode)
    empty = pl.DataFrame(schema=dict(input_schema))
    try:
        partial = run_pipeline(plan, empty, None).frame
        if plan.aggregate is not None:
            agg = AggregationState(
                plan.aggregate,
                mode,
                evict=False,
                store=StateStore(),
                window_dtype=window_source_dtype(plan, input_schema),
            )
            out = agg.finalize(partial.clear(), partial.schema)
        else:
            out = partial
        for op in plan.post_ops:
            out = op.apply(out)
    except (pl.exceptions.PolarsError, TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, AnalysisError):
            raise
        raise AnalysisError(f"the query does not fit its input: {exc}") from exc
    return dict(partial.schema), dict(out.schema)


def window_source_dtype(
    plan: QueryPlan, input_schema: Mapping[str, pl.DataType]
) -> pl.DataType | None:
    """The dtype of the aggregation window's event-time column (None: no window)."""
    agg = plan.aggregate
    if agg is None or agg.window is None:
        return None
    df = pl.DataFrame(schema=dict(input_schema))
    for op in plan.pre_ops:
        df = op.apply(df)
    dtype = df.schema.get(agg.window.column)
    if dtype is None:
        raise AnalysisError(f"window column {agg.window.column!r} is not in the stream")
    return dtype


# -- the stateful aggregation (driver) ------------------------------------------------------


def _physical(df: pl.DataFrame) -> pl.DataFrame:
    casts = []
    for name, dtype in df.schema.items():
        if dtype.is_temporal() or isinstance(dtype, pl.Categorical | pl.Enum):
            casts.append(
                pl.col(name).to_physical() if dtype.is_temporal() else pl.col(name).cast(pl.Utf8)
            )
    return df.with_columns(casts) if casts else df


def _physical_schema(schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
    out: dict[str, pl.DataType] = {}
    for name, dtype in schema.items():
        if dtype.is_temporal():
            out[name] = pl.Int32() if isinstance(dtype, pl.Date) else pl.Int64()
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            out[name] = pl.Utf8()
        else:
            out[name] = dtype
    return out


class AggregationState:
    """Merges partial aggregates into a ``StateStore`` and emits per output mode.

    State layout: time windows — key ``(*group keys, start, end)``, value the
    buffers, expiry the window end; sessions — key ``(*group keys, start)``,
    value ``(end, *buffers)``, expiry the end; no window — key the group keys.
    """

    def __init__(
        self,
        agg: Aggregate,
        mode: str,
        *,
        evict: bool,
        store: StateStore,
        window_dtype: pl.DataType | None = None,
    ) -> None:
        self.agg = agg
        self.window_dtype: pl.DataType = window_dtype if window_dtype is not None else pl.Int64()
        self.mode = mode
        self.evict = evict
        self.store = store
        self.nkeys = len(agg.key_names)
        self.mergers = [m for a in agg.aggs for m in a.mergers()]
        self.sessions = isinstance(agg.window, SessionWindow)
        self._session_index: dict[Key, dict[int, None]] = {}
        if self.sessions:
            self.rebuild_index()

    def rebuild_index(self) -> None:
        """Recompute the key -> session starts index from the store."""
        self._session_index = {}
        if not self.sessions:
            return
        for key, _ in self.store.items():
            self._session_index.setdefault(key[:-1], {})[key[-1]] = None

    def merge_buffers(self, old: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(m(a, b) for m, a, b in zip(self.mergers, old, new, strict=True))

    def process(
        self, partial: pl.DataFrame | None, watermark: int | None, schema: Mapping[str, pl.DataType]
    ) -> pl.DataFrame:
        """Merge a batch's partial aggregates, evict by ``watermark``, and return
        the rows the output mode emits (finalized, sorted by key)."""
        changed: dict[Key, None] = {}
        if partial is not None and partial.height:
            rows = _physical(partial).iter_rows()
            if self.sessions:
                self._merge_sessions(rows, changed)
            else:
                self._merge(rows, changed)
        emitted: list[tuple[Key, Value]]
        if self.mode == "complete":
            emitted = list(self.store.items())
        elif self.mode == "update":
            emitted = [(k, v) for k in changed if (v := self.store.get(k)) is not None]
        else:
            emitted = []
        if self.evict and watermark is not None:
            evicted = self.store.evict(watermark)
            for key, _ in evicted:
                if self.sessions:
                    self._unindex(key)
            if self.mode == "append":
                emitted = evicted
        return self.finalize_rows(emitted, schema)

    def _merge(self, rows: Iterable[tuple[Any, ...]], changed: dict[Key, None]) -> None:
        store = self.store
        width = self.nkeys + (2 if self.agg.window is not None else 0)
        expiry_at = self.nkeys + 1 if self.evict else None
        for row in rows:
            key = row[:width]
            bufs = row[width:]
            old = store.get(key)
            value = bufs if old is None else self.merge_buffers(old, bufs)
            store.put(key, value, None if expiry_at is None else row[expiry_at])
            changed[key] = None

    def _unindex(self, key: Key) -> None:
        starts = self._session_index.get(key[:-1])
        if starts is not None:
            starts.pop(key[-1], None)
            if not starts:
                del self._session_index[key[:-1]]

    def _merge_sessions(self, rows: Iterable[tuple[Any, ...]], changed: dict[Key, None]) -> None:
        n = self.nkeys
        incoming: dict[Key, list[Session]] = {}
        for row in rows:
            incoming.setdefault(row[:n], []).append(Session(row[n], row[n + 1], row[n + 2 :]))
        store = self.store
        for group, new_sessions in incoming.items():
            starts = self._session_index.get(group, {})
            existing = []
            for start in starts:
                value = store.get((*group, start))
                if value is not None:
                    existing.append(Session(start, value[0], value[1:]))
            merged = merge_sessions(existing, new_sessions, self.merge_buffers)
            before = {(s.start, s.end, s.buffers) for s in existing}
            keep_starts = {s.start for s in merged}
            for s in existing:
                if s.start not in keep_starts:
                    store.remove((*group, s.start))
                    self._unindex((*group, s.start))
                    changed.pop((*group, s.start), None)
            for s in merged:
                if (s.start, s.end, s.buffers) in before:
                    continue
                key = (*group, s.start)
                store.put(key, (s.end, *s.buffers), s.end if self.evict else None)
                self._session_index.setdefault(group, {})[s.start] = None
                changed[key] = None

    def finalize_rows(
        self, rows: Sequence[tuple[Key, Value]], schema: Mapping[str, pl.DataType]
    ) -> pl.DataFrame:
        """Output rows from state entries (key, value) in the partial ``schema``."""
        keys = self.agg.key_names
        bufs = [b for names in self.agg.buffer_names for b in names]
        windowed = self.agg.window is not None
        columns = [*keys, *([WINDOW_START, WINDOW_END] if windowed else []), *bufs]
        phys = _physical_schema({c: schema[c] for c in columns})
        flat: list[tuple[Any, ...]] = []
        for key, value in rows:
            if self.sessions:
                flat.append((*key, value[0], *value[1:]))
            else:
                flat.append((*key, *value))
        frame = pl.DataFrame(flat, schema=phys, orient="row") if flat else pl.DataFrame(schema=phys)
        return self.finalize(frame, schema)

    def finalize(self, frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
        """Buffers -> aggregate values, physical keys -> their types, window struct."""
        agg = self.agg
        keys = agg.key_names
        sort_by = [*([WINDOW_START] if agg.window is not None else []), *keys]
        if sort_by and frame.height > 1:
            frame = frame.sort(sort_by, nulls_last=True, maintain_order=True)
        casts = [pl.col(k).cast(schema[k]) for k in keys if frame.schema[k] != schema[k]]
        if casts:
            frame = frame.with_columns(casts)
        out_cols: list[pl.Expr] = [pl.col(k) for k in keys]
        if agg.window is not None:
            wdtype = _window_dtype(self.window_dtype)
            struct = pl.struct(
                pl.col(WINDOW_START).cast(wdtype).alias("start"),
                pl.col(WINDOW_END).cast(wdtype).alias("end"),
            ).alias(agg.window.name)
            out_cols.insert(agg.window_position, struct)
        for a, names in zip(agg.aggs, agg.buffer_names, strict=True):
            out_cols.append(a.finalize_expr(names))
        return frame.select(out_cols)


def _window_dtype(source: pl.DataType) -> pl.DataType:
    if isinstance(source, pl.Datetime):
        return pl.Datetime("ms", source.time_zone)
    if isinstance(source, pl.Date):
        return pl.Datetime("ms")
    return pl.Int64()
