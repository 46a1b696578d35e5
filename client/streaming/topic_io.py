"""The broker calls the streaming engine makes, on ``client.cluster.Cluster``.

The engine reads exact offset ranges (FETCH from ``start`` until ``end``,
keeping whole batches; the decoder drops records outside the range), asks for
offsets (LIST_OFFSETS), waits for new data (FETCH long-poll), and writes
idempotent batches (PRODUCE with a producer id and sequence numbers it
chooses). Each call finds the partition's leader and retries retriable errors
(leadership moved, connection lost, timeout) after refreshing metadata.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import trio

from client.cluster import Cluster
from client.config import parse_bootstrap
from client.errors import ClientError
from client.protocol import (
    EARLIEST_TIMESTAMP,
    ERRORS,
    LATEST_TIMESTAMP,
    ApiKey,
    OffsetOutOfRangeError,
)
from client.records import CorruptRecordError, walk_batches
from client.types import TopicPartition
from client.wire import ConnectionLostError, ServerError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_ATTEMPTS = 8


def make_cluster(
    bootstrap: str | list[str], *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT
) -> Cluster:
    """A ``Cluster`` with the engine's settings (no topic auto-creation)."""
    return Cluster(
        parse_bootstrap(bootstrap),
        request_timeout=request_timeout,
        connect_timeout=10.0,
        retry_backoff=0.1,
        metadata_max_age=30.0,
        max_frame=64 * 1024 * 1024,
        allow_auto_topic_creation=False,
    )


def _retriable(exc: BaseException) -> bool:
    if isinstance(exc, ServerError | ClientError):
        return bool(getattr(exc, "retriable", False))
    return isinstance(exc, ConnectionLostError)


async def with_retries(
    cluster: Cluster,
    topics: Iterable[str],
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = 0.05,
) -> T:
    """``await call()``, refreshing metadata and retrying retriable errors."""
    delay = backoff
    attempt = 1
    while True:
        try:
            return await call()
        except (ServerError, ClientError, ConnectionLostError) as exc:
            if not _retriable(exc) or attempt >= attempts:
                raise
            log.debug("retrying after %r (attempt %d)", exc, attempt)
        attempt += 1
        await trio.sleep(delay)
        delay = min(delay * 2, 1.0)
        try:
            await cluster.refresh(list(topics))
        except (ServerError, ClientError, ConnectionLostError) as refresh_exc:
            log.debug("metadata refresh failed: %r", refresh_exc)


def _check(entry: Mapping[str, Any]) -> None:
    code = int(entry.get("error_code", 0))
    if code:
        raise ERRORS.exception(code, str(entry.get("error_message") or ""))


async def _by_leader(
    cluster: Cluster, tps: Iterable[TopicPartition], timeout: float
) -> dict[int, list[TopicPartition]]:
    groups: dict[int, list[TopicPartition]] = defaultdict(list)
    for tp in tps:
        groups[await cluster.leader(tp, timeout)].append(tp)
    return groups


