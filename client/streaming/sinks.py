"""Sinks: where each batch's output goes, idempotently by (query id, batch id).

- ``MemorySink``: an in-process table (tests, notebooks); ``memory_table(name)``.
- ``ConsoleSink``: prints each batch (at least once).
- ``FileSink``: Parquet or JSON-lines files plus a manifest per batch; a batch
  whose manifest exists is never written again, and readers
  (``read_file_sink``) only see files a manifest lists — so a replay never
  duplicates (Spark's file sink log).
- ``ForeachBatchSink``: ``fn(df, batch_id)``; idempotence is the function's
  job (it gets the batch id), as in Spark.
- ``TopicSink``: records to a topic through the broker's idempotent-producer
  deduplication, with a producer id stored in the checkpoint and sequence
  numbers that are a deterministic function of the batch (exactly once).
"""

from __future__ import annotations

import abc
import contextlib
import glob
import inspect
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any

import msgpack
import polars as pl
import trio

from client.cluster import Cluster
from client.partitioner import partition_for_key
from client.protocol import DuplicateSequenceError, OutOfOrderSequenceError
from client.records import encode_batch_raw, increment_sequence
from client.streaming import topic_io
from client.streaming.checkpoint import CheckpointDirectory
from client.streaming.errors import AnalysisError, CheckpointError
from client.streaming.state import fsync_dir, write_file_atomic
from client.types import TopicPartition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchContext:
    """Facts about the batch being written."""

    batch_id: int
    timestamp_ms: int
    output_mode: str
    replay: bool  # the batch may have been (partly) written before


class Sink(abc.ABC):
    """Base of sinks (see the module doc)."""

    description = "sink"
    output_modes: tuple[str, ...] = ("append", "update", "complete")

    def check_mode(self, mode: str) -> None:
        if mode not in self.output_modes:
            raise AnalysisError(f"{self.description} does not support {mode} output mode")

    async def open(
        self, nursery: trio.Nursery, checkpoint: CheckpointDirectory, query_id: str
    ) -> None:
        """Prepare the sink (connections, identity)."""
        return None  # a hook: nothing to do by default

    def restore(self, state: dict[str, Any]) -> None:
        """The sink state stored with the last committed batch."""
        return None  # a hook: nothing to do by default

    def set_schema(self, schema: dict[str, pl.DataType]) -> None:
        """The columns of the query's output (known before the first batch)."""
        return None  # a hook: nothing to do by default

    @abc.abstractmethod
    async def add_batch(self, df: pl.DataFrame, ctx: BatchContext) -> dict[str, Any]:
        """Write one batch; the sink state to store with its commit."""

    async def aclose(self) -> None:
        """Release resources."""
        return None  # a hook: nothing to do by default


# -- memory -----------------------------------------------------------------------------------


class MemoryTable:
    """One in-memory result table, written batch by batch."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: dict[int, pl.DataFrame] = {}
        self.complete = False
        self.schema: dict[str, pl.DataType] | None = None

    def add(self, batch_id: int, df: pl.DataFrame, mode: str) -> None:
        with self.lock:
            if mode == "complete":
                self.complete = True
                self.batches = {batch_id: df}
            elif batch_id not in self.batches:
                self.batches[batch_id] = df

    def frame(self) -> pl.DataFrame:
        with self.lock:
            frames = [self.batches[b] for b in sorted(self.batches)]
        frames = [f for f in frames if f.width]
        if not frames:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(frames, how="vertical_relaxed")


_TABLES: dict[str, MemoryTable] = {}
_TABLES_LOCK = threading.Lock()


def memory_table(name: str) -> pl.DataFrame:
    """The rows a ``MemorySink`` named ``name`` holds (all batches, in order; for
    complete mode the latest result table). KeyError if there is no such table."""
    with _TABLES_LOCK:
        table = _TABLES[name]
    return table.frame()


def drop_memory_table(name: str) -> None:
    """Forget a memory table."""
    with _TABLES_LOCK:
        _TABLES.pop(name, None)


class MemorySink(Sink):
    """Keeps every batch in a process-wide table ``name`` (idempotent by batch id)."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a memory sink needs a table name")
        self.name = name
        self.description = f"MemorySink[{name}]"
        with _TABLES_LOCK:
            self.table = _TABLES.setdefault(name, MemoryTable())

    def set_schema(self, schema: dict[str, pl.DataType]) -> None:
        with self.table.lock:
            self.table.schema = dict(schema)

    async def add_batch(self, df: pl.DataFrame, ctx: BatchContext) -> dict[str, Any]:
        self.table.add(ctx.batch_id, df, ctx.output_mode)
        return {}


