"""Client-side cluster metadata and connections to brokers.

``ClusterMetadata`` (sans-IO) holds what the last METADATA responses said:
brokers, the controller, each topic's partitions with leader, epoch, replicas
and ISR. ``Cluster`` (trio) owns one pipelined ``RpcChannel`` per broker,
opened on first use, and refreshes metadata: on demand (a client saw an error
that means "the leader moved") and every ``metadata_max_age_ms``.

Bootstrap addresses are only used to find the cluster: the first METADATA
answer names the brokers, and from then on connections go to brokers by node id.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from client.errors import (
    ClientClosedError,
    MetadataTimeoutError,
    NoBrokersAvailableError,
    ResponseTimeoutError,
)
from client.protocol import ERRORS, ApiKey
from client.types import BrokerInfo, PartitionInfo, TopicDescription, TopicPartition
from client.wire import ConnectionLostError, RpcChannel, ServerError

log = logging.getLogger(__name__)

_BOOTSTRAP_BASE = -1000  # pseudo node ids of bootstrap addresses: -1000, -1001, ...


@dataclass(slots=True)
class TopicMetadata:
    """One topic as the last METADATA answer described it."""

    name: str
    error_code: int = 0
    error_message: str = ""
    internal: bool = False
    partitions: dict[int, PartitionInfo] = field(default_factory=dict)

    def describe(self) -> TopicDescription:
        """The topic as a ``TopicDescription`` (partitions in order)."""
        return TopicDescription(
            self.name,
            tuple(self.partitions[p] for p in sorted(self.partitions)),
            self.internal,
        )


def _parse_partition(topic: str, raw: Any) -> PartitionInfo:
    return PartitionInfo(
        topic=topic,
        partition=int(raw["partition"]),
        leader=int(raw.get("leader", -1)),
        leader_epoch=int(raw.get("leader_epoch", -1)),
        replicas=tuple(int(r) for r in raw.get("replicas") or ()),
        isr=tuple(int(r) for r in raw.get("isr") or ()),
        error_code=int(raw.get("error_code", 0)),
    )


class ClusterMetadata:
    """The client's view of the cluster (sans-IO: fed METADATA payloads)."""

    def __init__(self) -> None:
        self.cluster_id: str | None = None
        self.controller_id = -1
        self.brokers: dict[int, BrokerInfo] = {}
        self.topics: dict[str, TopicMetadata] = {}
        #: topic -> number of partitions, for the producer's lock-free hot path.
        self.partition_counts: dict[str, int] = {}
        self.version = 0
        self.updated_at = -math.inf

    def update(self, payload: Any, now: float, *, full: bool = False) -> None:
        """Apply a METADATA response. ``full`` (all topics were asked for) also
        forgets topics the answer no longer lists."""
        self.cluster_id = payload.get("cluster_id")
        self.controller_id = int(payload.get("controller_id", -1))
        brokers = {}
        for b in payload.get("brokers") or ():
            info = BrokerInfo(int(b["node_id"]), str(b["host"]), int(b["port"]), b.get("rack"))
            brokers[info.node_id] = info
        if brokers:
            self.brokers = brokers
        seen: set[str] = set()
        for t in payload.get("topics") or ():
            name = str(t["name"])
            seen.add(name)
            tm = TopicMetadata(
                name,
                int(t.get("error_code", 0)),
                str(t.get("error_message") or ""),
                bool(t.get("internal", False)),
            )
            for p in t.get("partitions") or ():
                pinfo = _parse_partition(name, p)
                tm.partitions[pinfo.partition] = pinfo
            self.topics[name] = tm
            if tm.partitions:
                self.partition_counts[name] = len(tm.partitions)
            else:
                self.partition_counts.pop(name, None)
        if full:
            for name in list(self.topics):
                if name not in seen:
                    del self.topics[name]
                    self.partition_counts.pop(name, None)
        self.version += 1
        self.updated_at = now

    def leader_for(self, tp: TopicPartition) -> int | None:
        """The leader's node id, or None when unknown (no metadata or no leader)."""
        tm = self.topics.get(tp.topic)
        if tm is None:
            return None
        info = tm.partitions.get(tp.partition)
        if info is None or info.leader < 0 or info.leader not in self.brokers:
            return None
        return info.leader

    def partition_info(self, tp: TopicPartition) -> PartitionInfo | None:
        """What the metadata says about one partition (None if unknown)."""
        tm = self.topics.get(tp.topic)
        return None if tm is None else tm.partitions.get(tp.partition)

    def topic_error(self, topic: str) -> ServerError | None:
        """The error the last answer gave for ``topic`` (None if it had none)."""
        tm = self.topics.get(topic)
        if tm is None or not tm.error_code:
            return None
        return ERRORS.exception(tm.error_code, tm.error_message or topic)

    def invalidate(self, topic: str) -> None:
        """Forget a topic's partitions (e.g. after it was deleted)."""
        self.topics.pop(topic, None)
        self.partition_counts.pop(topic, None)


