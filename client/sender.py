"""The producer's I/O task (trio): drains the accumulator and talks to brokers.

One ``Sender`` runs per producer: in the background thread of a blocking
``Producer``, or in the caller's event loop for an ``AsyncProducer``. Its loop

1. takes closed (full or lingered) batches from the accumulator,
2. fails queued batches whose delivery timeout passed,
3. asks the ``DeliveryTracker`` what may be sent now, encodes those batches
   (one ``msgpack.packb`` per batch, once: retries resend the same bytes) and
   sends one PRODUCE request per broker, pipelined up to ``max_in_flight``
   requests per connection, each awaited by its own small task,
4. sleeps until something happens: a batch closes, a linger or backoff
   deadline passes, an answer arrives, metadata changes.

Answers go back to the tracker, which completes batches or schedules retries;
errors that mean "leadership moved" trigger a metadata refresh.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import msgpack
import trio

from client.accumulator import ProducerBatch, RecordAccumulator
from client.cluster import Cluster
from client.config import ProducerConfig
from client.delivery import DeliveryTracker
from client.errors import (
    ClientClosedError,
    ClientError,
    NoBrokersAvailableError,
    ResponseTimeoutError,
)
from client.protocol import ERRORS, ApiKey
from client.records import (
    ATTRIBUTES_POS,
    COMPRESSION_MASK,
    CRC_POS,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
    NO_PARTITION_LEADER_EPOCH,
    batch_crc,
    compress_body,
)
from client.types import TopicPartition
from client.wire import (
    ConnectionLostError,
    InternalServerError,
    ServerError,
    UnsupportedApiError,
)

log = logging.getLogger(__name__)


_CRC = struct.Struct(">I")


class BatchEncoder:
    """Encodes a batch exactly as ``client.records.encode_batch_raw`` does, but
    with one reused ``msgpack.Packer``: its buffer keeps its size between
    batches, which halves the cost of packing 100-byte records (a fresh
    ``packb`` grows its buffer from scratch every time)."""

    def __init__(self, compression: int) -> None:
        self.compression = compression
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)

    def encode(self, batch: ProducerBatch) -> bytes:
        """The batch's bytes (header, CRC-32C, msgpack body, compressed if configured)."""
        records = batch.records
        count = len(records)
        body: bytes = self._packer.pack(records)
        if self.compression:
            body = compress_body(self.compression, body)
        header = HEADER_STRUCT.pack(
            0,
            HEADER_SIZE - LOG_OVERHEAD + len(body),
            NO_PARTITION_LEADER_EPOCH,
            MAGIC,
            0,
            self.compression & COMPRESSION_MASK,
            count - 1,
            batch.base_timestamp,
            batch.max_timestamp,
            batch.producer_id,
            batch.producer_epoch,
            batch.base_sequence,
            count,
        )
        tail = header[ATTRIBUTES_POS:]
        crc = batch_crc(body, batch_crc(tail))
        return b"".join((header[:CRC_POS], _CRC.pack(crc), tail, body))


