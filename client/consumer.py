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

In a consumer group::

    from client import Consumer, RebalanceListener

    class Listener(RebalanceListener):
        def on_partitions_revoked(self, partitions):
            consumer.commit()                      # runs in poll(), in this thread

    consumer = Consumer("127.0.0.1:9092", group_id="billing", enable_auto_commit=False)
    consumer.subscribe(["invoices"], listener=Listener())
    while True:
        records = consumer.poll(timeout=1.0)
        for record in records:
            handle(record)
        consumer.commit()

The group membership (heartbeats, reconciliation) runs in the I/O thread, but
the rebalance listener's callbacks run in the thread that calls ``poll``
(``close``, ``unsubscribe``), as in Kafka, so they may call the consumer.
"""

from __future__ import annotations

import collections
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

import trio

from client.async_consumer import (
    AsyncConsumer,
    CommitCallback,
    CommitOffsets,
    RebalanceStep,
)
from client.config import ConsumerConfig
from client.group_membership import ConsumerGroupMetadata, OffsetAndMetadata, RebalanceListener
from client.io_thread import IoThread
from client.types import ConsumerRecord, OffsetAndTimestamp, TopicPartition

_CommitOutcome = tuple[
    CommitCallback, dict[TopicPartition, OffsetAndMetadata], BaseException | None
]


async def _await(awaitable: Awaitable[Any]) -> None:
    await awaitable


class Consumer:
    """A blocking consumer: manual assignment (``assign``) or a consumer group
    (``group_id=`` and ``subscribe``); see the module doc.

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
        # Finished commit_async commits whose callbacks run in the polling thread.
        self._commit_outcomes: collections.deque[_CommitOutcome] = collections.deque()
        self._outcomes_lock = threading.Lock()
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

    # -- consumer group ---------------------------------------------------------------------

    def subscribe(
        self,
        topics: Iterable[str] | None = None,
        *,
        pattern: str | None = None,
        listener: RebalanceListener | None = None,
    ) -> None:
        """Join the group ``group_id`` for ``topics`` or the topics matching ``pattern``
        (see ``AsyncConsumer.subscribe``). ``listener``'s callbacks run in the thread
        that calls ``poll`` (or ``close``/``unsubscribe``); a coroutine callback is
        awaited in the I/O thread."""
        names = None if topics is None or isinstance(topics, str) else list(topics)
        arg: Any = topics if isinstance(topics, str) else names
        self._io.run_sync(lambda: self._async.subscribe(arg, pattern=pattern, listener=listener))

    def subscription(self) -> set[str] | str | None:
        """The subscribed topic names, or the pattern, or None when not subscribed."""
        return self._io.run_sync(self._async.subscription)

    def unsubscribe(self, timeout: float | None = None) -> None:
        """Leave the group for good (revocation callbacks and the auto-commit run first,
        in this thread) and drop every partition, also a manual assignment."""
        self._leave(False, timeout)
        self._io.run_sync(self._async._apply_assignment, [])

    def group_metadata(self) -> ConsumerGroupMetadata:
        """The consumer's group id, member id, member epoch and instance id."""
        return self._io.run_sync(self._async.group_metadata)

    def commit(self, offsets: CommitOffsets | None = None, timeout: float | None = None) -> None:
        """Commit offsets and wait until they are durable: by default the position of
        every assigned partition (what ``poll`` returned), else the given next offsets
        (ints or OffsetAndMetadata). Raises CommitFailedError (e.g. the member was
        removed from its group), ClientTimeoutError. See ``AsyncConsumer.commit``."""
        self._run_commit_callbacks()
        wanted = None if offsets is None else dict(offsets)
        self._io.run(lambda: self._async.commit(wanted, timeout))
        self._run_commit_callbacks()

    def commit_async(
        self, offsets: CommitOffsets | None = None, callback: CommitCallback | None = None
    ) -> None:
        """Start a commit and return at once; commits complete in order. ``callback(offsets,
        error)`` runs in this thread, from a later ``poll``, ``commit`` or ``close``."""
        wanted = None if offsets is None else dict(offsets)
        hop = None if callback is None else self._deferred(callback)
        self._io.run_sync(lambda: self._async.commit_async(wanted, hop))

    def committed(
        self, partitions: Iterable[TopicPartition | tuple[str, int]], timeout: float | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets of ``partitions`` (None where there is none)."""
        return self._io.run(self._async.committed, list(partitions), timeout)

    def _deferred(self, callback: CommitCallback) -> CommitCallback:
        def hop(
            offsets: dict[TopicPartition, OffsetAndMetadata], error: BaseException | None
        ) -> None:
            with self._outcomes_lock:
                self._commit_outcomes.append((callback, offsets, error))

        return hop

    def _run_commit_callbacks(self) -> None:
        while True:
            with self._outcomes_lock:
                if not self._commit_outcomes:
                    return
                callback, offsets, error = self._commit_outcomes.popleft()
            self._call(callback, offsets, error)

    def _call(self, fn: Callable[..., Awaitable[None] | None], *args: Any) -> None:
        """Call a user callback here; a coroutine it returns is awaited in the I/O thread."""
        result = fn(*args)
        if inspect.isawaitable(result):
            self._io.run(_await, result)

    def _run_step(self, step: RebalanceStep) -> None:
        """Run a rebalance step's callback in this thread, then let the I/O thread finish
        the step (even if the callback raised; its exception is raised afterwards)."""
        try:
            if step.callback is not None:
                self._call(step.callback, set(step.partitions))
        finally:
            self._io.run(self._async._finish_step, step)

    def _leave(self, static: bool | None, timeout: float | None) -> list[Exception]:
        """Leave the group (if subscribed), running the revocation steps here; the
        exceptions the callbacks raised."""
        errors: list[Exception] = []
        if not self._io.run_sync(self._async._begin_leave, static):
            self._io.run(self._async._end_leave)
            return errors
        limit = self._async._timeout(timeout)
        deadline = time.monotonic() + limit
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            step = self._io.run(self._async._leave_step_within, remaining)
            if step is None:
                break
            try:
                self._run_step(step)
            except Exception as exc:
                errors.append(exc)
        self._io.run(self._async._end_leave)
        return errors

    # -- polling ----------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records that arrived, waiting up to ``timeout`` seconds for some
        (at most ``max_records``, default ``max_poll_records``). In a group, pending
        rebalance callbacks and ``commit_async`` callbacks run here first (see
        ``AsyncConsumer.poll``)."""
        count = self._async._poll_args(timeout, max_records)  # only checks: no hop needed
        deadline = time.monotonic() + timeout
        while True:
            self._run_commit_callbacks()
            remaining = max(0.0, deadline - time.monotonic())
            step = self._io.run(self._async._poll_step, remaining, count)
            if isinstance(step, RebalanceStep):
                self._run_step(step)
                continue
            return step

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records forever (until ``close``), one at a time."""
        while not self._closed:
            yield from self.poll(timeout=1.0)

    # -- closing ----------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Leave the group if subscribed (revocation callbacks run in this thread, then
        the final auto-commit and the leave heartbeat, within ``timeout`` seconds,
        default ``request_timeout_ms``), wait for ``commit_async`` commits, then stop
        fetching and close connections and the I/O thread. Idempotent. A revocation
        callback's exception is raised once the consumer is closed."""
        if self._closed:
            return
        self._closed = True
        errors: list[Exception] = []
        if self._io.alive:
            try:
                errors = self._leave(None, timeout)
                self._io.run(self._async.close, timeout)
            finally:
                self._io.stop()
        self._run_commit_callbacks()
        if errors:
            raise errors[0]

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
