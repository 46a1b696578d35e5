"""The client's cluster metadata view (sans-IO)."""

from __future__ import annotations

from typing import Any

from client.cluster import ClusterMetadata
from client.protocol import UnknownTopicOrPartitionError
from client.types import TopicPartition


def answer(topics: list[dict[str, Any]], brokers: int = 2) -> dict[str, Any]:
    return {
        "cluster_id": "c1",
        "controller_id": 1,
        "brokers": [
            {"node_id": i, "host": "h", "port": 9000 + i, "rack": None} for i in range(brokers)
        ],
        "topics": topics,
    }


def topic(name: str, leaders: list[int], code: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "error_code": code,
        "error_message": "",
        "internal": False,
        "partitions": [
            {
                "partition": p,
                "error_code": 0,
                "leader": leader,
                "leader_epoch": 3,
                "replicas": [0, 1],
                "isr": [leader] if leader >= 0 else [],
            }
            for p, leader in enumerate(leaders)
        ],
    }


def test_update_leaders_and_counts() -> None:
    md = ClusterMetadata()
    md.update(answer([topic("a", [0, 1, -1])]), now=5.0)
    assert md.cluster_id == "c1" and md.controller_id == 1 and md.updated_at == 5.0
    assert md.brokers[1].address == "h:9001"
    assert md.partition_counts == {"a": 3}
    assert md.leader_for(TopicPartition("a", 1)) == 1
    assert md.leader_for(TopicPartition("a", 2)) is None  # no leader
    assert md.leader_for(TopicPartition("a", 7)) is None
    assert md.leader_for(TopicPartition("b", 0)) is None
    info = md.partition_info(TopicPartition("a", 0))
    assert info is not None and info.replicas == (0, 1) and info.leader_epoch == 3
    desc = md.topics["a"].describe()
    assert [p.partition for p in desc.partitions] == [0, 1, 2]


def test_leader_on_an_unknown_broker_is_unknown() -> None:
    md = ClusterMetadata()
    md.update(answer([topic("a", [5])]), now=0.0)
    assert md.leader_for(TopicPartition("a", 0)) is None


def test_topic_errors_and_full_refresh_forgets_deleted_topics() -> None:
    md = ClusterMetadata()
    md.update(answer([topic("a", [0]), topic("b", [0])]), now=0.0)
    md.update(answer([{**topic("a", []), "error_code": UnknownTopicOrPartitionError.code}]), 1.0)
    assert "a" not in md.partition_counts
    error = md.topic_error("a")
    assert isinstance(error, UnknownTopicOrPartitionError) and error.retriable
    assert md.topic_error("b") is None
    md.update(answer([topic("c", [1])]), now=2.0, full=True)
    assert set(md.topics) == {"c"} and md.partition_counts == {"c": 1}
    md.invalidate("c")
    assert md.partition_counts == {}
