"""``python -m bench streaming``: the micro-batch engine's throughput, overhead and latency.

1. topic_records_per_s — a windowed count over 1,000 keys reading a topic of
   5 million records (quick: 200k), end to end (query start to termination).
2. rate_rows_per_s — the same query on the rate source (Spark's figure for a
   stateful 1,000-key group-by on its rate source, local[2]: 6.0 M rows/s).
3. batch_overhead_*_ms — median batch duration with 100 new records per batch,
   stateless and stateful (Spark: 165 ms and 400 ms).
4. e2e_latency_p50/p99_ms — produce to sink at 10,000 records/s with the
   fastest trigger (processing time 0).

The broker runs in its own process; the query runs in this one (its engine in
a background thread with its own trio loop, tasks on worker threads/processes).
The module also holds the small topic helpers (create, produce, read) the
streaming tests share.
"""

from __future__ import annotations

import struct
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import trio

from bench.processes import BROKER_READY, ServerProcess, broker_argv
from bench.report import Result, progress, result
from bench.stats import median, percentile
from client.cluster import Cluster
from client.protocol import ERRORS, ApiKey
from client.records import decode_batches, encode_batch_raw
from client.streaming import QueryProgress, Stream, StreamingQueryListener, topic_io, window
from client.streaming import functions as F
from client.types import TopicPartition

SPARK_RATE_ROWS_PER_S = 6_000_000.0
SPARK_BATCH_STATELESS_MS = 165.0
SPARK_BATCH_STATEFUL_MS = 400.0
TARGET_TOPIC_RECORDS_PER_S = 1_000_000.0
TARGET_BATCH_MS = 10.0
TARGET_E2E_P50_MS = 20.0

KEYS = 1000

# -- topic helpers (shared with tests/streaming) -----------------------------------------


async def create_topic(cluster: Cluster, name: str, partitions: int) -> None:
    """Create ``name`` and wait until its partitions have leaders."""
    answer = await cluster.call_any(
        ApiKey.CREATE_TOPICS,
        {
            "topics": [
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": -1,
                    "configs": {},
                }
            ],
            "timeout_ms": 30_000,
            "validate_only": False,
        },
    )
    entry = answer["topics"][0]
    if entry.get("error_code"):
        raise ERRORS.exception(int(entry["error_code"]), str(entry.get("error_message") or ""))
    for p in range(partitions):
        await cluster.leader(TopicPartition(name, p), 30.0)


async def produce_rows(
    cluster: Cluster,
    tp: TopicPartition,
    rows: Sequence[tuple[int, bytes | None, bytes | None]],
    *,
    batch_records: int = 5000,
) -> None:
    """Append ``(timestamp_ms, key, value)`` rows to one partition, in order."""
    for i in range(0, len(rows), batch_records):
        chunk = rows[i : i + batch_records]
        base = chunk[0][0]
        data = encode_batch_raw(
            [[t - base, k, v, []] for t, k, v in chunk],
            base_timestamp=base,
            max_timestamp=max(t for t, _, _ in chunk),
        )
        await topic_io.produce(cluster, tp, data)


