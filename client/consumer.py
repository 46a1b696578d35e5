"""The blocking consumer: an ``AsyncConsumer`` driven from a background thread.

Example::

    from client import Consumer, TopicPartition

    with Consumer("127.0.0.1:9092", auto_offset_reset="earliest",
                  value_deserializer="str") as consumer:
        consumer.assign([TopicPartition("events", 0), TopicPartition("events", 1)])
        while True:
            for record in consumer.poll(timeout=1.0):
                print(record.partition, record.offset, record.key, record.value)

The fetch task runs in the consumer's I/O thread and keeps fetching while the
caller processes records; each ``poll`` is one hop into that thread, which
takes up to ``max_records`` decoded records at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import trio

from client.async_consumer import AsyncConsumer
from client.config import ConsumerConfig
from client.io_thread import IoThread
from client.types import ConsumerRecord, OffsetAndTimestamp, TopicPartition


class Consumer:
    """A blocking consumer with manual assignment (see the module doc).

    ``bootstrap_servers`` is ``"host:port[,host:port]"``; settings are
    ``ConsumerConfig`` fields as keywords (or ``config=``). Not thread-safe: use
    one consumer per thread, as with Kafka's.
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        config: ConsumerConfig | None = None,
        **settings: Any,
    ) -> None:
        self._async = AsyncConsumer(bootstrap_servers, config, **settings)
        self.config = self._async.config
        self._io = IoThread(f"rivulet-consumer-{self.config.client_id}")
        self._closed = False
        self._io.start(self._io_main)

    async def _io_main(self, nursery: trio.Nursery) -> None:
        await self._async.start(nursery)

    # -- assignment and positions -----------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Consume exactly these partitions (replacing any previous assignment)."""
        self._io.run_sync(self._async.assign, list(partitions))

    def assignment(self) -> set[TopicPartition]:
        """The partitions currently assigned."""
        return self._io.run_sync(self._async.assignment)

    def unassign(self) -> None:
        """Stop consuming every partition."""
        self._io.run_sync(self._async.unassign)

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        """The next ``poll`` returns records of ``partition`` from ``offset``."""
        self._io.run_sync(self._async.seek, partition, offset)

    def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Move to the earliest available offset (all assigned partitions if none given)."""
        self._io.run_sync(self._async.seek_to_beginning, *partitions)

    def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Move to the log end (all assigned partitions if none given)."""
        self._io.run_sync(self._async.seek_to_end, *partitions)

    def position(
        self, partition: TopicPartition | tuple[str, int], timeout: float | None = None
    ) -> int:
        """The offset of the next record ``poll`` returns for ``partition``."""
        return self._io.run(self._async.position, partition, timeout)

    def highwater(self, partition: TopicPartition | tuple[str, int]) -> int | None:
        """The high watermark seen in the last fetch of ``partition``."""
        return self._io.run_sync(self._async.highwater, partition)

    def pause(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Stop fetching and returning records of these partitions."""
        self._io.run_sync(self._async.pause, *partitions)

    def resume(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Undo ``pause``."""
        self._io.run_sync(self._async.resume, *partitions)

    def paused(self) -> set[TopicPartition]:
        """The partitions currently paused."""
        return self._io.run_sync(self._async.paused)

    def beginning_offsets(
        self, partitions: Iterable[TopicPartition], timeout: float | None = None
    ) -> dict[TopicPartition, int]:
        """The earliest offset of each partition."""
        return self._io.run(self._async.beginning_offsets, list(partitions), timeout)

    def end_offsets(
        self, partitions: Iterable[TopicPartition], timeout: float | None = None
    ) -> dict[TopicPartition, int]:
        """The log end offset of each partition."""
        return self._io.run(self._async.end_offsets, list(partitions), timeout)

    def offsets_for_times(
        self, timestamps: dict[TopicPartition, int], timeout: float | None = None
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """The first offset at or after each ms timestamp (None if none)."""
        return self._io.run(self._async.offsets_for_times, timestamps, timeout)

    # -- polling ----------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records that arrived, waiting up to ``timeout`` seconds for some
        (at most ``max_records``, default ``max_poll_records``)."""
        return self._io.run(self._async.poll, timeout, max_records)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records forever (until ``close``), one at a time."""
        while not self._closed:
            yield from self.poll(timeout=1.0)

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop fetching, close connections and the I/O thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._io.alive:
            try:
                self._io.run(self._async.close)
            finally:
                self._io.stop()

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def __enter__(self) -> Consumer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
