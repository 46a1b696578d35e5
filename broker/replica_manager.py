"""The partitions this broker hosts: opening, configuring, leading, following, closing
and deleting them.

It follows the metadata cache: a partition whose replicas include this broker
gets its log opened (recovery runs in a worker thread); its topic's config and
its state (leader, leader epoch, ISR) are applied as they change; a partition
that is no longer assigned here, or whose topic was deleted (or deleted and
re-created: the topic id differs), is closed and its directory removed. At
start-up, directories of partitions the cluster no longer assigns here are
removed the same way.

Leading and following (broker.replication): when the state names this broker
leader at a new leader epoch, the partition gets a fresh ``LeaderState`` (ISR
and high watermark), stops being fetched and starts answering producers; when
it names another broker, the partition is handed to the replica fetchers, which
truncate it by leader epoch and pull from that leader. Whatever waited on the
old role (acks=all produces, parked fetches) is answered at once.

A broker leads only on a state written after it registered (the controller
re-elects or replaces a leader that restarted), and acknowledges writes only
while its coordinator session is certainly alive (the lease,
broker.replication.lease). After the session is *lost* it
also gives up every leadership it held and accepts leadership again only at a
newer leader epoch — the controller bumps the epoch of every partition whose
leader lost its registration, so a leader from before the loss can never come
back to life with a stale view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import trio

from broker.committer import Committer
from broker.config import BrokerConfig
from broker.data_dir import DataDir, mark_deleted, read_topic_id, remove, write_topic_id
from broker.log import FileCache, Log, LogError
from broker.metadata_cache import MetadataCache, TopicInfo
from broker.partition import NO_LEADER, Partition
from broker.replication.admin_znodes import AdminRequests
from broker.replication.fetcher import FetcherManager
from broker.replication.hw_checkpoint import read_high_watermarks, write_high_watermarks
from broker.replication.isr_writer import IsrWriter
from broker.replication.leader_state import LeaderState
from broker.replication.lease import RENEWALS_PER_TIMEOUT, LeaseKeeper, SessionLease
from broker.replication.produce_acks import ProduceAcks
from broker.topic_config import TopicSettings, settings
from broker.znodes import broker_path
from client.protocol import (
    LeaderNotAvailableError,
    NotLeaderOrFollowerError,
    UnknownTopicOrPartitionError,
)
from client.records import CorruptRecordError
from coordinator.client import AsyncCoordinatorClient, ConnectionState

logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
PartitionChangeListener = Callable[[TopicPartition], None]
VisibleListener = Callable[[TopicPartition, int], None]


@dataclass(frozen=True, slots=True)
class _OpenSpec:
    topic: str
    partition: int
    topic_id: str
    settings: TopicSettings


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReplicaManager:
    def __init__(
        self,
        config: BrokerConfig,
        data_dir: DataDir,
        cache: MetadataCache,
        committer: Committer,
        on_partition_change: PartitionChangeListener,
        *,
        zk: AsyncCoordinatorClient | None = None,
        requests: AdminRequests | None = None,
    ) -> None:
        self.config = config
        self.broker_id = config.broker_id
        self.data_dir = data_dir
        self.cache = cache
        self.committer = committer
        self.on_partition_change = on_partition_change
        self.zk = zk
        self.requests = requests if requests is not None else AdminRequests()
        self.file_cache = FileCache(config.max_open_files)
        self.partitions: dict[TopicPartition, Partition] = {}
        self._by_topic: dict[str, dict[int, Partition]] = {}
        self._closed = False
        # start/apply/close and the fetchers' truncations run one at a time (they await
        # worker threads midway).
        self.lock = trio.Lock()
        self.lease = SessionLease(config.session_timeout_ms / 1000.0)
        self.acks = ProduceAcks(self.lease_valid)
        self.fetchers = FetcherManager(config, cache, self.lock)
        self.isr: IsrWriter | None = (
            None
            if zk is None
            else IsrWriter(
                zk,
                self.broker_id,
                config.replica_lag_time_max_ms,
                self._led,
                self._isr_eligible,
                self._visible,
                self._controller_epoch_of,
            )
        )
        self._lease_keeper: LeaseKeeper | None = (
            None
            if zk is None
            else LeaseKeeper(
                zk,
                broker_path(self.broker_id),
                self.lease,
                config.session_timeout_ms / 1000.0 / RENEWALS_PER_TIMEOUT,
            )
        )
        # Hooks set by the request handlers (fetch purgatory wake-ups).
        self.append_listeners: list[PartitionChangeListener] = []
        self.visible_listeners: list[VisibleListener] = []
        # After a lost session, leadership is only accepted above these epochs.
        self._fenced_epochs: dict[TopicPartition, int] = {}
        self._appended: dict[Partition, None] = {}
        self._append_wake = trio.lowlevel.ParkingLot()
        self._checkpointed: dict[TopicPartition, int] = {}
        self._stopping = False

    # ------------------------------------------------------------ lookups

    def leader(self, topic: str, partition: int) -> Partition:
        """The partition if this broker leads it, else the error a client should see."""
        p = self.partitions.get((topic, partition))
        if p is not None:
            p.check_leader()
            return p
        info = self.cache.topic(topic)
        if info is None or partition not in info.assignment.partitions:
            raise UnknownTopicOrPartitionError(f"no partition {topic}-{partition}")
        if info.leader(partition) < 0:
            raise LeaderNotAvailableError(f"{topic}-{partition} has no leader right now")
        raise NotLeaderOrFollowerError(
            f"broker {self.broker_id} does not lead {topic}-{partition}; refresh metadata"
        )

    def leader_for_write(self, topic: str, partition: int) -> Partition:
        """As ``leader``, and only while the leadership lease holds (see the module doc)."""
        p = self.leader(topic, partition)
        if not self.lease_valid():
            raise NotLeaderOrFollowerError(
                f"broker {self.broker_id} cannot confirm its coordinator session; "
                f"not accepting writes to {topic}-{partition} now"
            )
        return p

    def lease_valid(self) -> bool:
        return self._lease_keeper is None or self.lease.valid(trio.current_time())

    def hosted(self) -> Iterable[Partition]:
        return list(self.partitions.values())

    def _led(self) -> list[Partition]:
        return [p for p in self.partitions.values() if p.is_leader]

    def _isr_eligible(self) -> set[int]:
        """Brokers that may join an ISR: registered and not stopping."""
        return self.cache.live_brokers() - self.requests.shutting_down

    def _controller_epoch_of(self, partition: Partition) -> int:
        info = self.cache.partition(partition.topic, partition.partition)
        return 0 if info is None else info.state.controller_epoch

    # ------------------------------------------------------------ partition listener

    def appended(self, partition: Partition) -> None:
        """A leader append: wake followers' parked fetches (soon, once per burst)."""
        if not self._appended:
            self._append_wake.unpark_all()
        self._appended[partition] = None

    def high_watermark_moved(self, partition: Partition) -> None:
        self.acks.high_watermark_moved(partition)

    def when_committed(self, partitions: list[Partition], release: Callable[[], None]) -> bool:
        """Call ``release`` once everything appended so far to ``partitions`` is committed
        (below the high watermark: on every ISR member and, with group commit, fsynced
        by this leader) or a partition stopped being led here. False if everything is
        committed already (``release`` is not called)."""
        return self.acks.when_committed(partitions, release)

    def saw_newer_epoch(self, partition: Partition, epoch: int) -> None:
        """A follower knows a newer leader epoch than this leader: our view is stale, so
        stop leading at once (the watch brings the new state)."""
        if not partition.is_leader or epoch <= partition.leader_epoch:
            return
        tp = partition.key
        logger.warning(
            "%s: a replica follows leader epoch %d > ours (%d); stepping down",
            tp,
            epoch,
            partition.leader_epoch,
        )
        self._step_down(partition)

    def _visible(self, partition: Partition, nbytes: int) -> None:
        for listener in self.visible_listeners:
            listener(partition.key, nbytes)

    def follower_fetched(self, partition: Partition, replica: int, fetch_offset: int) -> int:
        """A follower's FETCH reached the leader ``partition``: returns the bytes that
        became visible; asks for an ISR change when the follower caught up."""
        gained = partition.follower_fetched(replica, fetch_offset, _now_ms())
        state = partition.leader_state
        if (
            self.isr is not None
            and state is not None
            and state.pending is None
            and replica not in state.isr
            and state.caught_up(replica)
        ):
            self.isr.kick(partition)
        return gained

    async def _notify_appends(self) -> None:
        while True:
            if not self._appended:
                await self._append_wake.park()
            batch, self._appended = self._appended, {}
            for partition in batch:
                for listener in self.append_listeners:
                    listener(partition.key)
            await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------ following metadata

    async def start(self) -> None:
        """Remove stray directories, then open every partition assigned here."""
        async with self.lock:
            await self._start()

    async def _start(self) -> None:
        strays: list[Path] = list(self.data_dir.deleted_dirs())
        for d in self.data_dir.partition_dirs():
            topic = self.cache.topic(d.topic)
            if topic is None or self.broker_id not in topic.replicas(d.partition):
                logger.info("%s is not assigned to this broker; deleting it", d.path)
                strays.append(mark_deleted(d.path))
                continue
            recorded = read_topic_id(d.path)
            if recorded is not None and topic.topic_id and recorded != topic.topic_id:
                logger.info("%s belongs to an earlier topic %s; deleting it", d.path, d.topic)
                strays.append(mark_deleted(d.path))
        if strays:
            await trio.to_thread.run_sync(_remove_all, strays)
        self._checkpointed = await trio.to_thread.run_sync(
            read_high_watermarks, str(self.data_dir.path)
        )
        if self._lease_keeper is not None:
            if self.zk is not None and self.zk.session_timeout > 0:
                self.lease.set_timeout(self.zk.session_timeout)
            await self._lease_keeper.renew_once()
        await self._apply(set(self.cache.topics))

    async def apply(self, topics: Iterable[str]) -> None:
        """Bring the hosted partitions of ``topics`` in line with the cache."""
        async with self.lock:
            await self._apply(topics)

    async def _apply(self, topics: Iterable[str]) -> None:
        to_open: list[_OpenSpec] = []
        to_delete: list[Partition] = []
        for name in topics:
            info = self.cache.topic(name)
            hosted = self._by_topic.get(name, {})
            if info is None:
                to_delete.extend(hosted.values())
                continue
            mine = {
                p
                for p, replicas in info.assignment.partitions.items()
                if self.broker_id in replicas
            }
            topic_settings = settings(info.config, self.config)
            for p, partition in hosted.items():
                if p not in mine or partition.topic_id != info.topic_id:
                    to_delete.append(partition)
            for p in sorted(mine):
                current = hosted.get(p)
                if current is None or current.topic_id != info.topic_id:
                    to_open.append(_OpenSpec(name, p, info.topic_id, topic_settings))
                else:
                    self._configure(current, topic_settings)
                    self._follow_state(current, info)
        for partition in to_delete:
            self._detach(partition)
        if to_delete:
            await trio.to_thread.run_sync(_delete_logs, [p.log for p in to_delete])
        if to_open and not self._closed:
            opened = await trio.to_thread.run_sync(
                _open_logs,
                str(self.data_dir.path),
                to_open,
                self.file_cache,
                dict(self._checkpointed),
            )
            for spec, log in opened:
                info = self.cache.topic(spec.topic)
                if self._closed or info is None or info.topic_id != spec.topic_id:
                    # Deleted while it was opening; the next apply() removes it.
                    await trio.to_thread.run_sync(log.close)
                    continue
                partition = Partition(spec.topic, spec.partition, spec.topic_id, log, spec.settings)
                partition.listener = self
                self.partitions[partition.key] = partition
                self._by_topic.setdefault(spec.topic, {})[spec.partition] = partition
                self._follow_state(partition, info)

    def _configure(self, partition: Partition, topic_settings: TopicSettings) -> None:
        if partition.settings != topic_settings:
            partition.settings = topic_settings
            partition.log.config = topic_settings.log_config()

    def _follow_state(self, partition: Partition, info: TopicInfo) -> None:
        """Apply the partition's state znode: lead, follow, or wait for a leader."""
        tp = partition.key
        replicas = info.replicas(partition.partition)
        partition.replicas = list(replicas)
        pinfo = info.states.get(partition.partition)
        if pinfo is None:
            self._become_follower(partition, NO_LEADER, -1)
            return
        state = pinfo.state
        if pinfo.version < partition.state_version and state.leader_epoch <= partition.leader_epoch:
            return  # an older read than what we applied already
        newer = pinfo.version > partition.state_version
        partition.state_version = max(partition.state_version, pinfo.version)
        fenced = state.leader_epoch <= self._fenced_epochs.get(tp, -1)
        # Lead only on a state written after this broker registered: a state from
        # before names the previous process (or session), which the controller replaces.
        me = self.cache.brokers.get(self.broker_id)
        current = me is not None and pinfo.mzxid > me.czxid
        if state.leader == self.broker_id and current and not fenced and not partition.failed:
            if partition.is_leader and partition.leader_epoch == state.leader_epoch:
                leader_state = partition.leader_state
                if leader_state is not None:
                    leader_state.set_replicas(replicas, _now_ms())
                if newer:
                    partition.isr = list(state.isr)
                    if leader_state is not None:
                        leader_state.isr_from_state(state.isr)
                        gained = partition.leader_state_moved()
                        if gained:
                            self._visible(partition, gained)
                return
            self._become_leader(partition, state.leader_epoch, list(state.isr))
            return
        leader = NO_LEADER if state.leader == self.broker_id else state.leader
        partition.isr = list(state.isr)
        self._become_follower(partition, leader, state.leader_epoch)

    def _become_leader(self, partition: Partition, epoch: int, isr: list[int]) -> None:
        tp = partition.key
        was_leader = partition.is_leader
        self.fetchers.unfollow(tp)
        if was_leader:
            self.acks.leadership_changed(tp)
        log = partition.log
        group_commit = self.committer.group_commit
        partition.leader_state = LeaderState(
            self.broker_id,
            partition.replicas,
            isr,
            leader_epoch=epoch,
            epoch_start_offset=log.log_end_offset,
            high_watermark=log.high_watermark,
            leader_offset=log.recovery_point if group_commit else log.log_end_offset,
            now_ms=_now_ms(),
            lag_max_ms=self.config.replica_lag_time_max_ms,
        )
        partition.is_leader = True
        partition.leader = self.broker_id
        partition.leader_epoch = epoch
        partition.isr = list(isr)
        logger.info("leading %s at leader epoch %d (isr %s)", partition, epoch, isr)
        # Make the log durable as leader (a follower's appends are not fsynced at once):
        # the high watermark moves from the committer's report.
        self.committer.appended(partition)
        gained = partition.leader_state_moved()
        if gained:
            self._visible(partition, gained)
        self.on_partition_change(tp)

    def _become_follower(self, partition: Partition, leader: int, epoch: int) -> None:
        tp = partition.key
        changed = (
            partition.is_leader or partition.leader != leader or partition.leader_epoch != epoch
        )
        was_leader = partition.is_leader
        partition.is_leader = False
        partition.leader_state = None
        partition.leader = leader
        partition.leader_epoch = epoch
        if was_leader:
            self.acks.leadership_changed(tp)
        if leader == NO_LEADER or partition.failed or self._stopping:
            self.fetchers.unfollow(tp)
        else:
            self.fetchers.follow(partition, leader, epoch)
        if changed:
            self.on_partition_change(tp)

    def _detach(self, partition: Partition) -> None:
        key = partition.key
        if self.partitions.get(key) is partition:
            del self.partitions[key]
        by_topic = self._by_topic.get(partition.topic)
        if by_topic is not None and by_topic.get(partition.partition) is partition:
            del by_topic[partition.partition]
            if not by_topic:
                del self._by_topic[partition.topic]
        was_leader = partition.is_leader
        partition.is_leader = False
        partition.leader_state = None
        self.fetchers.unfollow(key)
        if was_leader:
            self.acks.leadership_changed(key)
        self.committer.forget(partition)
        self.on_partition_change(key)
        logger.info("removing %s", partition)

    # ------------------------------------------------------------ the coordinator session

    def session_state(self, state: ConnectionState) -> None:
        """The coordinator session's state changed (see the module doc)."""
        now = trio.current_time()
        if state is ConnectionState.SUSPENDED:
            self.lease.suspend(now)
        elif state is ConnectionState.LOST:
            self.lease.suspend(now)
            self._give_up_leadership()
        elif self._lease_keeper is not None:
            if self.zk is not None and self.zk.session_timeout > 0:
                self.lease.set_timeout(self.zk.session_timeout)
            self._lease_keeper.kick()

    def _give_up_leadership(self) -> None:
        for partition in list(self.partitions.values()):
            if partition.is_leader:
                logger.warning(
                    "%s: coordinator session lost; giving up leadership at epoch %d",
                    partition,
                    partition.leader_epoch,
                )
                self._step_down(partition)

    def _step_down(self, partition: Partition) -> None:
        """Stop leading until a state with a newer leader epoch names us again."""
        tp = partition.key
        self._fenced_epochs[tp] = max(self._fenced_epochs.get(tp, -1), partition.leader_epoch)
        partition.is_leader = False
        partition.leader_state = None
        partition.leader = NO_LEADER
        self.acks.leadership_changed(tp)
        self.on_partition_change(tp)

    # ------------------------------------------------------------ tasks

    async def run(self) -> None:
        """The replication tasks (fetchers, ISR changes, acks, lease, checkpoints)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.fetchers.run)
            nursery.start_soon(self.acks.run_expiry)
            nursery.start_soon(self._notify_appends)
            nursery.start_soon(self._checkpoint_loop)
            if self.isr is not None:
                nursery.start_soon(self.isr.run)
            if self._lease_keeper is not None:
                nursery.start_soon(self._lease_keeper.run)

    async def _checkpoint_loop(self) -> None:
        interval = self.config.replica_high_watermark_checkpoint_interval_ms / 1000.0
        while True:
            await trio.sleep(interval)
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        marks = {p.key: p.high_watermark for p in self.partitions.values() if not p.failed}
        if marks == self._checkpointed:
            return
        try:
            await trio.to_thread.run_sync(write_high_watermarks, str(self.data_dir.path), marks)
        except OSError as exc:
            logger.error("cannot write the high-watermark checkpoint: %s", exc)
            return
        self._checkpointed = marks

    # ------------------------------------------------------------ controlled shutdown

    def stop_following(self) -> None:
        """Controlled shutdown: stop fetching so that no ISR takes this broker back."""
        self._stopping = True
        self.fetchers.stop()

    def leads_movable(self) -> list[Partition]:
        """Partitions this broker leads that another in-sync replica could take over."""
        live = self.cache.live_brokers() - self.requests.shutting_down
        return [
            p
            for p in self.partitions.values()
            if p.is_leader and any(r != self.broker_id and r in live for r in p.isr)
        ]

    # ------------------------------------------------------------ maintenance

    async def maintain(self) -> None:
        """Retention and compaction over every hosted partition (one worker-thread pass)."""
        logs = [p.log for p in self.partitions.values()]
        if logs:
            await trio.to_thread.run_sync(_maintain, logs, _now_ms())

    async def close(self) -> None:
        """Clean shutdown: every log flushed and closed with its clean-shutdown marker."""
        async with self.lock:
            await self._close()

    async def _close(self) -> None:
        self._closed = True
        self.fetchers.stop()
        self.acks.shutdown()
        marks = {p.key: p.high_watermark for p in self.partitions.values() if not p.failed}
        logs = [p.log for p in self.partitions.values()]
        for p in self.partitions.values():
            p.is_leader = False
            p.leader_state = None
        self.partitions.clear()
        self._by_topic.clear()
        try:
            await trio.to_thread.run_sync(write_high_watermarks, str(self.data_dir.path), marks)
        except OSError as exc:
            logger.error("cannot write the high-watermark checkpoint: %s", exc)
        if logs:
            await trio.to_thread.run_sync(_close_logs, logs)


# ---------------------------------------------------------------- worker-thread bodies


def _open_logs(
    data_dir: str,
    specs: list[_OpenSpec],
    file_cache: FileCache,
    high_watermarks: dict[TopicPartition, int],
) -> list[tuple[_OpenSpec, Log]]:
    out: list[tuple[_OpenSpec, Log]] = []
    for spec in specs:
        try:
            log = Log.open(
                data_dir, spec.topic, spec.partition, spec.settings.log_config(), file_cache
            )
            write_topic_id(Path(log.dir), spec.topic_id)
            # Whatever recovery kept may sit in the page cache only: make it durable
            # (the recovery point moves to the log end) before it can become visible.
            log.active_segment.sync()
            log.flush()
            # Not everything in the log is committed: start from the last high watermark
            # known; the leader (maybe this broker) moves it on from there.
            log.high_watermark = high_watermarks.get((spec.topic, spec.partition), 0)
        except (OSError, LogError, CorruptRecordError) as exc:
            logger.error("cannot open %s-%d: %s", spec.topic, spec.partition, exc)
            continue
        out.append((spec, log))
    return out


def _delete_logs(logs: list[Log]) -> None:
    for log in logs:
        log.abandon()
        try:
            remove(mark_deleted(Path(log.dir)))
        except OSError as exc:
            logger.error("cannot delete %s: %s", log.dir, exc)


def _remove_all(directories: list[Path]) -> None:
    for d in directories:
        try:
            remove(d)
        except OSError as exc:
            logger.error("cannot delete %s: %s", d, exc)


def _close_logs(logs: list[Log]) -> None:
    for log in logs:
        try:
            log.close()
        except (OSError, LogError) as exc:
            logger.error("closing %s failed: %s", log.dir, exc)


def _maintain(logs: list[Log], now_ms: int) -> None:
    for log in logs:
        if log.closed:
            continue
        try:
            deleted = log.apply_retention(now_ms)
            if deleted:
                logger.info("%s: retention deleted %d segment(s)", log.dir, deleted)
            if log.config.compact:
                freed = log.compact(now_ms)
                if freed:
                    logger.info("%s: compaction freed %d bytes", log.dir, freed)
        except (OSError, LogError, CorruptRecordError) as exc:
            logger.error("%s: log maintenance failed: %s", log.dir, exc)
