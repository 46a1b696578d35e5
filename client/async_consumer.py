"""The trio consumer: assignment, positions, prefetching fetches, polling.

Example::

    import trio
    from client import AsyncConsumer, TopicPartition

    async def main() -> None:
        async with AsyncConsumer("127.0.0.1:9092", auto_offset_reset="earliest") as consumer:
            consumer.assign([TopicPartition("events", 0)])
            async for record in consumer:
                print(record.offset, record.value)

    trio.run(main)

A background task keeps one fetch in flight per broker for every assigned
partition that has room in the buffer, so the next records are on their way
while the current ones are processed. Records are decoded when ``poll`` hands
them out.

Partitions come from ``assign`` (manual) or from a consumer group
(``group_id`` and ``subscribe``)::

    async with AsyncConsumer("127.0.0.1:9092", group_id="billing",
                             auto_offset_reset="earliest") as consumer:
        consumer.subscribe(["invoices"], listener=my_listener)
        while True:
            for record in await consumer.poll(timeout=1.0):
                handle(record)
            await consumer.commit()

Group membership is ``client.group_membership.GroupMember``, run in the
consumer's nursery over the consumer's connections. Its reconciliation task
hands each assignment change to ``poll`` as a *rebalance step*, and ``poll``
runs it before it hands out more records, as Kafka's consumer does:
revocation (the listener's ``on_partitions_revoked``, an auto-commit, then the
partitions and their prefetched records are dropped), assignment (positions
from the committed offsets, else ``auto_offset_reset``; then
``on_partitions_assigned``) or loss (``on_partitions_lost``, no commit). So
callbacks run in the task that polls, a revoked partition's records are never
returned after its revocation callback, and a callback may call the consumer
(``commit``, ``seek``, ...). ``_apply_assignment`` stays the single place where
the assignment changes.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import trio

from client.cluster import Cluster
from client.config import ConsumerConfig, build_config, parse_bootstrap
from client.errors import (
    ClientClosedError,
    ClientTimeoutError,
    IllegalStateError,
    NoBrokersAvailableError,
    ResponseTimeoutError,
)
from client.fetcher import EARLIEST, LATEST, FetchState
from client.group_membership import (
    ClusterTransport,
    CommitFailedError,
    ConsumerGroupMetadata,
    CoordinatorLink,
    GroupMember,
    GroupMembershipError,
    OffsetAndMetadata,
    RebalanceListener,
    commit_offsets,
    fetch_committed,
)
from client.protocol import (
    CONSUMER_REPLICA_ID,
    EARLIEST_TIMESTAMP,
    ERRORS,
    LATEST_TIMESTAMP,
    ApiKey,
)
from client.records import CorruptRecordError
from client.serializers import resolve_deserializer
from client.types import (
    ConsumerRecord,
    OffsetAndTimestamp,
    TopicPartition,
    as_topic_partition,
)
from client.wire import ConnectionLostError, RivuletError, ServerError

log = logging.getLogger(__name__)

_RESET_TIMESTAMPS = {EARLIEST: EARLIEST_TIMESTAMP, LATEST: LATEST_TIMESTAMP}

# Kafka sends one fetch at a time per broker. Two (for disjoint partitions) let a
# partition whose buffer drained ask for more while another partition's fetch
# is still out, which keeps the broker and this process busy at the same time.
MAX_FETCHES_PER_BROKER = 2
# Records decoded between two chances for the fetch task to run (about 1-2 ms).
DECODE_CHUNK = 4096


async def list_offsets(
    cluster: Cluster,
    requests: dict[TopicPartition, int],
    timeout: float,
    retry_backoff: float,
) -> dict[TopicPartition, OffsetAndTimestamp]:
    """LIST_OFFSETS for each partition (timestamp -2 earliest, -1 latest, or a
    time in ms) sent to its leader; retriable errors are retried until ``timeout``."""
    out: dict[TopicPartition, OffsetAndTimestamp] = {}
    todo = dict(requests)
    with trio.move_on_after(timeout) as scope:
        while todo:
            by_leader: dict[int, list[TopicPartition]] = {}
            for tp in todo:
                leader = await cluster.leader(tp, timeout)
                by_leader.setdefault(leader, []).append(tp)
            retry = False
            for node, tps in by_leader.items():
                topics: dict[str, list[dict[str, int]]] = {}
                for tp in tps:
                    topics.setdefault(tp.topic, []).append(
                        {"partition": tp.partition, "timestamp": todo[tp]}
                    )
                payload = {"topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()]}
                try:
                    answer = await cluster.call(node, ApiKey.LIST_OFFSETS, payload)
                except (ConnectionLostError, ResponseTimeoutError) as exc:
                    log.debug("list offsets on %d failed: %s", node, exc)
                    retry = True
                    continue
                for t in answer["topics"]:
                    for p in t["partitions"]:
                        tp = TopicPartition(t["topic"], int(p["partition"]))
                        if tp not in todo:
                            continue
                        code = int(p.get("error_code", 0))
                        if code:
                            error = ERRORS.exception(code, p.get("error_message") or str(tp))
                            if not error.retriable:
                                raise error
                            retry = True
                            continue
                        out[tp] = OffsetAndTimestamp(int(p["offset"]), int(p.get("timestamp", -1)))
                        del todo[tp]
            if todo and retry:
                await cluster.refresh({tp.topic for tp in todo})
                await trio.sleep(retry_backoff)
    if scope.cancelled_caught:
        raise ClientTimeoutError(f"list offsets did not complete within {timeout}s")
    return out


RebalanceKind = Literal["revoked", "assigned", "lost"]
#: Offsets to commit: a position per partition, as an int or with metadata.
CommitOffsets = Mapping[TopicPartition, OffsetAndMetadata | int]
#: ``commit_async`` callback: ``(offsets, error or None)``, a plain function or a coroutine.
CommitCallback = Callable[
    [dict[TopicPartition, OffsetAndMetadata], BaseException | None], Awaitable[None] | None
]


@dataclass(eq=False, slots=True)
class RebalanceStep:
    """One assignment change of a group member, waiting to be run by ``poll``.

    ``kind`` says which listener callback it runs; ``committed`` holds the group's
    committed offsets of assigned partitions (looked up before the step is queued)."""

    kind: RebalanceKind
    partitions: frozenset[TopicPartition]
    committed: dict[TopicPartition, OffsetAndMetadata | None] = field(default_factory=dict)
    callback: Callable[[set[TopicPartition]], Awaitable[None] | None] | None = None
    done: trio.Event = field(default_factory=trio.Event)


class _StepListener(RebalanceListener):
    """The GroupMember's listener inside a consumer: every change becomes a step run by
    ``poll``, and reconciliation waits until it ran."""

    def __init__(self, consumer: AsyncConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, partitions: set[TopicPartition]) -> None:
        await self._consumer._queue_step("revoked", partitions)

    async def on_partitions_assigned(self, partitions: set[TopicPartition]) -> None:
        await self._consumer._queue_step("assigned", partitions)

    async def on_partitions_lost(self, partitions: set[TopicPartition]) -> None:
        await self._consumer._queue_step("lost", partitions)


def _offsets_arg(offsets: CommitOffsets) -> dict[TopicPartition, OffsetAndMetadata]:
    """Validated commit offsets (TypeError/ValueError before anything is sent)."""
    if not isinstance(offsets, Mapping):
        raise TypeError(f"offsets must be a mapping of TopicPartition to offsets, got {offsets!r}")
    out: dict[TopicPartition, OffsetAndMetadata] = {}
    for key, value in offsets.items():
        tp = as_topic_partition(key)
        om = value if isinstance(value, OffsetAndMetadata) else None
        if om is None:
            if type(value) is not int:
                raise TypeError(f"offset of {tp} must be an int or OffsetAndMetadata: {value!r}")
            om = OffsetAndMetadata(value)
        if type(om.offset) is not int or om.offset < 0:
            raise ValueError(f"offset of {tp} must be a non-negative int, got {om.offset!r}")
        if not isinstance(om.metadata, str):
            raise TypeError(f"commit metadata of {tp} must be a str, got {om.metadata!r}")
        out[tp] = om
    return out


class AsyncConsumer:
    """A trio consumer: manual assignment (``assign``) or a consumer group
    (``group_id=`` and ``subscribe``). Use ``async with`` (it runs its tasks in a
    nursery of its own), or ``await consumer.start(nursery)`` and
    ``await consumer.close()``. Not safe for concurrent ``poll`` calls."""

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        config: ConsumerConfig | None = None,
        **settings: Any,
    ) -> None:
        cfg: ConsumerConfig = build_config(ConsumerConfig, config, settings)
        self.config = cfg
        self._key_deserializer = resolve_deserializer(cfg.key_deserializer)
        self._value_deserializer = resolve_deserializer(cfg.value_deserializer)
        self._retry_backoff = cfg.retry_backoff_ms / 1000.0
        self._request_timeout = cfg.request_timeout_ms / 1000.0
        self.cluster = Cluster(
            parse_bootstrap(bootstrap_servers),
            request_timeout=self._request_timeout + cfg.fetch_max_wait_ms / 1000.0,
            connect_timeout=cfg.connect_timeout_ms / 1000.0,
            retry_backoff=self._retry_backoff,
            metadata_max_age=cfg.metadata_max_age_ms / 1000.0,
            max_frame=cfg.max_frame_bytes,
            allow_auto_topic_creation=cfg.allow_auto_topic_creation,
        )
        self._state = FetchState(
            auto_offset_reset=cfg.auto_offset_reset, retry_backoff=self._retry_backoff
        )
        # Fetches in flight per broker (each for different partitions).
        self._fetching: dict[int, int] = {}
        self._resetting = False
        self._refreshing = False
        self._wake = trio.Event()
        self._data = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._nursery_manager: Any = None
        self._closed = False
        self._failed: BaseException | None = None
        self._cancel = trio.CancelScope()
        # New partitions' fetch generations start at a fresh multiple of 2**32, so an
        # answer to a fetch sent before a partition was dropped and assigned again can
        # never pass for a current one (seeks only add 1 to a generation).
        self._generations = itertools.count(1)
        # -- consumer group
        self._group_id = cfg.group_id
        self._transport = ClusterTransport(self.cluster)
        self._link: CoordinatorLink | None = None
        self._member: GroupMember | None = None
        self._member_scope = trio.CancelScope()
        self._member_done = trio.Event()
        self._listener: RebalanceListener | None = None
        self._subscription: tuple[tuple[str, ...] | None, str | None] | None = None
        self._steps: deque[RebalanceStep] = deque()
        self._group_changed = trio.Event()
        self._group_error: GroupMembershipError | None = None
        self._commit_lock = trio.Lock()
        self._async_commits = 0
        self._commits_idle = trio.Event()
        self._commits_idle.set()
        self._last_committed: dict[TopicPartition, int] = {}
        self._next_auto_commit = math.inf

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the fetch task in ``nursery`` (it runs until ``close``)."""
        if self._started:
            raise RuntimeError("the consumer is already started")
        self._started = True
        await self.cluster.start(nursery)
        await nursery.start(self._fetch_loop)

    async def __aenter__(self) -> AsyncConsumer:
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        try:
            await self.start(nursery)
        except BaseException as exc:
            await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            await self.close()
        finally:
            manager, self._nursery_manager = self._nursery_manager, None
            result: bool | None = await manager.__aexit__(exc_type, exc, tb)
        return result

    async def close(self, timeout: float | None = None) -> None:
        """Leave the group if subscribed (revocation callbacks run here, then a final
        commit with auto-commit, then the leave heartbeat; at most ``timeout``
        seconds, default ``request_timeout_ms``), wait for ``commit_async`` commits,
        stop fetching and close every connection. Idempotent. A revocation callback's
        exception is raised once the consumer is closed."""
        if self._closed:
            return
        errors: list[Exception] = []
        try:
            if self._started and self._failed is None:
                deadline = trio.current_time() + self._timeout(timeout)
                if self._begin_leave(static=None):
                    while (step := await self._leave_step(deadline)) is not None:
                        try:
                            await self._run_step(step)
                        except Exception as exc:
                            log.exception("a rebalance callback failed while closing")
                            errors.append(exc)
                await self._end_leave()
                with trio.move_on_at(deadline):
                    await self._commits_idle.wait()
        finally:
            self._closed = True
            self._cancel.cancel()
            self._data.set()
            await self.cluster.aclose()
        if errors:
            raise errors[0]

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the consumer is closed")
        if not self._started:
            raise RuntimeError("start the consumer first (async with / start())")
        if self._failed is not None:
            raise ClientClosedError(
                f"the consumer's fetch task failed: {self._failed!r}"
            ) from self._failed

    # -- assignment and positions -----------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Consume exactly these partitions (replacing any previous assignment).
        Partitions kept from the previous assignment keep their position."""
        if self._closed:
            raise ClientClosedError("the consumer is closed")
        if self._subscription is not None:
            raise IllegalStateError("the consumer is subscribed to a group; unsubscribe() first")
        tps = [as_topic_partition(tp) for tp in partitions]
        if len(set(tps)) != len(tps):
            raise ValueError("assign() got the same partition twice")
        self._apply_assignment(tps)

    def _apply_assignment(self, tps: Iterable[TopicPartition]) -> None:
        """The single entry point for assignment changes (``assign`` and the group's
        rebalance steps): kept partitions keep their position and buffered records,
        dropped ones lose theirs, new ones start without a position."""
        tps = list(tps)
        before = self._state.partitions
        self._state.assign(tps)
        for tp, st in self._state.partitions.items():
            if tp not in before:
                st.generation = next(self._generations) << 32
        for tp in before:
            if tp not in self._state.partitions:
                self._last_committed.pop(tp, None)
        self.cluster.topics.update(tp.topic for tp in tps)
        self._wake.set()

    def assignment(self) -> set[TopicPartition]:
        """The partitions currently assigned."""
        return set(self._state.partitions)

    def unassign(self) -> None:
        """Stop consuming every partition (of a manual assignment)."""
        if self._subscription is not None:
            raise IllegalStateError("the consumer is subscribed to a group; use unsubscribe()")
        self._apply_assignment([])

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        """The next ``poll`` returns records of ``partition`` from ``offset``."""
        tp = as_topic_partition(partition)
        if type(offset) is not int or offset < 0:
            raise ValueError(f"offset must be a non-negative int, got {offset!r}")
        self._state.seek(tp, offset)
        self._wake.set()

    def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Move to the earliest available offset (of all assigned partitions if none given)."""
        self._seek_reset(partitions, EARLIEST)

    def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Move to the log end (of all assigned partitions if none given)."""
        self._seek_reset(partitions, LATEST)

    def _seek_reset(self, partitions: tuple[Any, ...], strategy: str) -> None:
        tps = [as_topic_partition(p) for p in partitions] or list(self._state.partitions)
        for tp in tps:
            self._state.request_reset(tp, strategy)
        self._wake.set()

    async def position(
        self, partition: TopicPartition | tuple[str, int], timeout: float | None = None
    ) -> int:
        """The offset of the next record ``poll`` will return for ``partition``
        (looking it up first if a reset is pending)."""
        self._check_open()
        tp = as_topic_partition(partition)
        st = self._state.state(tp)
        if st.position is None:
            await self._reset_positions(self._timeout(timeout))
            st = self._state.state(tp)
        if st.position is None:
            raise ClientTimeoutError(f"no position for {tp.topic}-{tp.partition}")
        return st.position

    def highwater(self, partition: TopicPartition | tuple[str, int]) -> int | None:
        """The high watermark seen in the last fetch of ``partition`` (None before one)."""
        st = self._state.state(as_topic_partition(partition))
        return st.high_watermark if st.high_watermark >= 0 else None

    def pause(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Stop fetching and returning records of these partitions (positions kept)."""
        for p in partitions:
            self._state.state(as_topic_partition(p)).paused = True

    def resume(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        """Undo ``pause``."""
        for p in partitions:
            self._state.state(as_topic_partition(p)).paused = False
        self._wake.set()

    def paused(self) -> set[TopicPartition]:
        """The partitions currently paused."""
        return {tp for tp, st in self._state.partitions.items() if st.paused}

    def _timeout(self, timeout: float | None) -> float:
        return self._request_timeout if timeout is None else timeout

    async def beginning_offsets(
        self, partitions: Iterable[TopicPartition], timeout: float | None = None
    ) -> dict[TopicPartition, int]:
        """The earliest offset of each partition."""
        return await self._offsets(partitions, EARLIEST_TIMESTAMP, timeout)

    async def end_offsets(
        self, partitions: Iterable[TopicPartition], timeout: float | None = None
    ) -> dict[TopicPartition, int]:
        """The log end offset of each partition (the offset the next record gets)."""
        return await self._offsets(partitions, LATEST_TIMESTAMP, timeout)

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int], timeout: float | None = None
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """For each partition, the first offset whose batch has a timestamp >= the
        given ms timestamp (None when no record is that recent)."""
        self._check_open()
        req: dict[TopicPartition, int] = {}
        for p, ts in timestamps.items():
            if type(ts) is not int or ts < 0:
                raise ValueError(f"timestamp must be a non-negative int, got {ts!r}")
            req[as_topic_partition(p)] = ts
        found = await list_offsets(self.cluster, req, self._timeout(timeout), self._retry_backoff)
        return {tp: (v if v.offset >= 0 else None) for tp, v in found.items()}

    async def _offsets(
        self, partitions: Iterable[TopicPartition], spec: int, timeout: float | None
    ) -> dict[TopicPartition, int]:
        self._check_open()
        req = {as_topic_partition(p): spec for p in partitions}
        found = await list_offsets(self.cluster, req, self._timeout(timeout), self._retry_backoff)
        return {tp: v.offset for tp, v in found.items()}

    # -- consumer group ---------------------------------------------------------------------

    def subscribe(
        self,
        topics: Iterable[str] | None = None,
        *,
        pattern: str | None = None,
        listener: RebalanceListener | None = None,
    ) -> None:
        """Join the consumer group ``group_id`` to consume ``topics`` (names) or every
        topic whose whole name matches ``pattern`` (a Python regular expression,
        matched by the coordinator; internal topics never match).

        The coordinator assigns the partitions; ``poll`` follows each change and runs
        ``listener``'s callbacks (``on_partitions_revoked``, ``on_partitions_assigned``,
        ``on_partitions_lost``; plain or async methods). Calling it again changes the
        subscription (and the listener) without leaving the group. Raises
        IllegalStateError without a ``group_id`` or while partitions are assigned
        manually."""
        self._check_open()
        if self._group_id is None:
            raise IllegalStateError("subscribe() needs a consumer group: set group_id")
        if isinstance(topics, str):
            raise TypeError("topics must be a list of topic names (or use pattern=...)")
        if (topics is None) == (pattern is None):
            raise ValueError("subscribe to a list of topics or to a pattern (one of the two)")
        names: tuple[str, ...] | None = None
        if topics is not None:
            names = tuple(sorted(set(topics)))
            if not names:
                raise ValueError("no topics given (use unsubscribe() to leave the group)")
            for name in names:
                if not isinstance(name, str) or not name:
                    raise ValueError(f"topic names must be non-empty strings, got {name!r}")
        else:
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(f"pattern must be a non-empty regular expression: {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad pattern {pattern!r}: {exc}") from None
        if self._member is None and self._state.partitions:
            raise IllegalStateError("partitions are assigned manually; unassign() first")
        self._listener = listener
        self._subscription = (names, pattern)
        if names is not None:
            self.cluster.topics.update(names)
        member = self._member
        if member is not None:
            member.subscribe(names, pattern)
            return
        cfg = self.config
        member = GroupMember(
            self._transport,
            self._group_id,
            topics=names,
            pattern=pattern,
            listener=_StepListener(self),
            instance_id=cfg.group_instance_id,
            server_assignor=cfg.group_remote_assignor,
            rebalance_timeout_ms=cfg.rebalance_timeout_ms,
            client_id=cfg.client_id,
            request_timeout=self._request_timeout,
            retry_backoff=self._retry_backoff,
            retry_backoff_max=cfg.retry_backoff_max_ms / 1000.0,
        )
        self._member = member
        self._member_scope = trio.CancelScope()
        self._member_done = trio.Event()
        self._group_error = None
        self._next_auto_commit = trio.current_time() + cfg.auto_commit_interval_ms / 1000.0
        self._spawn(self._run_member, member, self._member_scope, self._member_done)

    def subscription(self) -> set[str] | str | None:
        """The subscribed topic names, or the pattern, or None when not subscribed."""
        if self._subscription is None:
            return None
        names, pattern = self._subscription
        return set(names) if names is not None else pattern

    async def unsubscribe(self, timeout: float | None = None) -> None:
        """Leave the group for good (revocation callbacks and the auto-commit run first)
        and drop every partition, also a manual assignment."""
        self._check_open()
        deadline = trio.current_time() + self._timeout(timeout)
        if self._begin_leave(static=False):
            while (step := await self._leave_step(deadline)) is not None:
                await self._run_step(step)
        await self._end_leave()
        self._apply_assignment([])

    def group_metadata(self) -> ConsumerGroupMetadata:
        """The consumer's group id, member id, member epoch and instance id."""
        self._require_group()
        member = self._member
        return ConsumerGroupMetadata(
            self._group_id or "",
            member.member_id if member is not None else "",
            member.member_epoch if member is not None else 0,
            self.config.group_instance_id,
        )

    async def commit(
        self, offsets: CommitOffsets | None = None, timeout: float | None = None
    ) -> None:
        """Commit offsets to the group and wait until they are durable.

        Without ``offsets``: the position of every assigned partition, that is the
        offset after the last record ``poll`` returned (or of a ``seek``). Otherwise
        the given next-offsets to consume (ints or OffsetAndMetadata). A subscribed
        consumer commits as a member (fenced members are refused); an assigned one
        without membership, which the coordinator accepts only while the group has no
        members. Raises CommitFailedError (e.g. the member was removed from the group,
        or is rejoining), ClientTimeoutError, IllegalStateError without a group_id."""
        self._check_open()
        self._require_group()
        wanted = self._consumed() if offsets is None else _offsets_arg(offsets)
        if wanted:
            await self._commit_now(wanted, self._timeout(timeout))

    def commit_async(
        self, offsets: CommitOffsets | None = None, callback: CommitCallback | None = None
    ) -> None:
        """Start a commit (as ``commit``) in the background and return at once.

        Commits complete in the order they were started, and a later ``commit`` or
        ``close`` waits for them. ``callback(offsets, error)`` runs when it is done
        (``error`` None on success); without a callback a failure is logged."""
        self._check_open()
        self._require_group()
        wanted = self._consumed() if offsets is None else _offsets_arg(offsets)
        self._async_commits += 1
        self._commits_idle = trio.Event()
        self._spawn(self._commit_task, wanted, callback)

    async def committed(
        self, partitions: Iterable[TopicPartition | tuple[str, int]], timeout: float | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets of ``partitions`` (None where there is none)."""
        self._check_open()
        self._require_group()
        tps = [as_topic_partition(p) for p in partitions]
        try:
            return await fetch_committed(self._group_link(), tps, timeout=self._timeout(timeout))
        except trio.TooSlowError:
            raise ClientTimeoutError(
                f"the committed offsets of group {self._group_id} did not arrive in time"
            ) from None

    # -- consumer group: plumbing -----------------------------------------------------------

    def _require_group(self) -> None:
        if self._group_id is None:
            raise IllegalStateError("this needs a consumer group: set group_id")

    def _check_group(self) -> None:
        if self._group_error is not None:
            raise self._group_error

    def _group_link(self) -> CoordinatorLink:
        """A link to the group's coordinator for requests without membership."""
        if self._link is None:
            if self._group_id is None:
                raise IllegalStateError("this needs a consumer group: set group_id")
            self._link = CoordinatorLink(
                self._transport,
                self._group_id,
                request_timeout=self._request_timeout,
                retry_backoff=self._retry_backoff,
                retry_backoff_max=self.config.retry_backoff_max_ms / 1000.0,
            )
        return self._link

    def _signal_group(self) -> None:
        changed, self._group_changed = self._group_changed, trio.Event()
        changed.set()
        self._data.set()

    async def _run_member(
        self, member: GroupMember, scope: trio.CancelScope, done: trio.Event
    ) -> None:
        try:
            with scope:
                await member.run()
        except RivuletError as exc:
            if not isinstance(exc, GroupMembershipError):
                cause = exc if isinstance(exc, ServerError) else None
                exc = GroupMembershipError(f"group {self._group_id}: {exc}", cause)
            log.error("consumer group %s: %s", self._group_id, exc)
            if self._member is member:
                self._group_error = exc
                self._drop_group()
        finally:
            done.set()
            self._signal_group()

    def _drop_group(self) -> None:
        """Forget the membership and its partitions (its pending steps are void)."""
        self._member = None
        self._subscription = None
        self._listener = None
        self._next_auto_commit = math.inf
        while self._steps:
            self._steps.popleft().done.set()
        self._apply_assignment([])

    async def _queue_step(self, kind: RebalanceKind, partitions: set[TopicPartition]) -> None:
        """Called by the member's reconciliation task: hand the change to ``poll`` and
        wait until it ran."""
        committed: dict[TopicPartition, OffsetAndMetadata | None] = {}
        if kind == "assigned":
            committed = await self._committed_for(partitions)
        step = RebalanceStep(kind, frozenset(partitions), committed)
        self._steps.append(step)
        self._signal_group()
        await step.done.wait()

    async def _committed_for(
        self, partitions: set[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The committed offsets of newly assigned partitions, retried until they come."""
        failures = 0
        while True:
            try:
                return await fetch_committed(
                    self._group_link(), partitions, timeout=self._request_timeout
                )
            except (trio.TooSlowError, RivuletError) as exc:
                failures += 1
                log.warning(
                    "group %s: fetching committed offsets failed (%r); retrying",
                    self._group_id,
                    exc,
                )
                backoff_max = self.config.retry_backoff_max_ms / 1000.0
                await trio.sleep(min(backoff_max, self._retry_backoff * 2 ** (failures - 1)))

    def _next_step(self) -> RebalanceStep | None:
        """Take the next rebalance step and do its part before the callback."""
        if not self._steps:
            return None
        step = self._steps.popleft()
        listener = self._listener
        if listener is not None:
            step.callback = getattr(listener, f"on_partitions_{step.kind}")
        if step.kind == "assigned":
            self._apply_assignment([*self._state.partitions, *sorted(step.partitions)])
            for tp in step.partitions:
                committed = step.committed.get(tp)
                if committed is not None:
                    self._state.seek(tp, committed.offset)
                    self._last_committed[tp] = committed.offset
        return step

    async def _run_step(self, step: RebalanceStep) -> None:
        """Run a step's callback, then finish it (even if the callback failed or was
        cancelled); the callback's exception is raised afterwards."""
        error: Exception | None = None
        try:
            if step.callback is not None:
                result = step.callback(set(step.partitions))
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            log.exception("group %s: on_partitions_%s failed", self._group_id, step.kind)
            error = exc
        finally:
            with trio.CancelScope(shield=True):
                await self._finish_step(step)
        if error is not None:
            raise error

    async def _finish_step(self, step: RebalanceStep) -> None:
        """The part of a step after its callback: auto-commit and drop revoked
        partitions, drop lost ones; then reconciliation carries on."""
        try:
            if step.kind == "revoked" and self.config.enable_auto_commit:
                offsets = self._consumed(step.partitions, changed_only=True)
                if offsets:
                    try:
                        with trio.move_on_after(self._request_timeout):
                            await self._commit_now(offsets, self._request_timeout)
                    except (CommitFailedError, ClientTimeoutError) as exc:
                        log.warning(
                            "group %s: commit before revocation failed: %s", self._group_id, exc
                        )
            if step.kind != "assigned":
                self._apply_assignment(
                    [tp for tp in self._state.partitions if tp not in step.partitions]
                )
        finally:
            step.done.set()

    def _consumed(
        self, partitions: Iterable[TopicPartition] | None = None, *, changed_only: bool = False
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Positions of assigned partitions (all, or of ``partitions``): what ``poll``
        returned, never what is only prefetched. ``changed_only`` leaves out those
        already committed at that position."""
        wanted = None if partitions is None else set(partitions)
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, st in self._state.partitions.items():
            if st.position is None or (wanted is not None and tp not in wanted):
                continue
            if changed_only and self._last_committed.get(tp) == st.position:
                continue
            out[tp] = OffsetAndMetadata(st.position)
        return out

    def _maybe_auto_commit(self) -> None:
        """From ``poll``: start an auto-commit of what earlier polls returned, when due."""
        member = self._member
        if not self.config.enable_auto_commit or member is None:
            return
        now = trio.current_time()
        if now < self._next_auto_commit or not member.membership.is_member:
            return
        self._next_auto_commit = now + self.config.auto_commit_interval_ms / 1000.0
        offsets = self._consumed(changed_only=True)
        if offsets:
            self._async_commits += 1
            self._commits_idle = trio.Event()
            self._spawn(self._commit_task, offsets, None, member)

    async def _commit_now(
        self,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        timeout: float,
        member: GroupMember | None = None,
    ) -> None:
        """Commit (in order with every other commit of this consumer): as ``member``
        (or the current member), or without membership when not subscribed."""
        async with self._commit_lock:
            member = member or self._member
            try:
                if member is not None:
                    await member.commit(offsets, timeout=timeout)
                elif self._subscription is None:
                    await commit_offsets(self._group_link(), offsets, timeout=timeout)
                else:
                    raise CommitFailedError(f"group {self._group_id}: not a member right now", {})
            except trio.TooSlowError:
                raise ClientTimeoutError(
                    f"group {self._group_id}: the commit did not complete in {timeout}s"
                ) from None
            for tp, om in offsets.items():
                if tp in self._state.partitions:
                    self._last_committed[tp] = om.offset

    async def _commit_task(
        self,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        callback: CommitCallback | None,
        member: GroupMember | None = None,
    ) -> None:
        """A background commit (``commit_async`` or auto-commit); never raises."""
        error: BaseException | None = None
        try:
            if member is not None and member is not self._member:
                return  # an auto-commit of a membership that has ended meanwhile
            await self._commit_now(offsets, self._request_timeout, member)
        except (RivuletError, ClientClosedError) as exc:
            error = exc
        finally:
            self._async_commits -= 1
            if self._async_commits == 0:
                self._commits_idle.set()
        if callback is None:
            if error is not None:
                log.warning("group %s: background commit failed: %s", self._group_id, error)
            return
        try:
            result = callback(offsets, error)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("group %s: commit callback failed", self._group_id)

    def _begin_leave(self, static: bool | None) -> bool:
        """Start leaving the group; whether there is a membership to wind down."""
        member = self._member
        if member is None or self._member_done.is_set():
            return False
        member.begin_leave(static=static)
        return True

    async def _leave_step(self, deadline: float) -> RebalanceStep | None:
        """While leaving: the next step to run (prepared), or None once the member has
        stopped (or ``deadline``, trio time, passed)."""
        while True:
            step = self._next_step()
            if step is not None:
                return step
            if self._member_done.is_set() or trio.current_time() >= deadline:
                return None
            changed = self._group_changed
            with trio.move_on_at(deadline):
                await changed.wait()

    async def _leave_step_within(self, timeout: float) -> RebalanceStep | None:
        """``_leave_step`` with a relative time limit (for the blocking consumer)."""
        return await self._leave_step(trio.current_time() + timeout)

    async def _end_leave(self) -> None:
        """After leaving (or giving up on it): stop the member, forget the group."""
        if self._member is None:
            self._subscription = None
            self._listener = None
            return
        if not self._member_done.is_set():
            self._member_scope.cancel()
            await self._member_done.wait()
        self._drop_group()

    # -- polling ----------------------------------------------------------------------------

    async def poll(
        self, timeout: float = 0.0, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Records that arrived, waiting up to ``timeout`` seconds for some.

        Returns at most ``max_records`` (default ``max_poll_records``); an empty
        list on timeout. Raises fetch errors (e.g. OffsetOutOfRangeError with
        ``auto_offset_reset="none"``, CorruptRecordError).

        In a group, ``poll`` first runs the pending rebalance steps (the listener's
        callbacks; an exception of one is raised here once its step completed) and
        auto-commits when ``auto_commit_interval_ms`` has passed; a fatal group error
        (e.g. FENCED_INSTANCE_ID) raises GroupMembershipError."""
        max_records = self._poll_args(timeout, max_records)
        deadline = trio.current_time() + timeout
        while True:
            step = await self._poll_step(max(0.0, deadline - trio.current_time()), max_records)
            if isinstance(step, RebalanceStep):
                await self._run_step(step)
                continue
            return step

    def _poll_args(self, timeout: float, max_records: int | None) -> int:
        self._check_open()
        if timeout < 0:
            raise ValueError("timeout must be >= 0")
        if max_records is None:
            return self.config.max_poll_records
        if type(max_records) is not int or max_records < 1:
            raise ValueError(f"max_records must be a positive int, got {max_records!r}")
        return max_records

    async def _poll_step(
        self, timeout: float, max_records: int
    ) -> list[ConsumerRecord] | RebalanceStep:
        """One step of ``poll``: the next rebalance step (prepared; the caller runs its
        callback, then ``_finish_step``), or records (an empty list after ``timeout``)."""
        if timeout < 0:
            raise ValueError("timeout must be >= 0")
        self._check_open()
        step = self._next_step()
        if step is not None:
            return step
        self._check_group()
        self._maybe_auto_commit()
        deadline = trio.current_time() + timeout
        while True:
            self._data = trio.Event()
            records = await self._take(max_records)
            if records:
                await trio.lowlevel.checkpoint()
                return records
            self._check_open()
            step = self._next_step()
            if step is not None:
                return step
            self._check_group()
            if trio.current_time() >= deadline:
                await trio.lowlevel.checkpoint()
                return []
            with trio.move_on_at(deadline):
                await self._data.wait()

    async def _take(self, max_records: int) -> list[ConsumerRecord]:
        """Decode up to ``max_records`` buffered records in chunks, letting the
        fetch task run between chunks (uncancellably: records taken are never
        lost) so the next fetch goes out while this one is being decoded."""
        state = self._state
        cfg = self.config
        out: list[ConsumerRecord] = []
        while len(out) < max_records:
            if out and state.errors:
                break  # hand out what we have; the error is raised by the next poll
            try:
                chunk = state.take(
                    min(max_records - len(out), DECODE_CHUNK),
                    cfg.check_crcs,
                    self._key_deserializer,
                    self._value_deserializer,
                )
            except CorruptRecordError:
                if out:
                    break  # raised again by the next poll
                raise
            if not chunk:
                break
            out.extend(chunk)
            self._wake.set()  # buffer space freed: maybe fetch more
            if len(out) < max_records:
                await trio.lowlevel.cancel_shielded_checkpoint()
        return out

    def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ConsumerRecord]:
        while not self._closed:
            for record in await self.poll(timeout=1.0):
                yield record

    # -- the fetch task ---------------------------------------------------------------------

    async def _fetch_loop(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Runs every consumer task (fetches, resets, refreshes) under one cancel
        scope, so ``close`` stops them all at once."""
        with self._cancel:
            try:
                async with trio.open_nursery() as tasks:
                    self._nursery = tasks
                    task_status.started()
                    await self._fetch_loop_inner()
            except Exception as exc:
                log.exception("consumer fetch task failed")
                self._failed = exc
                self._data.set()

    async def _fetch_loop_inner(self) -> None:
        state = self._state
        while not self._closed:
            self._wake = trio.Event()
            now = time.monotonic()
            try:
                resets = state.needs_reset()
            except ServerError as exc:
                state.errors.append(exc)
                resets = {}
            except Exception as exc:
                state.errors.append(exc)
                self._data.set()
                resets = {}
            if resets and not self._resetting:
                self._resetting = True
                self._spawn(self._reset_task)
            plan: dict[int, list[TopicPartition]] = {}
            unknown: set[str] = set()
            for tp in state.fetchable(now):
                leader = self.cluster.metadata.leader_for(tp)
                if leader is None:
                    unknown.add(tp.topic)
                    continue
                if self._fetching.get(leader, 0) >= MAX_FETCHES_PER_BROKER:
                    continue
                plan.setdefault(leader, []).append(tp)
            for node, tps in plan.items():
                self._fetching[node] = self._fetching.get(node, 0) + 1
                # Mark the partitions in flight now, with their offsets: a seek
                # before the task runs bumps the generation and voids the answer.
                started = {tp: state.fetch_started(tp) for tp in tps}
                self._spawn(self._fetch, node, started)
            if unknown or self.cluster.needs_refresh(now):
                self._refresh(unknown)
            with trio.move_on_at(trio.current_time() + state.next_retry(now) - now):
                await self._wake.wait()

    def _spawn(self, fn: Any, *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError("the consumer is not started")
        self._nursery.start_soon(fn, *args)

    def _refresh(self, topics: set[str]) -> None:
        if self._refreshing:
            return
        self._refreshing = True
        self._spawn(self._refresh_task, topics)

    async def _refresh_task(self, topics: set[str]) -> None:
        try:
            await self.cluster.refresh(topics)
        except ClientClosedError:
            pass
        except (NoBrokersAvailableError, ConnectionLostError, ResponseTimeoutError) as exc:
            log.debug("metadata refresh failed: %s", exc)
            await trio.sleep(self._retry_backoff)
        except ServerError as exc:
            log.warning("metadata refresh failed: %s", exc)
            await trio.sleep(self._retry_backoff)
        finally:
            self._refreshing = False
            self._wake.set()

    async def _reset_task(self) -> None:
        try:
            await self._reset_positions(self._request_timeout)
        except ClientClosedError:
            pass
        except (ClientTimeoutError, NoBrokersAvailableError) as exc:
            log.debug("offset reset failed: %s", exc)
            await trio.sleep(self._retry_backoff)
        except ServerError as exc:
            self._state.errors.append(exc)
            self._data.set()
            await trio.sleep(self._retry_backoff)
        finally:
            self._resetting = False
            self._wake.set()

    async def _reset_positions(self, timeout: float) -> None:
        resets = self._state.needs_reset()
        if not resets:
            return
        req = {tp: _RESET_TIMESTAMPS[strategy] for tp, strategy in resets.items()}
        found = await list_offsets(self.cluster, req, timeout, self._retry_backoff)
        for tp, answer in found.items():
            self._state.apply_reset(tp, resets[tp], answer.offset)
        self._wake.set()

    async def _fetch(self, node: int, started: dict[TopicPartition, tuple[int, int]]) -> None:
        state = self._state
        cfg = self.config
        tps = list(started)
        generations: dict[TopicPartition, int] = {}
        topics: dict[str, list[dict[str, int]]] = {}
        for tp, (offset, generation) in started.items():
            generations[tp] = generation
            topics.setdefault(tp.topic, []).append(
                {
                    "partition": tp.partition,
                    "fetch_offset": offset,
                    "partition_max_bytes": cfg.max_partition_fetch_bytes,
                    "current_leader_epoch": -1,
                }
            )
        payload = {
            "replica_id": CONSUMER_REPLICA_ID,
            "max_wait_ms": cfg.fetch_max_wait_ms,
            "min_bytes": cfg.fetch_min_bytes,
            "max_bytes": cfg.fetch_max_bytes,
            "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()],
        }
        refresh: set[str] = set()
        try:
            answer = await self.cluster.call(node, ApiKey.FETCH, payload)
        except ClientClosedError:
            return
        except (ConnectionLostError, ResponseTimeoutError, ServerError) as exc:
            log.debug("fetch from %d failed: %s", node, exc)
            now = time.monotonic()
            for tp, gen in generations.items():
                state.fetch_failed(tp, gen, now)
            refresh.update(tp.topic for tp in tps)
        else:
            now = time.monotonic()
            seen: set[TopicPartition] = set()
            for t in answer.get("topics") or ():
                for p in t.get("partitions") or ():
                    tp = TopicPartition(t["topic"], int(p["partition"]))
                    sent_gen = generations.get(tp)
                    if sent_gen is None:
                        continue
                    seen.add(tp)
                    if state.on_response(tp, sent_gen, p, now):
                        refresh.add(tp.topic)
            for tp, gen in generations.items():
                if tp not in seen:
                    state.fetch_failed(tp, gen, now)
        finally:
            self._fetching[node] -= 1
            self._wake.set()
        if state.has_records():
            self._data.set()
        if refresh:
            self._refresh(refresh)
