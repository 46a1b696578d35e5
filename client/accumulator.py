"""The producer's record accumulator: one open batch per partition (sans-IO).

``append`` is the hot path of ``Producer.send``: under one lock it adds a
``(timestamp_delta, key, value, headers)`` tuple to the partition's open batch
and returns a ``RecordFuture`` (two slots: the batch and the record's index).
Nothing is encoded per record; a batch is encoded with one ``msgpack.packb``
call when the sender takes it. A batch *closes* when it reaches ``batch_size``
bytes or has waited ``linger`` seconds (or on ``flush``); the sender then
collects closed batches with ``drain``.

Buffer memory is accounted as Kafka does it: opening a batch reserves
``batch_size`` bytes (or the record's size if larger); when the batch closes
its reservation shrinks to its records' estimated bytes, and completing it
frees the rest. So the per-record path does no accounting at all. ``append``
refuses (returns ``None``) when a new batch's reservation does not fit in
``buffer_memory``; the caller then waits for ``release`` to free space
(``wait_for_space`` in a thread, or an async waiter notified through
``on_space``).

The class reads no clock of its own: ``clock`` is injected (monotonic seconds)
and is read only when a batch opens; record timestamps are wall-clock
milliseconds computed by the caller's ``time.time_ns`` (the record's data, like
Kafka's ``System.currentTimeMillis``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from operator import itemgetter
from typing import Any

from client.partitioner import StickyPartitioner
from client.types import RecordMetadata

log = logging.getLogger(__name__)

# Bytes counted per record on top of its key, value and headers: the msgpack
# array header, the timestamp delta and two bin headers, rounded up.
RECORD_OVERHEAD = 12

_time_ns = time.time_ns
_first = itemgetter(0)
# Guards ProducerBatch.done/callbacks between a registering thread and the sender.
_callback_lock = threading.Lock()

Headers = Sequence[tuple[str, bytes]]


class ProducerBatch:
    """Records of one partition sent (and acknowledged) together.

    Fields written only by the sender after the batch closed: sequence
    numbering, the encoded bytes, retry bookkeeping and the result.
    """

    __slots__ = (
        "_event",
        "attempts",
        "base_offset",
        "base_sequence",
        "base_timestamp",
        "callbacks",
        "created",
        "deadline",
        "done",
        "encoded",
        "error",
        "log_append_time",
        "partition",
        "producer_epoch",
        "producer_id",
        "records",
        "reserved",
        "retry_at",
        "size",
        "topic",
    )

    def __init__(self, topic: str, partition: int, base_timestamp: int, created: float) -> None:
        self.topic = topic
        self.partition = partition
        self.records: list[tuple[int, bytes | None, bytes | None, Any]] = []
        self.size = 0
        self.reserved = 0
        self.base_timestamp = base_timestamp
        self.created = created
        self.deadline = float("inf")
        # Sending state (sender only).
        self.producer_id = -1
        self.producer_epoch = -1
        self.base_sequence = -1
        self.encoded: bytes | None = None
        self.attempts = 0
        self.retry_at = 0.0
        # Result.
        self.done = False
        self.base_offset = -1
        self.log_append_time = -1
        self.error: BaseException | None = None
        self.callbacks: list[tuple[int, Callable[[RecordFuture], object]]] | None = None
        self._event: threading.Event | None = None  # made by the first waiter

    def __repr__(self) -> str:
        return (
            f"<ProducerBatch {self.topic}-{self.partition} records={len(self.records)} "
            f"seq={self.base_sequence} attempts={self.attempts} done={self.done}>"
        )

    @property
    def record_count(self) -> int:
        """Records in the batch."""
        return len(self.records)

    @property
    def max_timestamp(self) -> int:
        """The largest record timestamp (ms) of the batch."""
        top: int = max(map(_first, self.records))
        return self.base_timestamp + top

    def complete(
        self, base_offset: int, log_append_time: int = -1, error: BaseException | None = None
    ) -> None:
        """Record the outcome (exactly once), wake waiters and run callbacks."""
        if self.done:
            return
        self.base_offset = base_offset
        self.log_append_time = log_append_time
        self.error = error
        with _callback_lock:
            self.done = True
            callbacks, self.callbacks = self.callbacks, None
            event = self._event
        if event is not None:
            event.set()
        if callbacks:
            for index, fn in callbacks:
                try:
                    fn(RecordFuture((self, index)))
                except Exception:
                    log.exception("a producer callback raised")

    def wait(self, timeout: float | None) -> bool:
        """Block until the batch completed (False after ``timeout`` seconds)."""
        with _callback_lock:
            if self.done:
                return True
            event = self._event
            if event is None:
                event = self._event = threading.Event()
        return event.wait(timeout)

    def metadata(self, index: int) -> RecordMetadata:
        """The ``RecordMetadata`` of record ``index`` (once the batch completed)."""
        if self.log_append_time >= 0:
            ts = self.log_append_time
        else:
            ts = self.base_timestamp + self.records[index][0]
        offset = self.base_offset + index if self.base_offset >= 0 else -1
        return RecordMetadata(self.topic, self.partition, offset, ts)


class RecordFuture(tuple[ProducerBatch, int]):
    """The outcome of one ``send``, shaped like ``concurrent.futures.Future``.

    ``result(timeout)`` blocks until the record is acknowledged and returns its
    ``RecordMetadata`` (or raises the error that failed it); in trio code,
    ``await future`` does the same without blocking the event loop.

    It is a ``(batch, index)`` tuple underneath: building a tuple subclass is the
    cheapest object construction CPython offers, and ``send`` makes one per record.
    Create one with ``RecordFuture((batch, index))``.
    """

    __slots__ = ()

    @property
    def batch(self) -> ProducerBatch:
        """The batch the record belongs to."""
        return self[0]

    @property
    def index_in_batch(self) -> int:
        """The record's position in its batch."""
        return self[1]

    def __repr__(self) -> str:
        b = self.batch
        state = "pending" if not b.done else ("failed" if b.error else "done")
        return f"<RecordFuture {b.topic}-{b.partition}[{self.index_in_batch}] {state}>"

    def done(self) -> bool:
        """Whether the record has been acknowledged or has failed."""
        return self.batch.done

    def cancel(self) -> bool:
        """Records cannot be cancelled once handed to the producer: always False."""
        return False

    def cancelled(self) -> bool:
        """Always False (records cannot be cancelled)."""
        return False

    def running(self) -> bool:
        """Whether the record is still pending."""
        return not self.batch.done

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Wait up to ``timeout`` seconds (forever if None) for the record's metadata.

        Raises ``TimeoutError`` if it is still pending, or the error that failed
        the record. Do not call it from the trio thread of an AsyncProducer
        (``await`` the future there).
        """
        b = self.batch
        if not b.done and not b.wait(timeout):
            raise TimeoutError(f"record not acknowledged within {timeout}s")
        if b.error is not None:
            raise b.error
        return b.metadata(self.index_in_batch)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait like ``result`` and return the error (None on success)."""
        b = self.batch
        if not b.done and not b.wait(timeout):
            raise TimeoutError(f"record not acknowledged within {timeout}s")
        return b.error

    def add_done_callback(self, fn: Callable[[RecordFuture], object]) -> None:
        """Call ``fn(future)`` once the record completes (at once if it has).

        Callbacks run on the producer's I/O thread (or event loop): keep them short.
        """
        b = self.batch
        with _callback_lock:
            if not b.done:
                if b.callbacks is None:
                    b.callbacks = []
                b.callbacks.append((self.index_in_batch, fn))
                return
        fn(self)

    async def wait_done(self) -> None:
        """Wait (trio) until the record completed, successfully or not."""
        import trio

        if not self.batch.done:
            event = trio.Event()
            self.add_done_callback(lambda _f: event.set())
            await event.wait()
        else:
            await trio.lowlevel.checkpoint()

    async def wait(self) -> RecordMetadata:
        """Await the record's metadata (trio); raises the error that failed it."""
        await self.wait_done()
        b = self.batch
        if b.error is not None:
            raise b.error
        return b.metadata(self.index_in_batch)

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        return self.wait().__await__()


