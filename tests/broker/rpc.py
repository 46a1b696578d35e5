"""A minimal broker client for tests: one RpcChannel, plain request payloads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from client.protocol import ERRORS, ApiKey
from client.records import Record, decode_batches, encode_batch
from client.wire import RpcChannel


@asynccontextmanager
async def connect(address: str) -> AsyncIterator[RpcChannel]:
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    channel = RpcChannel(stream, ERRORS)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel.run)
        try:
            yield channel
        finally:
            await channel.aclose()
            nursery.cancel_scope.cancel()


def batch(
    *values: bytes,
    key: bytes | None = None,
    pid: int = -1,
    epoch: int = -1,
    seq: int = -1,
    ts: int | None = None,
) -> bytes:
    now = int(time.time() * 1000) if ts is None else ts
    return encode_batch(
        [Record(now + i, key, v) for i, v in enumerate(values)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


def values(records: bytes) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for _, recs in decode_batches(records) for r in recs]


async def create_topic(
    ch: RpcChannel, name: str, partitions: int = 1, configs: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await ch.call(
        ApiKey.CREATE_TOPICS,
        0,
        {
            "topics": [
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": -1,
                    "configs": configs or {},
                }
            ],
            "timeout_ms": 10_000,
            "validate_only": False,
        },
    )
    result: dict[str, Any] = response["topics"][0]
    return result


def produce_request(
    topic: str, partition: int, records: bytes, acks: int = 1, producer_id: int = -1
) -> dict[str, Any]:
    return {
        "acks": acks,
        "timeout_ms": 10_000,
        "producer_id": producer_id,
        "topics": [{"topic": topic, "partitions": [{"partition": partition, "records": records}]}],
    }


async def produce(
    ch: RpcChannel, topic: str, partition: int, records: bytes, acks: int = 1
) -> dict[str, Any]:
    response = await ch.call(ApiKey.PRODUCE, 0, produce_request(topic, partition, records, acks))
    result: dict[str, Any] = response["topics"][0]["partitions"][0]
    return result


def fetch_request(
    topic: str,
    partition: int,
    offset: int,
    *,
    max_wait_ms: int = 0,
    min_bytes: int = 1,
    max_bytes: int = 50 * 1024 * 1024,
    partition_max_bytes: int = 1024 * 1024,
) -> dict[str, Any]:
    return {
        "replica_id": -1,
        "max_wait_ms": max_wait_ms,
        "min_bytes": min_bytes,
        "max_bytes": max_bytes,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {
                        "partition": partition,
                        "fetch_offset": offset,
                        "partition_max_bytes": partition_max_bytes,
                        "current_leader_epoch": -1,
                    }
                ],
            }
        ],
    }


async def fetch(
    ch: RpcChannel, topic: str, partition: int, offset: int, **kwargs: Any
) -> dict[str, Any]:
    response = await ch.call(ApiKey.FETCH, 0, fetch_request(topic, partition, offset, **kwargs))
    result: dict[str, Any] = response["topics"][0]["partitions"][0]
    return result
