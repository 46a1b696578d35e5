"""End-to-end queries without a broker: rate and in-memory sources, every sink
but the topic one, output modes, windows, watermarks, triggers, retries,
progress, restarts and both APIs."""

from __future__ import annotations

import io
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import trio

from client.streaming import (
    AnalysisError,
    CheckpointLockedError,
    QueryProgress,
    QueryStartedEvent,
    QueryTerminatedEvent,
    Stream,
    StreamingQueryError,
    StreamingQueryListener,
    StreamingSession,
    TaskFailedError,
    memory_table,
    read_file_sink,
    session_window,
    window,
)
from client.streaming import functions as F
from tests.streaming.helpers import ListSource

SCHEMA = {"ts": pl.Datetime("ms"), "user": pl.Utf8(), "n": pl.Int64()}
T0 = datetime(2024, 1, 1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def name() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


def windows(df: pl.DataFrame, col: str = "window") -> list[tuple[Any, ...]]:
    """Rows as tuples with the window struct flattened, sorted."""
    out = []
    for r in df.to_dicts():
        w = r.pop(col)
        out.append((w["start"], w["end"], *r.values()))
    return sorted(out)


# -- rate source, windows, output modes -------------------------------------------------------


def test_rate_tumbling_append_available_now(tmp_path: Path) -> None:
    table = name()
    q = (
        Stream.rate(10, num_partitions=3, rows_per_batch=40, total_rows=300, start_timestamp=0)
        .with_watermark("timestamp", "2 seconds")
        .group_by(window("timestamp", "5 seconds"), (pl.col("value") % 2).alias("parity"))
        .agg(F.count().alias("n"), F.sum("value").alias("total"))
        .write_stream.output_mode("append")
        .trigger(available_now=True)
        .to_memory(table)
        .checkpoint_location(str(tmp_path / "ckpt"))
        .start()
    )
    assert q.await_termination(60)
    # 300 rows at 10/s: event times 0..29.9 s; the final watermark is 29.9 - 2 = 27.9 s,
    # so windows ending at or before it ([0,5) .. [20,25)) are emitted, once each.
    rows = pl.DataFrame({"value": list(range(300))}).with_columns(
        (pl.col("value") * 100).alias("t"), (pl.col("value") % 2).alias("parity")
    )
    expected = sorted(
        (
            datetime(1970, 1, 1) + timedelta(milliseconds=s),
            datetime(1970, 1, 1) + timedelta(milliseconds=s + 5000),
            p,
            n,
            tot,
        )
        for (s, p), n, tot in (
            ((r["s"], r["parity"]), r["n"], r["total"])
            for r in rows.group_by((pl.col("t") // 5000 * 5000).alias("s"), "parity")
            .agg(pl.len().alias("n"), pl.col("value").sum().alias("total"))
            .to_dicts()
        )
        if s + 5000 <= 27_900
    )
    assert windows(memory_table(table)) == expected
    last = q.last_progress
    assert last is not None and last.batch_id == len(q.recent_progress) - 1
    assert sum(p.num_input_rows for p in q.recent_progress) == 300
    assert all(p.num_input_rows <= 40 for p in q.recent_progress)


def test_sliding_window_complete_mode(tmp_path: Path) -> None:
    table = name()
    q = (
        Stream.rate(4, rows_per_batch=10, total_rows=40, start_timestamp=0)
        .group_by(window("timestamp", "4 seconds", "2 seconds"))
        .agg(F.count().alias("n"), F.min("value").alias("lo"), F.max("value").alias("hi"))
        .write_stream.output_mode("complete")
        .trigger(available_now=True)
        .to_memory(table)
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    q.await_termination(60)
    out = windows(memory_table(table))
    epoch = datetime(1970, 1, 1)
    # 40 rows, 4 per second: t = 0..9.75 s; windows of 4 s every 2 s
    expected = []
    for start in range(-2, 10, 2):
        vals = [v for v in range(40) if start * 1000 <= v * 250 < (start + 4) * 1000]
        if vals:
            expected.append(
                (
                    epoch + timedelta(seconds=start),
                    epoch + timedelta(seconds=start + 4),
                    len(vals),
                    min(vals),
                    max(vals),
                )
            )
    assert out == expected


def test_update_and_complete_modes_without_windows(tmp_path: Path) -> None:
    for mode in ("update", "complete"):
        src = ListSource(SCHEMA)
        table = name()
        q = (
            Stream.from_source(src)
            .group_by("user")
            .agg(F.count().alias("c"), F.mean("n").alias("avg"))
            .write_stream.output_mode(mode)
            .trigger(processing_time=0)
            .to_memory(table)
            .checkpoint_location(str(tmp_path / mode))
            .start()
        )
        src.add([{"ts": at(0), "user": "a", "n": 1}, {"ts": at(1), "user": "b", "n": 3}])
        q.process_all_available(30)
        src.add([{"ts": at(2), "user": "a", "n": 5}])
        q.process_all_available(30)
        q.stop()
        rows = sorted(tuple(r.values()) for r in memory_table(table).to_dicts())
        if mode == "update":
            assert rows == [("a", 1, 1.0), ("a", 2, 3.0), ("b", 1, 3.0)]
        else:
            assert rows == [("a", 2, 3.0), ("b", 1, 3.0)]


def test_late_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    src = ListSource(SCHEMA, partitions=2)
    table = name()
    q = (
        Stream.from_source(src)
        .with_watermark("ts", "10 seconds")
        .group_by(window("ts", "10 seconds"), "user")
        .agg(F.count().alias("c"))
        .write_stream.output_mode("append")
        .to_memory(table)
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    src.add([{"ts": at(5), "user": "a", "n": 0}, {"ts": at(31), "user": "a", "n": 0}], 0)
    q.process_all_available(30)  # watermark becomes 21 s
    src.add([{"ts": at(8), "user": "a", "n": 0}], 1)  # late: dropped
    src.add([{"ts": at(25), "user": "b", "n": 0}, {"ts": at(45), "user": "a", "n": 0}], 0)
    q.process_all_available(30)  # watermark becomes 35 s
    q.stop()
    dropped = sum(p.num_rows_dropped_by_watermark for p in q.recent_progress)
    assert dropped == 1
    assert windows(memory_table(table)) == [
        (at(0), at(10), "a", 1),
        (at(20), at(30), "b", 1),
    ]
    stateful = [p for p in q.recent_progress if p.state_operators]
    assert sum(op.num_rows_dropped_by_watermark for p in stateful for op in p.state_operators) == 1
    assert any(p.state_operators[0].num_rows_removed > 0 for p in stateful)  # state evicted
    assert q.recent_progress[-1].event_time["watermark"] == "2024-01-01T00:00:35.000+00:00"


def test_session_windows_append(tmp_path: Path) -> None:
    src = ListSource(SCHEMA)
    table = name()
    q = (
        Stream.from_source(src)
        .with_watermark("ts", "0 seconds")
        .group_by("user", session_window("ts", "5 seconds"))
        .agg(F.count().alias("c"), F.sum("n").alias("s"))
        .write_stream.output_mode("append")
        .to_memory(table)
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    src.add([{"ts": at(0), "user": "a", "n": 1}, {"ts": at(3), "user": "a", "n": 2}])
    q.process_all_available(30)
    src.add([{"ts": at(6), "user": "a", "n": 4}, {"ts": at(20), "user": "a", "n": 8}])
    q.process_all_available(30)
    src.add([{"ts": at(40), "user": "b", "n": 16}])
    q.process_all_available(30)
    q.stop()
    assert windows(memory_table(table), "session_window") == [
        (at(0), at(11), "a", 3, 7),
        (at(20), at(25), "a", 1, 8),
    ]


# -- stateless operators and sinks ----------------------------------------------------------


def label(row: dict[str, Any]) -> dict[str, Any]:
    return {"user": row["user"].upper(), "n": row["n"] * 10}


def test_stateless_operators_to_json_files(tmp_path: Path) -> None:
    src = ListSource(SCHEMA, partitions=2)
    users = pl.DataFrame({"user": ["A", "B"], "country": ["fr", "de"]})
    out = tmp_path / "out"
    q = (
        Stream.from_source(src)
        .filter(pl.col("n") > 0)
        .filter(lambda r: r["user"] != "skip")
        .map(label, schema={"user": "string", "n": "long"})
        .flat_map(lambda r: [r] * (r["n"] // 10), schema={"user": pl.Utf8, "n": pl.Int64})
        .join(users, on="user", how="left")
        .with_columns(double=pl.col("n") * 2)
        .select("user", "country", "double")
        .write_stream.to_files(str(out), format="json")
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    src.add([{"ts": at(0), "user": "a", "n": 2}, {"ts": at(0), "user": "skip", "n": 1}], 0)
    src.add([{"ts": at(0), "user": "c", "n": 1}, {"ts": at(0), "user": "b", "n": 0}], 1)
    q.process_all_available(30)
    q.stop()
    got = sorted(tuple(r.values()) for r in read_file_sink(str(out)).to_dicts())
    assert got == [("A", "fr", 40), ("A", "fr", 40), ("C", None, 20)]


def test_foreach_batch_and_console(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    q = (
        Stream.rate(10, rows_per_batch=5, total_rows=12, start_timestamp=0)
        .write_stream.foreach_batch(lambda df, b: seen.append((b, df.height)))
        .trigger(available_now=True)
        .start()
    )
    q.await_termination(30)
    assert seen == [(0, 5), (1, 5), (2, 2)]
    buf = io.StringIO()
    q2 = (
        Stream.rate(10, rows_per_batch=3, total_rows=3, start_timestamp=0)
        .select("value")
        .write_stream.to_console(buf)
        .trigger(once=True)
        .start()
    )
    q2.await_termination(30)
    assert "Batch: 0" in buf.getvalue() and "value" in buf.getvalue()


def test_file_sink_replay_is_not_duplicated(tmp_path: Path) -> None:
    from client.streaming.sinks import BatchContext, FileSink

    sink = FileSink(str(tmp_path / "f"))
    sink._open("q")
    df = pl.DataFrame({"a": [1, 2]})
    ctx = BatchContext(0, 0, "append", False)
    trio.run(sink.add_batch, df, ctx)
    (tmp_path / "f" / "part-0000000001-00000.parquet").write_bytes(b"garbage from a crash")
    trio.run(sink.add_batch, df, BatchContext(0, 0, "append", True))
    trio.run(sink.add_batch, pl.DataFrame({"a": [3]}), BatchContext(1, 0, "append", True))
    assert read_file_sink(str(tmp_path / "f"))["a"].to_list() == [1, 2, 3]
    other = FileSink(str(tmp_path / "f"))
    with pytest.raises(Exception, match="written by query"):
        other._open("another-query")


# -- triggers --------------------------------------------------------------------------------


def test_processing_time_trigger_skips_empty_triggers(tmp_path: Path) -> None:
    src = ListSource(SCHEMA)
    table = name()
    q = (
        Stream.from_source(src)
        .select("user")
        .write_stream.to_memory(table)
        .trigger(processing_time="20 ms")
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    src.add([{"ts": at(0), "user": "a", "n": 0}])
    q.process_all_available(30)
    batches = len(q.recent_progress)
    q.process_all_available(30)
    q.process_all_available(30)  # several empty triggers have fired by now
    assert len(q.recent_progress) == batches == 1
    assert q.status.message in (
        "Waiting for data to arrive",
        "Waiting for next trigger",
        "Getting offsets from ListSource[1]",
    )
    q.stop()
    assert not q.is_active and q.status.message == "Stopped"


def test_once_trigger_ignores_record_limit(tmp_path: Path) -> None:
    src = ListSource(SCHEMA, partitions=2)
    src.add([{"ts": at(i), "user": "a", "n": i} for i in range(7)], 0)
    src.add([{"ts": at(i), "user": "b", "n": i} for i in range(5)], 1)
    q = (
        Stream.from_source(src)
        .write_stream.to_memory(name())
        .trigger(once=True)
        .max_records_per_trigger(3)
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    assert q.await_termination(30)
    assert [p.num_input_rows for p in q.recent_progress] == [12]


def test_available_now_spreads_record_limit(tmp_path: Path) -> None:
    src = ListSource(SCHEMA, partitions=3)
    src.add([{"ts": at(i), "user": "a", "n": i} for i in range(20)], 0)
    src.add([{"ts": at(i), "user": "b", "n": i} for i in range(10)], 1)
    table = name()
    q = (
        Stream.from_source(src)
        .write_stream.to_memory(table)
        .trigger(available_now=True)
        .max_records_per_trigger(6)
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    q.await_termination(30)
    sizes = [p.num_input_rows for p in q.recent_progress]
    assert sizes == [6, 6, 6, 6, 6]
    first = q.recent_progress[0].sources[0]
    assert first.end_offset == {"0": 4, "1": 2, "2": 0}  # 2:1 backlog -> 4 + 2
    assert first.lag == {"0": 16, "1": 8, "2": 0}
    assert memory_table(table).height == 30


# -- task retries ----------------------------------------------------------------------------


def test_failed_task_is_retried(tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(df: pl.DataFrame) -> pl.DataFrame:
        if df.is_empty():
            return df  # the query's analysis, before it starts
        calls.append(df.height)
        if len(calls) <= 2:
            raise OSError("transient")
        return df

    table = name()
    q = (
        Stream.rate(10, rows_per_batch=10, total_rows=10, start_timestamp=0)
        .map_batches(flaky)
        .write_stream.to_memory(table)
        .trigger(available_now=True)
        .option("task_retry_backoff_ms", 1)
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    assert q.await_termination(30)
    assert len(calls) == 3 and memory_table(table).height == 10


def test_task_failing_every_attempt_fails_the_query(tmp_path: Path) -> None:
    attempts: list[int] = []

    def broken(df: pl.DataFrame) -> pl.DataFrame:
        if df.is_empty():
            return df
        attempts.append(1)
        raise ValueError("bad record")

    terminated: list[QueryTerminatedEvent] = []

    class L(StreamingQueryListener):
        def on_query_terminated(self, event: QueryTerminatedEvent) -> None:
            terminated.append(event)

    q = (
        Stream.rate(10, rows_per_batch=10, total_rows=10, start_timestamp=0)
        .map_batches(broken)
        .write_stream.to_memory(name())
        .trigger(available_now=True)
        .options(max_task_attempts=3, task_retry_backoff_ms=1)
        .listener(L())
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    with pytest.raises(StreamingQueryError) as info:
        q.await_termination(30)
    assert isinstance(info.value.cause, TaskFailedError)
    assert info.value.cause.attempts == 3 and len(attempts) == 3
    assert isinstance(info.value.cause.__cause__, ValueError)
    assert q.exception is info.value
    assert terminated and "bad record" in (terminated[0].exception or "")


# -- progress, listeners, status -----------------------------------------------------------


def test_progress_fields_and_listener(tmp_path: Path) -> None:
    events: list[object] = []

    class L(StreamingQueryListener):
        def on_query_started(self, event: QueryStartedEvent) -> None:
            events.append(event)

        def on_query_progress(self, progress: QueryProgress) -> None:
            events.append(progress)

        def on_query_terminated(self, event: QueryTerminatedEvent) -> None:
            events.append(event)

    q = (
        Stream.rate(100, num_partitions=2, rows_per_batch=50, total_rows=100, start_timestamp=0)
        .with_watermark("timestamp", "100 ms")
        .group_by(window("timestamp", "200 ms"))
        .count()
        .write_stream.output_mode("update")
        .query_name("progress_q")
        .to_memory()
        .trigger(available_now=True)
        .checkpoint_location(str(tmp_path / "c"))
        .listener(L())
        .start()
    )
    q.await_termination(30)
    assert isinstance(events[0], QueryStartedEvent) and isinstance(events[-1], QueryTerminatedEvent)
    progress = [e for e in events if isinstance(e, QueryProgress)]
    assert progress == q.recent_progress
    p = progress[0]
    assert p.id == q.id and p.run_id == q.run_id and p.name == "progress_q"
    assert p.num_input_rows == 50 and p.processed_rows_per_second > 0
    assert set(p.duration_ms) == {
        "planning",
        "offsets_commit",
        "processing",
        "sink",
        "commit",
        "trigger_execution",
    }
    assert p.event_time["min"] == "1970-01-01T00:00:00.000+00:00"
    assert p.event_time["max"] == "1970-01-01T00:00:00.490+00:00"
    assert p.sources[0].start_offset == {"0": 0, "1": 0} and p.sources[0].end_offset == {
        "0": 25,
        "1": 25,
    }
    assert p.state_operators[0].num_rows_total == 3 and p.state_operators[0].num_rows_updated == 3
    assert p.sink.num_output_rows == 3
    assert progress[1].event_time["watermark"] == "1970-01-01T00:00:00.390+00:00"
    updates = memory_table("progress_q")
    assert updates.unique(subset="window", keep="last", maintain_order=True)["count"].sum() == 100
    assert '"num_input_rows": 50' in p.json


# -- restarts --------------------------------------------------------------------------------


def windowed_rate(total: int, out: Path, ckpt: Path, *, sink_fail_batch: int | None = None) -> Any:
    stream = (
        Stream.rate(20, num_partitions=2, rows_per_batch=30, total_rows=total, start_timestamp=0)
        .with_watermark("timestamp", "1 second")
        .group_by(window("timestamp", "2 seconds"), (pl.col("value") % 3).alias("k"))
        .agg(F.count().alias("n"))
    )
    writer = stream.write_stream.output_mode("append").trigger(available_now=True)
    if sink_fail_batch is None:
        writer = writer.to_files(str(out))
    else:
        from client.streaming.sinks import FileSink

        class Failing(FileSink):
            async def add_batch(self, df: pl.DataFrame, ctx: Any) -> dict[str, Any]:
                if ctx.batch_id == sink_fail_batch:
                    await super().add_batch(df.head(1), ctx)  # a torn write, then a crash
                    raise OSError("disk gone")
                return await super().add_batch(df, ctx)

        writer = writer.sink(Failing(str(out)))
    return writer.checkpoint_location(str(ckpt))


def test_restart_continues_and_reruns_uncommitted_batch(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    windowed_rate(300, ref, tmp_path / "ref_ckpt").start().await_termination(60)
    expected = read_file_sink(str(ref))
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    q = windowed_rate(120, out, ckpt).start()
    q.await_termination(60)
    q = windowed_rate(300, out, ckpt, sink_fail_batch=5).start()
    with pytest.raises(StreamingQueryError, match="disk gone"):
        q.await_termination(60)
    assert os.path.exists(ckpt / "offsets" / "5") and not os.path.exists(ckpt / "commits" / "5")
    q = windowed_rate(300, out, ckpt).start()
    q.await_termination(60)
    assert q.recent_progress[0].batch_id == 5 and q.recent_progress[0].replayed
    assert read_file_sink(str(out)).sort(pl.all()).equals(expected.sort(pl.all()))


def test_checkpoint_is_locked_by_a_running_query(tmp_path: Path) -> None:
    src = ListSource(SCHEMA)
    q = (
        Stream.from_source(src)
        .write_stream.to_memory(name())
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    q2 = (
        Stream.rate(1)
        .write_stream.to_memory(name())
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    with pytest.raises(StreamingQueryError) as info:
        q2.await_termination(30)
    assert isinstance(info.value.cause, CheckpointLockedError)
    q.stop()


# -- analysis --------------------------------------------------------------------------------


def test_analysis_errors(tmp_path: Path) -> None:
    rate = Stream.rate(1)
    with pytest.raises(AnalysisError, match="append"):
        rate.group_by("value").count().write_stream.to_memory("x").start()
    with pytest.raises(AnalysisError, match="complete"):
        rate.write_stream.output_mode("complete").to_memory("x").start()
    with pytest.raises(AnalysisError, match="watermark"):
        rate.group_by("value").count().with_watermark("timestamp", "1s")
    with pytest.raises(AnalysisError, match="one watermark"):
        rate.with_watermark("timestamp", "1s").with_watermark("timestamp", "2s")
    with pytest.raises(AnalysisError, match="no sink"):
        rate.write_stream.start()
    with pytest.raises(ValueError, match="unknown option"):
        rate.write_stream.option("nope", 1)
    with pytest.raises(ValueError):
        rate.write_stream.output_mode("sideways")
    with pytest.raises(TypeError):
        rate.value_format("json", {"a": "long"})
    q = rate.select("missing").write_stream.to_memory("x").start()
    with pytest.raises(StreamingQueryError) as info:
        q.await_termination(30)
    assert isinstance(info.value.cause, AnalysisError)
    q = (
        rate.with_watermark("timestamp", "1s")
        .group_by(window("timestamp", "1s"))
        .count()
        .write_stream.output_mode("complete")
        .to_files(str(tmp_path / "f"))
        .start()
    )
    with pytest.raises(StreamingQueryError, match="complete"):
        q.await_termination(30)
    assert rate.select((pl.col("value") * 2).alias("v")).schema == {"v": pl.Int64()}


def test_spark_style_reader_and_writer(tmp_path: Path) -> None:
    stream = (
        StreamingSession()
        .readStream.format("rate")
        .option("rowsPerSecond", 5)
        .option("rowsPerBatch", 5)
        .option("totalRows", 10)
        .option("startTimestamp", 0)
        .load()
    )
    q = (
        stream.groupBy((pl.col("value") % 2).alias("p"))
        .count()
        .writeStream.outputMode("complete")
        .queryName("spark_style")
        .to_memory()
        .trigger(available_now=True)
        .option("checkpointLocation", str(tmp_path / "c"))
        .start()
    )
    q.await_termination(30)
    assert sorted(memory_table("spark_style").rows()) == [(0, 5), (1, 5)]
    with pytest.raises(ValueError, match="unknown source options"):
        StreamingSession().read_stream.format("rate").option("bogus", 1).load()


# -- executors and the async API -------------------------------------------------------------


def parity(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns((pl.col("value") % 2).alias("p"))


def test_process_executor_gives_the_same_result(tmp_path: Path) -> None:
    results = {}
    for executor in ("threads", "processes"):
        table = name()
        q = (
            Stream.rate(
                1000, num_partitions=2, rows_per_batch=2000, total_rows=4000, start_timestamp=0
            )
            .map_batches(parity)
            .group_by("p")
            .agg(F.count().alias("n"), F.sum("value").alias("s"))
            .write_stream.output_mode("complete")
            .to_memory(table)
            .trigger(available_now=True)
            .option("executor", executor)
            .checkpoint_location(str(tmp_path / executor))
            .start()
        )
        assert q.await_termination(120)
        results[executor] = sorted(memory_table(table).rows())
    assert results["threads"] == results["processes"] == [(0, 2000, 3998000), (1, 2000, 4000000)]


async def test_async_api(tmp_path: Path) -> None:
    src = ListSource(SCHEMA)
    table = name()
    writer = (
        Stream.from_source(src)
        .group_by("user")
        .count()
        .write_stream.output_mode("complete")
        .to_memory(table)
        .checkpoint_location(str(tmp_path / "c"))
    )
    async with writer.start_async() as q:
        src.add([{"ts": at(0), "user": "a", "n": 0}, {"ts": at(0), "user": "a", "n": 0}])
        await q.process_all_available()
        assert q.is_active and q.last_committed_batch == 0
        assert sorted(memory_table(table).rows()) == [("a", 2)]
        await q.stop()
        assert not q.is_active
        assert await q.await_termination(1)
    engine = await (
        Stream.rate(10, rows_per_batch=4, total_rows=8, start_timestamp=0)
        .write_stream.to_memory(name())
        .trigger(available_now=True)
        .run_async()
    )
    assert [p.num_input_rows for p in engine.recent_progress] == [4, 4]


async def test_async_failure_is_raised(tmp_path: Path) -> None:
    def boom(df: pl.DataFrame) -> pl.DataFrame:
        if df.is_empty():
            return df
        raise RuntimeError("boom")

    writer = (
        Stream.rate(10, rows_per_batch=4, total_rows=4, start_timestamp=0)
        .map_batches(boom)
        .write_stream.to_memory(name())
        .option("max_task_attempts", 1)
    )
    with pytest.raises(StreamingQueryError, match="boom"):
        async with writer.start_async() as q:
            with trio.fail_after(30):
                await q.await_termination()


def test_hashtags_over_a_sliding_minute(tmp_path: Path) -> None:
    """The docs' example: hashtags counted over one minute, sliding every second."""
    src = ListSource({"text": pl.Utf8(), "ts": pl.Datetime("ms")})
    table = name()
    q = (
        Stream.from_source(src)
        .with_columns(pl.col("text").str.extract_all(r"#\w+").alias("tag"))
        .explode("tag")
        .filter(pl.col("tag").is_not_null())
        .with_watermark("ts", "10 seconds")
        .group_by(window("ts", "1 minute", "1 second"), "tag")
        .agg(F.count().alias("n"))
        .write_stream.output_mode("append")
        .to_memory(table)
        .checkpoint_location(str(tmp_path / "c"))
        .start()
    )
    src.add(
        [
            {"text": "#a #b", "ts": at(0.5)},
            {"text": "#a", "ts": at(30.5)},
            {"text": "no tags", "ts": at(31)},
        ]
    )
    q.process_all_available(30)
    src.add([{"text": "#c", "ts": at(200)}])  # moves the watermark past every window above
    q.process_all_available(30)
    q.stop()
    out = memory_table(table)
    counts = {(r["window"]["start"], r["tag"]): r["n"] for r in out.to_dicts()}
    # #a at 0.5 s lies in the windows starting -59 s .. 0 s; at 30.5 s in -29 s .. 30 s
    assert (
        counts[(at(0), "#a")] == 2 and counts[(at(-30), "#a")] == 1 and counts[(at(30), "#a")] == 1
    )
    assert sum(1 for (_, tag) in counts if tag == "#b") == 60
    assert sum(n for (_, tag), n in counts.items() if tag == "#a") == 120
    assert not any(tag == "#c" for (_, tag) in counts)