class BrokerConnection:
    """One open channel to a broker and the task that runs it."""

    __slots__ = ("address", "channel", "closed", "node_id")

    def __init__(self, node_id: int, address: str, channel: RpcChannel) -> None:
        self.node_id = node_id
        self.address = address
        self.channel = channel
        self.closed = trio.Event()

    @property
    def is_open(self) -> bool:
        """Whether the connection can still carry requests."""
        return self.channel.is_open and not self.closed.is_set()

    async def call(self, api: int, payload: Any, timeout: float) -> Any:
        """One request; ResponseTimeoutError if the answer takes longer than ``timeout``."""
        with trio.move_on_after(timeout):
            return await self.channel.call(api, 0, payload)
        raise ResponseTimeoutError(
            f"broker {self.node_id} ({self.address}) did not answer api {api} in {timeout}s"
        )


class Cluster:
    """Connections and metadata for one client.

    ``await cluster.start(nursery)`` before use; ``aclose`` closes every
    connection. All methods run in the trio thread that owns the nursery.
    """

    def __init__(
        self,
        bootstrap: list[tuple[str, int]],
        *,
        request_timeout: float,
        connect_timeout: float,
        retry_backoff: float,
        metadata_max_age: float,
        max_frame: int,
        allow_auto_topic_creation: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap = bootstrap
        self.clock = clock
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.retry_backoff = retry_backoff
        self.metadata_max_age = metadata_max_age
        self.max_frame = max_frame
        self.allow_auto_topic_creation = allow_auto_topic_creation
        self.metadata = ClusterMetadata()
        #: Topics this client cares about (refreshed together); None = all.
        self.topics: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._conns: dict[int, BrokerConnection] = {}
        self._connecting: dict[int, trio.Event] = {}
        self._closed = False
        self._refresh_lock = trio.Lock()
        self._metadata_changed = trio.Event()
        self._next_bootstrap = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Use ``nursery`` for the connections' reader and writer tasks."""
        self._nursery = nursery

    async def aclose(self) -> None:
        """Close every connection; later calls raise ClientClosedError."""
        self._closed = True
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            with trio.CancelScope(shield=True):
                await conn.channel.aclose()
            conn.closed.set()

    # -- connections ------------------------------------------------------------------------

    def _address_of(self, node_id: int) -> tuple[str, int]:
        if node_id <= _BOOTSTRAP_BASE:
            return self.bootstrap[_BOOTSTRAP_BASE - node_id]
        info = self.metadata.brokers.get(node_id)
        if info is None:
            raise ConnectionLostError(f"broker {node_id} is not in the cluster metadata")
        return info.host, info.port

    async def connection(self, node_id: int) -> BrokerConnection:
        """The open connection to ``node_id``, connecting if needed.

        Raises ConnectionLostError when the broker cannot be reached."""
        while True:
            if self._closed:
                raise ClientClosedError("the client is closed")
            conn = self._conns.get(node_id)
            if conn is not None and conn.is_open:
                return conn
            pending = self._connecting.get(node_id)
            if pending is None:
                break
            await pending.wait()
        done = self._connecting[node_id] = trio.Event()
        try:
            return await self._connect(node_id)
        finally:
            del self._connecting[node_id]
            done.set()

    async def _connect(self, node_id: int) -> BrokerConnection:
        if self._nursery is None:
            raise RuntimeError("Cluster.start() was not called")
        host, port = self._address_of(node_id)
        address = f"{host}:{port}"
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as exc:
            raise ConnectionLostError(f"cannot connect to {address}: {exc!r}") from exc
        channel = RpcChannel(stream, ERRORS, max_frame=self.max_frame)
        conn = BrokerConnection(node_id, address, channel)
        self._conns[node_id] = conn
        self._nursery.start_soon(self._run_channel, conn)
        return conn

    async def _run_channel(self, conn: BrokerConnection) -> None:
        try:
            await conn.channel.run()
        finally:
            conn.closed.set()
            if self._conns.get(conn.node_id) is conn:
                del self._conns[conn.node_id]

    async def disconnect(self, node_id: int) -> None:
        """Close the connection to a broker (e.g. after a request timed out)."""
        conn = self._conns.pop(node_id, None)
        if conn is not None:
            with trio.CancelScope(shield=True):
                await conn.channel.aclose()
            conn.closed.set()

    def in_flight(self, node_id: int) -> int:
        """Requests awaiting an answer on the connection to ``node_id``."""
        conn = self._conns.get(node_id)
        return conn.channel.in_flight if conn is not None else 0

    def _candidates(self) -> list[int]:
        """Nodes to ask for metadata: connected ones first, then known brokers,
        then the bootstrap addresses."""
        connected = [n for n, c in self._conns.items() if c.is_open and n > _BOOTSTRAP_BASE]
        known = [n for n in self.metadata.brokers if n not in connected]
        start = self._next_bootstrap
        self._next_bootstrap += 1
        boot = [
            _BOOTSTRAP_BASE - ((start + i) % len(self.bootstrap))
            for i in range(len(self.bootstrap))
        ]
        return connected + known + boot

    async def any_connection(self) -> BrokerConnection:
        """A connection to some broker of the cluster."""
        errors: list[str] = []
        for node in self._candidates():
            try:
                return await self.connection(node)
            except ConnectionLostError as exc:
                errors.append(str(exc))
        raise NoBrokersAvailableError("no broker reachable: " + "; ".join(errors))

    async def call(self, node_id: int, api: int, payload: Any) -> Any:
        """One request to one broker; ConnectionLostError / ResponseTimeoutError on loss."""
        conn = await self.connection(node_id)
        try:
            return await conn.call(api, payload, self.request_timeout)
        except ResponseTimeoutError:
            await self.disconnect(node_id)
            raise

    async def call_any(self, api: int, payload: Any) -> Any:
        """One request to any broker, trying the next one if a connection fails."""
        last: BaseException | None = None
        for _ in range(max(2, len(self.metadata.brokers) + len(self.bootstrap))):
            try:
                conn = await self.any_connection()
                return await self.call(conn.node_id, api, payload)
            except (ConnectionLostError, ResponseTimeoutError) as exc:
                last = exc
        raise NoBrokersAvailableError(f"no broker answered: {last}")

    # -- metadata ---------------------------------------------------------------------------

    def needs_refresh(self, now: float) -> bool:
        """Whether the metadata is older than ``metadata_max_age``."""
        return now - self.metadata.updated_at >= self.metadata_max_age

    async def refresh(
        self, topics: Iterable[str] | None = None, *, all_topics: bool = False
    ) -> None:
        """Fetch metadata for ``topics`` plus every topic already tracked (or all
        topics); coalesces with a refresh already under way."""
        if topics is not None:
            self.topics.update(topics)
        version = self.metadata.version
        async with self._refresh_lock:
            if self.metadata.version != version and not all_topics and topics is None:
                return  # someone refreshed while we waited
            wanted = None if all_topics else sorted(self.topics)
            payload = await self.call_any(
                ApiKey.METADATA,
                {"topics": wanted, "allow_auto_topic_creation": self.allow_auto_topic_creation},
            )
            self.metadata.update(payload, self.clock(), full=wanted is None)
            changed, self._metadata_changed = self._metadata_changed, trio.Event()
            changed.set()
        await self._close_idle_bootstrap()

    async def _close_idle_bootstrap(self) -> None:
        """Once the brokers are known, bootstrap connections have done their job."""
        if not self.metadata.brokers:
            return
        for node, conn in list(self._conns.items()):
            if node <= _BOOTSTRAP_BASE and conn.channel.in_flight == 0:
                await self.disconnect(node)

    async def wait_for_topic(self, topic: str, timeout: float) -> int:
        """Refresh until ``topic`` has partitions with known count; its partition
        count. Retriable topic errors are retried until ``timeout``; others raise."""
        with trio.move_on_after(timeout):
            while True:
                n = self.metadata.partition_counts.get(topic)
                if n:
                    return n
                try:
                    await self.refresh([topic])
                except NoBrokersAvailableError as exc:
                    log.debug("metadata for %s: %s", topic, exc)
                n = self.metadata.partition_counts.get(topic)
                if n:
                    return n
                error = self.metadata.topic_error(topic)
                if error is not None and not error.retriable:
                    raise error
                await trio.sleep(self.retry_backoff)
        error = self.metadata.topic_error(topic)
        detail = f" (last error: {error})" if error is not None else ""
        raise MetadataTimeoutError(
            f"topic {topic!r} not present in metadata after {timeout * 1000:.0f} ms{detail}"
        )

    async def leader(self, tp: TopicPartition, timeout: float) -> int:
        """The leader of ``tp``, refreshing metadata until it is known."""
        with trio.move_on_after(timeout):
            while True:
                leader = self.metadata.leader_for(tp)
                if leader is not None:
                    return leader
                try:
                    await self.refresh([tp.topic])
                except NoBrokersAvailableError as exc:
                    log.debug("metadata for %s: %s", tp, exc)
                leader = self.metadata.leader_for(tp)
                if leader is not None:
                    return leader
                error = self.metadata.topic_error(tp.topic)
                if error is not None and not error.retriable:
                    raise error
                await trio.sleep(self.retry_backoff)
        raise MetadataTimeoutError(f"no leader known for {tp.topic}-{tp.partition}")

    async def controller(self, timeout: float) -> int:
        """The controller's node id (refreshing metadata if it is unknown)."""
        with trio.move_on_after(timeout):
            while True:
                cid = self.metadata.controller_id
                if cid >= 0 and cid in self.metadata.brokers:
                    return cid
                await self.refresh()
                cid = self.metadata.controller_id
                if cid >= 0 and cid in self.metadata.brokers:
                    return cid
                await trio.sleep(self.retry_backoff)
        raise MetadataTimeoutError("no controller known")
