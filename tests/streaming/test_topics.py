"""Topic source and topic sink against a real broker process: starting offsets,
formats, exactly-once replays, and SIGKILL of the query process."""

from __future__ import annotations

import json
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import polars as pl
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.streaming import create_topic, produce_rows, read_topic, with_cluster
from client.streaming import (
    Stream,
    StreamingQueryError,
    TopicSink,
    memory_table,
    window,
)
from client.streaming import functions as F
from client.streaming.sinks import BatchContext
from client.types import TopicPartition
from tests.procs import BROKER_READY, ServerProcess, broker_argv
from tests.streaming.query_child import topic_query
from tests.streaming.test_recovery import child, run_to_completion, wait_ready


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("broker")
    proc = ServerProcess(broker_argv(data, "--embedded-coordinator-port", "0"), ready=BROKER_READY)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def topic(address: str, partitions: int = 1) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    trio.run(with_cluster, address, create_topic, name, partitions)
    return name


def produce(
    address: str,
    name: str,
    values: list[Any],
    *,
    partition: int | None = None,
    partitions: int = 1,
    key: bytes | None = None,
    timestamp: int | None = None,
) -> None:
    """Append ``values`` (bytes, or JSON-encoded) to one partition, or round robin."""
    now = int(time.time() * 1000) if timestamp is None else timestamp
    rows: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {}
    for i, v in enumerate(values):
        data = v if isinstance(v, bytes) else json.dumps(v).encode()
        p = partition if partition is not None else i % partitions
        rows.setdefault(p, []).append((now, key, data))

    async def send(cluster: Any) -> None:
        for p, items in rows.items():
            await produce_rows(cluster, TopicPartition(name, p), items)

    trio.run(with_cluster, address, send)


