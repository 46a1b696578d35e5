"""The user-facing builder: ``Stream`` -> ``GroupedStream`` -> ``DataStreamWriter``.

Pythonic form::

    from client.streaming import Stream, window, functions as F

    counts = (
        Stream.from_topics("127.0.0.1:9092", ["views"], starting_offsets="earliest")
        .value_format("json", schema={"page": "string", "ts": "timestamp"})
        .with_watermark("ts", "10 seconds")
        .group_by(window("ts", "1 minute"), "page")
        .agg(F.count().alias("views"))
    )
    query = (
        counts.write_stream.output_mode("append")
        .trigger(processing_time="1 second")
        .to_topic("127.0.0.1:9092", "views-per-minute")
        .option("checkpoint_location", "/var/lib/app/views-ckpt")
        .start()
    )

Spark form (same objects): ``StreamingSession(bootstrap).read_stream.format("rivulet")
.option("topics", "views").option("starting_offsets", "earliest")
.value_format("json", schema={...}).load()``.

Builders are immutable: every method returns a new object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import IO, Any

import polars as pl

from client.streaming.durations import Duration, parse_duration
from client.streaming.engine import MicroBatchEngine, QueryOptions, StreamingQueryListener
from client.streaming.errors import AnalysisError
from client.streaming.executor import EXECUTORS
from client.streaming.formats import KEY_FORMATS, RecordDecoder, ValueFormat, to_schema
from client.streaming.functions import AggFunc
from client.streaming.plan import (
    OUTPUT_MODES,
    Aggregate,
    Drop,
    Explode,
    Filter,
    FilterRows,
    FlatMapRows,
    JoinStatic,
    MapBatches,
    MapRows,
    Operator,
    QueryPlan,
    Rename,
    Select,
    WithColumns,
    WithWatermark,
    analyze,
)
from client.streaming.query import AsyncStreamingQuery, StreamingQuery, run_in_nursery
from client.streaming.sinks import (
    BatchFunction,
    ConsoleSink,
    FileSink,
    ForeachBatchSink,
    MemorySink,
    Sink,
    TopicSink,
)
from client.streaming.sources import RateSource, Source, StartingOffsets, TopicSource
from client.streaming.triggers import make_trigger
from client.streaming.windows import SessionWindow, TimeWindow

_JOIN_TYPES = ("inner", "left", "semi", "anti")


@dataclass(frozen=True, slots=True)
class _TopicSpec:
    bootstrap: str | list[str]
    topics: tuple[str, ...]
    starting_offsets: StartingOffsets
    starting_timestamp: int | None
    value_format: ValueFormat
    key_format: str
    include_headers: bool
    fail_on_data_loss: bool
    fetch_max_bytes: int

    def build(self) -> TopicSource:
        return TopicSource(
            self.bootstrap,
            list(self.topics),
            decoder=RecordDecoder(self.value_format, self.key_format, self.include_headers),
            starting_offsets=self.starting_offsets,
            starting_timestamp=self.starting_timestamp,
            fail_on_data_loss=self.fail_on_data_loss,
            fetch_max_bytes=self.fetch_max_bytes,
        )


@dataclass(frozen=True, slots=True)
class _RateSpec:
    rows_per_second: int
    num_partitions: int
    rows_per_batch: int | None
    total_rows: int | None
    start_timestamp: int | None

    def build(self) -> RateSource:
        return RateSource(
            self.rows_per_second,
            num_partitions=self.num_partitions,
            rows_per_batch=self.rows_per_batch,
            total_rows=self.total_rows,
            start_timestamp=self.start_timestamp,
        )


@dataclass(frozen=True, slots=True)
class _CustomSpec:
    source: Source

    def build(self) -> Source:
        return self.source


SourceSpec = _TopicSpec | _RateSpec | _CustomSpec


class Stream:
    """An unbounded table: a source and the operators applied to it."""

    def __init__(
        self,
        source: SourceSpec,
        pre_ops: tuple[Operator, ...] = (),
        aggregate: Aggregate | None = None,
        post_ops: tuple[Operator, ...] = (),
    ) -> None:
        self._source = source
        self._pre = pre_ops
        self._agg = aggregate
        self._post = post_ops

    # -- sources ---------------------------------------------------------------------------

    @staticmethod
    def from_topics(
        bootstrap: str | list[str],
        topics: str | Sequence[str],
        *,
        starting_offsets: StartingOffsets = "latest",
        starting_timestamp: int | None = None,
        value_format: str = "raw",
        schema: Mapping[str, Any] | None = None,
        key_format: str = "raw",
        include_headers: bool = False,
        fail_on_data_loss: bool = True,
        fetch_max_bytes: int = 8 * 1024 * 1024,
    ) -> Stream:
        """Records of one or more topics. Columns: ``key``, ``value`` (or the
        schema's fields), ``topic``, ``partition``, ``offset``, ``timestamp``
        (and ``headers`` with ``include_headers``)."""
        names = (topics,) if isinstance(topics, str) else tuple(topics)
        if key_format not in KEY_FORMATS:
            raise ValueError(f"key_format must be one of {KEY_FORMATS}")
        if fetch_max_bytes < 1024:
            raise ValueError("fetch_max_bytes must be >= 1024")
        spec = _TopicSpec(
            bootstrap,
            names,
            starting_offsets,
            starting_timestamp,
            ValueFormat.of(value_format, schema),
            key_format,
            include_headers,
            fail_on_data_loss,
            fetch_max_bytes,
        )
        spec.build()  # validate the arguments now
        return Stream(spec)

    @staticmethod
    def rate(
        rows_per_second: int = 1,
        *,
        num_partitions: int = 1,
        rows_per_batch: int | None = None,
        total_rows: int | None = None,
        start_timestamp: int | None = None,
    ) -> Stream:
        """Generated rows ``(timestamp, value)`` (see ``RateSource``)."""
        spec = _RateSpec(
            rows_per_second, num_partitions, rows_per_batch, total_rows, start_timestamp
        )
        spec.build()
        return Stream(spec)

    @staticmethod
    def from_source(source: Source) -> Stream:
        """Rows of a custom ``Source`` (it must be replayable: the same range gives
        the same rows). One query at a time may use a source object."""
        if not isinstance(source, Source):
            raise TypeError("from_source takes a client.streaming Source")
        return Stream(_CustomSpec(source))

    def value_format(self, kind: str, schema: Mapping[str, Any] | None = None) -> Stream:
        """How topic record values become columns: ``"raw"`` (Binary ``value``),
        ``"string"``, or ``"json"``/``"msgpack"`` with a schema."""
        spec = self._topic_spec("value_format")
        return self._with_source(replace(spec, value_format=ValueFormat.of(kind, schema)))

    def key_format(self, kind: str) -> Stream:
        """``"raw"`` (Binary ``key``) or ``"string"``."""
        if kind not in KEY_FORMATS:
            raise ValueError(f"key format must be one of {KEY_FORMATS}")
        return self._with_source(replace(self._topic_spec("key_format"), key_format=kind))

    def _topic_spec(self, what: str) -> _TopicSpec:
        if not isinstance(self._source, _TopicSpec):
            raise TypeError(f"{what} applies to topic sources only")
        if self._pre or self._agg is not None:
            raise TypeError(f"set {what} right after from_topics()")
        return self._source

    def _with_source(self, source: SourceSpec) -> Stream:
        return Stream(source, self._pre, self._agg, self._post)

    # -- operators -------------------------------------------------------------------------

    def _then(self, op: Operator) -> Stream:
        if self._agg is None:
            return Stream(self._source, (*self._pre, op), None, self._post)
        return Stream(self._source, self._pre, self._agg, (*self._post, op))

    def select(self, *exprs: str | pl.Expr) -> Stream:
        """Columns or expressions (vectorised)."""
        return self._then(Select(tuple(exprs)))

    def with_columns(self, *exprs: pl.Expr, **named: pl.Expr) -> Stream:
        """Add or replace columns (vectorised)."""
        return self._then(WithColumns(tuple(exprs), tuple(named.items())))

    def filter(self, predicate: pl.Expr | Callable[[dict[str, Any]], bool]) -> Stream:
        """Keep rows where a Polars expression is true, or — the slow path — where
        a Python function of the row (a dict) returns true."""
        if isinstance(predicate, pl.Expr):
            return self._then(Filter(predicate))
        if callable(predicate):
            return self._then(FilterRows(predicate))
        raise TypeError("filter takes a Polars expression or a function of a row")

    where = filter

    def drop(self, *columns: str) -> Stream:
        return self._then(Drop(tuple(columns)))

    def explode(self, *columns: str) -> Stream:
        """One row per element of the list column(s) (e.g. hashtags of a text)."""
        if not columns or not all(isinstance(c, str) for c in columns):
            raise TypeError("explode takes column names")
        return self._then(Explode(tuple(columns)))

    def rename(self, mapping: Mapping[str, str]) -> Stream:
        return self._then(Rename(tuple(mapping.items())))

    def map(
        self, fn: Callable[[dict[str, Any]], Mapping[str, Any]], schema: Mapping[str, Any]
    ) -> Stream:
        """Record-level map (slow path): ``fn(row: dict) -> dict`` with the output schema."""
        if not callable(fn):
            raise TypeError("map needs a function of a row")
        return self._then(MapRows(fn, to_schema(schema)))

    def flat_map(
        self, fn: Callable[[dict[str, Any]], Iterable[Mapping[str, Any]]], schema: Mapping[str, Any]
    ) -> Stream:
        """Record-level flat map (slow path): ``fn(row) -> iterable of dicts``."""
        if not callable(fn):
            raise TypeError("flat_map needs a function of a row")
        return self._then(FlatMapRows(fn, to_schema(schema)))

    def map_batches(self, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> Stream:
        """A deterministic function of each partition's DataFrame."""
        if not callable(fn):
            raise TypeError("map_batches needs a function of a DataFrame")
        return self._then(MapBatches(fn))

    def join(
        self,
        other: pl.DataFrame,
        on: str | Sequence[str] | None = None,
        *,
        left_on: str | Sequence[str] | None = None,
        right_on: str | Sequence[str] | None = None,
        how: str = "inner",
        suffix: str = "_right",
    ) -> Stream:
        """Stream-static join with a Polars DataFrame (inner, left, semi or anti)."""
        if not isinstance(other, pl.DataFrame):
            raise TypeError("a stream joins a static polars DataFrame")
        if how not in _JOIN_TYPES:
            raise ValueError(f"stream-static joins support how in {_JOIN_TYPES}, got {how!r}")

        def names(x: str | Sequence[str] | None) -> tuple[str, ...] | None:
            if x is None:
                return None
            return (x,) if isinstance(x, str) else tuple(x)

        if (on is None) == (left_on is None or right_on is None):
            raise ValueError("give either on= or both left_on= and right_on=")
        return self._then(
            JoinStatic(other, names(on), names(left_on), names(right_on), how, suffix)
        )

    def with_watermark(self, column: str, delay: Duration) -> Stream:
        """Event time is ``column``; rows more than ``delay`` older than the
        largest event time seen are late (dropped, counted), and window state
        older than the watermark is evicted."""
        if self._agg is not None:
            raise AnalysisError("with_watermark must come before the aggregation")
        if any(isinstance(op, WithWatermark) for op in self._pre):
            raise AnalysisError("a query has one watermark")
        if not isinstance(column, str) or not column:
            raise TypeError("with_watermark takes a column name")
        return self._then(WithWatermark(column, parse_duration(delay, what="watermark delay")))

    def group_by(self, *keys: str | pl.Expr | TimeWindow | SessionWindow) -> GroupedStream:
        """Group for an aggregation; keys are column names, expressions, and at most
        one ``window(...)`` or ``session_window(...)``."""
        if self._agg is not None:
            raise AnalysisError("a query has at most one aggregation")
        return GroupedStream(self, keys)

    groupBy = group_by

    # -- plan and output -------------------------------------------------------------------

    def plan(self) -> QueryPlan:
        """The operators as a plan."""
        return QueryPlan(self._pre, self._agg, self._post)

    def build_source(self) -> Source:
        """A fresh source object for one query run."""
        return self._source.build()

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """The output columns (for a query with an aggregation: in update mode)."""
        mode = "append" if self._agg is None else "update"
        return analyze(self.plan(), self._source.build().schema(), mode)[1]

    @property
    def is_streaming(self) -> bool:
        return True

    @property
    def write_stream(self) -> DataStreamWriter:
        """The writer that starts a query of this stream."""
        return DataStreamWriter(self)

    writeStream = write_stream


class GroupedStream:
    """A stream grouped by keys, waiting for ``agg``."""

    def __init__(
        self, stream: Stream, keys: Sequence[str | pl.Expr | TimeWindow | SessionWindow]
    ) -> None:
        plain: list[str | pl.Expr] = []
        win: TimeWindow | SessionWindow | None = None
        position = 0
        for k in keys:
            if isinstance(k, TimeWindow | SessionWindow):
                if win is not None:
                    raise AnalysisError("group by at most one window")
                win = k
                position = len(plain)
            elif isinstance(k, str | pl.Expr):
                plain.append(k)
            else:
                raise TypeError(
                    f"group_by keys are column names, expressions or windows, not {k!r}"
                )
        self._stream = stream
        self._keys = tuple(plain)
        self._window = win
        self._position = position

    def agg(self, *aggs: AggFunc) -> Stream:
        """Aggregate each group incrementally (``client.streaming.functions``)."""
        if not aggs:
            raise ValueError("agg needs at least one aggregate")
        names: set[str] = set()
        for a in aggs:
            if not isinstance(a, AggFunc):
                raise TypeError(
                    f"agg takes client.streaming.functions aggregates (count, sum, ...), not {a!r}"
                )
            if a.name in names:
                raise AnalysisError(f"two aggregates are named {a.name!r}; use .alias()")
            names.add(a.name)
        s = self._stream
        return Stream(
            s._source, s._pre, Aggregate(self._keys, self._window, self._position, tuple(aggs)), ()
        )

    def count(self) -> Stream:
        """Rows per group, in a column ``count``."""
        from client.streaming.functions import count

        return self.agg(count())


class DataStreamWriter:
    """Output mode, trigger, sink and options of a query; ``start()`` runs it."""

    def __init__(
        self,
        stream: Stream,
        options: QueryOptions | None = None,
        sink: Sink | Callable[[str | None], Sink] | None = None,
        listeners: tuple[StreamingQueryListener, ...] = (),
    ) -> None:
        self._stream = stream
        self._options = options if options is not None else QueryOptions()
        self._sink = sink
        self._listeners = listeners

    def _with(self, **changes: Any) -> DataStreamWriter:
        opts = replace(self._options, **changes)
        return DataStreamWriter(self._stream, opts, self._sink, self._listeners)

    def _with_sink(self, sink: Sink | Callable[[str | None], Sink]) -> DataStreamWriter:
        return DataStreamWriter(self._stream, self._options, sink, self._listeners)

    def output_mode(self, mode: str) -> DataStreamWriter:
        """``"append"`` (default), ``"update"`` or ``"complete"``."""
        if mode not in OUTPUT_MODES:
            raise ValueError(f"output mode must be one of {OUTPUT_MODES}, got {mode!r}")
        return self._with(output_mode=mode)

    outputMode = output_mode

    def trigger(
        self,
        processing_time: Duration | None = None,
        *,
        once: bool = False,
        available_now: bool = False,
    ) -> DataStreamWriter:
        """``processing_time="1 second"`` (``0``: back to back, the default),
        ``once=True`` or ``available_now=True``."""
        return self._with(trigger=make_trigger(processing_time, once, available_now))

    def query_name(self, name: str) -> DataStreamWriter:
        """Name of the query (and of its memory table)."""
        return self._with(name=name)

    queryName = query_name

    def checkpoint_location(self, path: str) -> DataStreamWriter:
        """Directory of the query's checkpoint (required for restarts)."""
        return self._with(checkpoint_location=str(path))

    _OPTION_TYPES: dict[str, type] = {
        "max_records_per_trigger": int,
        "max_task_attempts": int,
        "task_retry_backoff_ms": int,
        "min_batches_to_retain": int,
        "state_snapshot_interval": int,
        "max_workers": int,
        "idle_poll_ms": int,
    }

    def option(self, key: str, value: Any) -> DataStreamWriter:
        """Set an option by name (Spark's camelCase names work too):
        ``checkpoint_location``, ``query_name``, ``max_records_per_trigger``,
        ``max_task_attempts``, ``task_retry_backoff_ms``, ``min_batches_to_retain``,
        ``state_snapshot_interval``, ``executor`` (auto, threads, processes),
        ``max_workers``, ``idle_poll_ms``."""
        name = _snake(key)
        if name == "checkpoint_location":
            return self.checkpoint_location(value)
        if name == "query_name":
            return self.query_name(str(value))
        if name == "max_offsets_per_trigger":
            name = "max_records_per_trigger"
        if name == "executor":
            if value not in EXECUTORS:
                raise ValueError(f"executor must be one of {EXECUTORS}")
            return self._with(executor=value)
        kind = self._OPTION_TYPES.get(name)
        if kind is None:
            raise ValueError(f"unknown option {key!r}")
        try:
            converted = kind(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"option {key!r} needs an int, got {value!r}") from exc
        return self._with(**{name: converted})

    def options(self, **values: Any) -> DataStreamWriter:
        """Several ``option``s at once."""
        w = self
        for k, v in values.items():
            w = w.option(k, v)
        return w

    def max_records_per_trigger(self, n: int) -> DataStreamWriter:
        """Bound each batch to ``n`` records, spread over the partitions by backlog."""
        return self.option("max_records_per_trigger", n)

    # -- sinks -----------------------------------------------------------------------------

    def sink(self, sink: Sink) -> DataStreamWriter:
        """Write to a ``Sink`` object."""
        if not isinstance(sink, Sink):
            raise TypeError("sink() takes a client.streaming Sink")
        return self._with_sink(sink)

    def to_memory(self, name: str | None = None) -> DataStreamWriter:
        """An in-memory table (``memory_table(name)``); the name defaults to the query name."""
        if name is not None:
            return self._with_sink(MemorySink(name))

        def make(query_name: str | None) -> Sink:
            if not query_name:
                raise AnalysisError("the memory sink needs a table name or a query name")
            return MemorySink(query_name)

        return self._with_sink(make)

    def to_console(self, stream: IO[str] | None = None, *, num_rows: int = 20) -> DataStreamWriter:
        """Print each batch."""
        return self._with_sink(ConsoleSink(stream, num_rows=num_rows))

    def to_files(self, path: str, *, format: str = "parquet") -> DataStreamWriter:
        """Parquet (default) or ``"json"`` lines files with a manifest per batch."""
        return self._with_sink(FileSink(str(path), format=format))

    def to_topic(
        self,
        bootstrap: str | list[str],
        topic: str,
        *,
        value_format: str = "json",
        max_batch_bytes: int = 512 * 1024,
    ) -> DataStreamWriter:
        """Records of ``topic``, exactly once (see ``TopicSink``)."""
        return self._with_sink(
            TopicSink(bootstrap, topic, value_format=value_format, max_batch_bytes=max_batch_bytes)
        )

    def foreach_batch(self, fn: BatchFunction) -> DataStreamWriter:
        """Call ``fn(df, batch_id)`` for every batch."""
        return self._with_sink(ForeachBatchSink(fn))

    foreachBatch = foreach_batch

    def listener(self, listener: StreamingQueryListener) -> DataStreamWriter:
        """Receive the query's started / progress / terminated events."""
        return DataStreamWriter(
            self._stream, self._options, self._sink, (*self._listeners, listener)
        )

    # -- running ---------------------------------------------------------------------------

    def _engine(self) -> MicroBatchEngine:
        if self._sink is None:
            raise AnalysisError(
                "no sink: call to_memory/to_console/to_files/to_topic/foreach_batch/sink"
            )
        sink = self._sink if isinstance(self._sink, Sink) else self._sink(self._options.name)
        stream = self._stream
        opts = replace(self._options)
        opts.validate()
        stream.plan().check_output_mode(opts.output_mode)
        return MicroBatchEngine(
            stream.build_source(), stream.plan(), sink, opts, listeners=list(self._listeners)
        )

    def query(self) -> StreamingQuery:
        """A query ready to ``start()`` (blocking API)."""
        return StreamingQuery(self._engine())

    def start(self) -> StreamingQuery:
        """Start the query in a background thread and return its handle."""
        return self.query().start()

    @asynccontextmanager
    async def start_async(self) -> AsyncIterator[AsyncStreamingQuery]:
        """Run the query in the current trio loop for the duration of the block::

        async with writer.start_async() as query:
            await query.process_all_available()
        """
        async with run_in_nursery(self._engine()) as query:
            yield query

    async def run_async(self) -> MicroBatchEngine:
        """Run the query in the current task until its trigger ends (once /
        available-now) or the task is cancelled; raises StreamingQueryError."""
        engine = self._engine()
        await engine.run()
        return engine


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out).replace(".", "_").lstrip("_")


