"""The partitions this broker hosts: opening, configuring, leading, closing and deleting them.

It follows the metadata cache: a partition whose replicas include this broker
gets its log opened (recovery runs in a worker thread); its topic's config and
its state (leader, leader epoch, ISR) are applied as they change; a partition
that is no longer assigned here, or whose topic was deleted (or deleted and
re-created: the topic id differs), is closed and its directory removed. At
start-up, directories of partitions the cluster no longer assigns here are
removed the same way.
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
from broker.partition import Partition
from broker.topic_config import TopicSettings, settings
from client.protocol import (
    LeaderNotAvailableError,
    NotLeaderOrFollowerError,
    UnknownTopicOrPartitionError,
)
from client.records import CorruptRecordError

logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
PartitionListener = Callable[[TopicPartition], None]


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
        on_partition_change: PartitionListener,
    ) -> None:
        self.config = config
        self.broker_id = config.broker_id
        self.data_dir = data_dir
        self.cache = cache
        self.committer = committer
        self.on_partition_change = on_partition_change
        self.file_cache = FileCache(config.max_open_files)
        self.partitions: dict[TopicPartition, Partition] = {}
        self._by_topic: dict[str, dict[int, Partition]] = {}
        self._closed = False
        # start/apply/close run one at a time (they await worker threads midway).
        self._lock = trio.Lock()

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

    def hosted(self) -> Iterable[Partition]:
        return list(self.partitions.values())

    # ------------------------------------------------------------ following metadata

    async def start(self) -> None:
        """Remove stray directories, then open every partition assigned here."""
        async with self._lock:
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
        await self._apply(set(self.cache.topics))

    async def apply(self, topics: Iterable[str]) -> None:
        """Bring the hosted partitions of ``topics`` in line with the cache."""
        async with self._lock:
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
                _open_logs, str(self.data_dir.path), to_open, self.file_cache
            )
            for spec, log in opened:
                info = self.cache.topic(spec.topic)
                if self._closed or info is None or info.topic_id != spec.topic_id:
                    # Deleted while it was opening; the next apply() removes it.
                    await trio.to_thread.run_sync(log.close)
                    continue
                partition = Partition(spec.topic, spec.partition, spec.topic_id, log, spec.settings)
                self.partitions[partition.key] = partition
                self._by_topic.setdefault(spec.topic, {})[spec.partition] = partition
                self._follow_state(partition, info)

    def _configure(self, partition: Partition, topic_settings: TopicSettings) -> None:
        if partition.settings != topic_settings:
            partition.settings = topic_settings
            partition.log.config = topic_settings.log_config()

    def _follow_state(self, partition: Partition, info: TopicInfo) -> None:
        state = info.states.get(partition.partition)
        leads = state is not None and state.leader == self.broker_id
        epoch = state.leader_epoch if state is not None else -1
        isr = list(state.isr) if state is not None else []
        changed = partition.is_leader != leads or partition.leader_epoch != epoch
        partition.is_leader = leads
        partition.leader_epoch = epoch
        partition.isr = isr
        if changed:
            if leads:
                logger.info("leading %s at leader epoch %d", partition, epoch)
            self.on_partition_change(partition.key)

    def _detach(self, partition: Partition) -> None:
        key = partition.key
        if self.partitions.get(key) is partition:
            del self.partitions[key]
        by_topic = self._by_topic.get(partition.topic)
        if by_topic is not None and by_topic.get(partition.partition) is partition:
            del by_topic[partition.partition]
            if not by_topic:
                del self._by_topic[partition.topic]
        partition.is_leader = False
        self.committer.forget(partition)
        self.on_partition_change(key)
        logger.info("removing %s", partition)

    # ------------------------------------------------------------ maintenance

    async def maintain(self) -> None:
        """Retention and compaction over every hosted partition (one worker-thread pass)."""
        logs = [p.log for p in self.partitions.values()]
        if logs:
            await trio.to_thread.run_sync(_maintain, logs, _now_ms())

    async def close(self) -> None:
        """Clean shutdown: every log flushed and closed with its clean-shutdown marker."""
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        self._closed = True
        logs = [p.log for p in self.partitions.values()]
        for p in self.partitions.values():
            p.is_leader = False
        self.partitions.clear()
        self._by_topic.clear()
        if logs:
            await trio.to_thread.run_sync(_close_logs, logs)


# ---------------------------------------------------------------- worker-thread bodies


def _open_logs(
    data_dir: str, specs: list[_OpenSpec], file_cache: FileCache
) -> list[tuple[_OpenSpec, Log]]:
    out: list[tuple[_OpenSpec, Log]] = []
    for spec in specs:
        try:
            log = Log.open(
                data_dir, spec.topic, spec.partition, spec.settings.log_config(), file_cache
            )
            write_topic_id(Path(log.dir), spec.topic_id)
            # Whatever recovery kept may sit in the page cache only: make it durable
            # before it becomes visible below the high watermark.
            log.active_segment.sync()
            log.high_watermark = log.log_end_offset
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
