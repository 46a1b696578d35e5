"""What the producer sends next, and what it does with each answer (sans-IO).

``DeliveryTracker`` owns every closed batch from the moment the accumulator
hands it over until it completes. It decides

- sequence numbers: an idempotent producer numbers each partition's records
  from 0 within its (producer id, epoch); a batch gets its base sequence the
  first time it is sent and keeps it for every retry, so the broker recognises
  a retried batch it already wrote and answers with the original offset;
- what may be sent now: per partition, up to ``max_in_flight`` batches in
  sequence order, but only one while the partition is recovering from a
  failure (Kafka's rule) or has not had its first batch of the epoch
  acknowledged, and nothing whose leader is unknown or whose backoff has not
  elapsed;
- what a failure means: a retriable error (or a lost connection) puts the batch
  back in sequence order after an exponential backoff with jitter, unless its
  retries or its delivery timeout are used up; ``OUT_OF_ORDER_SEQUENCE`` caused
  by an earlier batch that failed too is retriable; any other error fails the
  batch, and for an idempotent producer forces an epoch bump (a gap in the
  sequence numbers can only be healed by starting the numbering again), which
  waits until nothing is in flight.

It reads no clock: every call that depends on time takes ``now`` (monotonic
seconds), and jitter comes from an injected ``random.Random``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from client.accumulator import ProducerBatch
from client.errors import DeliveryTimeoutError
from client.protocol import (
    FencedLeaderEpochError,
    LeaderNotAvailableError,
    NotLeaderOrFollowerError,
    OutOfOrderSequenceError,
    UnknownLeaderEpochError,
    UnknownTopicOrPartitionError,
)
from client.records import increment_sequence
from client.types import TopicPartition
from client.wire import ConnectionLostError

# Errors after which the partition's leader may have moved.
_METADATA_ERRORS: tuple[type[BaseException], ...] = (
    NotLeaderOrFollowerError,
    UnknownTopicOrPartitionError,
    LeaderNotAvailableError,
    FencedLeaderEpochError,
    UnknownLeaderEpochError,
    ConnectionLostError,
)

JITTER = 0.2


def is_retriable(error: BaseException) -> bool:
    """Whether an error class says retrying may succeed."""
    return bool(getattr(error, "retriable", False))


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff ``base * 2**(attempts-1)`` capped at ``cap``, +-20% jitter
    (Kafka's ``retry.backoff.ms``/``retry.backoff.max.ms`` behaviour)."""
    if base <= 0:
        return 0.0
    exp: float = base * (2 ** max(0, min(attempts - 1, 30)))
    delay: float = min(exp, max(cap, base))
    return delay * (1.0 + rng.uniform(-JITTER, JITTER))


@dataclass(slots=True)
class PartitionQueue:
    """One partition's batches: waiting to go (``queue``) and sent (``in_flight``)."""

    queue: deque[ProducerBatch] = field(default_factory=deque)
    in_flight: list[ProducerBatch] = field(default_factory=list)
    next_sequence: int = 0
    recovering: bool = False
    # An idempotent partition pipelines only after its first batch of the epoch
    # was acknowledged: a broker that has no state for the producer yet may take
    # any sequence as a start, so a second batch must not overtake a failed first.
    acked: bool = False

    def limit(self, idempotent: bool, max_in_flight: int) -> int:
        """How many batches of this partition may be in flight now."""
        if self.recovering or (idempotent and not self.acked):
            return 1
        return max_in_flight

    def insert_in_order(self, batch: ProducerBatch) -> None:
        """Put a batch that must be resent back before every later batch."""
        q = self.queue
        for i, other in enumerate(q):
            if _precedes(batch, other) or other.attempts == 0:
                q.insert(i, batch)
                return
        q.append(batch)


def _precedes(a: ProducerBatch, b: ProducerBatch) -> bool:
    if a.base_sequence >= 0 and b.base_sequence >= 0:
        return a.base_sequence < b.base_sequence
    return a.created < b.created


def _timeout_error(batch: ProducerBatch) -> DeliveryTimeoutError:
    last = f" (last error: {batch.error})" if batch.error is not None else ""
    return DeliveryTimeoutError(
        f"{batch.record_count} record(s) for {batch.topic}-{batch.partition} not "
        f"acknowledged within delivery_timeout_ms{last}"
    )