# -- console ----------------------------------------------------------------------------------


class ConsoleSink(Sink):
    """Prints each batch to ``stream`` (stdout by default)."""

    def __init__(self, stream: IO[str] | None = None, *, num_rows: int = 20) -> None:
        self.stream = stream
        self.num_rows = num_rows
        self.description = "ConsoleSink"

    async def add_batch(self, df: pl.DataFrame, ctx: BatchContext) -> dict[str, Any]:
        out = self.stream if self.stream is not None else sys.stdout
        with pl.Config(tbl_rows=self.num_rows, tbl_cols=-1):
            text = f"-------------------------------------------\nBatch: {ctx.batch_id}\n"
            text += f"-------------------------------------------\n{df}\n"
        out.write(text)
        out.flush()
        return {}


# -- foreach_batch ----------------------------------------------------------------------------

BatchFunction = Callable[[pl.DataFrame, int], Any]


class ForeachBatchSink(Sink):
    """Calls ``fn(df, batch_id)`` for every batch: in a worker thread for a plain
    function, in the event loop for a coroutine function."""

    def __init__(self, fn: BatchFunction) -> None:
        if not callable(fn):
            raise TypeError("foreach_batch needs a callable fn(df, batch_id)")
        self.fn = fn
        self.description = f"ForeachBatchSink[{getattr(fn, '__name__', type(fn).__name__)}]"

    async def add_batch(self, df: pl.DataFrame, ctx: BatchContext) -> dict[str, Any]:
        if inspect.iscoroutinefunction(self.fn):
            coro: Awaitable[Any] = self.fn(df, ctx.batch_id)
            await coro
        else:
            await trio.to_thread.run_sync(self.fn, df, ctx.batch_id)
        return {}


# -- files ------------------------------------------------------------------------------------

FILE_FORMATS = ("parquet", "json")
MANIFEST_DIR = "_manifest"


def _manifest_path(path: str, batch_id: int) -> str:
    return os.path.join(path, MANIFEST_DIR, f"{batch_id:010d}.json")