class Record(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def consume_all(address: str, name: str) -> list[Record]:
    return [Record(*r) for r in trio.run(with_cluster, address, read_topic, name)]


def test_starting_offsets(broker: ServerProcess, tmp_path: Path) -> None:
    addr = broker.address
    name = topic(addr, 2)
    produce(addr, name, [{"i": i} for i in range(5)], partition=0, timestamp=1_000)
    produce(addr, name, [{"i": i} for i in range(5, 8)], partition=1, timestamp=5_000)

    def run(label: str, **kw: Any) -> list[int]:
        table = f"{label}-{uuid.uuid4().hex[:6]}"
        q = (
            Stream.from_topics(addr, name, **kw)
            .value_format("json", schema={"i": "long"})
            .write_stream.to_memory(table)
            .trigger(available_now=True)
            .checkpoint_location(str(tmp_path / table))
            .start()
        )
        q.await_termination(60)
        return sorted(memory_table(table)["i"].to_list())

    assert run("earliest", starting_offsets="earliest") == list(range(8))
    assert run("latest", starting_offsets="latest") == []
    assert run("given", starting_offsets={name: {0: 3}}) == [3, 4, 5, 6, 7]
    assert run("time", starting_timestamp=2_000) == [5, 6, 7]


def test_metadata_columns_and_continuous_reading(broker: ServerProcess, tmp_path: Path) -> None:
    addr = broker.address
    a, b = topic(addr, 2), topic(addr, 1)
    table = f"cols-{uuid.uuid4().hex[:6]}"
    q = (
        Stream.from_topics(
            addr,
            [a, b],
            starting_offsets="earliest",
            value_format="msgpack",
            schema={"n": "long"},
            key_format="string",
        )
        .select("topic", "partition", "offset", "key", "n", "timestamp")
        .write_stream.to_memory(table)
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    try:
        produce(addr, a, [msgpack.packb({"n": 1})], partition=1, key=b"k", timestamp=42)
        produce(addr, b, [msgpack.packb({"n": 2}), msgpack.packb({"n": 3})])
        q.process_all_available(60)
        rows = sorted(memory_table(table).rows())
        assert [r[:5] for r in rows] == sorted(
            [(a, 1, 0, "k", 1), (b, 0, 0, None, 2), (b, 0, 1, None, 3)]
        )
        assert rows[[r[0] for r in rows].index(a)][5].timestamp() == 0.042
        progress = q.recent_progress[-1]
        assert set(progress.sources[0].end_offset) <= {f"{a}:0", f"{a}:1", f"{b}:0"}
    finally:
        q.stop()


def test_topic_sink_rerun_is_deduplicated(broker: ServerProcess, tmp_path: Path) -> None:
    addr = broker.address
    source, sink = topic(addr, 2), topic(addr, 3)
    produce(addr, source, [{"page": f"p{i % 7}", "ts": i * 50} for i in range(600)], partitions=2)
    ckpt = str(tmp_path / "ckpt")
    failures = {"left": 1}

    class CrashAfterWrite(TopicSink):
        async def add_batch(self, df: pl.DataFrame, ctx: BatchContext) -> dict[str, Any]:
            state = await super().add_batch(df, ctx)
            if ctx.batch_id == 3 and failures["left"]:
                failures["left"] -= 1
                raise OSError("crash after the sink wrote, before the commit")
            return state

    def writer(sink_obj: TopicSink) -> Any:
        return (
            Stream.from_topics(addr, source, starting_offsets="earliest")
            .value_format("json", schema={"page": "string", "ts": "timestamp"})
            .with_watermark("ts", "500 ms")
            .group_by(window("ts", "1 second"), "page")
            .agg(F.count().alias("views"))
            .write_stream.output_mode("append")
            .trigger(available_now=True)
            .max_records_per_trigger(100)
            .sink(sink_obj)
            .checkpoint_location(ckpt)
        )

    q = writer(CrashAfterWrite(addr, sink, max_batch_bytes=1024)).start()
    with pytest.raises(StreamingQueryError, match="crash after"):
        q.await_termination(60)
    q = writer(TopicSink(addr, sink, max_batch_bytes=1024)).start()
    assert q.await_termination(60)
    assert q.recent_progress[0].batch_id == 3 and q.recent_progress[0].replayed
    records = consume_all(addr, sink)
    rows = [json.loads(r.value) for r in records]
    keys = [(r["window"]["start"], r["page"]) for r in rows]
    assert len(keys) == len(set(keys))  # nothing written twice
    # 600 rows, 20 per second, 7 pages: final watermark 29.95 - 0.5 s closes [0, 29) s
    assert sorted(keys) == sorted((s * 1000, f"p{p}") for s in range(29) for p in range(7))
    assert sum(r["views"] for r in rows) == sum(1 for i in range(600) if i * 50 < 29_000)


def test_topic_sink_fields(broker: ServerProcess, tmp_path: Path) -> None:
    addr = broker.address
    sink = topic(addr, 4)
    frame = pl.DataFrame(
        {"key": ["a", "b", None], "value": ["x", "y", "z"], "partition": [3, 0, 1]}
    )
    seen: list[Any] = []

    q = (
        Stream.rate(10, rows_per_batch=3, total_rows=3, start_timestamp=0)
        .map_batches(lambda df: frame)
        .write_stream.to_topic(addr, sink)
        .trigger(available_now=True)
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    q.await_termination(60)
    for r in consume_all(addr, sink):
        seen.append((r.partition, r.key, r.value))
    assert sorted(seen, key=repr) == sorted(
        [(3, b"a", b"x"), (0, b"b", b"y"), (1, None, b"z")], key=repr
    )


@pytest.mark.slow
@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delays=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3))
def test_topic_to_topic_exactly_once_under_sigkill(
    broker: ServerProcess, delays: list[float]
) -> None:
    addr = broker.address
    source = topic(addr, 3)
    produce(addr, source, [{"page": f"p{i % 5}", "ts": i * 20} for i in range(3000)], partitions=3)
    ref_sink, sink = topic(addr, 2), topic(addr, 2)
    with tempfile.TemporaryDirectory() as tmp:
        topic_query(f"{tmp}/ref", addr, source, ref_sink).start().await_termination(120)
        for delay in delays:
            proc = child("topic", f"{tmp}/ckpt", addr, source, sink)
            wait_ready(proc)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        run_to_completion("topic", f"{tmp}/ckpt", addr, source, sink)

    def content(name: str) -> list[tuple[Any, ...]]:
        return sorted((r.partition, r.value) for r in consume_all(addr, name))

    expected = content(ref_sink)
    assert expected and content(sink) == expected


def test_topic_sink_replay_of_many_chunks(broker: ServerProcess, tmp_path: Path) -> None:
    """A replayed batch wrote more chunks to a partition than the broker remembers
    (five): the older ones come back "out of order" and count as written."""
    from client.streaming.checkpoint import CheckpointDirectory

    addr = broker.address
    sink_topic = topic(addr, 1)
    df = pl.DataFrame({"value": [f"row-{i:04d}-" + "x" * 100 for i in range(120)]})

    async def run() -> None:
        ckpt = CheckpointDirectory(str(tmp_path / "ckpt"))
        ckpt.open({})
        try:
            async with trio.open_nursery() as nursery:
                sink = TopicSink(addr, sink_topic, max_batch_bytes=1024)
                await sink.open(nursery, ckpt, "query")
                sink.restore({})
                state0 = await sink.add_batch(df, BatchContext(0, 1000, "append", False))
                assert state0 == {"sequences": {"0": 120}}
                # the process "died" before committing batch 0: replay it, twice
                replays = []
                for _ in range(2):
                    again = TopicSink(addr, sink_topic, max_batch_bytes=1024)
                    await again.open(nursery, ckpt, "query")
                    again.restore({})
                    ctx = BatchContext(0, 1000, "append", True)
                    assert await again.add_batch(df, ctx) == state0
                    replays.append(again)
                # and a first attempt of the next batch continues the sequence
                last = replays[-1]
                last.restore(state0)
                await last.add_batch(df.head(3), BatchContext(1, 2000, "append", False))
                for s in (sink, *replays):
                    await s.aclose()
                nursery.cancel_scope.cancel()
        finally:
            ckpt.close()

    trio.run(run)
    values = [r.value for r in consume_all(addr, sink_topic)]
    expected = [v.encode() for v in df["value"].to_list()]
    assert values == expected + expected[:3]


def test_spark_style_topic_reader(broker: ServerProcess, tmp_path: Path) -> None:
    from client.streaming import StreamingSession

    addr = broker.address
    name = topic(addr, 1)
    produce(addr, name, [{"page": "a"}, {"page": "b"}, {"page": "a"}])
    stream = (
        StreamingSession(addr)
        .readStream.format("kafka")
        .option("subscribe", name)
        .option("startingOffsets", "earliest")
        .value_format("json", schema={"page": "string"})
        .load()
    )
    table = f"spark-{uuid.uuid4().hex[:6]}"
    q = (
        stream.groupBy("page")
        .count()
        .writeStream.outputMode("complete")
        .to_memory(table)
        .trigger(available_now=True)
        .option("checkpointLocation", str(tmp_path / "c"))
        .start()
    )
    assert q.await_termination(60)
    assert sorted(memory_table(table).rows()) == [("a", 2), ("b", 1)]