async def read_topic(
    cluster: Cluster, name: str
) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Every record of ``name``: ``(partition, offset, key, value)``."""
    n = await cluster.wait_for_topic(name, 30.0)
    tps = [TopicPartition(name, p) for p in range(n)]
    ends = await topic_io.latest_offsets(cluster, tps)
    starts = await topic_io.earliest_offsets(cluster, tps)
    out: list[tuple[int, int, bytes | None, bytes | None]] = []
    for tp in tps:
        if ends[tp] <= starts[tp]:
            continue
        chunks, _ = await topic_io.fetch_range(cluster, tp, starts[tp], ends[tp])
        for chunk in chunks:
            for _, records in decode_batches(chunk):
                out.extend(
                    (tp.partition, r.offset, r.key, r.value)
                    for r in records
                    if starts[tp] <= r.offset < ends[tp]
                )
    return out


async def with_cluster(address: str, fn: Any, *args: Any) -> Any:
    """``await fn(cluster, *args)`` with a connected cluster (for ``trio.run``)."""
    cluster = topic_io.make_cluster(address)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        try:
            return await fn(cluster, *args)
        finally:
            await cluster.aclose()
            nursery.cancel_scope.cancel()


def start_broker(data_dir: Path) -> ServerProcess:
    """A single-node cluster in its own process."""
    argv = broker_argv(data_dir, "--embedded-coordinator-port", "0")
    return ServerProcess(argv, ready=BROKER_READY).start()


# -- the measurements -------------------------------------------------------------------


def windowed_count(stream: Stream, key: Any, time_col: str) -> Stream:
    return (
        stream.with_watermark(time_col, "5 seconds")
        .group_by(window(time_col, "10 seconds"), key)
        .agg(F.count().alias("n"))
    )


async def _load_topic(cluster: Cluster, name: str, total: int, partitions: int) -> None:
    await create_topic(cluster, name, partitions)
    per = total // partitions
    keys = [b"key-%d" % k for k in range(KEYS)]
    value = b"v" * 16
    t0 = 1_700_000_000_000

    async def one(p: int) -> None:
        step = 100_000
        for start in range(0, per, step):
            rows = [
                (t0 + (start + i) // 10, keys[(start + i) * 7919 % KEYS], value)
                for i in range(min(step, per - start))
            ]
            await produce_rows(cluster, TopicPartition(name, p), rows, batch_records=10_000)

    async with trio.open_nursery() as nursery:
        for p in range(partitions):
            nursery.start_soon(one, p)


def bench_topic(address: str, tmp: Path, quick: bool) -> list[Result]:
    total = 200_000 if quick else 5_000_000
    partitions = 4
    progress(f"loading {total:,} records into a topic of {partitions} partitions")
    trio.run(with_cluster, address, _load_topic, "bench-in", total, partitions)
    figures = []
    for run in range(1 if quick else 3):
        progress(f"windowed count over {KEYS} keys from the topic (run {run + 1})")
        stream = Stream.from_topics(address, "bench-in", starting_offsets="earliest")
        query = (
            windowed_count(stream, "key", "timestamp")
            .write_stream.output_mode("append")
            .trigger(available_now=True)
            .max_records_per_trigger(1_000_000)
            .to_memory(f"bench-topic-{run}")
            .checkpoint_location(str(tmp / f"topic-ckpt-{run}"))
        )
        started = time.perf_counter()
        q = query.start()
        q.await_termination()
        elapsed = time.perf_counter() - started
        rows = sum(p.num_input_rows for p in q.recent_progress)
        if rows != total:
            raise RuntimeError(f"the query read {rows} records, not {total}")
        figures.append(rows / elapsed)
    value = median(figures)
    return [
        result("topic_records_per_s", value, "records/s"),
        result("topic_vs_target", value / TARGET_TOPIC_RECORDS_PER_S, "x"),
    ]


def bench_rate(tmp: Path, quick: bool) -> list[Result]:
    total = 10_000_000 if quick else 30_000_000
    figures = []
    progress("warming up (Polars' first group-by of a process is slow)")
    warm = windowed_count(
        Stream.rate(1_000_000, num_partitions=2, rows_per_batch=2_000_000, total_rows=2_000_000),
        (pl.col("value") % KEYS).alias("key"),
        "timestamp",
    )
    warm.write_stream.output_mode("append").trigger(available_now=True).to_memory(
        "bench-rate-warmup"
    ).start().await_termination()
    for run in range(1 if quick else 3):
        progress(
            f"windowed count over {KEYS} keys from the rate source, {total:,} rows (run {run + 1})"
        )
        stream = Stream.rate(
            1_000_000,
            num_partitions=2,
            rows_per_batch=5_000_000,
            total_rows=total,
            start_timestamp=0,
        )
        query = (
            windowed_count(stream, (pl.col("value") % KEYS).alias("key"), "timestamp")
            .write_stream.output_mode("append")
            .trigger(available_now=True)
            .to_memory(f"bench-rate-{run}")
            .checkpoint_location(str(tmp / f"rate-ckpt-{run}"))
        )
        started = time.perf_counter()
        q = query.start()
        q.await_termination()
        elapsed = time.perf_counter() - started
        figures.append(total / elapsed)
    value = median(figures)
    return [
        result("rate_rows_per_s", value, "rows/s"),
        result("rate_vs_spark", value / SPARK_RATE_ROWS_PER_S, "x"),
    ]


class _Collect(StreamingQueryListener):
    """Every batch's progress (``recent_progress`` keeps only the last 100)."""

    def __init__(self) -> None:
        self.progress: list[QueryProgress] = []

    def on_query_progress(self, progress: QueryProgress) -> None:
        self.progress.append(progress)


