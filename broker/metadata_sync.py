"""Keeps the metadata cache in step with the coordinator through persistent watches.

Persistent watches (``/brokers/ids``, ``/topics``, ``/admin/delete_topics`` and the
controller's other ``/admin`` work — controlled shutdowns, preferred-leader
elections, reassignments — recursive, ``/controller`` plain) report which znodes
changed; one task re-reads each changed znode, applies it to the cache (the
``/admin`` work to ``requests``, broker.replication.admin_znodes), then hands the
accumulated changes to the listeners (replica manager, controller, waiting admin
requests) in order.
Nothing is polled. Re-reading instead of trusting the event makes processing
idempotent: a burst of events for one node costs one read of its newest data.
After a new session (or a reconnect that may have missed events) everything is
read again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import trio

from broker.metadata_cache import Changes, MetadataCache
from broker.replication.admin_znodes import (
    ADMIN_PATHS,
    CONTROLLED_SHUTDOWN,
    ELECTION_PREFIX,
    PREFERRED_ELECTION,
    REASSIGN_PARTITIONS,
    AdminRequests,
    decode_election,
    decode_reassignment,
    parse_reassignment_name,
)
from broker.znodes import (
    ADMIN_DELETE_TOPICS,
    BROKER_IDS,
    CLUSTER_ID,
    CONTROLLER,
    TOPICS,
    BrokerRegistration,
    ControllerData,
    PartitionStateData,
    TopicAssignment,
    ZnodeDataError,
    decode,
    parse_broker_path,
    parse_topics_path,
    partitions_path,
    state_path,
    topic_path,
)
from coordinator.client import AsyncCoordinatorClient, WatchedEvent
from coordinator.errors import CoordinatorError, NoNodeError

logger = logging.getLogger(__name__)

Listener = Callable[[Changes], Awaitable[None]]
RequestListener = Callable[[], None]
_RESYNC = "<resync>"
RETRY_SECONDS = 0.5


class MetadataSync:
    def __init__(self, zk: AsyncCoordinatorClient, cache: MetadataCache) -> None:
        self.zk = zk
        self.cache = cache
        self.requests = AdminRequests()
        self.listeners: list[Listener] = []
        # Told when the /admin work (requests) changed.
        self.request_listeners: list[RequestListener] = []
        self._send, self._receive = trio.open_memory_channel[str](math.inf)
        # Woken after every batch of changes has reached the listeners.
        self.updated = trio.lowlevel.ParkingLot()
        self.generation = 0

    def _on_event(self, event: WatchedEvent) -> None:
        self._send.send_nowait(event.path)

    def request_resync(self) -> None:
        """Read everything again (after a new session or a reconnect)."""
        self._send.send_nowait(_RESYNC)

    async def watch_and_load(self) -> None:
        """Register the watches, then read the whole namespace into the cache."""
        for path in (BROKER_IDS, TOPICS, ADMIN_DELETE_TOPICS, *ADMIN_PATHS):
            await self.zk.ensure_path(path)
            await self.zk.add_watch(path, self._on_event, recursive=True)
        await self.zk.add_watch(CONTROLLER, self._on_event)
        await self._load_all()
        self.cache.drain_changes()

    async def run(self) -> None:
        """Apply watch events until cancelled."""
        receive = self._receive
        while True:
            paths = {await receive.receive()}
            while True:
                try:
                    paths.add(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                if _RESYNC in paths:
                    await self._load_all()
                else:
                    for path in sorted(paths, key=len):
                        await self._refresh(path)
            except (CoordinatorError, ZnodeDataError) as exc:
                # Partly applied is fine: everything is read again once the coordinator answers.
                logger.warning("metadata refresh failed (%s); reading everything again", exc)
                await self.publish()
                await trio.sleep(RETRY_SECONDS)
                self.request_resync()
                continue
            await self.publish()

    async def publish(self) -> None:
        changes = self.cache.drain_changes()
        if changes:
            for listener in self.listeners:
                await listener(changes)
        if self.requests.drain_changed():
            for request_listener in self.request_listeners:
                request_listener()
        self.generation += 1
        self.updated.unpark_all()

    async def wait_updated(self) -> None:
        """Until the next batch of changes has been applied and published."""
        await self.updated.park()

    # ------------------------------------------------------------ reading

    async def _refresh(self, path: str) -> None:
        broker_id = parse_broker_path(path)
        if broker_id is not None:
            await self._read_broker(broker_id)
            return
        if path == CONTROLLER:
            await self._read_controller()
            return
        if path.startswith(ADMIN_DELETE_TOPICS):
            await self._read_deletions()
            return
        if path.startswith(CONTROLLED_SHUTDOWN):
            await self._read_shutdowns()
            return
        if path.startswith(PREFERRED_ELECTION):
            await self._read_elections()
            return
        if path.startswith(REASSIGN_PARTITIONS):
            await self._read_reassignments()
            return
        where = parse_topics_path(path)
        if where is None:
            return
        if where.partition is None:
            await self._read_topic(where.topic)
        else:
            await self._read_state(where.topic, where.partition)

    async def _load_all(self) -> None:
        cache = self.cache
        await self._read_cluster_id()
        brokers = {int(c) for c in await self.zk.get_children(BROKER_IDS) if c.isdigit()}
        for stale in set(cache.brokers) - brokers:
            cache.remove_broker(stale)
        for broker_id in sorted(brokers):
            await self._read_broker(broker_id)
        await self._read_controller()
        topics = set(await self.zk.get_children(TOPICS))
        for gone in set(cache.topics) - topics:
            cache.remove_topic(gone)
        async with trio.open_nursery() as nursery:
            for name in sorted(topics):
                nursery.start_soon(self._read_topic_tree, name)
        await self._read_deletions()
        await self._read_shutdowns()
        await self._read_elections()
        await self._read_reassignments()

    async def _read_cluster_id(self) -> None:
        try:
            data, _ = await self.zk.get(CLUSTER_ID)
        except NoNodeError:
            return
        value = decode(data, "cluster id").get("id")
        if isinstance(value, str):
            self.cache.cluster_id = value

    async def _read_broker(self, broker_id: int) -> None:
        try:
            data, stat = await self.zk.get(f"{BROKER_IDS}/{broker_id}")
        except NoNodeError:
            self.cache.remove_broker(broker_id)
            return
        try:
            registration = BrokerRegistration.from_bytes(data)
        except ZnodeDataError as exc:
            logger.warning("ignoring broker %d: %s", broker_id, exc)
            self.cache.remove_broker(broker_id)
            return
        self.cache.set_broker(broker_id, registration, stat.czxid)

    async def _read_controller(self) -> None:
        try:
            data, _ = await self.zk.get(CONTROLLER)
        except NoNodeError:
            self.cache.set_controller(None)
            return
        try:
            self.cache.set_controller(ControllerData.from_bytes(data))
        except ZnodeDataError as exc:
            logger.warning("ignoring /controller: %s", exc)
            self.cache.set_controller(None)

    async def _read_topic_tree(self, name: str) -> None:
        if not await self._read_topic(name):
            return
        try:
            partitions = await self.zk.get_children(partitions_path(name))
        except NoNodeError:
            return
        for child in partitions:
            if child.isdigit():
                await self._read_state(name, int(child))

    async def _read_topic(self, name: str) -> bool:
        try:
            data, stat = await self.zk.get(topic_path(name))
        except NoNodeError:
            self.cache.remove_topic(name)
            return False
        try:
            assignment = TopicAssignment.from_bytes(data)
        except ZnodeDataError as exc:
            logger.warning("ignoring topic %s: %s", name, exc)
            return False
        self.cache.set_topic(name, assignment, stat.version)
        return True

    async def _read_state(self, name: str, partition: int) -> None:
        try:
            data, stat = await self.zk.get(state_path(name, partition))
        except NoNodeError:
            self.cache.remove_state(name, partition)
            return
        try:
            state = PartitionStateData.from_bytes(data)
        except ZnodeDataError as exc:
            logger.warning("ignoring state of %s-%d: %s", name, partition, exc)
            return
        self.cache.set_state(name, partition, state, stat.version, stat.mzxid)

    async def _read_deletions(self) -> None:
        try:
            names = await self.zk.get_children(ADMIN_DELETE_TOPICS)
        except NoNodeError:
            names = []
        self.cache.set_pending_deletions(set(names))

    # ------------------------------------------------------------ /admin work

    async def _children(self, path: str) -> list[str]:
        try:
            return list(await self.zk.get_children(path))
        except NoNodeError:
            return []

    async def _read_shutdowns(self) -> None:
        names = await self._children(CONTROLLED_SHUTDOWN)
        self.requests.set_shutting_down({int(n) for n in names if n.isdigit()})

    async def _read_elections(self) -> None:
        elections: dict[str, list[tuple[str, int]] | None] = {}
        for name in sorted(await self._children(PREFERRED_ELECTION)):
            if not name.startswith(ELECTION_PREFIX):
                continue
            try:
                data, _ = await self.zk.get(f"{PREFERRED_ELECTION}/{name}")
                elections[name] = decode_election(data)
            except NoNodeError:
                continue
            except ZnodeDataError as exc:
                logger.warning("ignoring election request %s: %s", name, exc)
                elections[name] = []
        self.requests.set_elections(elections)

    async def _read_reassignments(self) -> None:
        reassignments: dict[tuple[str, int], list[int]] = {}
        for name in sorted(await self._children(REASSIGN_PARTITIONS)):
            tp = parse_reassignment_name(name)
            if tp is None:
                continue
            try:
                data, _ = await self.zk.get(f"{REASSIGN_PARTITIONS}/{name}")
                reassignments[tp] = decode_reassignment(data)
            except NoNodeError:
                continue
            except ZnodeDataError as exc:
                logger.warning("ignoring reassignment %s: %s", name, exc)
        self.requests.set_reassignments(reassignments)
