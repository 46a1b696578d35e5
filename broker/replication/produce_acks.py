"""The trio shell of acks=all: answers a produce once the high watermark passes its batches.

A produce with acks=all appends to each leader partition, then parks here with,
per partition, the log end offset right after its append. It is answered when
every partition's high watermark has reached that offset (with group commit
that also means the leader's fsync covers it), or when the request's
``timeout_ms`` passes (REQUEST_TIMED_OUT for what is still waiting, as Kafka
answers). A partition that stops being led here, or changes leader epoch,
answers NOT_LEADER_OR_FOLLOWER for its entry at once: the producer retries at
the new leader and idempotence turns a batch that did survive into a
duplicate answered with its original offset.

At the moment of answering, each entry is checked once more: the broker must
still hold its leadership lease (broker.replication.lease) and the partition
must still have ``min.insync.replicas`` in its ISR, else the entry gets
NOT_LEADER_OR_FOLLOWER or NOT_ENOUGH_REPLICAS_AFTER_APPEND.

``when_committed`` offers the same wait to other writers of a partition (the
group coordinator's ``__consumer_offsets`` records): a callback runs once the
high watermark passes everything appended so far, or as soon as the partition
stops being led here (the caller then checks the leadership itself).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import trio

from broker.connection import ClientConnection
from broker.partition import Partition
from broker.replication.ack_purgatory import AckPurgatory
from client.protocol import (
    KafkaStorageError,
    NotEnoughReplicasAfterAppendError,
    NotLeaderOrFollowerError,
)
from client.wire import RequestTimedOutError, ServerError

logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


class PendingProduce:
    """One acks=all produce response waiting for its partitions."""

    __slots__ = ("conn", "entries", "errors", "response", "xid")

    def __init__(
        self,
        conn: ClientConnection,
        xid: int,
        response: dict[str, Any],
        entries: dict[TopicPartition, tuple[Partition, int, dict[str, Any]]],
    ) -> None:
        self.conn = conn
        self.xid = xid
        self.response = response
        # tp -> (partition, leader epoch at the append, response entry)
        self.entries = entries
        self.errors: dict[TopicPartition, ServerError] = {}


class CommitWaiter:
    """A callback waiting for partitions to be committed up to their log end."""

    __slots__ = ("release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self.release = release


class ProduceAcks:
    def __init__(self, lease_valid: Callable[[], bool]) -> None:
        self.lease_valid = lease_valid
        self.purgatory: AckPurgatory[PendingProduce | CommitWaiter] = AckPurgatory()
        self._rearm = trio.lowlevel.ParkingLot()

    def when_committed(self, partitions: list[Partition], release: Callable[[], None]) -> bool:
        """Call ``release`` once the high watermark of each partition passes its current
        log end (or it stops being led here). False if that holds already (no call)."""
        required = {
            p.key: p.log_end_offset for p in partitions if p.high_watermark < p.log_end_offset
        }
        if not required:
            return False
        self.purgatory.park(CommitWaiter(release), required, math.inf)
        return True

    def wait(
        self,
        conn: ClientConnection,
        xid: int,
        response: dict[str, Any],
        appended: list[tuple[Partition, int, dict[str, Any]]],
        timeout_ms: int,
    ) -> None:
        """Answer ``response`` once each (partition, required offset, entry) is committed:
        at once if they all are, else when the last one is (or at the timeout)."""
        entries: dict[TopicPartition, tuple[Partition, int, dict[str, Any]]] = {}
        required: dict[TopicPartition, int] = {}
        for partition, offset, entry in appended:
            entries[partition.key] = (partition, partition.leader_epoch, entry)
            if partition.high_watermark < offset:
                required[partition.key] = max(offset, required.get(partition.key, 0))
        pending = PendingProduce(conn, xid, response, entries)
        if not required:
            self._finish(pending)
            return
        deadline = trio.current_time() + timeout_ms / 1000.0
        earliest = self.purgatory.next_deadline()
        self.purgatory.park(pending, required, deadline)
        if earliest is None or deadline < earliest:
            self._rearm.unpark_all()

    # ------------------------------------------------------------ events

    def high_watermark_moved(self, partition: Partition) -> None:
        for pending in self.purgatory.high_watermark(partition.key, partition.high_watermark):
            self._finish(pending)

    def leadership_changed(self, tp: TopicPartition) -> None:
        """``tp`` is no longer led here at the epoch its waiters appended in."""
        touched, done = self.purgatory.settle_partition(tp)
        for pending in touched:
            if isinstance(pending, PendingProduce):
                pending.errors[tp] = NotLeaderOrFollowerError(
                    f"{tp[0]}-{tp[1]}: leadership moved before the write was committed"
                )
        for pending in done:
            self._finish(pending)

    async def run_expiry(self) -> None:
        """The one task that answers waiting produces at their deadline."""
        purgatory = self.purgatory
        while True:
            deadline = purgatory.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._rearm.park()
            for pending, late in purgatory.expire(trio.current_time()):
                if isinstance(pending, PendingProduce):
                    for tp in late:
                        pending.errors[tp] = RequestTimedOutError(
                            f"{tp[0]}-{tp[1]}: not replicated to the ISR within the request timeout"
                        )
                self._finish(pending)

    def shutdown(self) -> None:
        for pending, late in self.purgatory.drain():
            if isinstance(pending, PendingProduce):
                for tp in late:
                    pending.errors[tp] = NotLeaderOrFollowerError(
                        f"{tp[0]}-{tp[1]}: the broker is shutting down"
                    )
            self._finish(pending)

    # ------------------------------------------------------------ answering

    def _finish(self, pending: PendingProduce | CommitWaiter) -> None:
        if isinstance(pending, CommitWaiter):
            try:
                pending.release()
            except Exception:
                logger.exception("a commit callback failed")
            return
        if pending.conn.closed:
            return
        lease_ok = self.lease_valid()
        for tp, (partition, epoch, entry) in pending.entries.items():
            error = pending.errors.get(tp)
            if error is None:
                error = self._check(partition, epoch, lease_ok)
            if error is not None:
                entry["error_code"] = error.code
                entry["error_message"] = error.message
                entry["base_offset"] = -1
        try:
            pending.conn.respond(pending.xid, pending.response)
        except Exception:
            # Never let one answer break the task that released it (committer, fetch).
            logger.exception("answering an acks=all produce failed")

    @staticmethod
    def _check(partition: Partition, epoch: int, lease_ok: bool) -> ServerError | None:
        name = f"{partition.topic}-{partition.partition}"
        if partition.failed:
            return KafkaStorageError(f"{name}: the log went offline")
        if not partition.is_leader or partition.leader_epoch != epoch or not lease_ok:
            return NotLeaderOrFollowerError(f"{name}: no longer the leader; retry")
        needed = partition.settings.min_insync_replicas
        if len(partition.isr) < needed:
            return NotEnoughReplicasAfterAppendError(
                f"{name}: written, but only {len(partition.isr)} in-sync replica(s) remain "
                f"(min.insync.replicas is {needed})"
            )
        return None
