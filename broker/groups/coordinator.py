"""The group coordinator's trio shell: loading shards, writing their records, timers.

The coordinator of group g is the leader of ``__consumer_offsets`` partition
``group_partition(g, N)``. This broker runs one ``GroupShard`` (sans-IO) per
partition of that topic it leads:

- *loading*: when the replica manager reports that this broker became leader
  of such a partition, its log is read and replayed in a worker thread into a
  new shard; until that is done, requests for its groups get
  COORDINATOR_LOAD_IN_PROGRESS. Losing leadership drops the shard at once
  (NOT_COORDINATOR from then on).
- *writing*: a request runs inline in the connection's read loop — the shard
  decides, its records are appended to the partition right away, in order —
  and the response is sent once everything appended to the partition so far is
  durable (the committer's next fsync under the group-commit flush policy; at
  once under the interval policy, like an acks=all produce). A request that
  writes nothing but follows one that did waits for the same fsync, so nobody is
  told about a decision that could still be lost.
- *failure*: if an append or its fsync fails, the shard's memory is ahead of
  its log; it is dropped, waiting requests get COORDINATOR_NOT_AVAILABLE, and it
  is reloaded from the log if this broker still leads the partition.
- *timers*: one task sleeps until the earliest deadline of any shard (session
  and rebalance timeouts, the offset retention check) and writes what
  ``tick`` decides.

The ``__consumer_offsets`` topic is created on demand (the first
FIND_COORDINATOR or group request), compacted, with ``offsets_topic_num_partitions``
partitions.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from broker.committer import Committer
from broker.config import BrokerConfig
from broker.connection import ClientConnection
from broker.groups.partitioning import group_partition
from broker.groups.records import GroupRecord, RecordFormatError, decode, encode
from broker.groups.shard import GroupConfig, GroupShard
from broker.log import Log, LogError
from broker.metadata_cache import MetadataCache
from broker.partition import Partition
from broker.replica_manager import ReplicaManager
from broker.topic_admin import TopicAdmin
from client.protocol import (
    CONSUMER_OFFSETS_TOPIC,
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    NotCoordinatorError,
    TopicAlreadyExistsError,
)
from client.records import CorruptRecordError, Record, decode_batches, encode_batch
from client.wire import ServerError
from coordinator.errors import CoordinatorError

logger = logging.getLogger(__name__)

OFFSETS_TOPIC_SEGMENT_BYTES = 100 * 1024 * 1024
LOAD_READ_BYTES = 4 * 1024 * 1024
#: Records of one decision go in batches of at most this many bytes (well below the
#: default max.message.bytes), all appended together.
MAX_BATCH_BYTES = 512 * 1024


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def group_config(config: BrokerConfig) -> GroupConfig:
    return GroupConfig(
        session_timeout_ms=config.group_session_timeout_ms,
        heartbeat_interval_ms=config.group_heartbeat_interval_ms,
        offsets_retention_ms=config.offsets_retention_ms,
        offsets_retention_check_interval_ms=config.offsets_retention_check_interval_ms,
        offset_metadata_max_bytes=config.offset_metadata_max_bytes,
        max_size=config.group_max_size,
    )


def new_member_id() -> str:
    return uuid.uuid4().hex


def encode_records(records: list[GroupRecord], timestamp: int) -> list[bytes]:
    """The records as one or more batches (split only when one would be too large)."""
    batches: list[bytes] = []
    pending: list[Record] = []
    size = 0
    for record in records:
        key, value = encode(record)
        n = len(key) + (len(value) if value is not None else 0) + 16
        if pending and size + n > MAX_BATCH_BYTES:
            batches.append(encode_batch(pending))
            pending, size = [], 0
        pending.append(Record(timestamp, key, value))
        size += n
    if pending:
        batches.append(encode_batch(pending))
    return batches


def read_records(log: Log) -> Iterator[GroupRecord]:
    """Every record of an offsets partition, in offset order (worker thread).

    Records that do not decode are logged and skipped: one bad record must not make
    the groups of a whole partition unavailable."""
    offset = log.log_start_offset
    end = log.log_end_offset
    while offset < end:
        data = log.read(offset, LOAD_READ_BYTES, None)
        if not data:
            break
        for header, batch in decode_batches(data):
            for rec in batch:
                try:
                    yield decode(rec.key, rec.value)
                except RecordFormatError as exc:
                    logger.error(
                        "%s-%d offset %d: skipping a bad record: %s",
                        log.topic,
                        log.partition,
                        rec.offset,
                        exc,
                    )
            offset = max(offset, header.next_offset)


def build_shard(log: Log, index: int, config: GroupConfig) -> tuple[GroupShard, int]:
    """Replay a partition into a new shard (worker thread); the shard and its record count."""
    shard = GroupShard(index, config, new_member_id)
    n = 0
    for record in read_records(log):
        shard.replay(record)
        n += 1
    return shard, n


class TopicCounts(Mapping[str, int]):
    """Partition counts of the cluster's topics, read from the metadata cache."""

    def __init__(self, cache: MetadataCache) -> None:
        self.cache = cache

    def __getitem__(self, name: str) -> int:
        topic = self.cache.topics.get(name)
        if topic is None:
            raise KeyError(name)
        return topic.partition_count

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache.topics)

    def __len__(self) -> int:
        return len(self.cache.topics)