def bench_overhead(tmp: Path, quick: bool) -> list[Result]:
    batches = 100 if quick else 300
    out: list[Result] = []
    for label, stateful, spark in (
        ("stateless", False, SPARK_BATCH_STATELESS_MS),
        ("stateful", True, SPARK_BATCH_STATEFUL_MS),
    ):
        figures = []
        for run in range(1 if quick else 3):
            progress(f"{batches} {label} batches of 100 records (run {run + 1})")
            stream = Stream.rate(
                1000, rows_per_batch=100, total_rows=100 * batches, start_timestamp=0
            )
            if stateful:
                key = (pl.col("value") % KEYS).alias("key")
                writer = windowed_count(stream, key, "timestamp").write_stream
            else:
                writer = stream.with_columns((pl.col("value") * 2).alias("double")).write_stream
            collect = _Collect()
            q = (
                writer.output_mode("append")
                .trigger(available_now=True)
                .to_memory(f"bench-overhead-{label}-{run}")
                .listener(collect)
                .checkpoint_location(str(tmp / f"overhead-{label}-{run}"))
                .start()
            )
            q.await_termination()
            durations = [
                p.duration_ms["trigger_execution"] for p in collect.progress if p.num_input_rows
            ]
            figures.append(median(durations[10:] or durations))
        value = median(figures)
        out.append(result(f"batch_overhead_{label}_ms", value, "ms"))
        out.append(result(f"batch_overhead_{label}_vs_spark", spark / value, "x faster"))
    return out


_STAMP = struct.Struct(">d")


def bench_latency(address: str, tmp: Path, quick: bool) -> list[Result]:
    seconds = 3.0 if quick else 10.0
    rate = 10_000
    progress(f"end-to-end latency at {rate:,} records/s for {seconds:.0f} s")
    topic_name = f"bench-latency-{tmp.name}"
    trio.run(with_cluster, address, create_topic, topic_name, 1)
    samples: list[float] = []
    lock = threading.Lock()

    def sink(df: pl.DataFrame, batch_id: int) -> None:
        now = time.perf_counter()
        sent = [_STAMP.unpack(v)[0] for v in df.get_column("value").to_list()]
        with lock:
            samples.extend((now - s) * 1000.0 for s in sent)

    query = (
        Stream.from_topics(address, topic_name, starting_offsets="latest")
        .select("value")
        .write_stream.foreach_batch(sink)
        .trigger(processing_time=0)
        .option("idle_poll_ms", 500)
        .checkpoint_location(str(tmp / "latency"))
        .start()
    )
    try:
        time.sleep(0.5)  # the query is waiting for data

        async def produce(cluster: Cluster) -> None:
            tp = TopicPartition(topic_name, 0)
            per_tick = 10
            interval = per_tick / rate
            deadline = trio.current_time() + seconds
            next_at = trio.current_time()
            while trio.current_time() < deadline:
                now_ms = int(time.time() * 1000)
                stamp = _STAMP.pack(time.perf_counter())
                data = encode_batch_raw(
                    [[0, None, stamp, []] for _ in range(per_tick)],
                    base_timestamp=now_ms,
                    max_timestamp=now_ms,
                )
                await topic_io.produce(cluster, tp, data, acks=1)
                next_at += interval
                await trio.sleep_until(max(next_at, trio.current_time()))

        trio.run(with_cluster, address, produce)
        query.process_all_available(60)
    finally:
        query.stop()
    warm = samples[len(samples) // 10 :]
    return [
        result("e2e_latency_p50_ms", percentile(warm, 50), "ms"),
        result("e2e_latency_p99_ms", percentile(warm, 99), "ms"),
        result("e2e_records", float(len(samples)), "records"),
    ]


def run(quick: bool = False) -> list[Result]:
    """All four measurements in one run (the broker-backed ones share one broker)."""
    out: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-streaming-") as tmp_name:
        tmp = Path(tmp_name)
        out.extend(bench_rate(tmp, quick))
        out.extend(bench_overhead(tmp, quick))
        try:
            broker = start_broker(tmp / "broker")
        except (RuntimeError, OSError) as exc:
            progress(f"skipped: broker unavailable ({exc})")
            broker = None
        if broker is None:
            out.append(result("topic_records_per_s_skipped_broker_unavailable", 0.0, "skipped"))
            out.append(result("e2e_latency_skipped_broker_unavailable", 0.0, "skipped"))
        else:
            try:
                # latency first, on an idle broker; then the bulk load and throughput
                out.extend(bench_latency(broker.address, tmp, quick))
                out.extend(bench_topic(broker.address, tmp, quick))
            finally:
                broker.stop()
    return out


if __name__ == "__main__":
    from bench.report import print_table

    print_table("streaming", run(quick="--quick" in sys.argv))
