"""Replication metrics in a three-broker cluster: a broker dies and comes back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client import Admin, Producer
from tests.cluster.harness import Cluster
from tests.observability.scrape import Samples, metrics_address, scrape, value

pytestmark = pytest.mark.slow

TOPIC = "watched"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path / "cluster", 3, "--metrics-port", "0")
    try:
        yield started.start()
    finally:
        started.stop()


def _wait(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _total(samples: dict[int, Samples], name: str) -> float:
    return sum(value(s, name) for s in samples.values())


def test_elections_isr_changes_and_under_replication_are_counted(cluster: Cluster) -> None:
    addresses = {b: metrics_address(cluster.brokers[b]) for b in range(3)}

    def scrape_all() -> dict[int, Samples]:
        return {b: scrape(addresses[b]) for b in addresses if cluster.alive(b)}

    with Admin(cluster.bootstrap) as admin:
        admin.create_topic(TOPIC, 3, 3, {"min.insync.replicas": "2"})

    def settled() -> bool:
        now = scrape_all()
        return (
            _total(now, "rivulet_broker_leader_partitions") >= 3
            and _total(now, "rivulet_broker_under_replicated_partitions") == 0
        )

    _wait(settled, "every partition led with a full ISR")
    with Producer(cluster.bootstrap, acks="all") as producer:
        for i in range(30):
            producer.send(TOPIC, b"v%d" % i, partition=i % 3)
        producer.flush()
    before = scrape_all()
    assert _total(before, "rivulet_broker_active_controller") == 1
    messages = sum(
        value(s, "rivulet_broker_topic_messages_in_total", topic=TOPIC) for s in before.values()
    )
    assert messages == 30  # counted once, by each partition's leader
    elections = _total(before, "rivulet_broker_leader_elections_total")
    shrinks = _total(before, "rivulet_broker_isr_shrinks_total")
    expands = _total(before, "rivulet_broker_isr_expands_total")
    # A broker that is not the controller, and leads a partition of the topic.
    victim = next(
        b
        for b, s in before.items()
        if value(s, "rivulet_broker_active_controller") == 0
        and value(s, "rivulet_broker_leader_partitions") >= 1
    )
    cluster.kill(victim)

    def failed_over() -> bool:
        now = scrape_all()
        return (
            _total(now, "rivulet_broker_leader_elections_total") > elections
            and _total(now, "rivulet_broker_isr_shrinks_total") > shrinks
            and _total(now, "rivulet_broker_under_replicated_partitions") == 3
        )

    _wait(failed_over, "an election, ISR shrinks and 3 under-replicated partitions")
    assert _total(scrape_all(), "rivulet_broker_unclean_leader_elections_total") == 0

    cluster.start_broker(victim)
    addresses[victim] = metrics_address(cluster.brokers[victim])

    def recovered() -> bool:
        now = scrape_all()
        return (
            _total(now, "rivulet_broker_under_replicated_partitions") == 0
            and _total(now, "rivulet_broker_isr_expands_total") > expands
        )

    _wait(recovered, "the ISR full again, counted as expands")
