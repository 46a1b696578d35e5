"""Value types shared by the producer, the consumer and the admin client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int


class RecordMetadata(NamedTuple):
    """Where an acknowledged record was written.

    ``offset`` is -1 when the producer runs with ``acks=0`` (nobody told it).
    ``timestamp`` is the record's create time, or the broker's append time when
    the topic uses ``message.timestamp.type=LogAppendTime``.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int


class ConsumerRecord(NamedTuple):
    """A record read by a consumer.

    ``key`` and ``value`` are what the configured deserializers returned
    (``bytes`` by default, ``None`` for a null key or value); ``headers`` is a
    sequence of ``(name, value)`` pairs.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    headers: Sequence[tuple[str, bytes]]


class OffsetAndTimestamp(NamedTuple):
    """An answer of ``list_offsets``: the offset, and the timestamp it was found by
    (-1 when the lookup was earliest/latest). ``offset`` is -1 when no record has a
    timestamp at or after the one asked for."""

    offset: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """A broker as the cluster metadata describes it."""

    node_id: int
    host: str
    port: int
    rack: str | None = None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition of a topic: its leader (-1 when none), replicas and ISR."""

    topic: str
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """A topic with its partitions, as ``Admin.describe_topic`` returns it."""

    name: str
    partitions: tuple[PartitionInfo, ...]
    internal: bool = False

    @property
    def num_partitions(self) -> int:
        """How many partitions the topic has."""
        return len(self.partitions)


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One topic configuration value as the broker reports it."""

    name: str
    value: str | None
    is_default: bool = False
    read_only: bool = False
    doc: str = ""


@dataclass(slots=True)
class ClusterDescription:
    """The brokers, the controller and the cluster id."""

    cluster_id: str | None
    controller_id: int
    brokers: list[BrokerInfo] = field(default_factory=list)


EARLIEST = "earliest"
LATEST = "latest"


def as_topic_partition(value: Any) -> TopicPartition:
    """``TopicPartition`` from a TopicPartition or a ``(topic, partition)`` pair;
    anything else raises TypeError/ValueError before anything is sent."""
    if isinstance(value, TopicPartition):
        tp = value
    elif isinstance(value, tuple) and len(value) == 2:
        tp = TopicPartition(value[0], value[1])
    else:
        raise TypeError(f"expected a TopicPartition, got {value!r}")
    if not isinstance(tp.topic, str) or not tp.topic:
        raise ValueError(f"topic must be a non-empty string, got {tp.topic!r}")
    if type(tp.partition) is not int or tp.partition < 0:
        raise ValueError(f"partition must be a non-negative int, got {tp.partition!r}")
    return tp
