"""Replayable sources: the ``rate`` generator and topics.

A source names its partitions with strings, tells the latest offset of each,
and reads an exact range ``[start, end)`` of one partition in two steps: the
I/O (``fetch``, in the event loop) and the CPU work (a picklable *reader*
turning the fetched data into a DataFrame inside a task). Reading the same
range twice gives the same rows — the foundation of exactly-once.

Initial offsets are resolved once, at the query's first start, and stored in
the checkpoint (``sources/<i>``), so "latest" means the latest at first start,
not at every restart.
"""

from __future__ import annotations

import abc
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import trio

from client.cluster import Cluster
from client.protocol import LATEST_TIMESTAMP, OffsetOutOfRangeError
from client.streaming import topic_io
from client.streaming.checkpoint import CheckpointDirectory
from client.streaming.errors import AnalysisError, CheckpointError, DataLossError
from client.streaming.formats import RecordDecoder
from client.types import TopicPartition

log = logging.getLogger(__name__)


class PartitionReader(abc.ABC):
    """Builds a partition's DataFrame from fetched data (runs in a task; picklable)."""

    @abc.abstractmethod
    def read(self, start: int, end: int, data: Any) -> pl.DataFrame:
        """The rows of ``[start, end)`` from what ``Source.fetch`` returned."""


class Source(abc.ABC):
    """Base of sources (see the module doc)."""

    description = "source"

    @abc.abstractmethod
    def schema(self) -> dict[str, pl.DataType]:
        """The columns of the DataFrames this source produces."""

    @abc.abstractmethod
    async def open(
        self, nursery: trio.Nursery, checkpoint: CheckpointDirectory, index: int, now_ms: int
    ) -> dict[str, int]:
        """Prepare the source; its start offsets for a query with no committed batch."""

    @abc.abstractmethod
    async def latest_offsets(self, current: Mapping[str, int], now_ms: int) -> dict[str, int]:
        """The offset after the last available record of each partition."""

    async def available_now_target(self, current: Mapping[str, int], now_ms: int) -> dict[str, int]:
        """What an available-now trigger processes: the latest offsets at start."""
        return await self.latest_offsets(current, now_ms)

    async def fetch(self, partition: str, start: int, end: int) -> Any:
        """The raw data of ``[start, end)`` (I/O); handed to the reader."""
        return None

    @abc.abstractmethod
    def reader(self, partition: str) -> PartitionReader:
        """The reader that turns ``partition``'s fetched data into rows."""

    async def wait_for_data(self, current: Mapping[str, int], timeout: float) -> None:
        """Return when new data may be available (or after ``timeout`` seconds)."""
        await trio.sleep(timeout)

    async def aclose(self) -> None:
        """Release connections."""
        return None  # a hook: nothing to release by default