@dataclass(slots=True)
class Outcome:
    """What the sender must do after a response was applied."""

    completed: list[ProducerBatch] = field(default_factory=list)
    retried: list[ProducerBatch] = field(default_factory=list)
    refresh_metadata: bool = False


class DeliveryTracker:
    """Sequencing, in-flight limits and retry decisions for one producer."""

    def __init__(
        self,
        *,
        idempotent: bool,
        max_in_flight: int,
        retries: int,
        retry_backoff: float,
        retry_backoff_max: float,
        rng: random.Random | None = None,
    ) -> None:
        self.idempotent = idempotent
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.rng = rng or random.Random()
        self.producer_id = -1
        self.producer_epoch = -1
        self.bump_required = False
        self.partitions: dict[TopicPartition, PartitionQueue] = {}
        self._in_flight_count = 0
        self._queued_count = 0

    # -- bookkeeping ------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return self._in_flight_count

    @property
    def pending(self) -> int:
        """Batches held: queued or in flight."""
        return self._queued_count + self._in_flight_count

    def _pq(self, batch: ProducerBatch) -> PartitionQueue:
        tp = TopicPartition(batch.topic, batch.partition)
        pq = self.partitions.get(tp)
        if pq is None:
            pq = self.partitions[tp] = PartitionQueue()
        return pq

    def add(self, batches: Iterable[ProducerBatch]) -> None:
        """Take closed batches from the accumulator (in the order they closed)."""
        for batch in batches:
            self._pq(batch).queue.append(batch)
            self._queued_count += 1

    def set_producer_id(self, producer_id: int, producer_epoch: int) -> None:
        """A new (id, epoch) from InitProducerId: every sequence starts again at 0.

        Queued batches that were numbered under the old epoch are renumbered (and
        must be re-encoded: their ``encoded`` is cleared)."""
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.bump_required = False
        for pq in self.partitions.values():
            pq.next_sequence = 0
            pq.recovering = False
            pq.acked = False
            for batch in pq.queue:
                batch.base_sequence = -1
                batch.encoded = None

    # -- choosing what to send --------------------------------------------------------------

    def can_take(self, batch: ProducerBatch) -> bool:
        """Whether another batch of ``batch``'s partition could go out now: nothing
        queued for it and room in flight (else its open batch should keep filling)."""
        pq = self.partitions.get(TopicPartition(batch.topic, batch.partition))
        if pq is None:
            return True
        limit = pq.limit(self.idempotent, self.max_in_flight)
        return not pq.queue and len(pq.in_flight) < limit

    def expire(self, now: float) -> list[ProducerBatch]:
        """Fail queued batches past their delivery deadline; returns them (completed)."""
        out: list[ProducerBatch] = []
        for pq in self.partitions.values():
            q = pq.queue
            if not q:
                continue
            keep: deque[ProducerBatch] = deque()
            for batch in q:
                if batch.deadline <= now:
                    if batch.attempts and self.idempotent:
                        self.bump_required = True  # its fate is unknown: a sequence gap
                    batch.complete(-1, -1, _timeout_error(batch))
                    out.append(batch)
                    self._queued_count -= 1
                else:
                    keep.append(batch)
            pq.queue = keep
        return out

    def ready(
        self,
        now: float,
        leader_for: Callable[[TopicPartition], int | None],
        node_ready: Callable[[int], bool],
        max_request_bytes: int = 1 << 62,
    ) -> tuple[dict[int, list[ProducerBatch]], set[TopicPartition], float]:
        """Batches to send now grouped by leader node (at most one per partition per
        node request, about ``max_request_bytes`` per request), partitions whose
        leader is unknown, and the earliest future time a backoff expires (``inf``
        if none)."""
        plan: dict[int, list[ProducerBatch]] = {}
        request_bytes: dict[int, int] = {}
        unknown: set[TopicPartition] = set()
        wake = float("inf")
        if self.bump_required:
            return plan, unknown, wake
        for tp, pq in self.partitions.items():
            q = pq.queue
            if not q:
                continue
            head = q[0]
            if head.retry_at > now:
                wake = min(wake, head.retry_at)
                continue
            if len(pq.in_flight) >= pq.limit(self.idempotent, self.max_in_flight):
                continue
            leader = leader_for(tp)
            if leader is None or leader < 0:
                unknown.add(tp)
                continue
            if not node_ready(leader):
                continue
            used = request_bytes.get(leader, 0)
            if used and used + head.size > max_request_bytes:
                continue
            request_bytes[leader] = used + head.size
            q.popleft()
            self._queued_count -= 1
            if self.idempotent and head.base_sequence < 0:
                head.producer_id = self.producer_id
                head.producer_epoch = self.producer_epoch
                head.base_sequence = pq.next_sequence
                head.encoded = None
                pq.next_sequence = increment_sequence(pq.next_sequence, head.record_count)
            head.attempts += 1
            pq.in_flight.append(head)
            self._in_flight_count += 1
            plan.setdefault(leader, []).append(head)
        return plan, unknown, wake

    # -- answers ----------------------------------------------------------------------------

    def _take_in_flight(self, batch: ProducerBatch) -> PartitionQueue:
        pq = self._pq(batch)
        try:
            pq.in_flight.remove(batch)
        except ValueError:
            raise ValueError(f"{batch!r} is not in flight") from None
        self._in_flight_count -= 1
        return pq

    def on_success(self, batch: ProducerBatch, base_offset: int, log_append_time: int) -> None:
        """The broker wrote the batch (or recognised it as a duplicate)."""
        pq = self._take_in_flight(batch)
        if batch.producer_epoch == self.producer_epoch:
            pq.acked = True
        batch.complete(base_offset, log_append_time, None)
        self._maybe_recovered(pq)

    def on_error(self, batch: ProducerBatch, error: BaseException, now: float) -> Outcome:
        """A produce of ``batch`` failed with ``error``: retry it or fail it."""
        pq = self._take_in_flight(batch)
        out = Outcome()
        if isinstance(error, _METADATA_ERRORS):
            out.refresh_metadata = True
        retriable = is_retriable(error)
        if isinstance(error, OutOfOrderSequenceError) and self._earlier_unacked(pq, batch):
            # An earlier batch of this partition failed first: ours was refused only
            # because of the gap it left. Resend in order.
            retriable = True
        if retriable and batch.attempts <= self.retries and now < batch.deadline:
            batch.error = error  # remembered for a later delivery-timeout message
            batch.retry_at = now + backoff_delay(
                batch.attempts, self.retry_backoff, self.retry_backoff_max, self.rng
            )
            pq.insert_in_order(batch)
            pq.recovering = True
            self._queued_count += 1
            out.retried.append(batch)
            return out
        if retriable and now >= batch.deadline:
            batch.error = error
            timeout = _timeout_error(batch)
            timeout.__cause__ = error
            error = timeout
        if self.idempotent and batch.base_sequence >= 0:
            # The numbering now has a gap (or an unknown outcome): start a new epoch.
            self.bump_required = True
        batch.complete(-1, -1, error)
        out.completed.append(batch)
        self._maybe_recovered(pq)
        return out

    def _earlier_unacked(self, pq: PartitionQueue, batch: ProducerBatch) -> bool:
        seq = batch.base_sequence
        return any(0 <= b.base_sequence < seq for b in pq.queue) or any(
            0 <= b.base_sequence < seq for b in pq.in_flight
        )

    def _maybe_recovered(self, pq: PartitionQueue) -> None:
        if pq.recovering and not any(b.attempts for b in pq.queue) and not pq.in_flight:
            pq.recovering = False

    def fail_all(self, error: BaseException) -> list[ProducerBatch]:
        """Fail every queued and in-flight batch (a forced close); returns them."""
        out: list[ProducerBatch] = []
        for pq in self.partitions.values():
            for batch in (*pq.in_flight, *pq.queue):
                batch.complete(-1, -1, error)
                out.append(batch)
            pq.in_flight.clear()
            pq.queue.clear()
        self._in_flight_count = 0
        self._queued_count = 0
        return out