async def list_offsets(
    cluster: Cluster, tps: Iterable[TopicPartition], timestamp: int
) -> dict[TopicPartition, int]:
    """Offsets of ``tps`` for ``timestamp`` (LATEST_TIMESTAMP, EARLIEST_TIMESTAMP, or
    ms: the first offset at or after it, -1 if none)."""
    wanted = sorted(set(tps))
    topics = {tp.topic for tp in wanted}

    async def attempt() -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for leader, group in (await _by_leader(cluster, wanted, cluster.request_timeout)).items():
            by_topic: dict[str, list[dict[str, int]]] = defaultdict(list)
            for tp in group:
                by_topic[tp.topic].append({"partition": tp.partition, "timestamp": timestamp})
            payload = {"topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()]}
            answer = await cluster.call(leader, ApiKey.LIST_OFFSETS, payload)
            for t in answer["topics"]:
                for p in t["partitions"]:
                    _check(p)
                    out[TopicPartition(t["topic"], int(p["partition"]))] = int(p["offset"])
        return out

    return await with_retries(cluster, topics, attempt)


async def latest_offsets(
    cluster: Cluster, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The high watermark of each partition."""
    return await list_offsets(cluster, tps, LATEST_TIMESTAMP)


async def earliest_offsets(
    cluster: Cluster, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The log start offset of each partition."""
    return await list_offsets(cluster, tps, EARLIEST_TIMESTAMP)


async def partitions_of(cluster: Cluster, topic: str, timeout: float) -> list[TopicPartition]:
    """Every partition of ``topic`` (waiting up to ``timeout`` for its metadata)."""
    n = await cluster.wait_for_topic(topic, timeout)
    return [TopicPartition(topic, p) for p in range(n)]


async def fetch_once(
    cluster: Cluster,
    tp: TopicPartition,
    offset: int,
    *,
    max_bytes: int,
    max_wait_ms: int = 0,
) -> tuple[bytes, int, int]:
    """One FETCH of ``tp`` at ``offset``: (records, high watermark, log start)."""

    async def attempt() -> tuple[bytes, int, int]:
        leader = await cluster.leader(tp, cluster.request_timeout)
        payload = {
            "replica_id": -1,
            "max_wait_ms": max_wait_ms,
            "min_bytes": 1,
            "max_bytes": max_bytes,
            "topics": [
                {
                    "topic": tp.topic,
                    "partitions": [
                        {
                            "partition": tp.partition,
                            "fetch_offset": offset,
                            "partition_max_bytes": max_bytes,
                            "current_leader_epoch": -1,
                        }
                    ],
                }
            ],
        }
        answer = await cluster.call(leader, ApiKey.FETCH, payload)
        entry = answer["topics"][0]["partitions"][0]
        _check(entry)
        return (
            bytes(entry.get("records") or b""),
            int(entry.get("high_watermark", -1)),
            int(entry.get("log_start_offset", -1)),
        )

    return await with_retries(cluster, [tp.topic], attempt)


async def fetch_range(
    cluster: Cluster,
    tp: TopicPartition,
    start: int,
    end: int,
    *,
    max_bytes: int = 8 * 1024 * 1024,
    fail_on_data_loss: bool = True,
) -> tuple[list[bytes], int]:
    """Raw batches covering ``[start, end)`` of ``tp`` and the first offset actually
    present (``start`` unless retention removed records and ``fail_on_data_loss``
    is off). Raises OffsetOutOfRangeError (data loss) otherwise."""
    chunks: list[bytes] = []
    pos = start
    first = start
    empty_rounds = 0
    while pos < end:
        try:
            records, _hw, log_start = await fetch_once(cluster, tp, pos, max_bytes=max_bytes)
        except OffsetOutOfRangeError:
            if fail_on_data_loss or pos != first:
                raise
            earliest = (await earliest_offsets(cluster, [tp]))[tp]
            if earliest <= pos:
                raise
            log.warning("%s: offsets %d..%d were deleted; skipping them", tp, pos, earliest)
            pos = first = min(earliest, end)
            continue
        if log_start > pos and pos == first and not fail_on_data_loss:
            first = pos = min(log_start, end)
        if not records:
            empty_rounds += 1
            if empty_rounds > 50:
                raise ConnectionLostError(
                    f"{tp.topic}-{tp.partition}: no records at offset {pos} below {end}"
                )
            await trio.sleep(0.01 * empty_rounds)
            continue
        empty_rounds = 0
        next_pos = pos
        try:
            for _, h in walk_batches(records):
                next_pos = max(next_pos, h.next_offset)
        except CorruptRecordError:
            # A partial trailing batch (the broker cut the answer): keep what is whole.
            pass
        if next_pos <= pos:
            raise ConnectionLostError(f"{tp.topic}-{tp.partition}: fetch at {pos} made no progress")
        chunks.append(records)
        pos = next_pos
    return chunks, first


async def wait_for_data(
    cluster: Cluster, positions: Mapping[TopicPartition, int], timeout: float
) -> None:
    """Return when a partition has records at or after its position, or after ``timeout``."""
    if not positions:
        await trio.sleep(timeout)
        return
    with trio.move_on_after(timeout):
        groups = await _by_leader(cluster, positions, cluster.request_timeout)
        async with trio.open_nursery() as nursery:

            async def poll(leader: int, tps: list[TopicPartition]) -> None:
                by_topic: dict[str, list[dict[str, int]]] = defaultdict(list)
                for tp in tps:
                    by_topic[tp.topic].append(
                        {
                            "partition": tp.partition,
                            "fetch_offset": positions[tp],
                            "partition_max_bytes": 1,
                            "current_leader_epoch": -1,
                        }
                    )
                payload = {
                    "replica_id": -1,
                    "max_wait_ms": max(1, int(timeout * 1000)),
                    "min_bytes": 1,
                    "max_bytes": 1,
                    "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
                }
                try:
                    await cluster.call(leader, ApiKey.FETCH, payload)
                except (ServerError, ClientError, ConnectionLostError) as exc:
                    log.debug("long-poll failed: %r", exc)
                    await trio.sleep(min(timeout, 0.1))
                nursery.cancel_scope.cancel()

            for leader, tps in groups.items():
                nursery.start_soon(poll, leader, tps)


async def produce(
    cluster: Cluster,
    tp: TopicPartition,
    records: bytes,
    *,
    producer_id: int = -1,
    acks: int = -1,
    timeout_ms: int = 30000,
) -> int:
    """Append one or more batches to ``tp``; the base offset (errors raise)."""
    payload = {
        "acks": acks,
        "timeout_ms": timeout_ms,
        "producer_id": producer_id,
        "topics": [
            {"topic": tp.topic, "partitions": [{"partition": tp.partition, "records": records}]}
        ],
    }

    async def attempt() -> int:
        leader = await cluster.leader(tp, cluster.request_timeout)
        answer = await cluster.call(leader, ApiKey.PRODUCE, payload)
        entry = answer["topics"][0]["partitions"][0]
        _check(entry)
        return int(entry.get("base_offset", -1))

    return await with_retries(cluster, [tp.topic], attempt)


async def init_producer_id(cluster: Cluster) -> tuple[int, int]:
    """A new idempotent producer id and its epoch."""

    async def attempt() -> tuple[int, int]:
        answer = await cluster.call_any(
            ApiKey.INIT_PRODUCER_ID,
            {"transactional_id": None, "producer_id": -1, "producer_epoch": -1},
        )
        return int(answer["producer_id"]), int(answer["producer_epoch"])

    return await with_retries(cluster, [], attempt)
