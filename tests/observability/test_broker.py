"""A real broker process (embedded coordinator) with --metrics-port 0 and --log-json."""

from __future__ import annotations

import time
from collections.abc import Callable

from client import Admin, Consumer, Producer
from tests.observability.scrape import (
    Samples,
    health,
    json_log_lines,
    metrics_address,
    scrape,
    value,
)
from tests.procs import ServerProcess

TOPIC = "metered"
RECORDS = 200


def _poll_until(address: str, check: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(address)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_broker_metrics_health_and_json_logs(start_broker: Callable[..., ServerProcess]) -> None:
    proc = start_broker("--metrics-port", "0", "--log-json")
    address = metrics_address(proc)
    bootstrap = proc.address

    status, report = health(address)
    assert status == 200, report
    assert report["status"] == "ok"
    assert report["broker"]["ok"] and report["broker"]["registered"]
    assert report["broker"]["port"] == proc.port and report["broker"]["broker_id"] == 0
    assert report["coordinator"]["ok"]  # the embedded one, on the same endpoint

    with Admin(bootstrap) as admin:
        admin.create_topic(TOPIC, partitions=2)
    with Producer(bootstrap, acks="all", linger_ms=1) as producer:
        for i in range(RECORDS):
            producer.send(TOPIC, b"value-%d" % i, key=b"k%d" % (i % 7))
        producer.flush()
    with Consumer(
        bootstrap, group_id="readers", auto_offset_reset="earliest", enable_auto_commit=False
    ) as consumer:
        consumer.subscribe([TOPIC])
        got = 0
        deadline = time.monotonic() + 20
        while got < RECORDS and time.monotonic() < deadline:
            got += len(consumer.poll(timeout=0.5))
        assert got == RECORDS
        consumer.commit()
        samples = _poll_until(
            address, lambda s: ("rivulet_broker_group_members", (("group", "readers"),)) in s
        )

    messages = sum(
        value(samples, "rivulet_broker_log_end_offset", topic=TOPIC, partition=str(p))
        for p in range(2)
    )
    assert messages == RECORDS
    assert value(samples, "rivulet_broker_topic_messages_in_total", topic=TOPIC) == RECORDS
    assert value(samples, "rivulet_broker_topic_bytes_in_total", topic=TOPIC) > RECORDS * 7
    assert value(samples, "rivulet_broker_topic_bytes_out_total", topic=TOPIC) > 0
    size = sum(
        value(samples, "rivulet_broker_log_size_bytes", topic=TOPIC, partition=str(p))
        for p in range(2)
    )
    assert size == value(samples, "rivulet_broker_topic_bytes_in_total", topic=TOPIC)
    assert value(samples, "rivulet_broker_log_segments", topic=TOPIC, partition="0") == 1
    assert value(samples, "rivulet_broker_requests_total", api="produce") >= 1
    assert value(samples, "rivulet_broker_request_latency_seconds_count", api="produce") >= 1
    assert value(samples, "rivulet_broker_requests_total", api="fetch") >= 1
    assert value(samples, "rivulet_broker_log_flush_seconds_count") >= 1
    assert value(samples, "rivulet_broker_leader_partitions") >= 2
    assert value(samples, "rivulet_broker_under_replicated_partitions") == 0
    assert value(samples, "rivulet_broker_offline_partitions") == 0
    assert value(samples, "rivulet_broker_active_controller") == 1
    assert value(samples, "rivulet_broker_leader_elections_total") == 0
    assert value(samples, "rivulet_broker_isr_shrinks_total") == 0
    assert value(samples, "rivulet_broker_connections") >= 1
    # Consumer groups: the committed offsets are at the end, so nothing lags.
    assert value(samples, "rivulet_broker_groups", state="stable") >= 1
    assert value(samples, "rivulet_broker_group_members", group="readers") == 1
    for p in range(2):
        labels = {"group": "readers", "topic": TOPIC, "partition": str(p)}
        end = value(samples, "rivulet_broker_high_watermark", topic=TOPIC, partition=str(p))
        assert value(samples, "rivulet_broker_group_committed_offset", **labels) == end
        assert value(samples, "rivulet_broker_group_lag_messages", **labels) == 0
    # The embedded coordinator's metrics share the endpoint.
    assert value(samples, "rivulet_coordinator_znode_count") > 5
    assert value(samples, "rivulet_coordinator_global_sessions") >= 1

    # More records: the group now lags by exactly that many.
    with Producer(bootstrap, acks="all", linger_ms=1) as producer:
        for i in range(10):
            producer.send(TOPIC, b"late-%d" % i, partition=0)
        producer.flush()
    samples = scrape(address)
    lag = value(
        samples, "rivulet_broker_group_lag_messages", group="readers", topic=TOPIC, partition="0"
    )
    assert lag == 10
    assert value(samples, "rivulet_broker_topic_messages_in_total", topic=TOPIC) == RECORDS + 10

    proc.stop()
    logs = json_log_lines(proc)
    assert logs, proc.output()
    assert all({"ts", "level", "logger", "message"} <= set(entry) for entry in logs)
    assert any(entry["logger"] == "broker.server" for entry in logs)
