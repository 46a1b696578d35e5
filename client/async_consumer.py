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

Assignment is manual (``assign``) for now. Consumer groups will plug in
through ``_apply_assignment``: a group member calls it with each new
assignment, and positions of partitions it keeps are preserved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

import trio

from client.cluster import Cluster
from client.config import ConsumerConfig, build_config, parse_bootstrap
from client.errors import (
    ClientClosedError,
    ClientTimeoutError,
    NoBrokersAvailableError,
    ResponseTimeoutError,
)
from client.fetcher import EARLIEST, LATEST, FetchState
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
from client.wire import ConnectionLostError, ServerError

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


class AsyncConsumer:
    """A trio consumer with manual assignment. Use ``async with`` (it runs its
    fetch task in a nursery of its own), or ``await consumer.start(nursery)``
    and ``await consumer.close()``."""

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

    async def close(self) -> None:
        """Stop fetching and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._cancel.cancel()
        self._data.set()
        await self.cluster.aclose()

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
        tps = [as_topic_partition(tp) for tp in partitions]
        if len(set(tps)) != len(tps):
            raise ValueError("assign() got the same partition twice")
        self._apply_assignment(tps)

    def _apply_assignment(self, tps: list[TopicPartition]) -> None:
        """The single entry point for assignment changes (manual now, groups later)."""
        self._state.assign(tps)
        self.cluster.topics.update(tp.topic for tp in tps)
        self._wake.set()

    def assignment(self) -> set[TopicPartition]:
        """The partitions currently assigned."""
        return set(self._state.partitions)

    def unassign(self) -> None:
        """Stop consuming every partition."""
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

    # -- polling ----------------------------------------------------------------------------

    async def poll(
        self, timeout: float = 0.0, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Records that arrived, waiting up to ``timeout`` seconds for some.

        Returns at most ``max_records`` (default ``max_poll_records``); an empty
        list on timeout. Raises fetch errors (e.g. OffsetOutOfRangeError with
        ``auto_offset_reset="none"``, CorruptRecordError)."""
        self._check_open()
        if max_records is None:
            max_records = self.config.max_poll_records
        elif type(max_records) is not int or max_records < 1:
            raise ValueError(f"max_records must be a positive int, got {max_records!r}")
        if timeout < 0:
            raise ValueError("timeout must be >= 0")
        deadline = trio.current_time() + timeout
        while True:
            self._data = trio.Event()
            records = await self._take(max_records)
            if records:
                await trio.lowlevel.checkpoint()
                return records
            self._check_open()
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