class Sender:
    """Moves batches from the accumulator to the brokers (see the module doc)."""

    def __init__(
        self,
        config: ProducerConfig,
        accumulator: RecordAccumulator,
        cluster: Cluster,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.acc = accumulator
        self.cluster = cluster
        self.clock = clock
        self.acks = config.acks_value
        self.codec = config.compression_codec
        self.encoder = BatchEncoder(self.codec)
        self.request_timeout = config.request_timeout_ms / 1000.0
        self.idempotent = config.idempotent
        self.max_request_bytes = config.max_request_size
        self.tracker = DeliveryTracker(
            idempotent=self.idempotent,
            max_in_flight=config.max_in_flight,
            retries=config.retries,
            retry_backoff=config.retry_backoff_ms / 1000.0,
            retry_backoff_max=config.retry_backoff_max_ms / 1000.0,
        )
        self._requests: defaultdict[int, int] = defaultdict(int)
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._flushes = 0
        self._refreshing = False
        self._refresh_topics: set[str] = set()
        self._next_refresh = -math.inf
        self._stopped = trio.Event()
        self._scope = trio.CancelScope()
        self.fatal: BaseException | None = None

    # -- control (trio thread) --------------------------------------------------------------

    def wake(self) -> None:
        """Make the loop look at the accumulator again."""
        self._wake.set()

    def begin_flush(self) -> None:
        """Close every open batch and keep closing new ones until ``end_flush``."""
        self._flushes += 1
        self.acc.close_all()
        self.wake()

    def end_flush(self) -> None:
        """Undo one ``begin_flush``."""
        self._flushes -= 1

    def initiate_close(self) -> None:
        """Finish sending what is buffered, then stop."""
        self._closing = True
        self.acc.close_all()
        self.wake()

    def force_close(self, error: BaseException) -> None:
        """Fail everything still pending and stop now."""
        self._closing = True
        self._fail_everything(error)
        self._scope.cancel()
        self.wake()

    async def wait_stopped(self) -> None:
        """Wait until the sender's loop has ended."""
        await self._stopped.wait()

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until closed. ``cluster.start`` must have been called."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    task_status.started()
                    if self.idempotent:
                        await self._init_producer_id(bump=False)
                    await self._loop()
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            log.exception("producer I/O task failed")
            self.fatal = exc
            self._fail_everything(exc)
            raise
        finally:
            self._fail_everything(ClientClosedError("the producer stopped before sending"))
            self._stopped.set()

    def _fail_everything(self, error: BaseException) -> None:
        for batch in self.tracker.fail_all(error):
            self.acc.release(batch)
        self.acc.abort_incomplete(error)

    async def _loop(self) -> None:
        acc = self.acc
        tracker = self.tracker
        while True:
            self._wake = trio.Event()
            now = self.clock()
            batches, linger_due = acc.drain(
                now, everything=self._closing or self._flushes > 0, can_send=self._can_send
            )
            if batches:
                tracker.add(batches)
            for batch in tracker.expire(now):
                acc.release(batch)
            if self._closing and not acc.has_incomplete():
                return
            if tracker.bump_required and tracker.in_flight == 0:
                await self._init_producer_id(bump=True)
                await trio.lowlevel.checkpoint()
                continue
            plan, unknown, backoff_due = tracker.ready(
                now, self.cluster.metadata.leader_for, self._node_ready, self.max_request_bytes
            )
            if unknown:
                self._request_refresh({tp.topic for tp in unknown}, force=True)
            elif self.cluster.needs_refresh(now):
                self._request_refresh(set())
            for node, node_batches in plan.items():
                self._requests[node] += 1
                payload = self._payload(node_batches)
                self._spawn(self._produce, node, node_batches, payload)
            if plan:
                await trio.lowlevel.checkpoint()
                continue
            deadline = min(linger_due, backoff_due)
            if acc.park():
                # Always a checkpoint, even when the deadline has passed already.
                with trio.move_on_after(max(0.0, deadline - self.clock())):
                    await self._wake.wait()
                acc.unpark()
            else:
                await trio.lowlevel.checkpoint()

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError("the sender is not running")
        self._nursery.start_soon(fn, *args)

    def _can_send(self, batch: ProducerBatch) -> bool:
        """A lingered batch may close only if it could be sent right away."""
        if not self.tracker.can_take(batch):
            return False
        leader = self.cluster.metadata.leader_for(TopicPartition(batch.topic, batch.partition))
        return leader is None or self._node_ready(leader)

    def _node_ready(self, node: int) -> bool:
        return self._requests[node] < self.config.max_in_flight

    # -- produce ----------------------------------------------------------------------------

    def _encode(self, batch: ProducerBatch) -> bytes:
        data = batch.encoded
        if data is None:
            data = batch.encoded = self.encoder.encode(batch)
        return data

    def _payload(self, batches: list[ProducerBatch]) -> dict[str, Any]:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for batch in batches:
            by_topic.setdefault(batch.topic, []).append(
                {"partition": batch.partition, "records": self._encode(batch)}
            )
        return {
            "acks": self.acks,
            "timeout_ms": self.config.request_timeout_ms,
            "producer_id": self.tracker.producer_id if self.idempotent else -1,
            "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
        }

    async def _produce(self, node: int, batches: list[ProducerBatch], payload: Any) -> None:
        try:
            try:
                conn = await self.cluster.connection(node)
                if self.acks == 0:
                    conn.channel.send_oneway(ApiKey.PRODUCE, 0, payload)
                    await conn.channel.conn.wait_drained()
                    for batch in batches:
                        self.tracker.on_success(batch, -1, -1)
                        self.acc.release(batch)
                    return
                response = await conn.call(ApiKey.PRODUCE, payload, self.request_timeout)
            except ResponseTimeoutError as exc:
                await self.cluster.disconnect(node)
                self._fail_request(batches, exc)
                return
            except (ConnectionLostError, ClientError, ServerError) as exc:
                self._fail_request(batches, exc)
                return
            self._apply_response(batches, response)
        finally:
            self._requests[node] -= 1
            self.wake()

    def _fail_request(self, batches: list[ProducerBatch], error: BaseException) -> None:
        now = self.clock()
        refresh = False
        for batch in batches:
            outcome = self.tracker.on_error(batch, error, now)
            refresh = refresh or outcome.refresh_metadata
            for done in outcome.completed:
                self.acc.release(done)
        if refresh:
            self._request_refresh({b.topic for b in batches}, force=True)

    def _apply_response(self, batches: list[ProducerBatch], response: Any) -> None:
        pending = {(b.topic, b.partition): b for b in batches}
        now = self.clock()
        refresh: set[str] = set()
        try:
            for t in response["topics"]:
                topic = t["topic"]
                for p in t["partitions"]:
                    batch = pending.pop((topic, p["partition"]), None)
                    if batch is None:
                        continue
                    code = p.get("error_code", 0)
                    if code:
                        error = ERRORS.exception(code, p.get("error_message") or "")
                        outcome = self.tracker.on_error(batch, error, now)
                        if outcome.refresh_metadata:
                            refresh.add(topic)
                        for done in outcome.completed:
                            self.acc.release(done)
                    else:
                        self.tracker.on_success(
                            batch, int(p["base_offset"]), int(p.get("log_append_time_ms", -1))
                        )
                        self.acc.release(batch)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("malformed produce response %r: %s", response, exc)
        for batch in pending.values():
            error = InternalServerError(
                f"the produce response did not answer {batch.topic}-{batch.partition}"
            )
            for done in self.tracker.on_error(batch, error, now).completed:
                self.acc.release(done)
        if refresh:
            self._request_refresh(refresh, force=True)

    # -- producer id ------------------------------------------------------------------------

    async def _init_producer_id(self, *, bump: bool) -> None:
        tracker = self.tracker
        backoff = self.config.retry_backoff_ms / 1000.0
        attempt = 0
        while not (self._closing and not self.acc.has_incomplete()):
            attempt += 1
            payload = {
                "transactional_id": None,
                "producer_id": tracker.producer_id if bump else -1,
                "producer_epoch": tracker.producer_epoch if bump else -1,
            }
            try:
                answer = await self.cluster.call_any(ApiKey.INIT_PRODUCER_ID, payload)
                tracker.set_producer_id(int(answer["producer_id"]), int(answer["producer_epoch"]))
                log.debug("producer id %d epoch %d", tracker.producer_id, tracker.producer_epoch)
                return
            except UnsupportedApiError as exc:
                if self.config.enable_idempotence:
                    raise ClientError(
                        "the broker does not support idempotent producers (InitProducerId)"
                    ) from exc
                log.warning("broker lacks InitProducerId; producing without idempotence")
                self._disable_idempotence()
                return
            except ServerError as exc:
                if bump:
                    bump = False  # fall back to a brand-new producer id
                    continue
                if not exc.retriable:
                    raise
                log.debug("InitProducerId failed (%s); retrying", exc)
            except (NoBrokersAvailableError, ConnectionLostError, ResponseTimeoutError) as exc:
                log.debug("InitProducerId failed (%s); retrying", exc)
            await trio.sleep(min(backoff * attempt, self.config.retry_backoff_max_ms / 1000.0))

    def _disable_idempotence(self) -> None:
        self.idempotent = False
        self.tracker.idempotent = False
        self.tracker.bump_required = False

    # -- metadata ---------------------------------------------------------------------------

    def _request_refresh(self, topics: set[str], *, force: bool = False) -> None:
        self._refresh_topics |= topics
        if self._refreshing:
            return
        now = self.clock()
        if not force and now < self._next_refresh:
            return
        self._refreshing = True
        self._spawn(self._refresh, max(0.0, self._next_refresh - now) if force else 0.0)

    async def _refresh(self, delay: float) -> None:
        try:
            if delay > 0:
                await trio.sleep(delay)
            topics, self._refresh_topics = self._refresh_topics, set()
            try:
                await self.cluster.refresh(topics)
                self.acc.sync_partition_counts()
            except ClientClosedError:
                pass
            except (NoBrokersAvailableError, ConnectionLostError, ResponseTimeoutError) as exc:
                log.debug("metadata refresh failed: %s", exc)
            except ServerError as exc:
                log.warning("metadata refresh failed: %s", exc)
        finally:
            self._next_refresh = self.clock() + self.config.retry_backoff_ms / 1000.0
            self._refreshing = False
            self.wake()
