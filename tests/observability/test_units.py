"""The observability pieces without server processes: histogram, health, HTTP endpoint,
JSON logs, the broker's metadata observer and traffic sums, config checks, streaming."""

from __future__ import annotations

import io
import json
import logging
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from broker.config import BrokerConfig
from broker.config import ConfigError as BrokerConfigError
from broker.embedded_coordinator import embedded_config
from broker.metadata_cache import MetadataCache
from broker.metrics import (
    FOLLOWER_FETCH,
    MetadataObserver,
    RequestStats,
    TopicTraffic,
    answers_never,
    request_key,
)
from broker.znodes import PartitionStateData, TopicAssignment
from client.observability import (
    CheckResult,
    Health,
    Histogram,
    JsonFormatter,
    Observability,
    configure_logging,
    histogram_family,
    merged,
)
from client.protocol import ApiKey
from client.streaming import Stream, window
from client.streaming import functions as F
from client.streaming.metrics import StreamingMetrics
from coordinator.config import ConfigError as CoordinatorConfigError
from coordinator.config import CoordinatorConfig
from coordinator.metrics import UNKNOWN_API, CoordinatorMetrics

# ------------------------------------------------------------------ histogram


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    h = Histogram((0.1, 1.0, 10.0))
    for v in (0.05, 0.1, 0.5, 1.0, 20.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2.0), ("1.0", 4.0), ("10.0", 4.0), ("+Inf", 5.0)]
    assert (h.count, h.min, h.max) == (5, 0.05, 20.0)
    assert math.isclose(h.sum, 21.65) and math.isclose(h.mean, 21.65 / 5)
    registry = CollectorRegistry()

    class One:
        def collect(self) -> Any:
            yield histogram_family("demo_seconds", "demo", [(("a",), h)], ["kind"])

    registry.register(One())
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    samples = {(s.name, s.labels.get("le")): s.value for s in families[0].samples}
    assert samples[("demo_seconds_bucket", "+Inf")] == 5
    assert samples[("demo_seconds_count", None)] == 5


def test_histogram_rejects_bad_bounds_and_merges() -> None:
    for bounds in ((), (1.0, 0.5), (1.0, 1.0), (1.0, math.inf)):
        with pytest.raises(ValueError):
            Histogram(bounds)
    a, b, empty = Histogram(), Histogram(), Histogram()
    a.observe(0.002)
    b.observe(0.004)
    b.observe(0.006)
    assert merged([a, b, empty]) == pytest.approx((3, 0.002, 0.004, 0.006))
    assert merged([empty]) == (0, 0.0, 0.0, 0.0)


def test_coordinator_latency_labels_stay_bounded() -> None:
    metrics = CoordinatorMetrics()
    metrics.request_done(10, 0.001)
    metrics.request_done(12345, 0.003)  # not an api: counted as "unknown"
    metrics.request_done(99999, 0.002)
    assert sorted(metrics.request_latency) == [UNKNOWN_API, 10]
    assert metrics.request_latency[UNKNOWN_API].count == 2
    lo, avg, hi = metrics.latency_ms()
    assert (lo, hi) == pytest.approx((1.0, 3.0)) and avg == pytest.approx(2.0)


# ------------------------------------------------------------------ health and HTTP


def test_health_needs_every_check_and_at_least_one() -> None:
    health = Health()
    assert health.report() == (False, {"status": "unavailable"})
    health.add("a", lambda: CheckResult(True, {"port": 1}))
    assert health.report() == (True, {"status": "ok", "a": {"ok": True, "port": 1}})

    def broken() -> CheckResult:
        raise KeyError("half built")

    health.add("b", broken)
    healthy, report = health.report()
    assert not healthy and report["status"] == "unavailable"
    assert report["b"]["ok"] is False and "KeyError" in report["b"]["error"]
    health.remove("b")
    assert health.report()[0]


