"""Znode codecs and the metadata cache's bookkeeping."""

from __future__ import annotations

import pytest

from broker.metadata_cache import MetadataCache
from broker.znodes import (
    BrokerRegistration,
    ControllerData,
    PartitionStateData,
    ProducerIdBlockData,
    TopicAssignment,
    TopicsPath,
    ZnodeDataError,
    parse_broker_path,
    parse_topics_path,
)


def test_codecs_round_trip() -> None:
    reg = BrokerRegistration("h", 1, "r1", 5, "host", "/d")
    assert BrokerRegistration.from_bytes(reg.to_bytes()) == reg
    ctl = ControllerData(2, 7)
    assert ControllerData.from_bytes(ctl.to_bytes()) == ctl
    topic = TopicAssignment("id", {0: [1, 2], 1: [2, 1]}, {"retention.ms": "5"})
    assert TopicAssignment.from_bytes(topic.to_bytes()) == topic
    state = PartitionStateData(1, 3, [1, 2], 4)
    assert PartitionStateData.from_bytes(state.to_bytes()) == state
    block = ProducerIdBlockData(1, 1000, 2000)
    assert ProducerIdBlockData.from_bytes(block.to_bytes()) == block


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1]",
        b'{"partitions": 1}',
        b'{"partitions": {"x": [1]}}',
        b'{"partitions": {"0": ["a"]}}',
        b'{"partitions": {}, "config": {"a": 1}}',
    ],
)
def test_bad_topic_data(data: bytes) -> None:
    with pytest.raises(ZnodeDataError):
        TopicAssignment.from_bytes(data)


def test_paths() -> None:
    assert parse_topics_path("/topics/t") == TopicsPath("t")
    assert parse_topics_path("/topics/t/partitions/3/state") == TopicsPath("t", 3)
    assert parse_topics_path("/topics/t/partitions/3") is None
    assert parse_topics_path("/topics") is None
    assert parse_broker_path("/brokers/ids/4") == 4
    assert parse_broker_path("/brokers/ids/x") is None


def test_cache_changes_and_orphans() -> None:
    cache = MetadataCache()
    cache.set_broker(1, BrokerRegistration("h", 1), 10)
    changes = cache.drain_changes()
    assert changes.brokers and not changes.topics
    assert not cache.drain_changes()
    # A state read before its topic is kept until the topic arrives.
    cache.set_state("t", 0, PartitionStateData(1, 0, [1]), 0, 12)
    assert cache.partition("t", 0) is None
    cache.set_topic("t", TopicAssignment("id1", {0: [1]}), 0)
    info = cache.partition("t", 0)
    assert info is not None and info.leader == 1
    assert cache.drain_changes().topics == {"t"}
    # An older read never overwrites a newer one.
    cache.set_state("t", 0, PartitionStateData(-1, 0, [1]), 0, 11)
    assert cache.partition("t", 0).leader == 1  # type: ignore[union-attr]
    # Deleted and re-created between two reads: the old states are dropped.
    cache.set_topic("t", TopicAssignment("id2", {0: [1], 1: [1]}), 0)
    assert cache.partition("t", 0) is None
    cache.remove_topic("t")
    assert cache.topic("t") is None and cache.drain_changes().topics == {"t"}
    cache.set_pending_deletions({"x"})
    assert cache.drain_changes().deletions