class TopicBatches:
    """One topic's open batches, indexed by partition, plus the open batch of
    the topic's sticky partition (so a keyless ``send`` needs one lookup)."""

    __slots__ = ("batches", "sticky")

    def __init__(self, partitions: int) -> None:
        self.batches: list[ProducerBatch | None] = [None] * partitions
        self.sticky: ProducerBatch | None = None

    def open(self) -> list[ProducerBatch]:
        """The open batches of the topic."""
        return [b for b in self.batches if b is not None]


class RecordAccumulator:
    """Open batches per partition, closed batches in order, buffer accounting.

    Thread-safe: every method takes ``lock``. ``on_ready`` is called (under the
    lock) when the sender has parked and something it must look at happened: a
    batch closed, or a batch opened (so a linger deadline exists).
    """

    def __init__(
        self,
        *,
        batch_size: int,
        linger: float,
        buffer_memory: int,
        delivery_timeout: float,
        clock: Callable[[], float],
        sticky: StickyPartitioner,
        partition_counts: dict[str, int],
        on_ready: Callable[[], None] | None = None,
        on_space: Callable[[], None] | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.linger = linger
        self.buffer_memory = buffer_memory
        self.delivery_timeout = delivery_timeout
        self.clock = clock
        self.sticky = sticky
        self.partition_counts = partition_counts
        self.on_ready = on_ready
        self.on_space = on_space
        self.lock = threading.Lock()
        self.space = threading.Condition(self.lock)
        self.used = 0
        self.closed = False
        self.sender_parked = False
        self._generation = 0
        self._drained_generation = 0
        self.open_batches: dict[str, TopicBatches] = {}
        self._closed_batches: deque[ProducerBatch] = deque()
        self._incomplete: dict[ProducerBatch, None] = {}

    # -- the hot path -----------------------------------------------------------------------

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        timestamp: int | None,
        size: int,
    ) -> RecordFuture | None:
        """Add one record; ``None`` when a new batch is needed and the buffer has no room.

        ``headers`` is ``()`` or a list of ``[name, value]`` pairs; ``size`` is the
        caller's estimate of the record's bytes (see ``record_size``). The
        blocking producer inlines the common case of this method in ``send``.
        """
        lock = self.lock
        lock.acquire()
        try:
            tb = self.open_batches.get(topic)
            if tb is None or partition >= len(tb.batches):
                tb = self._topic_batches(topic, partition + 1)
            batch = tb.batches[partition]
            if batch is None or batch.size + size > self.batch_size:
                batch = self._open_batch(topic, partition, timestamp, size, batch)
                if batch is None:
                    return None
            if tb.sticky is None and self.sticky.current.get(topic) == partition:
                tb.sticky = batch
            ts = _time_ns() // 1_000_000 if timestamp is None else timestamp
            records = batch.records
            records.append((ts - batch.base_timestamp, key, value, headers))
            batch.size += size
            return RecordFuture((batch, len(records) - 1))
        finally:
            lock.release()

    def _open_batch(
        self,
        topic: str,
        partition: int,
        timestamp: int | None,
        size: int,
        full: ProducerBatch | None,
    ) -> ProducerBatch | None:
        """A new open batch for the partition (lock held), closing ``full``; None
        when its buffer reservation does not fit."""
        if self.closed:
            from client.errors import ClientClosedError

            raise ClientClosedError("the producer is closed")
        reserve = max(self.batch_size, size)
        if self.used and self.used + reserve > self.buffer_memory:
            if full is not None:
                self._close(full)  # frees its unused reservation; may be enough next time
            return None
        if full is not None:
            self._close(full)
        base = _time_ns() // 1_000_000 if timestamp is None else timestamp
        now = self.clock()
        batch = ProducerBatch(topic, partition, base, now)
        batch.deadline = now + self.delivery_timeout
        batch.reserved = reserve
        self.used += reserve
        tb = self._topic_batches(topic, partition + 1)
        tb.batches[partition] = batch
        if self.sticky.current.get(topic) == partition:
            tb.sticky = batch
        self._incomplete[batch] = None
        self._generation += 1
        if self.sender_parked and self.on_ready is not None:
            self.sender_parked = False
            self.on_ready()
        return batch

    def _close(self, batch: ProducerBatch) -> None:
        """Move an open batch to the closed queue (lock held); its reservation
        shrinks to its actual size."""
        tb = self.open_batches.get(batch.topic)
        if tb is None or tb.batches[batch.partition] is not batch:
            return
        tb.batches[batch.partition] = None
        if tb.sticky is batch:
            tb.sticky = None
        self.used -= batch.reserved - batch.size
        batch.reserved = batch.size
        self._closed_batches.append(batch)
        self._generation += 1
        self.sticky.on_batch_closed(batch.topic, batch.partition, len(tb.batches))
        if self.sender_parked and self.on_ready is not None:
            self.sender_parked = False
            self.on_ready()

    def _topic_batches(self, topic: str, at_least: int) -> TopicBatches:
        """The topic's open-batch table, sized to its partition count (lock held)."""
        n = max(self.partition_counts.get(topic, 0), at_least)
        tb = self.open_batches.get(topic)
        if tb is None:
            tb = self.open_batches[topic] = TopicBatches(n)
        elif len(tb.batches) < n:
            tb.batches.extend([None] * (n - len(tb.batches)))
        return tb

    def sync_partition_counts(self) -> None:
        """Grow the tables of topics whose partition count grew (after a metadata
        refresh), so keys hash over the new count as Kafka's partitioner does."""
        with self.lock:
            for topic, tb in self.open_batches.items():
                if self.partition_counts.get(topic, 0) > len(tb.batches):
                    self._topic_batches(topic, 0)

    # -- the sender's side ------------------------------------------------------------------

    def drain(
        self,
        now: float,
        everything: bool = False,
        can_send: Callable[[ProducerBatch], bool] | None = None,
    ) -> tuple[list[ProducerBatch], float]:
        """Closed batches plus open ones that lingered long enough (all if
        ``everything``), in the order they closed; and when the next open
        batch's linger expires (``inf`` if none is open).

        A lingered batch stays open while ``can_send(batch)`` is False (its
        partition cannot take another batch yet), so it keeps collecting records
        instead of queueing behind one-record batches: Kafka's behaviour with
        ``linger.ms=0`` and ``max.in.flight`` reached."""
        next_deadline = float("inf")
        with self.lock:
            linger = self.linger
            for tb in self.open_batches.values():
                for batch in tb.open():
                    due = batch.created + linger
                    if everything or (due <= now and (can_send is None or can_send(batch))):
                        self._close(batch)
                    elif now < due < next_deadline:
                        next_deadline = due
            out = list(self._closed_batches)
            self._closed_batches.clear()
            self._drained_generation = self._generation
        return out, next_deadline

    def park(self) -> bool:
        """The sender is about to sleep: False if it should not (a batch opened or
        closed since the last ``drain``); otherwise later appends call ``on_ready``."""
        with self.lock:
            if self._closed_batches or self._generation != self._drained_generation:
                return False
            self.sender_parked = True
            return True

    def unpark(self) -> None:
        """The sender woke up: appends stop calling ``on_ready``."""
        with self.lock:
            self.sender_parked = False

    def release(self, batch: ProducerBatch) -> None:
        """A batch completed: forget it and free its buffer bytes."""
        with self.lock:
            if batch in self._incomplete:
                del self._incomplete[batch]
                self.used -= batch.reserved
                batch.reserved = 0
                self.space.notify_all()
        if self.on_space is not None:
            self.on_space()

    def close_all(self) -> None:
        """Close every open batch now (``flush``)."""
        with self.lock:
            for tb in self.open_batches.values():
                for batch in tb.open():
                    self._close(batch)

    def incomplete(self) -> list[ProducerBatch]:
        """Every batch not yet completed (open, closed, in flight or retrying)."""
        with self.lock:
            return list(self._incomplete)

    def has_incomplete(self) -> bool:
        """Whether any batch is not yet completed."""
        with self.lock:
            return bool(self._incomplete)

    def _fits(self, size: int) -> bool:
        reserve = max(self.batch_size, size)
        return self.used + reserve <= self.buffer_memory or not self.used or self.closed

    def has_room(self, size: int) -> bool:
        """Whether a new batch for a record of ``size`` bytes fits in the buffer."""
        with self.lock:
            return self._fits(size)

    def wait_for_space(self, size: int, timeout: float) -> bool:
        """Block the calling thread until a new batch for ``size`` bytes fits
        (or the accumulator closed); False on timeout."""
        with self.space:
            return self.space.wait_for(lambda: self._fits(size), timeout)

    def close(self) -> None:
        """Refuse new batches from now on; wake blocked appenders."""
        with self.lock:
            self.closed = True
            self.space.notify_all()

    def abort_incomplete(self, error: BaseException) -> list[ProducerBatch]:
        """Fail every open or closed-but-unsent batch (a forced close); returns them."""
        with self.lock:
            victims = list(self._incomplete)
            self.open_batches.clear()
            self._closed_batches.clear()
        for batch in victims:
            batch.complete(-1, -1, error)
            self.release(batch)
        return victims


def record_size(key: bytes | None, value: bytes | None, headers: Iterable[Any]) -> int:
    """The buffer bytes a record is accounted for (slow path; ``send`` inlines it)."""
    size = RECORD_OVERHEAD + (len(value) if value is not None else 0)
    if key is not None:
        size += len(key)
    for name, hv in headers:
        size += len(name) + len(hv) + 4
    return size