class FileSink(Sink):
    """Parquet or JSON-lines files with a manifest per batch (see the module doc).

    Layout: ``<path>/part-<batch>-<n>.<ext>`` and ``<path>/_manifest/<batch>.json``.
    Append and update modes (each batch adds rows).
    """

    output_modes = ("append", "update")

    def __init__(self, path: str, *, format: str = "parquet") -> None:
        if format not in FILE_FORMATS:
            raise ValueError(f"file format must be one of {FILE_FORMATS}, got {format!r}")
        self.path = os.path.abspath(path)
        self.format = format
        self.ext = "parquet" if format == "parquet" else "jsonl"
        self.description = f"FileSink[{self.path}, {format}]"

    async def open(
        self, nursery: trio.Nursery, checkpoint: CheckpointDirectory, query_id: str
    ) -> None:
        await trio.to_thread.run_sync(self._open, query_id)

    def _open(self, query_id: str) -> None:
        os.makedirs(os.path.join(self.path, MANIFEST_DIR), exist_ok=True)
        owner = os.path.join(self.path, MANIFEST_DIR, "_query")
        if os.path.exists(owner):
            with open(owner, encoding="utf-8") as f:
                existing = f.read().strip()
            if existing != query_id:
                raise CheckpointError(
                    f"{self.path} is written by query {existing}, not {query_id}; "
                    "use another directory or the original checkpoint"
                )
        else:
            write_file_atomic(owner, query_id.encode())

    async def add_batch(self, df: pl.DataFrame, ctx: BatchContext) -> dict[str, Any]:
        await trio.to_thread.run_sync(self._write, df, ctx.batch_id)
        return {}

    def _write(self, df: pl.DataFrame, batch_id: int) -> None:
        manifest = _manifest_path(self.path, batch_id)
        if os.path.exists(manifest):
            return  # written before: a replay
        for stale in glob.glob(os.path.join(self.path, f"part-{batch_id:010d}-*")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        files: list[str] = []
        if df.height:
            name = f"part-{batch_id:010d}-00000.{self.ext}"
            final = os.path.join(self.path, name)
            tmp = final + ".tmp"
            if self.format == "parquet":
                df.write_parquet(tmp)
            else:
                df.write_ndjson(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            fsync_dir(self.path)
            files.append(name)
        body = {"batch_id": batch_id, "files": files, "rows": df.height}
        write_file_atomic(manifest, json.dumps(body).encode())


def read_file_sink(path: str) -> pl.DataFrame:
    """Every row a ``FileSink`` at ``path`` committed, batch by batch (files not in
    a manifest — left by a crashed attempt — are ignored)."""
    mdir = os.path.join(path, MANIFEST_DIR)
    if not os.path.isdir(mdir):
        raise FileNotFoundError(f"{path} holds no file sink output")
    frames = []
    for name in sorted(os.listdir(mdir)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(mdir, name), encoding="utf-8") as f:
            manifest = json.load(f)
        for file in manifest["files"]:
            full = os.path.join(path, file)
            frames.append(
                pl.read_parquet(full) if file.endswith(".parquet") else pl.read_ndjson(full)
            )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="vertical_relaxed")


# -- topic ------------------------------------------------------------------------------------

TOPIC_VALUE_FORMATS = ("json", "msgpack")
_RESERVED = ("key", "value", "partition", "timestamp", "headers")


def _epoch_ms(expr: pl.Expr, dtype: Any) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        return expr.dt.epoch("ms")
    if isinstance(dtype, pl.Date):
        return expr.cast(pl.Datetime("ms")).dt.epoch("ms")
    if isinstance(dtype, pl.Struct):
        return pl.struct(
            [_epoch_ms(expr.struct.field(f.name), f.dtype).alias(f.name) for f in dtype.fields]
        )
    return expr


def encode_values(df: pl.DataFrame, value_format: str) -> list[bytes]:
    """One value per row: the ``value`` column, or the row's other columns as JSON or
    msgpack maps (times as epoch milliseconds, the convention of topic sources)."""
    if "value" in df.columns:
        col = df.get_column("value")
        if col.dtype == pl.Utf8:
            col = col.cast(pl.Binary)
        if col.dtype != pl.Binary:
            raise AnalysisError(f"the 'value' column must be Utf8 or Binary, not {col.dtype}")
        return col.to_list()
    fields = [c for c in df.columns if c not in _RESERVED]
    if not fields:
        raise AnalysisError("nothing to write: the output has no 'value' nor other columns")
    body = df.select([_epoch_ms(pl.col(c), df.schema[c]).alias(c) for c in fields])
    if value_format == "json":
        encoded = body.select(pl.struct(pl.all()).struct.json_encode()).to_series()
        return encoded.cast(pl.Binary).to_list()
    return [msgpack.packb(row, use_bin_type=True) for row in body.iter_rows(named=True)]


def encode_keys(df: pl.DataFrame) -> list[bytes | None]:
    if "key" not in df.columns:
        return [None] * df.height
    col = df.get_column("key")
    if col.dtype == pl.Utf8:
        col = col.cast(pl.Binary)
    elif col.dtype != pl.Binary:
        col = col.cast(pl.Utf8).cast(pl.Binary)
    return col.to_list()


def assign_partitions(
    df: pl.DataFrame, keys: list[bytes | None], num_partitions: int, batch_id: int
) -> list[int]:
    """A deterministic partition per row: the ``partition`` column, else Kafka's
    murmur2 of the key, else round robin starting at ``batch_id``."""
    if "partition" in df.columns:
        parts = df.get_column("partition").cast(pl.Int64).to_list()
        for p in parts:
            if p is None or not 0 <= p < num_partitions:
                raise ValueError(f"partition {p} outside 0..{num_partitions - 1}")
        return [int(p) for p in parts]
    out = []
    for i, k in enumerate(keys):
        out.append(
            (batch_id + i) % num_partitions if k is None else partition_for_key(k, num_partitions)
        )
    return out


@dataclass(slots=True)
class _Chunk:
    base_sequence: int
    body: list[list[Any]]
    base_timestamp: int
    max_timestamp: int


class TopicSink(Sink):
    """Writes rows as records of ``topic`` exactly once (see the module doc).

    Record value: the ``value`` column (Utf8/Binary) or the other columns encoded
    as ``value_format`` (json or msgpack); key: the ``key`` column if any;
    partition: the ``partition`` column, else the key's hash, else round robin;
    timestamp: a Datetime ``timestamp`` column, else the batch's timestamp.

    Exactly once: the sink takes a producer id at its first start and keeps it
    in the checkpoint (``sinks/topic``). Sequence numbers continue per partition
    from the last committed batch (stored in its commit), and a batch's rows,
    chunks and therefore sequences are a deterministic function of the batch. A
    re-run batch re-sends identical batches with identical sequences, which the
    broker acknowledges without appending them again.
    """

    def __init__(
        self,
        bootstrap: str | list[str],
        topic: str,
        *,
        value_format: str = "json",
        max_batch_bytes: int = 512 * 1024,
        request_timeout: float = 30.0,
        metadata_timeout: float = 30.0,
    ) -> None:
        if not isinstance(topic, str) or not topic:
            raise ValueError("the topic sink needs a topic name")
        if value_format not in TOPIC_VALUE_FORMATS:
            raise ValueError(f"value_format must be one of {TOPIC_VALUE_FORMATS}")
        if max_batch_bytes < 1024:
            raise ValueError("max_batch_bytes must be >= 1024")
        self.bootstrap = bootstrap
        self.topic = topic
        self.value_format = value_format
        self.max_batch_bytes = max_batch_bytes
        self.request_timeout = request_timeout
        self.metadata_timeout = metadata_timeout
        self.description = f"TopicSink[{topic}]"
        self.cluster: Cluster | None = None
        self.producer_id = -1
        self.producer_epoch = -1
        self.num_partitions = 0
        self.sequences: dict[int, int] = {}

    async def open(
        self, nursery: trio.Nursery, checkpoint: CheckpointDirectory, query_id: str
    ) -> None:
        self.cluster = topic_io.make_cluster(self.bootstrap, request_timeout=self.request_timeout)
        await self.cluster.start(nursery)
        n = await self.cluster.wait_for_topic(self.topic, self.metadata_timeout)
        identity = checkpoint.read_sink("topic")
        if identity is None:
            pid, epoch = await topic_io.init_producer_id(self.cluster)
            identity = {
                "topic": self.topic,
                "producer_id": pid,
                "producer_epoch": epoch,
                "partitions": n,
            }
            await trio.to_thread.run_sync(checkpoint.write_sink, "topic", identity)
        if identity.get("topic") != self.topic:
            raise CheckpointError(
                f"the checkpoint's topic sink writes {identity.get('topic')!r}, not {self.topic!r}"
            )
        self.producer_id = int(identity["producer_id"])
        self.producer_epoch = int(identity["producer_epoch"])
        # The partition count at first start: later partitions are not used, so a
        # replay spreads rows exactly as the first attempt did.
        self.num_partitions = int(identity["partitions"])

    def restore(self, state: dict[str, Any]) -> None:
        self.sequences = {int(p): int(s) for p, s in dict(state.get("sequences", {})).items()}

    def _chunks(self, df: pl.DataFrame, ctx: BatchContext) -> dict[int, list[_Chunk]]:
        keys = encode_keys(df)
        values = encode_values(df, self.value_format)
        parts = assign_partitions(df, keys, self.num_partitions, ctx.batch_id)
        if "timestamp" in df.columns and isinstance(df.schema["timestamp"], pl.Datetime):
            times = [
                ctx.timestamp_ms if t is None else int(t)
                for t in df.get_column("timestamp").dt.epoch("ms").to_list()
            ]
        else:
            times = [ctx.timestamp_ms] * df.height
        rows: dict[int, list[tuple[int, bytes | None, bytes]]] = {}
        for p, k, v, t in zip(parts, keys, values, times, strict=True):
            rows.setdefault(p, []).append((t, k, v))
        out: dict[int, list[_Chunk]] = {}
        for p in sorted(rows):
            seq = self.sequences.get(p, 0)
            chunks: list[_Chunk] = []
            current: list[tuple[int, bytes | None, bytes]] = []
            size = 0
            for rec in rows[p]:
                rec_size = 16 + len(rec[2]) + (len(rec[1]) if rec[1] is not None else 0)
                if current and size + rec_size > self.max_batch_bytes:
                    chunks.append(self._chunk(seq, current))
                    seq = increment_sequence(seq, len(current))
                    current, size = [], 0
                current.append(rec)
                size += rec_size
            if current:
                chunks.append(self._chunk(seq, current))
            out[p] = chunks
        return out

    @staticmethod
    def _chunk(seq: int, recs: list[tuple[int, bytes | None, bytes]]) -> _Chunk:
        base = recs[0][0]
        return _Chunk(
            seq,
            [[t - base, k, v, []] for t, k, v in recs],
            base,
            max(t for t, _, _ in recs),
        )

    async def add_batch(self, df: pl.DataFrame, ctx: BatchContext) -> dict[str, Any]:
        if self.cluster is None:
            raise RuntimeError("the topic sink is not open")
        plan = await trio.to_thread.run_sync(self._chunks, df, ctx)
        new_sequences = dict(self.sequences)
        async with trio.open_nursery() as nursery:
            for p, chunks in plan.items():
                nursery.start_soon(self._send_partition, p, chunks, ctx.replay)
                last = chunks[-1]
                new_sequences[p] = increment_sequence(last.base_sequence, len(last.body))
        self.sequences = new_sequences
        return {"sequences": {str(p): s for p, s in sorted(new_sequences.items())}}

    async def _send_partition(self, partition: int, chunks: list[_Chunk], replay: bool) -> None:
        if self.cluster is None:
            raise RuntimeError("the topic sink is not open")
        tp = TopicPartition(self.topic, partition)
        for chunk in chunks:
            data = encode_batch_raw(
                chunk.body,
                base_timestamp=chunk.base_timestamp,
                max_timestamp=chunk.max_timestamp,
                producer_id=self.producer_id,
                producer_epoch=self.producer_epoch,
                base_sequence=chunk.base_sequence,
            )
            try:
                await topic_io.produce(self.cluster, tp, data, producer_id=self.producer_id)
            except DuplicateSequenceError:
                continue  # written by an earlier attempt
            except OutOfOrderSequenceError:
                if not replay:
                    raise
                # Re-running a batch: this chunk was written by the earlier attempt
                # and has left the broker's five-batch window.
                log.info("%s: chunk at sequence %d already written", tp, chunk.base_sequence)

    async def aclose(self) -> None:
        if self.cluster is not None:
            await self.cluster.aclose()
