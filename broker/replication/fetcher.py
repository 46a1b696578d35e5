"""Followers pull from leaders (the trio shell): one fetcher task per leader broker.

For every partition this broker follows, the replica manager calls ``follow``
with the leader and leader epoch of the partition state. Partitions are grouped
by leader; each group has one task with one connection to that leader, which
loops:

1. **truncate** every partition that just started following this leader (or
   this epoch): ask OFFSET_FOR_LEADER_EPOCH for the end of our latest epoch in
   the leader's log and cut our log where they diverge
   (broker.replication.epochs.truncation; another round when the leader's
   answer names an epoch we do not have);
2. **fetch** every other partition in one FETCH (``replica_id`` = our id,
   ``current_leader_epoch`` = the epoch we follow, from our log end, long-poll
   ``replica_fetch_wait_max_ms``), append what comes back byte for byte
   (``append_as_follower``: offsets and leader epochs as the leader wrote
   them) and take the leader's high watermark (capped at our log end). The
   next fetch, at our new log end, is what tells the leader we have it.

Errors are per partition and decided by the partition's ``FollowerState``
(broker.replication.follower_state): a leader that no longer leads, or an epoch
that does not match, parks the partition until the metadata brings a new state
(it retries after ``replica_fetch_backoff_ms`` in case the news is slow); an
offset out of range either restarts the log at the leader's log start (we are
behind its retention) or goes back to truncation (we diverged). A lost
connection is re-opened after the backoff, to wherever the leader's current
registration points.

Large appends and every truncation run in a worker thread under the replica
manager's lock, so that a partition cannot change role half-way through.
Follower logs are fsynced in the background every ``flush_interval_ms``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import trio

from broker.config import BrokerConfig
from broker.log import InvalidOffsets, LogClosed, LogError
from broker.metadata_cache import MetadataCache
from broker.partition import Partition
from broker.replication.epochs import truncation
from broker.replication.follower_state import FollowerState, Next, Phase
from client.protocol import EARLIEST_TIMESTAMP, ERRORS, ApiKey
from client.records import CorruptRecordError
from client.wire import ConnectionLostError, RpcChannel, ServerError

logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
INLINE_APPEND_BYTES = 1024 * 1024
REQUEST_SLACK_SECONDS = 10.0


@dataclass(eq=False, slots=True)
class FollowTarget:
    """One followed partition and its follower state."""

    partition: Partition
    state: FollowerState

    @property
    def leader(self) -> int:
        return self.state.leader


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class FetcherManager:
    """Every followed partition, and one ``LeaderFetcher`` task per leader."""

    def __init__(
        self,
        config: BrokerConfig,
        cache: MetadataCache,
        lock: trio.Lock,
    ) -> None:
        self.config = config
        self.me = config.broker_id
        self.cache = cache
        self.lock = lock
        self.targets: dict[TopicPartition, FollowTarget] = {}
        self.fetchers: dict[int, LeaderFetcher] = {}
        self._generation = 0
        self._nursery: trio.Nursery | None = None
        self._stopped = False
        self.backoff = config.replica_fetch_backoff_ms / 1000.0

    # ------------------------------------------------------------ assignment (sync)

    def follow(self, partition: Partition, leader: int, leader_epoch: int) -> None:
        """Follow ``leader`` at ``leader_epoch`` (no-op if that is what we do already)."""
        current = self.targets.get(partition.key)
        if (
            current is not None
            and current.partition is partition
            and current.state.leader == leader
            and current.state.leader_epoch == leader_epoch
        ):
            return
        self._generation += 1
        target = FollowTarget(partition, FollowerState(leader, leader_epoch, self._generation))
        self.targets[partition.key] = target
        logger.info("%s: following broker %d at leader epoch %d", partition, leader, leader_epoch)
        if not self._stopped:
            self._ensure_fetcher(leader)

    def unfollow(self, tp: TopicPartition) -> None:
        self.targets.pop(tp, None)

    def stop(self) -> None:
        """Stop fetching altogether (controlled shutdown: we must not rejoin any ISR)."""
        self._stopped = True
        for fetcher in list(self.fetchers.values()):
            fetcher.cancel()

    def of_leader(self, leader: int) -> list[FollowTarget]:
        return [t for t in self.targets.values() if t.leader == leader]

    def current(self, target: FollowTarget) -> bool:
        """Whether ``target`` is still what we follow (no newer assignment replaced it)."""
        return self.targets.get(target.partition.key) is target and not self._stopped

    def _ensure_fetcher(self, leader: int) -> None:
        if leader in self.fetchers or self._nursery is None:
            return
        fetcher = LeaderFetcher(self, leader)
        self.fetchers[leader] = fetcher
        self._nursery.start_soon(fetcher.run)

    def fetcher_done(self, fetcher: LeaderFetcher) -> None:
        if self.fetchers.get(fetcher.leader) is fetcher:
            del self.fetchers[fetcher.leader]
        if not self._stopped and self.of_leader(fetcher.leader):
            self._ensure_fetcher(fetcher.leader)

    # ------------------------------------------------------------ tasks

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for leader in {t.leader for t in self.targets.values()}:
                if not self._stopped:
                    self._ensure_fetcher(leader)
            nursery.start_soon(self._flush_followers)
            await trio.sleep_forever()

    async def _flush_followers(self) -> None:
        """fsync follower logs now and then (the committer only flushes led partitions)."""
        interval = self.config.flush_interval_ms / 1000.0
        while True:
            await trio.sleep(interval)
            dirty = [t.partition for t in self.targets.values() if t.state.dirty]
            for t in self.targets.values():
                t.state.dirty = False
            if dirty:
                await trio.to_thread.run_sync(_flush_logs, dirty)


def _flush_logs(partitions: list[Partition]) -> None:
    for p in partitions:
        try:
            p.log.flush()
        except LogClosed:
            continue
        except OSError as exc:
            logger.error("%s: fsync of the follower log failed: %s", p, exc)


class LeaderFetcher:
    """The task fetching every partition this broker follows from one leader."""

    def __init__(self, manager: FetcherManager, leader: int) -> None:
        self.manager = manager
        self.leader = leader
        self.scope = trio.CancelScope()
        self.channel: RpcChannel | None = None
        self.address = ""

    def cancel(self) -> None:
        self.scope.cancel()

    async def run(self) -> None:
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    await self._loop(nursery)
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._close()
            self.manager.fetcher_done(self)

    async def _loop(self, nursery: trio.Nursery) -> None:
        manager = self.manager
        while True:
            targets = manager.of_leader(self.leader)
            if not targets:
                return
            disconnected = self.channel is None or not self.channel.is_open
            if disconnected and not await self._connect(nursery):
                await trio.sleep(manager.backoff)
                continue
            now = trio.current_time()
            ready = [t for t in targets if t.state.ready(now)]
            if not ready:
                await trio.sleep(max(0.0, min(t.state.retry_at for t in targets) - now))
                continue
            truncating = [t for t in ready if t.state.phase is Phase.TRUNCATING]
            try:
                if truncating:
                    await self._truncate(truncating)
                else:
                    await self._fetch(ready)
            except (ConnectionLostError, trio.TooSlowError) as exc:
                logger.info("replica fetcher for broker %d: %s; reconnecting", self.leader, exc)
                await self._close()
                await trio.sleep(manager.backoff)
            except ServerError as exc:
                # The whole request was refused (e.g. the leader is an older version).
                logger.warning("replica fetcher for broker %d: %s", self.leader, exc)
                await trio.sleep(manager.backoff)
            except (KeyError, TypeError, ValueError) as exc:
                logger.warning(
                    "replica fetcher for broker %d: malformed answer: %r", self.leader, exc
                )
                await self._close()
                await trio.sleep(manager.backoff)

    # ------------------------------------------------------------ connection

    async def _connect(self, nursery: trio.Nursery) -> bool:
        info = self.manager.cache.brokers.get(self.leader)
        if info is None:
            return False
        host, port = info.registration.host, info.registration.port
        try:
            with trio.fail_after(self.manager.backoff * 10 + 1):
                stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as exc:
            logger.debug("cannot reach leader %d at %s:%d: %s", self.leader, host, port, exc)
            return False
        self.channel = RpcChannel(stream, ERRORS, max_frame=self.manager.config.max_request_bytes)
        self.address = f"{host}:{port}"
        nursery.start_soon(self.channel.run)
        return True

    async def _close(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            await channel.aclose()

    async def _call(self, api: int, payload: Any, timeout: float) -> Any:
        channel = self.channel
        if channel is None:
            raise ConnectionLostError("not connected")
        with trio.fail_after(timeout):
            return await channel.call(api, 0, payload)

    # ------------------------------------------------------------ truncation

    async def _truncate(self, targets: list[FollowTarget]) -> None:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        asked: dict[TopicPartition, tuple[FollowTarget, int]] = {}
        for t in targets:
            p = t.partition
            requested = p.log.latest_epoch
            asked[p.key] = (t, requested)
            by_topic.setdefault(p.topic, []).append(
                {
                    "partition": p.partition,
                    "current_leader_epoch": t.state.leader_epoch,
                    "leader_epoch": requested,
                }
            )
        payload = {
            "replica_id": self.manager.me,
            "topics": [{"topic": name, "partitions": parts} for name, parts in by_topic.items()],
        }
        response = await self._call(ApiKey.OFFSET_FOR_LEADER_EPOCH, payload, REQUEST_SLACK_SECONDS)
        for entry_topic in response.get("topics") or ():
            name = entry_topic.get("topic")
            for entry in entry_topic.get("partitions") or ():
                found = asked.pop((name, entry.get("partition")), None)
                if found is None:
                    continue
                target, requested = found
                code = int(entry.get("error_code", 0) or 0)
                if code:
                    self._partition_error(target, code, entry.get("error_message"))
                    continue
                answer = (int(entry["leader_epoch"]), int(entry["end_offset"]))
                await self._apply_truncation(target, requested, answer)
        for target, _ in asked.values():
            target.state.back_off(trio.current_time(), self.manager.backoff)

    async def _apply_truncation(
        self, target: FollowTarget, requested: int, answer: tuple[int, int]
    ) -> None:
        manager = self.manager
        async with manager.lock:
            if not manager.current(target) or requested != target.partition.log.latest_epoch:
                return
            partition = target.partition
            log = partition.log
            decision = truncation(
                log.log_start_offset,
                log.log_end_offset,
                requested,
                answer,
                log.end_offset_for_epoch,
            )
            if decision.offset < log.log_end_offset:
                logger.info(
                    "%s: truncating from %d to %d (leader %d at epoch %d answered %s for our "
                    "epoch %d)",
                    partition,
                    log.log_end_offset,
                    decision.offset,
                    target.state.leader,
                    target.state.leader_epoch,
                    answer,
                    requested,
                )
                try:
                    await trio.to_thread.run_sync(log.truncate_to, decision.offset)
                except (OSError, LogError) as exc:
                    self._storage_failure(target, exc)
                    return
                partition.reset_visibility()
            target.state.truncated(decision.complete)

    # ------------------------------------------------------------ fetching

    async def _fetch(self, targets: list[FollowTarget]) -> None:
        config = self.manager.config
        by_topic: dict[str, list[dict[str, Any]]] = {}
        sent: dict[TopicPartition, FollowTarget] = {}
        for t in targets:
            p = t.partition
            sent[p.key] = t
            by_topic.setdefault(p.topic, []).append(
                {
                    "partition": p.partition,
                    "fetch_offset": p.log.log_end_offset,
                    "partition_max_bytes": config.replica_fetch_max_bytes,
                    "current_leader_epoch": t.state.leader_epoch,
                }
            )
        wait_ms = config.replica_fetch_wait_max_ms
        payload = {
            "replica_id": self.manager.me,
            "max_wait_ms": wait_ms,
            "min_bytes": 1,
            "max_bytes": config.replica_fetch_response_max_bytes,
            "topics": [{"topic": name, "partitions": parts} for name, parts in by_topic.items()],
        }
        response = await self._call(ApiKey.FETCH, payload, wait_ms / 1000.0 + REQUEST_SLACK_SECONDS)
        for entry_topic in response.get("topics") or ():
            name = entry_topic.get("topic")
            for entry in entry_topic.get("partitions") or ():
                target = sent.get((name, entry.get("partition")))
                if target is None or not self.manager.current(target):
                    continue
                code = int(entry.get("error_code", 0) or 0)
                if code:
                    next_step = self._partition_error(target, code, entry.get("error_message"))
                    if next_step is Next.FIND_LOG_START:
                        await self._out_of_range(target)
                    continue
                await self._append(target, entry)

    async def _append(self, target: FollowTarget, entry: dict[str, Any]) -> None:
        partition = target.partition
        log = partition.log
        records = entry.get("records") or b""
        if records:
            if not isinstance(records, bytes):
                return
            try:
                if len(records) <= INLINE_APPEND_BYTES:
                    result = log.append_as_follower(records, _now_ms())
                else:
                    async with self.manager.lock:
                        if not self.manager.current(target):
                            return
                        result = await trio.to_thread.run_sync(
                            log.append_as_follower, records, _now_ms()
                        )
            except InvalidOffsets as exc:
                logger.warning("%s: %s; truncating again", partition, exc)
                target.state.append_rejected()
                return
            except (CorruptRecordError, LogError) as exc:
                logger.warning("%s: bad data from leader %d: %s", partition, target.leader, exc)
                target.state.back_off(trio.current_time(), self.manager.backoff)
                return
            except OSError as exc:
                self._storage_failure(target, exc)
                return
            if result is not None:
                partition.note_appended(result.last_offset + 1, len(records))
                target.state.dirty = True
        hw = entry.get("high_watermark")
        if type(hw) is int and hw >= 0:
            partition.follow_high_watermark(hw)

    async def _out_of_range(self, target: FollowTarget) -> None:
        """Our fetch offset is outside the leader's log: behind its start, or ahead of it."""
        partition = target.partition
        wanted = {"partition": partition.partition, "timestamp": EARLIEST_TIMESTAMP}
        payload = {
            "replica_id": self.manager.me,
            "topics": [{"topic": partition.topic, "partitions": [wanted]}],
        }
        response = await self._call(ApiKey.LIST_OFFSETS, payload, REQUEST_SLACK_SECONDS)
        start = -1
        for t in response.get("topics") or ():
            for entry in t.get("partitions") or ():
                if entry.get("partition") == partition.partition and not entry.get("error_code"):
                    start = int(entry.get("offset", -1))
        manager = self.manager
        async with manager.lock:
            if not manager.current(target):
                return
            log = partition.log
            now = trio.current_time()
            if target.state.log_start_found(start, log.log_end_offset, now, manager.backoff):
                logger.info(
                    "%s: behind the leader's log start %d; starting over there", partition, start
                )
                try:
                    await trio.to_thread.run_sync(log.truncate_fully_and_start_at, start)
                except (OSError, LogError) as exc:
                    self._storage_failure(target, exc)
                    return
                partition.reset_visibility()

    # ------------------------------------------------------------ errors

    def _partition_error(self, target: FollowTarget, code: int, message: Any) -> Next:
        error: ServerError = ERRORS.exception(code, str(message or ""))
        logger.debug("%s: request to leader %d failed: %s", target.partition, target.leader, error)
        return target.state.fetch_failed(code, trio.current_time(), self.manager.backoff)

    def _storage_failure(self, target: FollowTarget, exc: BaseException) -> None:
        partition = target.partition
        logger.error("%s: follower write failed, taking the partition offline: %s", partition, exc)
        partition.failed = True
        self.manager.unfollow(partition.key)
