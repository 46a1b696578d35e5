"""FETCH: raw batches straight from the logs, with long-poll.

A fetch reads every requested partition at once. It is answered immediately
when it found ``min_bytes``, when ``max_wait_ms`` is 0, or when a partition
failed; otherwise it parks in the purgatory (broker.fetch_purgatory) and is
completed — read again and answered — as soon as enough bytes become visible
on its partitions, when one of them changes leadership or goes away, or at
its deadline. No task or timer exists per parked fetch: appends (through the
high watermark) wake fetches directly, and one broker-wide task expires them.

Byte limits: ``partition_max_bytes`` per partition and ``max_bytes`` for the
whole response (capped by the broker's fetch_max_bytes); the first batch of the
first partition with data is returned even if it is larger, so a consumer
always makes progress (as Kafka does). Consumers read below the high
watermark; a follower (``replica_id`` >= 0) reads up to the log end.

A follower's fetch (broker.replication) is also its progress report: its
``fetch_offset`` is its log end, which the leader records before reading — that
may move the high watermark (waking consumers and acks=all produces) and bring
the follower back into the ISR. Followers park in a purgatory of their own,
woken by appends to the leader's log rather than by the high watermark.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import trio

from broker.connection import ClientConnection
from broker.fetch_purgatory import FetchPurgatory
from broker.replica_manager import ReplicaManager
from client.protocol import (
    FencedLeaderEpochError,
    NotLeaderOrFollowerError,
    UnknownLeaderEpochError,
)
from client.wire import InternalServerError, Payload, ServerError

logger = logging.getLogger(__name__)

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
DEFAULT_PARTITION_MAX_BYTES = 1024 * 1024

TopicPartition = tuple[str, int]


class PendingFetch:
    """A parsed fetch request; parked in the purgatory while it waits."""

    __slots__ = (
        "conn",
        "deadline",
        "max_bytes",
        "min_bytes",
        "partitions",
        "replica",
        "replica_id",
        "topics",
        "xid",
    )

    def __init__(
        self,
        conn: ClientConnection,
        xid: int,
        replica: bool,
        min_bytes: int,
        max_bytes: int,
        topics: list[tuple[str, list[tuple[int, int, int, int]]]],
    ) -> None:
        self.conn = conn
        self.xid = xid
        self.replica = replica
        self.replica_id = -1
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        # [(topic, [(partition, fetch_offset, partition_max_bytes, leader_epoch)])]
        self.topics = topics
        self.partitions = [(t, entry[0]) for t, entries in topics for entry in entries]
        self.deadline = 0.0


class FetchHandler:
    def __init__(self, replicas: ReplicaManager, fetch_max_bytes: int) -> None:
        self.replicas = replicas
        self.fetch_max_bytes = fetch_max_bytes
        self.purgatory: FetchPurgatory[PendingFetch] = FetchPurgatory()
        # Followers' fetches, woken by appends (they read up to the log end).
        self.replica_purgatory: FetchPurgatory[PendingFetch] = FetchPurgatory()
        self._by_conn: dict[ClientConnection, set[PendingFetch]] = {}
        self._rearm = trio.lowlevel.ParkingLot()
        replicas.append_listeners.append(self.appended)
        replicas.visible_listeners.append(self.visible)

    # ------------------------------------------------------------ requests

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any] | None:
        replica_id = p.integer("replica_id", -1, lo=-1, hi=_INT32_MAX)
        max_wait_ms = p.integer("max_wait_ms", 500, lo=0, hi=_INT32_MAX)
        min_bytes = p.integer("min_bytes", 1, lo=0, hi=_INT32_MAX)
        max_bytes = min(
            p.integer("max_bytes", _INT32_MAX, lo=0, hi=_INT32_MAX), self.fetch_max_bytes
        )
        topics: list[tuple[str, list[tuple[int, int, int, int]]]] = []
        for raw_topic in p.array("topics"):
            tp = Payload(raw_topic)
            name = tp.text("topic")
            entries = []
            for raw_part in tp.array("partitions"):
                pp = Payload(raw_part)
                entries.append(
                    (
                        pp.integer("partition", lo=0, hi=_INT32_MAX),
                        pp.integer("fetch_offset", lo=0, hi=_INT64_MAX),
                        pp.integer(
                            "partition_max_bytes", DEFAULT_PARTITION_MAX_BYTES, lo=0, hi=_INT32_MAX
                        ),
                        pp.integer("current_leader_epoch", -1, lo=-1, hi=_INT32_MAX),
                    )
                )
            topics.append((name, entries))
        fetch = PendingFetch(conn, xid, replica_id >= 0, min_bytes, max_bytes, topics)
        fetch.replica_id = replica_id
        if fetch.replica:
            self._follower_progress(fetch)
        response, total, failed = self._read(fetch)
        if failed or max_wait_ms == 0 or total >= min_bytes or not fetch.partitions:
            return response
        fetch.deadline = trio.current_time() + max_wait_ms / 1000.0
        self._park(fetch, min_bytes - total)
        return None

    def _follower_progress(self, fetch: PendingFetch) -> None:
        """Record each partition's fetch offset as the follower's log end (leader side)."""
        replicas = self.replicas
        for name, entries in fetch.topics:
            for index, offset, _, epoch in entries:
                partition = replicas.partitions.get((name, index))
                if partition is None or not partition.is_leader:
                    continue  # _read answers the error
                if epoch > partition.leader_epoch:
                    replicas.saw_newer_epoch(partition, epoch)
                    continue
                if epoch >= 0 and epoch != partition.leader_epoch:
                    continue
                if fetch.replica_id not in partition.replicas or offset > partition.log_end_offset:
                    continue  # not a replica, or a log that diverged: no progress to record
                gained = replicas.follower_fetched(partition, fetch.replica_id, offset)
                if gained:
                    self.visible(partition.key, gained)

    def _purgatory_of(self, fetch: PendingFetch) -> FetchPurgatory[PendingFetch]:
        return self.replica_purgatory if fetch.replica else self.purgatory

    def _next_deadline(self) -> float | None:
        deadlines = [
            d
            for d in (self.purgatory.next_deadline(), self.replica_purgatory.next_deadline())
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def _park(self, fetch: PendingFetch, needed: int) -> None:
        earliest = self._next_deadline()
        self._purgatory_of(fetch).park(fetch, fetch.partitions, needed, fetch.deadline)
        self._by_conn.setdefault(fetch.conn, set()).add(fetch)
        if earliest is None or fetch.deadline < earliest:
            self._rearm.unpark_all()

    def _read(self, fetch: PendingFetch) -> tuple[dict[str, Any], int, bool]:
        """Read every partition of ``fetch``: (response, record bytes, any partition failed)."""
        lookup = self.replicas.leader
        remaining = fetch.max_bytes
        total = 0
        failed = False
        out_topics: list[dict[str, Any]] = []
        for name, entries in fetch.topics:
            out_parts: list[dict[str, Any]] = []
            out_topics.append({"topic": name, "partitions": out_parts})
            for index, offset, part_max, epoch in entries:
                try:
                    partition = lookup(name, index)
                    if fetch.replica and fetch.replica_id not in partition.replicas:
                        raise NotLeaderOrFollowerError(
                            f"broker {fetch.replica_id} is not a replica of {name}-{index}"
                        )
                    if epoch >= 0 and epoch != partition.leader_epoch:
                        if epoch < partition.leader_epoch:
                            raise FencedLeaderEpochError(
                                f"{name}-{index}: leader epoch {epoch} < {partition.leader_epoch}"
                            )
                        raise UnknownLeaderEpochError(
                            f"{name}-{index}: leader epoch {epoch} > {partition.leader_epoch}"
                        )
                    limit = min(part_max, remaining)
                    if limit <= 0 and total > 0:
                        records = b""
                    else:
                        records = partition.read(offset, limit, to_log_end=fetch.replica)
                        if total > 0 and len(records) > remaining:
                            records = b""
                except ServerError as exc:
                    failed = True
                    out_parts.append(
                        {
                            "partition": index,
                            "error_code": exc.code,
                            "error_message": exc.message,
                            "high_watermark": -1,
                            "log_start_offset": -1,
                            "records": b"",
                        }
                    )
                    continue
                n = len(records)
                total += n
                remaining -= n
                out_parts.append(
                    {
                        "partition": index,
                        "error_code": 0,
                        "error_message": None,
                        "high_watermark": partition.high_watermark,
                        "log_start_offset": partition.log_start_offset,
                        "records": records,
                    }
                )
        return {"topics": out_topics}, total, failed

    # ------------------------------------------------------------ completion

    def visible(self, tp: TopicPartition, nbytes: int) -> None:
        """``nbytes`` became readable on ``tp`` (the high watermark moved)."""
        for fetch in self.purgatory.visible(tp, nbytes):
            self._complete(fetch, final=False)

    def appended(self, tp: TopicPartition) -> None:
        """The leader's log of ``tp`` grew: followers parked on it read again."""
        for fetch in self.replica_purgatory.wake_partition(tp):
            self._complete(fetch, final=False)

    def partition_changed(self, tp: TopicPartition) -> None:
        """Leadership of ``tp`` changed, or it was removed: parked fetches answer now."""
        for fetch in self.purgatory.wake_partition(tp):
            self._complete(fetch)
        for fetch in self.replica_purgatory.wake_partition(tp):
            self._complete(fetch)

    def connection_closed(self, conn: ClientConnection) -> None:
        for fetch in self._by_conn.pop(conn, ()):
            self._purgatory_of(fetch).cancel(fetch)

    def _complete(self, fetch: PendingFetch, *, final: bool = True) -> None:
        """Answer a fetch taken out of the purgatory. Woken by new bytes (not ``final``),
        it parks again if they were not past its offsets and it still lacks min_bytes."""
        waiting = self._by_conn.get(fetch.conn)
        if waiting is not None:
            waiting.discard(fetch)
            if not waiting:
                del self._by_conn[fetch.conn]
        if fetch.conn.closed:
            return
        try:
            response, total, failed = self._read(fetch)
            if not final and not failed and total < fetch.min_bytes:
                self._park(fetch, fetch.min_bytes - total)
                return
        except Exception:
            # Never let one fetch break the task that completed it (committer, expiry).
            logger.exception("completing a parked fetch failed")
            fetch.conn.fail(fetch.xid, InternalServerError("internal error; see the broker log"))
            return
        fetch.conn.respond(fetch.xid, response)

    async def run_expiry(self) -> None:
        """The one task that answers parked fetches at their deadline."""
        while True:
            deadline = self._next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._rearm.park()
            now = trio.current_time()
            for purgatory in (self.purgatory, self.replica_purgatory):
                for fetch in purgatory.expire(now):
                    self._complete(fetch)

    def shutdown(self) -> None:
        """Answer every parked fetch now (with whatever is there)."""
        for purgatory in (self.purgatory, self.replica_purgatory):
            for fetch in purgatory.wake_all():
                self._complete(fetch)
