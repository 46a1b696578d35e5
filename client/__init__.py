"""Rivulet's client library: the broker protocol, record batches, and the
producer, consumer and admin clients (blocking and trio).

    from client import Producer, Consumer, Admin, TopicPartition

See docs/clients.md for a guide.
Names are imported lazily (PEP 562), so ``import client.wire`` (used by the
coordinator and the broker) does not load the producer and consumer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.accumulator import RecordFuture
    from client.admin import Admin
    from client.async_admin import (
        AsyncAdmin,
        GroupDescription,
        GroupListing,
        GroupOffset,
        MemberDescription,
    )
    from client.async_consumer import AsyncConsumer
    from client.async_producer import AsyncProducer
    from client.config import AdminConfig, ConsumerConfig, ProducerConfig
    from client.consumer import Consumer
    from client.errors import (
        BufferExhaustedError,
        ClientClosedError,
        ClientError,
        ClientTimeoutError,
        DeliveryTimeoutError,
        IllegalStateError,
        MetadataTimeoutError,
        NoBrokersAvailableError,
        NoOffsetForPartitionError,
        RecordTooLargeError,
        ResponseTimeoutError,
    )
    from client.group_membership import (
        CommitFailedError,
        ConsumerGroupMetadata,
        GroupMembershipError,
        OffsetAndMetadata,
        RebalanceListener,
    )
    from client.partitioner import murmur2, partition_for_key
    from client.producer import Producer
    from client.types import (
        BrokerInfo,
        ClusterDescription,
        ConfigEntry,
        ConsumerRecord,
        OffsetAndTimestamp,
        PartitionInfo,
        RecordMetadata,
        TopicDescription,
        TopicPartition,
    )

_EXPORTS: dict[str, str] = {
    "Admin": "client.admin",
    "AdminConfig": "client.config",
    "AsyncAdmin": "client.async_admin",
    "AsyncConsumer": "client.async_consumer",
    "AsyncProducer": "client.async_producer",
    "BrokerInfo": "client.types",
    "BufferExhaustedError": "client.errors",
    "ClientClosedError": "client.errors",
    "ClientError": "client.errors",
    "ClientTimeoutError": "client.errors",
    "ClusterDescription": "client.types",
    "CommitFailedError": "client.group_membership",
    "ConfigEntry": "client.types",
    "Consumer": "client.consumer",
    "ConsumerConfig": "client.config",
    "ConsumerGroupMetadata": "client.group_membership",
    "ConsumerRecord": "client.types",
    "DeliveryTimeoutError": "client.errors",
    "GroupDescription": "client.async_admin",
    "GroupListing": "client.async_admin",
    "GroupMembershipError": "client.group_membership",
    "GroupOffset": "client.async_admin",
    "IllegalStateError": "client.errors",
    "MemberDescription": "client.async_admin",
    "MetadataTimeoutError": "client.errors",
    "NoBrokersAvailableError": "client.errors",
    "NoOffsetForPartitionError": "client.errors",
    "OffsetAndMetadata": "client.group_membership",
    "OffsetAndTimestamp": "client.types",
    "PartitionInfo": "client.types",
    "Producer": "client.producer",
    "ProducerConfig": "client.config",
    "RebalanceListener": "client.group_membership",
    "RecordFuture": "client.accumulator",
    "RecordMetadata": "client.types",
    "RecordTooLargeError": "client.errors",
    "ResponseTimeoutError": "client.errors",
    "TopicDescription": "client.types",
    "TopicPartition": "client.types",
    "murmur2": "client.partitioner",
    "partition_for_key": "client.partitioner",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Admin",
    "AdminConfig",
    "AsyncAdmin",
    "AsyncConsumer",
    "AsyncProducer",
    "BrokerInfo",
    "BufferExhaustedError",
    "ClientClosedError",
    "ClientError",
    "ClientTimeoutError",
    "ClusterDescription",
    "CommitFailedError",
    "ConfigEntry",
    "Consumer",
    "ConsumerConfig",
    "ConsumerGroupMetadata",
    "ConsumerRecord",
    "DeliveryTimeoutError",
    "GroupDescription",
    "GroupListing",
    "GroupMembershipError",
    "GroupOffset",
    "IllegalStateError",
    "MemberDescription",
    "MetadataTimeoutError",
    "NoBrokersAvailableError",
    "NoOffsetForPartitionError",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "PartitionInfo",
    "Producer",
    "ProducerConfig",
    "RebalanceListener",
    "RecordFuture",
    "RecordMetadata",
    "RecordTooLargeError",
    "ResponseTimeoutError",
    "TopicDescription",
    "TopicPartition",
    "murmur2",
    "partition_for_key",
]