class DataStreamReader:
    """Spark's ``spark.readStream``: ``format``, ``option``s, ``load()``."""

    def __init__(
        self,
        bootstrap: str | list[str] | None,
        fmt: str = "rivulet",
        opts: dict[str, Any] | None = None,
        value: tuple[str, Mapping[str, Any] | None] = ("raw", None),
    ) -> None:
        self._bootstrap = bootstrap
        self._format = fmt
        self._opts = dict(opts or {})
        self._value = value

    def format(self, fmt: str) -> DataStreamReader:
        """``"rivulet"`` (also ``"kafka"``, ``"topics"``) or ``"rate"``."""
        if fmt not in ("rivulet", "kafka", "topics", "rate", "rate-micro-batch"):
            raise ValueError(f"unknown source format {fmt!r}")
        return DataStreamReader(self._bootstrap, fmt, self._opts, self._value)

    def option(self, key: str, value: Any) -> DataStreamReader:
        return DataStreamReader(
            self._bootstrap, self._format, {**self._opts, _snake(key): value}, self._value
        )

    def options(self, **values: Any) -> DataStreamReader:
        r = self
        for k, v in values.items():
            r = r.option(k, v)
        return r

    def value_format(self, kind: str, schema: Mapping[str, Any] | None = None) -> DataStreamReader:
        return DataStreamReader(self._bootstrap, self._format, self._opts, (kind, schema))

    def load(self) -> Stream:
        o = dict(self._opts)
        if self._format in ("rate", "rate-micro-batch"):

            def num(key: str, default: int | None) -> int | None:
                v = o.pop(key, default)
                return None if v is None else int(v)

            stream = Stream.rate(
                num("rows_per_second", 1) or 1,
                num_partitions=num("num_partitions", 1) or 1,
                rows_per_batch=num("rows_per_batch", None),
                total_rows=num("total_rows", None),
                start_timestamp=num("start_timestamp", None),
            )
        else:
            bootstrap = o.pop(
                "bootstrap_servers", o.pop("kafka_bootstrap_servers", self._bootstrap)
            )
            topics = o.pop("topics", o.pop("subscribe", None))
            if bootstrap is None or topics is None:
                raise ValueError("a topic source needs bootstrap servers and topics")
            names = (
                [t.strip() for t in topics.split(",")] if isinstance(topics, str) else list(topics)
            )
            ts = o.pop("starting_timestamp", None)
            stream = Stream.from_topics(
                bootstrap,
                names,
                starting_offsets=o.pop("starting_offsets", "latest"),
                starting_timestamp=None if ts is None else int(ts),
                value_format=self._value[0],
                schema=self._value[1],
                key_format=o.pop("key_format", "raw"),
                include_headers=str(o.pop("include_headers", False)).lower() == "true",
                fail_on_data_loss=str(o.pop("fail_on_data_loss", True)).lower() == "true",
            )
        if o:
            raise ValueError(f"unknown source options: {sorted(o)}")
        return stream


class StreamingSession:
    """Entry point in Spark's style: ``StreamingSession(bootstrap).read_stream``."""

    def __init__(self, bootstrap: str | list[str] | None = None) -> None:
        self.bootstrap = bootstrap

    @property
    def read_stream(self) -> DataStreamReader:
        return DataStreamReader(self.bootstrap)

    readStream = read_stream