# -- rate -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateReader(PartitionReader):
    """Rows of one rate partition: offset ``k`` of partition ``p`` is global row
    ``g = k * partitions + p`` with ``value = g`` and
    ``timestamp = start + g * 1000 // rows_per_second`` (ms)."""

    rows_per_second: int
    partitions: int
    partition: int
    start_ms: int

    def read(self, start: int, end: int, data: Any) -> pl.DataFrame:
        g = pl.int_range(start, end, dtype=pl.Int64) * self.partitions + self.partition
        return pl.select(
            (self.start_ms + g * 1000 // self.rows_per_second)
            .cast(pl.Datetime("ms"))
            .alias("timestamp"),
            g.alias("value"),
        )


class RateSource(Source):
    """Generated rows ``(timestamp, value)`` for tests and benchmarks (Spark's rate
    source). Deterministic: a row depends only on its offset.

    By default rows become available with the wall clock, ``rows_per_second``
    of them. With ``rows_per_batch`` each planned batch makes that many more rows
    available regardless of the clock (Spark's ``rate-micro-batch``); event
    times still advance by ``1000 / rows_per_second`` ms per row.
    ``total_rows`` ends the stream after that many rows.
    """

    def __init__(
        self,
        rows_per_second: int = 1,
        *,
        num_partitions: int = 1,
        rows_per_batch: int | None = None,
        total_rows: int | None = None,
        start_timestamp: int | None = None,
    ) -> None:
        for name, v in (("rows_per_second", rows_per_second), ("num_partitions", num_partitions)):
            if type(v) is not int or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if rows_per_batch is not None and (type(rows_per_batch) is not int or rows_per_batch < 1):
            raise ValueError(f"rows_per_batch must be a positive int, got {rows_per_batch!r}")
        if total_rows is not None and (type(total_rows) is not int or total_rows < 0):
            raise ValueError(f"total_rows must be a non-negative int, got {total_rows!r}")
        if start_timestamp is not None and type(start_timestamp) is not int:
            raise TypeError("start_timestamp must be epoch milliseconds (int)")
        self.rows_per_second = rows_per_second
        self.num_partitions = num_partitions
        self.rows_per_batch = rows_per_batch
        self.total_rows = total_rows
        self.start_timestamp = start_timestamp
        self.start_ms = 0
        self.description = (
            f"RateSource[rows_per_second={rows_per_second}, partitions={num_partitions}"
            + (f", rows_per_batch={rows_per_batch}" if rows_per_batch else "")
            + (f", total_rows={total_rows}" if total_rows is not None else "")
            + "]"
        )

    def schema(self) -> dict[str, pl.DataType]:
        return {"timestamp": pl.Datetime("ms"), "value": pl.Int64()}

    async def open(
        self, nursery: trio.Nursery, checkpoint: CheckpointDirectory, index: int, now_ms: int
    ) -> dict[str, int]:
        saved = checkpoint.read_source(index)
        if saved is None:
            start = self.start_timestamp if self.start_timestamp is not None else now_ms
            saved = {"kind": "rate", "start_ms": start, "partitions": self.num_partitions}
            checkpoint.write_source(index, saved)
        if saved.get("kind") != "rate" or saved.get("partitions") != self.num_partitions:
            raise CheckpointError(
                f"source {index} in the checkpoint is {saved}, not a rate source with "
                f"{self.num_partitions} partitions"
            )
        self.start_ms = int(saved["start_ms"])
        return {str(p): 0 for p in range(self.num_partitions)}

    def _per_partition(self, total: int) -> dict[str, int]:
        n = self.num_partitions
        return {str(p): max(0, (total - p + n - 1) // n) for p in range(n)}

    def available_rows(self, current: Mapping[str, int], now_ms: int) -> int:
        if self.rows_per_batch is not None:
            total = sum(current.values()) + self.rows_per_batch
        else:
            total = max(0, (now_ms - self.start_ms) * self.rows_per_second // 1000)
        if self.total_rows is not None:
            total = min(total, self.total_rows)
        return total

    async def latest_offsets(self, current: Mapping[str, int], now_ms: int) -> dict[str, int]:
        return self._per_partition(self.available_rows(current, now_ms))

    async def available_now_target(self, current: Mapping[str, int], now_ms: int) -> dict[str, int]:
        if self.rows_per_batch is not None:
            if self.total_rows is None:
                raise AnalysisError(
                    "an available-now trigger on a rows_per_batch rate source needs total_rows"
                )
            return self._per_partition(self.total_rows)
        return self._per_partition(self.available_rows(current, now_ms))

    def reader(self, partition: str) -> PartitionReader:
        return RateReader(self.rows_per_second, self.num_partitions, int(partition), self.start_ms)

    async def wait_for_data(self, current: Mapping[str, int], timeout: float) -> None:
        consumed = sum(current.values())
        if self.total_rows is not None and consumed >= self.total_rows:
            await trio.sleep(timeout)
            return
        if self.rows_per_batch is not None:
            return
        # The wall-clock time at which row ``consumed`` becomes available.
        due_ms = self.start_ms + math.ceil((consumed + 1) * 1000 / self.rows_per_second)
        wait = (due_ms - time.time() * 1000.0) / 1000.0
        await trio.sleep(min(timeout, max(0.0, wait)))


# -- topics -----------------------------------------------------------------------------------


def partition_name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def parse_partition_name(name: str) -> TopicPartition:
    topic, _, p = name.rpartition(":")
    if not topic or not p.isdigit():
        raise CheckpointError(f"bad partition name {name!r} in the checkpoint")
    return TopicPartition(topic, int(p))


@dataclass(frozen=True, slots=True)
class TopicReader(PartitionReader):
    """Decodes one topic partition's fetched batches."""

    decoder: RecordDecoder
    topic: str
    partition: int

    def read(self, start: int, end: int, data: Any) -> pl.DataFrame:
        chunks: Sequence[bytes] = data or ()
        return self.decoder.decode(self.topic, self.partition, start, end, chunks)


StartingOffsets = str | Mapping[str, Mapping[int, int]]


class TopicSource(Source):
    """Records of one or more topics (every partition), read by exact ranges.

    ``starting_offsets``: ``"earliest"``, ``"latest"``, or ``{topic: {partition:
    offset}}`` (partitions not listed start at the earliest); or
    ``starting_timestamp`` (ms): each partition starts at its first record at or
    after that time. Partitions added to a topic later are read from their start.
    """

    def __init__(
        self,
        bootstrap: str | list[str],
        topics: Sequence[str],
        *,
        decoder: RecordDecoder,
        starting_offsets: StartingOffsets = "latest",
        starting_timestamp: int | None = None,
        fail_on_data_loss: bool = True,
        fetch_max_bytes: int = 8 * 1024 * 1024,
        request_timeout: float = 30.0,
        metadata_timeout: float = 30.0,
    ) -> None:
        if isinstance(topics, str):
            topics = [topics]
        if not topics or not all(isinstance(t, str) and t for t in topics):
            raise ValueError(f"topics must be a non-empty list of names, got {topics!r}")
        if len(set(topics)) != len(topics):
            raise ValueError(f"duplicate topic names in {topics!r}")
        if isinstance(starting_offsets, str):
            if starting_offsets not in ("earliest", "latest"):
                raise ValueError(
                    "starting_offsets must be 'earliest', 'latest' or a mapping, "
                    f"got {starting_offsets!r}"
                )
        elif not isinstance(starting_offsets, Mapping):
            raise TypeError(
                "starting_offsets must be 'earliest', 'latest' or {topic: {partition: offset}}"
            )
        if starting_timestamp is not None and (
            type(starting_timestamp) is not int or starting_timestamp < 0
        ):
            raise ValueError("starting_timestamp must be epoch milliseconds (int >= 0)")
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.decoder = decoder
        self.starting_offsets = starting_offsets
        self.starting_timestamp = starting_timestamp
        self.fail_on_data_loss = fail_on_data_loss
        self.fetch_max_bytes = fetch_max_bytes
        self.request_timeout = request_timeout
        self.metadata_timeout = metadata_timeout
        self.cluster: Cluster | None = None
        self.description = f"TopicSource[{','.join(self.topics)}]"
        self._partitions: list[TopicPartition] = []
        self._last_refresh = -math.inf

    def schema(self) -> dict[str, pl.DataType]:
        return self.decoder.schema()

    def _cluster(self) -> Cluster:
        if self.cluster is None:
            raise RuntimeError("the source is not open")
        return self.cluster

    async def _discover(self) -> list[TopicPartition]:
        cluster = self._cluster()
        out: list[TopicPartition] = []
        for topic in self.topics:
            out.extend(await topic_io.partitions_of(cluster, topic, self.metadata_timeout))
        self._partitions = sorted(out)
        return self._partitions

    async def open(
        self, nursery: trio.Nursery, checkpoint: CheckpointDirectory, index: int, now_ms: int
    ) -> dict[str, int]:
        self.cluster = topic_io.make_cluster(self.bootstrap, request_timeout=self.request_timeout)
        await self.cluster.start(nursery)
        tps = await self._discover()
        saved = checkpoint.read_source(index)
        if saved is None:
            initial = await self._resolve(tps)
            saved = {"kind": "topics", "topics": self.topics, "offsets": initial}
            checkpoint.write_source(index, saved)
        if saved.get("kind") != "topics" or sorted(saved.get("topics", [])) != sorted(self.topics):
            raise CheckpointError(
                f"source {index} in the checkpoint reads {saved.get('topics')}, not {self.topics}"
            )
        return {str(p): int(o) for p, o in dict(saved["offsets"]).items()}

    async def _resolve(self, tps: list[TopicPartition]) -> dict[str, int]:
        cluster = self._cluster()
        earliest = await topic_io.earliest_offsets(cluster, tps)
        out: dict[str, int] = {}
        if self.starting_timestamp is not None:
            by_time = await topic_io.list_offsets(cluster, tps, self.starting_timestamp)
            latest = await topic_io.latest_offsets(cluster, tps)
            for tp in tps:
                o = by_time[tp]
                out[partition_name(tp)] = o if o >= 0 else latest[tp]
            return out
        if self.starting_offsets == "earliest":
            return {partition_name(tp): earliest[tp] for tp in tps}
        if self.starting_offsets == "latest":
            latest = await topic_io.list_offsets(cluster, tps, LATEST_TIMESTAMP)
            return {partition_name(tp): latest[tp] for tp in tps}
        given = self.starting_offsets if isinstance(self.starting_offsets, Mapping) else {}
        for tp in tps:
            offset = dict(given.get(tp.topic, {})).get(tp.partition)
            out[partition_name(tp)] = earliest[tp] if offset is None else int(offset)
        return out

    async def latest_offsets(self, current: Mapping[str, int], now_ms: int) -> dict[str, int]:
        cluster = self._cluster()
        now = trio.current_time()
        if now - self._last_refresh >= cluster.metadata_max_age:
            self._last_refresh = now
            await self._discover()
        latest = await topic_io.latest_offsets(cluster, self._partitions)
        return {partition_name(tp): o for tp, o in latest.items()}

    async def fetch(self, partition: str, start: int, end: int) -> Any:
        tp = parse_partition_name(partition)
        try:
            chunks, _first = await topic_io.fetch_range(
                self._cluster(),
                tp,
                start,
                end,
                max_bytes=self.fetch_max_bytes,
                fail_on_data_loss=self.fail_on_data_loss,
            )
        except OffsetOutOfRangeError as exc:
            raise DataLossError(
                f"{partition}: offsets {start}..{end} are no longer in the topic ({exc}); "
                "set fail_on_data_loss=False to skip them"
            ) from exc
        return chunks

    def reader(self, partition: str) -> PartitionReader:
        tp = parse_partition_name(partition)
        return TopicReader(self.decoder, tp.topic, tp.partition)

    async def wait_for_data(self, current: Mapping[str, int], timeout: float) -> None:
        positions = {parse_partition_name(p): o for p, o in current.items()}
        await topic_io.wait_for_data(self._cluster(), positions, timeout)

    async def aclose(self) -> None:
        if self.cluster is not None:
            await self.cluster.aclose()