async def _http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_endpoint_serves_metrics_health_and_errors() -> None:
    observe = Observability()
    observe.registry.register(_Constant())
    ok = [False]
    observe.health.add("svc", lambda: CheckResult(ok[0], {"n": 1}))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(observe.server("127.0.0.1", 0).run)

        status, headers, body = await _http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert b"demo_value 42.0" in body
        assert int(headers["content-length"]) == len(body)

        accept = b"Accept: application/openmetrics-text; version=1.0.0\r\n"
        status, headers, body = await _http(port, b"GET /metrics HTTP/1.1\r\n" + accept + b"\r\n")
        assert headers["content-type"].startswith("application/openmetrics-text")
        assert body.rstrip().endswith(b"# EOF")

        status, headers, body = await _http(port, b"GET /health HTTP/1.1\r\n\r\n")
        assert status == 503 and json.loads(body)["status"] == "unavailable"
        ok[0] = True
        status, headers, body = await _http(port, b"GET /health?verbose HTTP/1.0\r\n\r\n")
        assert status == 200 and json.loads(body) == {"status": "ok", "svc": {"ok": True, "n": 1}}

        status, headers, body = await _http(port, b"HEAD /health HTTP/1.1\r\n\r\n")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        assert (await _http(port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await _http(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await _http(port, b"garbage\r\n\r\n"))[0] == 400
        assert (await _http(port, b"GET / HTTP/1.1\r\nno colon\r\n\r\n"))[0] == 400
        assert (await _http(port, b"GET / HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n"))[0] == 400
        nursery.cancel_scope.cancel()


async def test_a_failing_collector_fails_the_scrape_not_the_server() -> None:
    observe = Observability()
    observe.registry.register(_Broken())
    async with trio.open_nursery() as nursery:
        port = await nursery.start(observe.server("127.0.0.1", 0).run)
        assert (await _http(port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 500
        assert (await _http(port, b"GET /health HTTP/1.1\r\n\r\n"))[0] == 503
        nursery.cancel_scope.cancel()


class _Constant:
    def collect(self) -> Any:
        yield GaugeMetricFamily("demo_value", "A constant.", value=42)


class _Broken:
    def collect(self) -> Any:
        yield GaugeMetricFamily("fine", "x", value=1)
        raise RuntimeError("collector bug")


# ------------------------------------------------------------------ logs


def test_json_formatter_fields_extras_and_exceptions() -> None:
    record = logging.LogRecord("svc.part", logging.WARNING, __file__, 1, "hi %s", ("there",), None)
    record.broker_id = 3
    record.path = Path("/x")
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "WARNING" and doc["logger"] == "svc.part"
    assert doc["message"] == "hi there" and doc["broker_id"] == 3 and doc["path"] == "/x"
    assert doc["ts"].endswith("Z") and len(doc["ts"]) == len("2024-01-01T00:00:00.000Z")
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    doc = json.loads(JsonFormatter().format(record))
    assert doc["exc_type"] == "ValueError" and "ValueError: bad" in doc["exception"]


def test_configure_logging_switches_format_and_replaces_handlers() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        out = io.StringIO()
        configure_logging("debug", True, out)
        configure_logging("info", True, out)  # again: still one handler
        assert len(root.handlers) == 1 and root.level == logging.INFO
        logging.getLogger("t").info("one %d", 1, extra={"k": "v"})
        logging.getLogger("t").debug("hidden")
        lines = out.getvalue().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["k"] == "v"
        text = io.StringIO()
        configure_logging("INFO", False, text)
        logging.getLogger("t").info("plain")
        assert text.getvalue().rstrip().endswith("INFO t: plain")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


# ------------------------------------------------------------------ broker pieces


def test_request_labels() -> None:
    fetch, produce = int(ApiKey.FETCH), int(ApiKey.PRODUCE)
    assert request_key(fetch, {"replica_id": 2}) == FOLLOWER_FETCH
    assert request_key(fetch, {"replica_id": -1}) == fetch
    assert request_key(fetch, {"replica_id": True}) == fetch
    assert request_key(fetch, None) == fetch
    assert answers_never(produce, {"acks": 0})
    assert not answers_never(produce, {"acks": -1}) and not answers_never(fetch, {"acks": 0})
    stats = RequestStats()
    stats.done(4242, 0.1)
    stats.done(FOLLOWER_FETCH, 0.2)
    assert sorted(stats.by_api) == [FOLLOWER_FETCH, -1]


def _state(leader: int, epoch: int, isr: list[int]) -> PartitionStateData:
    return PartitionStateData(leader, epoch, isr)


async def test_metadata_observer_counts_elections_and_isr_changes() -> None:
    cache = MetadataCache()
    controller = [True]
    observer = MetadataObserver(1, cache, lambda: controller[0])
    cache.set_topic("t", TopicAssignment("id1", {0: [1, 2, 3], 1: [2, 1, 3]}), 0)
    cache.set_state("t", 0, _state(1, 0, [1, 2, 3]), 0, 10)
    cache.set_state("t", 1, _state(2, 0, [2, 1, 3]), 0, 11)
    cache.drain_changes()
    observer.baseline()
    zxid = 12

    async def write(partition: int, state: PartitionStateData) -> None:
        nonlocal zxid
        zxid += 1
        cache.set_state("t", partition, state, zxid, zxid)
        await observer.on_changes(cache.drain_changes())

    await write(0, _state(1, 0, [1, 2]))  # we lead t-0: a shrink
    await write(0, _state(1, 0, [1, 2, 3]))  # and an expand
    await write(1, _state(2, 0, [2, 1]))  # t-1 is led elsewhere: not ours to count
    await write(1, _state(1, 1, [1]))  # a clean election (1 was in the ISR)
    await write(1, _state(-1, 2, [1]))  # leaderless: not an election
    await write(1, _state(3, 3, [3]))  # unclean: 3 was not in the ISR [1]
    controller[0] = False
    await write(0, _state(2, 1, [2, 3]))  # not the controller now: not counted
    assert (observer.isr_shrinks, observer.isr_expands) == (1, 1)
    assert (observer.leader_elections, observer.unclean_leader_elections) == (2, 1)

    # A re-created topic starts over (epochs restart at 0).
    cache.set_topic("t", TopicAssignment("id2", {0: [1]}), 1)
    cache.set_state("t", 0, _state(1, 0, [1]), 0, 100)
    controller[0] = True
    await observer.on_changes(cache.drain_changes())
    assert observer.leader_elections == 2
    cache.remove_topic("t")
    await observer.on_changes(cache.drain_changes())
    assert not observer._seen


class _FakePartition:
    def __init__(self, topic: str, index: int) -> None:
        self.topic = topic
        self.key = (topic, index)
        self.messages_in = 0
        self.bytes_in = 0
        self.bytes_out = 0


def test_topic_traffic_survives_partitions_coming_and_going() -> None:
    traffic = TopicTraffic()
    a = _FakePartition("t", 0)
    a.messages_in, a.bytes_in = 10, 100
    totals = traffic.update([a], {"t"})  # type: ignore[list-item]
    assert totals["t"] == [10, 100, 0]
    a.messages_in, a.bytes_out = 15, 7
    assert traffic.update([a], {"t"})["t"] == [15, 100, 7]  # type: ignore[list-item]
    b = _FakePartition("t", 0)  # the partition was re-opened: fresh counters
    b.messages_in = 2
    assert traffic.update([b], {"t"})["t"] == [17, 100, 7]  # type: ignore[list-item]
    assert traffic.update([], {"t"})["t"] == [17, 100, 7]  # never decreases
    assert traffic.update([], set()) == {}  # topic deleted: its series goes


def test_metrics_port_config() -> None:
    assert CoordinatorConfig().metrics_port == -1 and BrokerConfig().metrics_port == -1
    assert CoordinatorConfig(metrics_port=0).metrics_port == 0
    for bad in (-2, 65536):
        with pytest.raises(CoordinatorConfigError):
            CoordinatorConfig(metrics_port=bad)
        with pytest.raises(BrokerConfigError):
            BrokerConfig(metrics_port=bad)
    for key, val in (("metrics_port", 7000), ("log_json", True)):
        with pytest.raises(BrokerConfigError, match=key):
            embedded_config(BrokerConfig(), {key: val})


# ------------------------------------------------------------------ streaming


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_running_query_exports_its_progress(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = StreamingMetrics.for_registry(registry)
    assert StreamingMetrics.for_registry(registry) is metrics
    query = (
        Stream.rate(1000, num_partitions=2, rows_per_batch=50, start_timestamp=0)
        .with_watermark("timestamp", "1 second")
        .group_by(window("timestamp", "2 seconds"), (pl.col("value") % 3).alias("k"))
        .agg(F.count().alias("n"))
        .write_stream.output_mode("append")
        .trigger("20 milliseconds")
        .query_name("counts")
        .to_memory("obs_counts")
        .checkpoint_location(str(tmp_path / "ckpt"))
        .start()
    )
    try:
        assert query.export_metrics(registry) is metrics
        assert query.export_metrics(registry) is metrics  # listening once only
        query_id = query.id
        assert query_id is not None
        labels = (("name", "counts"), ("query_id", query_id))
        batches = ("rivulet_streaming_batches_total", labels)
        deadline = time.monotonic() + 20
        while _samples(registry).get(batches, 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        query.stop()
    samples = _samples(registry)
    progress = query.recent_progress

    def get(name: str, *extra: tuple[str, str]) -> float:
        return samples[(name, tuple(sorted((*labels, *extra))))]

    # Listening began after start: it counts what it saw, up to the last batch.
    seen = get("rivulet_streaming_batches_total")
    assert 3 <= seen <= len(progress)
    assert get("rivulet_streaming_input_rows_total") == 50 * seen
    assert get("rivulet_streaming_query_active") == 0  # stopped
    assert get("rivulet_streaming_last_batch_id") == progress[-1].batch_id
    assert get("rivulet_streaming_batch_duration_seconds_count") == seen
    assert get("rivulet_streaming_state_rows") == sum(
        op.num_rows_total for op in progress[-1].state_operators
    )
    watermark = datetime.fromisoformat(progress[-1].event_time["watermark"]).timestamp()
    assert get("rivulet_streaming_watermark_seconds") == pytest.approx(watermark)
    assert get("rivulet_streaming_last_batch_phase_seconds", ("phase", "trigger_execution")) > 0
    assert get("rivulet_streaming_processed_rows_per_second") > 0
    lags = [k for k in samples if k[0] == "rivulet_streaming_source_lag_messages"]
    assert len(lags) == 2


def test_streaming_metrics_count_every_batch_as_a_writer_listener(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    query = (
        Stream.rate(100, num_partitions=1, rows_per_batch=40, total_rows=120, start_timestamp=0)
        .write_stream.trigger(available_now=True)
        .to_memory("obs_rows")
        .listener(StreamingMetrics.for_registry(registry))
        .checkpoint_location(str(tmp_path / "ckpt"))
        .start()
    )
    assert query.await_termination(60)
    samples = {name: v for (name, _), v in _samples(registry).items()}
    assert samples["rivulet_streaming_input_rows_total"] == 120
    assert samples["rivulet_streaming_output_rows_total"] == 120
    assert samples["rivulet_streaming_batches_total"] == len(query.recent_progress)
    assert samples["rivulet_streaming_dropped_rows_total"] == 0
