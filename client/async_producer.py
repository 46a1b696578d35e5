"""The trio producer: the same accumulator and sender, in the caller's event loop.

Example::

    import trio
    from client import AsyncProducer

    async def main() -> None:
        async with AsyncProducer("127.0.0.1:9092", acks="all") as producer:
            meta = await producer.send("events", b"hello", key=b"user-1")
            print(meta.partition, meta.offset)
            futures = [await producer.enqueue("events", b"%d" % i) for i in range(10_000)]
            await producer.flush()
            print((await futures[-1]).offset)

    trio.run(main)

``send`` waits for the acknowledgement; ``enqueue`` only waits for buffer
space (and metadata) and returns a ``RecordFuture`` to await later, which is
the fast way to produce many records.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import trio

from client.accumulator import RecordFuture
from client.config import ProducerConfig, build_config
from client.errors import BufferExhaustedError, ClientClosedError
from client.producer import ProducerCore, check_topic
from client.types import RecordMetadata, TopicPartition


class AsyncProducer:
    """A trio producer. Use ``async with AsyncProducer(...) as producer`` (it runs
    its I/O task in a nursery of its own), or ``await producer.start(nursery)``
    and ``await producer.close()``."""

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        config: ProducerConfig | None = None,
        **settings: Any,
    ) -> None:
        cfg: ProducerConfig = build_config(ProducerConfig, config, settings)
        self.config = cfg
        self._core = core = ProducerCore(bootstrap_servers, cfg)
        core.accumulator.on_ready = core.sender.wake
        core.accumulator.on_space = self._space_freed
        self._space = trio.Event()
        self._nursery_manager: Any = None
        self._started = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the I/O task in ``nursery`` (it runs until ``close``)."""
        if self._started:
            raise RuntimeError("the producer is already started")
        self._started = True
        await self._core.cluster.start(nursery)
        await nursery.start(self._run_sender)

    async def _run_sender(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._core.sender.run(task_status=task_status)
        finally:
            await self._core.cluster.aclose()

    async def __aenter__(self) -> AsyncProducer:
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        try:
            await self.start(nursery)
        except BaseException as exc:
            await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            if exc is None:
                await self.close()
            else:
                await self.close(timeout=0)
        finally:
            manager, self._nursery_manager = self._nursery_manager, None
            result: bool | None = await manager.__aexit__(exc_type, exc, tb)
        return result

    def _space_freed(self) -> None:
        self._space.set()

    # -- sending ----------------------------------------------------------------------------

    async def enqueue(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """Queue one record and return its future (``await future`` gives the
        ``RecordMetadata``). Waits only for metadata of a new topic or for buffer
        space, at most ``max_block_ms``."""
        core = self._core
        if headers is None and timestamp is None:
            fast = core.fast_append(topic, value, key, partition)
            if fast is not None:
                return fast
        if not self._started:
            raise RuntimeError("start the producer first (async with / start())")
        if self._closed:
            raise ClientClosedError("the producer is closed")
        if core.sender.fatal is not None:
            raise ClientClosedError(
                f"the producer's I/O task failed: {core.sender.fatal!r}"
            ) from core.sender.fatal
        value, key, wire_headers, size, n = core.prepare(
            topic, value, key, headers, partition, timestamp
        )
        max_block = self.config.max_block_ms / 1000.0
        deadline = time.monotonic() + max_block
        if n is None:
            n = await core.cluster.wait_for_topic(topic, max_block)
        p = core.choose_partition(topic, key, partition, n)
        acc = core.accumulator
        while True:
            future = acc.append(topic, p, key, value, wire_headers, timestamp, size)
            if future is not None:
                if future.index_in_batch == 0:
                    # A new batch: give the sender a chance to run.
                    await trio.lowlevel.checkpoint()
                return future
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BufferExhaustedError(
                    f"buffer_memory ({self.config.buffer_memory} bytes) stayed full for "
                    f"max_block_ms ({self.config.max_block_ms} ms)"
                )
            self._space = trio.Event()
            if acc.has_room(size):
                continue
            with trio.move_on_after(remaining):
                await self._space.wait()
            if self._closed:
                raise ClientClosedError("the producer is closed")

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """Produce one record and wait for its acknowledgement."""
        future = await self.enqueue(topic, value, key, headers, partition, timestamp)
        return await future.wait()

    async def flush(self) -> None:
        """Send everything buffered now and wait until every record enqueued
        before this call has completed (acknowledged or failed)."""
        pending = self._core.accumulator.incomplete()
        if not pending:
            await trio.lowlevel.checkpoint()
            return
        sender = self._core.sender
        sender.begin_flush()
        try:
            for batch in pending:
                if not batch.done:
                    await RecordFuture((batch, 0)).wait_done()
        finally:
            sender.end_flush()

    async def partitions_for(self, topic: str) -> list[TopicPartition]:
        """The partitions of ``topic`` (fetching metadata if needed)."""
        check_topic(topic)
        n = await self._core.cluster.wait_for_topic(topic, self.config.max_block_ms / 1000.0)
        return [TopicPartition(topic, p) for p in range(n)]

    async def close(self, timeout: float | None = None) -> None:
        """Send what is buffered (waiting up to ``timeout`` seconds, forever if
        None), then stop the I/O task. Records still pending afterwards fail with
        ``ClientClosedError``."""
        if self._closed:
            return
        self._closed = True
        self._core.closed = True
        self._core.fast = False
        sender = self._core.sender
        acc = self._core.accumulator
        if not self._started:
            return
        sender.initiate_close()
        with trio.move_on_after(_seconds(timeout)):
            for batch in acc.incomplete():
                if not batch.done:
                    await RecordFuture((batch, 0)).wait_done()
        if acc.has_incomplete():
            sender.force_close(
                ClientClosedError("the producer was closed before the record was sent")
            )
        acc.close()
        with trio.CancelScope(shield=True):
            await sender.wait_stopped()

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed


def _seconds(timeout: float | None) -> float:
    return float("inf") if timeout is None else max(0.0, timeout)
