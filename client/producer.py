"""The blocking producer: ``send`` appends to a batch; a background thread sends.

``Producer.send`` never waits for the network and costs no thread hop: it
serialises the key and value, picks the partition, and appends a tuple to the
partition's open batch under one lock (``client.accumulator``). A daemon thread
runs a trio loop with the ``Sender`` (``client.sender``), which encodes closed
batches with one ``msgpack.packb`` call each and pipelines PRODUCE requests.
This is the design of Kafka's Java producer.

Example::

    from client import Producer

    with Producer("127.0.0.1:9092", acks="all", linger_ms=5) as producer:
        future = producer.send("events", b"hello", key=b"user-1")
        print(future.result(timeout=10))   # RecordMetadata(topic, partition, offset, timestamp)
        for i in range(100_000):
            producer.send("events", b"%d" % i)
        producer.flush()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import trio

from client.accumulator import (
    RECORD_OVERHEAD,
    RecordAccumulator,
    RecordFuture,
)
from client.cluster import Cluster
from client.config import ProducerConfig, build_config, parse_bootstrap
from client.errors import (
    BufferExhaustedError,
    ClientClosedError,
    RecordTooLargeError,
)
from client.io_thread import IoThread
from client.partitioner import KeyHashCache, StickyPartitioner
from client.sender import Sender
from client.serializers import resolve_serializer, serialize_bytes
from client.types import TopicPartition

log = logging.getLogger(__name__)

_time_ns = time.time_ns

_NO_HEADERS: tuple[()] = ()


def normalize_headers(headers: Any) -> tuple[list[list[Any]], int]:
    """Headers as the wire wants them (``[[name, value], ...]``) and their byte size.

    Accepts a mapping or an iterable of ``(str, bytes)`` pairs; str values are
    UTF-8 encoded; anything else raises TypeError."""
    items: Iterable[Any] = headers.items() if isinstance(headers, Mapping) else headers
    out: list[list[Any]] = []
    size = 0
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TypeError(f"a header must be a (name, value) pair, got {item!r}")
        name, value = item
        if not isinstance(name, str):
            raise TypeError(f"a header name must be a str, got {name!r}")
        if isinstance(value, str):
            value = value.encode()
        elif isinstance(value, bytearray | memoryview):
            value = bytes(value)
        elif type(value) is not bytes:
            raise TypeError(f"header {name!r} value must be bytes or str, got {value!r}")
        out.append([name, value])
        size += len(name) + len(value) + 4
    return out, size


def check_topic(topic: Any) -> str:
    """``topic`` if it is a non-empty str; TypeError/ValueError otherwise."""
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, got {topic!r}")
    if not topic:
        raise ValueError("topic must not be empty")
    return topic


def check_timestamp(timestamp: Any) -> int:
    """``timestamp`` if it is a non-negative int of ms; TypeError/ValueError otherwise."""
    if type(timestamp) is not int:
        raise TypeError(f"timestamp must be an int (ms since the epoch), got {timestamp!r}")
    if timestamp < 0:
        raise ValueError(f"timestamp must be >= 0, got {timestamp}")
    return timestamp


class ProducerCore:
    """State shared by the blocking and the async producer: config, serializers,
    partitioners, accumulator and the cluster view (no I/O here)."""

    def __init__(self, bootstrap_servers: str | list[str], config: ProducerConfig) -> None:
        self.config = config
        self.bootstrap = parse_bootstrap(bootstrap_servers)
        self.key_serializer = resolve_serializer(config.key_serializer)
        self.value_serializer = resolve_serializer(config.value_serializer)
        self.custom_partitioner = config.partitioner
        self.sticky = StickyPartitioner()
        self.key_hashes = KeyHashCache()
        self.cluster = Cluster(
            self.bootstrap,
            request_timeout=config.request_timeout_ms / 1000.0,
            connect_timeout=config.connect_timeout_ms / 1000.0,
            retry_backoff=config.retry_backoff_ms / 1000.0,
            metadata_max_age=config.metadata_max_age_ms / 1000.0,
            max_frame=config.max_frame_bytes,
            allow_auto_topic_creation=config.allow_auto_topic_creation,
        )
        self.partition_counts = self.cluster.metadata.partition_counts
        self.accumulator = RecordAccumulator(
            batch_size=min(config.batch_size, config.max_request_size),
            linger=config.linger_ms / 1000.0,
            buffer_memory=config.buffer_memory,
            delivery_timeout=config.delivery_timeout_ms / 1000.0,
            clock=time.monotonic,
            sticky=self.sticky,
            partition_counts=self.partition_counts,
        )
        self.sender = Sender(config, self.accumulator, self.cluster)
        self.max_record = min(config.max_request_size, config.buffer_memory)
        self.closed = False
        # The fast path of send() needs raw bytes and the default partitioner.
        self.fast = (
            config.partitioner is None
            and self.value_serializer is None
            and self.key_serializer is None
        )

    def prepare(
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: Any,
        partition: int | None,
        timestamp: int | None,
    ) -> tuple[bytes | None, bytes | None, Any, int, int | None]:
        """The slow, careful path of ``send`` up to the partition count: serialised
        value and key, wire headers, record size, and the partition count if the
        topic's metadata is known (None otherwise). Raises on bad arguments."""
        if self.closed:
            raise ClientClosedError("the producer is closed")
        check_topic(topic)
        vser = self.value_serializer
        value = vser(value) if vser is not None else serialize_bytes(value)
        if key is not None:
            kser = self.key_serializer
            key = kser(key) if kser is not None else serialize_bytes(key)
        if value is not None and type(value) is not bytes:
            raise TypeError(f"the value serializer returned {type(value).__name__}, not bytes")
        if key is not None and type(key) is not bytes:
            raise TypeError(f"the key serializer returned {type(key).__name__}, not bytes")
        size = RECORD_OVERHEAD + (len(value) if value is not None else 0)
        if key is not None:
            size += len(key)
        wire_headers: Any = _NO_HEADERS
        if headers:
            wire_headers, hsize = normalize_headers(headers)
            size += hsize
        if timestamp is not None:
            check_timestamp(timestamp)
        if partition is not None and (type(partition) is not int or partition < 0):
            raise ValueError(f"partition must be a non-negative int, got {partition!r}")
        if size > self.max_record:
            raise RecordTooLargeError(
                f"the record is {size} bytes, more than max_request_size/buffer_memory "
                f"({self.max_record})"
            )
        return value, key, wire_headers, size, self.partition_counts.get(topic)

    def fast_append(
        self, topic: str, value: Any, key: Any, partition: int | None
    ) -> RecordFuture | None:
        """The common case of ``send`` without headers or timestamp: bytes in, the
        default partitioner, room in the partition's open batch. None when the
        general path is needed. (``Producer.send`` inlines this same code.)"""
        if not self.fast or type(value) is not bytes:
            return None
        size = len(value) + RECORD_OVERHEAD
        acc = self.accumulator
        with acc.lock:
            tb = acc.open_batches.get(topic)
            if tb is None:
                return None
            batch = None
            if key is None:
                if partition is None:
                    batch = tb.sticky
                elif type(partition) is int and 0 <= partition < len(tb.batches):
                    batch = tb.batches[partition]
            elif type(key) is bytes and partition is None:
                h = self.key_hashes.hashes.get(key)
                if h is not None:
                    batch = tb.batches[h % len(tb.batches)]
                    size += len(key)
            if batch is None or batch.size + size > acc.batch_size:
                return None
            records = batch.records
            records.append((_time_ns() // 1_000_000 - batch.base_timestamp, key, value, ()))
            batch.size += size
            return RecordFuture((batch, len(records) - 1))

    def choose_partition(self, topic: str, key: bytes | None, partition: int | None, n: int) -> int:
        """The partition for a record: explicit, custom partitioner, key hash or
        sticky; ValueError if out of range."""
        if partition is not None:
            if partition >= n:
                raise ValueError(f"partition {partition} does not exist: {topic!r} has {n}")
            return partition
        if self.custom_partitioner is not None:
            p = self.custom_partitioner(topic, key, n)
            if type(p) is not int or not 0 <= p < n:
                raise ValueError(f"the partitioner returned {p!r} for a topic of {n} partitions")
            return p
        if key is None:
            return self.sticky.partition(topic, n)
        return self.key_hashes.partition(key, n)


class Producer:
    """A thread-safe, blocking producer (see the module doc).

    ``bootstrap_servers`` is ``"host:port[,host:port]"``; settings are
    ``ProducerConfig`` fields as keywords (or ``config=``). Use it as a context
    manager, or call ``close()``.
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        config: ProducerConfig | None = None,
        **settings: Any,
    ) -> None:
        cfg: ProducerConfig = build_config(ProducerConfig, config, settings)
        self.config = cfg
        self._core = core = ProducerCore(bootstrap_servers, cfg)
        acc = core.accumulator
        self._io = IoThread(f"rivulet-producer-{cfg.client_id}")
        acc.on_ready = self._wake_sender
        self._counts = core.partition_counts
        self._hashes = core.key_hashes.hashes
        self._lock = acc.lock
        self._open = acc.open_batches
        self._batch_size = acc.batch_size
        self._fast = core.fast
        self._closed = False
        self._io.start(self._io_main)

    async def _io_main(self, nursery: trio.Nursery) -> None:
        await self._core.cluster.start(nursery)
        nursery.start_soon(self._run_sender)

    async def _run_sender(self) -> None:
        try:
            await self._core.sender.run()
        finally:
            await self._core.cluster.aclose()

    def _wake_sender(self) -> None:
        self._io.run_sync_soon(self._core.sender.wake)

    # -- sending ----------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """Queue one record; returns a future of its ``RecordMetadata``.

        Blocks only when the topic's metadata is not known yet or the buffer is
        full, for at most ``max_block_ms`` (then ``MetadataTimeoutError`` /
        ``BufferExhaustedError``). Bad arguments raise ``TypeError``/``ValueError``
        at once. ``headers``: a mapping or ``(name, bytes)`` pairs; ``timestamp``:
        ms since the epoch (default: now).
        """
        # Fast path (Kafka's RecordAccumulator.tryAppend, inlined): bytes in, a topic
        # with an open batch on the target partition, default partitioner, no
        # headers or timestamp. Everything else takes _send_slow.
        if self._fast and type(value) is bytes and headers is None and timestamp is None:
            size = len(value) + RECORD_OVERHEAD
            lock = self._lock
            lock.acquire()
            try:
                tb = self._open.get(topic)
                if tb is not None:
                    batch = None
                    if key is None:
                        if partition is None:
                            batch = tb.sticky
                        elif type(partition) is int and 0 <= partition < len(tb.batches):
                            batch = tb.batches[partition]
                    elif type(key) is bytes and partition is None:
                        h = self._hashes.get(key)
                        if h is not None:
                            batch = tb.batches[h % len(tb.batches)]
                            size += len(key)
                    if batch is not None and batch.size + size <= self._batch_size:
                        records = batch.records
                        records.append(
                            (_time_ns() // 1_000_000 - batch.base_timestamp, key, value, ())
                        )
                        batch.size += size
                        return RecordFuture((batch, len(records) - 1))
            finally:
                lock.release()
        return self._send_slow(topic, value, key, headers, partition, timestamp)

    def _send_slow(
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: Any,
        partition: int | None,
        timestamp: int | None,
    ) -> RecordFuture:
        if self._closed:
            raise ClientClosedError("the producer is closed")
        self._check_io()
        core = self._core
        deadline = time.monotonic() + self.config.max_block_ms / 1000.0
        value, key, wire_headers, size, n = core.prepare(
            topic, value, key, headers, partition, timestamp
        )
        if n is None:
            n = self._wait_for_topic(topic, deadline)
        p = core.choose_partition(topic, key, partition, n)
        acc = core.accumulator
        while True:
            future = acc.append(topic, p, key, value, wire_headers, timestamp, size)
            if future is not None:
                return future
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not acc.wait_for_space(size, remaining):
                raise BufferExhaustedError(
                    f"buffer_memory ({self.config.buffer_memory} bytes) stayed full for "
                    f"max_block_ms ({self.config.max_block_ms} ms)"
                )
            if self._closed:
                raise ClientClosedError("the producer is closed")

    def _wait_for_topic(self, topic: str, deadline: float) -> int:
        remaining = max(0.0, deadline - time.monotonic())
        n: int = self._io.run(self._core.cluster.wait_for_topic, topic, remaining)
        return n

    def _check_io(self) -> None:
        fatal = self._core.sender.fatal or self._io.error
        if fatal is not None:
            raise ClientClosedError(f"the producer's I/O thread failed: {fatal!r}") from fatal

    def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered now and wait until every record sent before
        this call has completed (acknowledged or failed). ``TimeoutError`` if
        that takes longer than ``timeout`` seconds."""
        self._check_io()
        pending = self._core.accumulator.incomplete()
        if not pending:
            return
        self._io.run_sync(self._core.sender.begin_flush)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            for batch in pending:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not batch.done and not batch.wait(remaining):
                    raise TimeoutError(f"flush did not complete within {timeout}s")
        finally:
            self._io.run_sync_soon(self._core.sender.end_flush)

    def partitions_for(self, topic: str) -> list[TopicPartition]:
        """The partitions of ``topic`` (fetching metadata if needed)."""
        check_topic(topic)
        n = self._counts.get(topic)
        if n is None:
            n = self._wait_for_topic(topic, time.monotonic() + self.config.max_block_ms / 1000.0)
        return [TopicPartition(topic, p) for p in range(n)]

    def close(self, timeout: float | None = None) -> None:
        """Send what is buffered (waiting up to ``timeout`` seconds, forever if
        None), then stop. Records still pending after the timeout fail with
        ``ClientClosedError``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fast = False
        self._core.closed = True
        self._core.fast = False
        sender = self._core.sender
        acc = self._core.accumulator
        if self._io.alive:
            try:
                self._io.run_sync(sender.initiate_close)
                deadline = None if timeout is None else time.monotonic() + timeout
                for batch in acc.incomplete():
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if not batch.done and not batch.wait(remaining):
                        break
                if acc.has_incomplete():
                    self._io.run_sync(
                        sender.force_close,
                        ClientClosedError("the producer was closed before the record was sent"),
                    )
                self._io.run(sender.wait_stopped)
            except ClientClosedError:
                pass
        acc.close()
        acc.abort_incomplete(ClientClosedError("the producer is closed"))
        self._io.stop()

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