@dataclass(eq=False, slots=True)
class LoadedShard:
    index: int
    shard: GroupShard
    partition: Partition
    leader_epoch: int
    alive: bool = True
    loaded_records: int = 0


@dataclass(slots=True)
class _Loading:
    partition: Partition
    leader_epoch: int
    token: object = field(default_factory=object)


class GroupCoordinator:
    def __init__(
        self,
        config: BrokerConfig,
        replicas: ReplicaManager,
        committer: Committer,
        cache: MetadataCache,
        admin: TopicAdmin,
    ) -> None:
        self.config = config
        self.group_config = group_config(config)
        self.replicas = replicas
        self.committer = committer
        self.cache = cache
        self.admin = admin
        self.topics = TopicCounts(cache)
        self.shards: dict[int, LoadedShard] = {}
        self.loading: dict[int, _Loading] = {}
        self._nursery: trio.Nursery | None = None
        self._to_load: list[int] = []
        self._work = trio.Event()
        self._timer_wake = trio.Event()
        self._wake_at = math.inf
        self._creating = False

    # ------------------------------------------------------------ where groups live

    def partition_count(self) -> int:
        topic = self.cache.topic(CONSUMER_OFFSETS_TOPIC)
        if topic is not None and topic.partition_count > 0:
            return topic.partition_count
        return self.config.offsets_topic_num_partitions

    def partition_for(self, group_id: str) -> int:
        return group_partition(group_id, self.partition_count())

    def find(self, group_id: str) -> tuple[int, str, int]:
        """The coordinator of ``group_id``: (node id, host, port); raises when unknown."""
        topic = self.cache.topic(CONSUMER_OFFSETS_TOPIC)
        if topic is None:
            self.ensure_topic()
            raise CoordinatorNotAvailableError(f"creating {CONSUMER_OFFSETS_TOPIC}; retry shortly")
        index = self.partition_for(group_id)
        leader = topic.leader(index)
        broker = self.cache.brokers.get(leader)
        if leader < 0 or broker is None:
            raise CoordinatorNotAvailableError(
                f"{CONSUMER_OFFSETS_TOPIC}-{index} has no leader right now"
            )
        return leader, broker.registration.host, broker.registration.port

    def shard_for(self, group_id: str) -> LoadedShard:
        """The loaded shard coordinating ``group_id`` here; raises the error a client
        should see (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, ...)."""
        index = self.partition_for(group_id)
        loaded = self.shards.get(index)
        if loaded is not None:
            if loaded.partition.is_leader and not loaded.partition.failed:
                return loaded
            self._unload(index, "the partition is no longer led here")
        if index in self.loading:
            raise CoordinatorLoadInProgressError(
                f"loading {CONSUMER_OFFSETS_TOPIC}-{index}; retry shortly"
            )
        if self.cache.topic(CONSUMER_OFFSETS_TOPIC) is None:
            self.ensure_topic()
            raise CoordinatorNotAvailableError(f"creating {CONSUMER_OFFSETS_TOPIC}; retry shortly")
        partition = self.replicas.partitions.get((CONSUMER_OFFSETS_TOPIC, index))
        if partition is not None and partition.is_leader and partition.failed:
            raise CoordinatorNotAvailableError(f"{CONSUMER_OFFSETS_TOPIC}-{index} is offline")
        raise NotCoordinatorError(
            f"broker {self.config.broker_id} does not coordinate group {group_id!r} "
            f"({CONSUMER_OFFSETS_TOPIC}-{index}); find the coordinator again"
        )

    def loaded_shards(self) -> list[LoadedShard]:
        return [s for s in self.shards.values() if s.alive and s.partition.is_leader]

    # ------------------------------------------------------------ creating the topic

    def ensure_topic(self) -> None:
        """Create ``__consumer_offsets`` in the background (once at a time)."""
        if self._creating or self._nursery is None:
            return
        self._creating = True
        self._nursery.start_soon(self._create_topic)

    async def _create_topic(self) -> None:
        config = self.config
        try:
            if self.cache.topic(CONSUMER_OFFSETS_TOPIC) is not None:
                return
            factor = min(config.offsets_topic_replication_factor, max(1, len(self.cache.brokers)))
            assignment = self.admin.plan_topic(
                CONSUMER_OFFSETS_TOPIC,
                config.offsets_topic_num_partitions,
                factor,
                {"cleanup.policy": "compact", "segment.bytes": str(OFFSETS_TOPIC_SEGMENT_BYTES)},
            )
            await self.admin.create(CONSUMER_OFFSETS_TOPIC, assignment)
            logger.info(
                "created %s (%d partitions, replication factor %d)",
                CONSUMER_OFFSETS_TOPIC,
                config.offsets_topic_num_partitions,
                factor,
            )
        except TopicAlreadyExistsError:
            pass
        except (ServerError, CoordinatorError) as exc:
            logger.warning("cannot create %s yet: %s", CONSUMER_OFFSETS_TOPIC, exc)
        finally:
            self._creating = False

    # ------------------------------------------------------------ leadership

    def partition_changed(self, tp: tuple[str, int]) -> None:
        """The replica manager's report: leadership of ``tp`` may have changed."""
        if tp[0] != CONSUMER_OFFSETS_TOPIC:
            return
        index = tp[1]
        partition = self.replicas.partitions.get(tp)
        leads = partition is not None and partition.is_leader and not partition.failed
        loaded = self.shards.get(index)
        loading = self.loading.get(index)
        if not leads or partition is None:
            if loaded is not None:
                self._unload(index, "leadership moved")
            if loading is not None:
                del self.loading[index]
            return
        epoch = partition.leader_epoch
        if loaded is not None and loaded.partition is partition and loaded.leader_epoch == epoch:
            return
        if loading is not None and loading.partition is partition:
            return
        if loaded is not None:
            self._unload(index, "new leader epoch")
        self.loading[index] = _Loading(partition, epoch)
        self._to_load.append(index)
        self._work.set()

    def _unload(self, index: int, why: str) -> None:
        loaded = self.shards.pop(index, None)
        if loaded is not None:
            loaded.alive = False
            logger.info("%s-%d: unloaded its groups (%s)", CONSUMER_OFFSETS_TOPIC, index, why)

    def _reload(self, index: int) -> None:
        tp = (CONSUMER_OFFSETS_TOPIC, index)
        self._unload(index, "a write failed")
        self.loading.pop(index, None)
        self.partition_changed(tp)

    async def _load(self, index: int, job: _Loading) -> None:
        started = time.monotonic()
        partition = job.partition
        try:
            shard, count = await trio.to_thread.run_sync(
                build_shard, partition.log, index, self.group_config
            )
        except (OSError, LogError, CorruptRecordError) as exc:
            logger.error("%s: cannot load the groups: %s", partition, exc)
            if self.loading.get(index) is job:
                del self.loading[index]
            return
        if self.loading.get(index) is not job:
            return  # leadership moved (or a newer load started) meanwhile
        del self.loading[index]
        if not partition.is_leader or partition.leader_epoch != job.leader_epoch:
            return
        shard.on_loaded(now_ms())
        self.shards[index] = LoadedShard(index, shard, partition, job.leader_epoch, True, count)
        self._reschedule(self.shards[index])
        logger.log(
            logging.INFO if count else logging.DEBUG,
            "%s: loaded %d group(s) from %d record(s) in %.3fs",
            partition,
            len(shard.groups),
            count,
            time.monotonic() - started,
        )

    # ------------------------------------------------------------ writing

    def write(self, loaded: LoadedShard, records: list[GroupRecord]) -> bool:
        """Append a decision's records to the shard's partition; False if that failed
        (the shard is then dropped and reloaded)."""
        if not records:
            return True
        partition = loaded.partition
        if not loaded.alive or not partition.is_leader:
            self._reload(loaded.index)
            return False
        now = now_ms()
        appended = False
        try:
            for batch in encode_records(records, now):
                partition.append(batch, now)
                appended = True
        except ServerError as exc:
            logger.error("%s: writing group records failed: %s", partition, exc)
            self._reload(loaded.index)
            return False
        finally:
            if appended:
                self.committer.appended(partition)
        self._reschedule(loaded)
        return True

    def when_durable(self, partitions: list[Partition], finish: Callable[[], None]) -> bool:
        """Arrange for ``finish()`` once everything appended so far to ``partitions`` is
        committed (on every ISR member, fsynced by this leader under group commit, as an
        acks=all produce): True if it will be called later, False if that is so already."""
        return self.replicas.when_committed(partitions, finish)

    def respond_when_durable(
        self, loaded: LoadedShard, conn: ClientConnection, xid: int, response: dict[str, Any]
    ) -> dict[str, Any] | None:
        """``response`` now if everything written to the shard's partition is durable,
        else None: it is sent after the fsync that makes it so (or an error instead)."""
        release = _Release(self, loaded, conn, xid, response)
        if self.when_durable([loaded.partition], release):
            return None
        return response

    def outcome_error(self, loaded: LoadedShard) -> ServerError | None:
        """After an fsync: None if the shard's writes are durable, else the error to tell."""
        if loaded.partition.failed:
            if loaded.alive:
                self._reload(loaded.index)
            return CoordinatorNotAvailableError(
                f"{CONSUMER_OFFSETS_TOPIC}-{loaded.index}: the write did not become durable"
            )
        if not loaded.alive:
            return NotCoordinatorError("the coordinator moved while the write was pending")
        return None

    # ------------------------------------------------------------ timers

    def _reschedule(self, loaded: LoadedShard) -> None:
        deadline = loaded.shard.next_deadline()
        if deadline is not None and deadline < self._wake_at:
            self._timer_wake.set()

    async def _run_timers(self) -> None:
        while True:
            now = now_ms()
            for loaded in self.loaded_shards():
                records = loaded.shard.tick(now)
                if records:
                    self.write(loaded, records)
            deadlines = [
                d for s in self.loaded_shards() if (d := s.shard.next_deadline()) is not None
            ]
            self._wake_at = min(deadlines) if deadlines else math.inf
            self._timer_wake = trio.Event()
            delay = (self._wake_at - now_ms()) / 1000.0 if deadlines else math.inf
            if delay > 0:
                with trio.move_on_after(delay):
                    await self._timer_wake.wait()

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._run_timers)
            # Leadership reported before this task started is in _to_load already.
            for (topic, index), partition in list(self.replicas.partitions.items()):
                if topic == CONSUMER_OFFSETS_TOPIC and partition.is_leader:
                    self.partition_changed((topic, index))
            while True:
                await self._work.wait()
                self._work = trio.Event()
                pending, self._to_load = self._to_load, []
                for index in dict.fromkeys(pending):
                    job = self.loading.get(index)
                    if job is not None:
                        nursery.start_soon(self._load, index, job)


class _Release:
    """Sends a response once the writes before it are durable (or the error if not)."""

    __slots__ = ("conn", "coordinator", "loaded", "response", "xid")

    def __init__(
        self,
        coordinator: GroupCoordinator,
        loaded: LoadedShard,
        conn: ClientConnection,
        xid: int,
        response: Any,
    ) -> None:
        self.coordinator = coordinator
        self.loaded = loaded
        self.conn = conn
        self.xid = xid
        self.response = response

    def __call__(self) -> None:
        error = self.coordinator.outcome_error(self.loaded)
        if error is not None:
            self.conn.fail(self.xid, error)
        else:
            self.conn.respond(self.xid, self.response)
