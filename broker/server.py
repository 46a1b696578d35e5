"""The broker daemon: wiring, start-up, serving and clean shutdown.

Start-up, in order: lock the data directory; start the embedded coordinator if
no address is configured; open a coordinator session; learn (or create) the
cluster id; open the listening socket (its port goes into the registration);
register ``/brokers/ids/<id>``; watch and load the metadata; campaign for the
controller; open the logs of the partitions assigned here; wait until the
metadata has settled (as controller: every partition state written and seen);
then accept clients and report the port through ``task_status`` — the caller
prints the ready line only then.

Shutdown (cancellation): stop accepting, answer parked fetches, close every log
cleanly (flush, checkpoints, clean-shutdown marker), end the coordinator session
(the registration and, if held, /controller vanish at once), and finally stop the
embedded coordinator.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import trio

from broker.committer import Committer
from broker.config import BrokerConfig
from broker.connection import ClientConnection, serve_connection
from broker.controller import Controller
from broker.controller_plan import plan_states
from broker.data_dir import DataDir
from broker.dispatcher import Background, Dispatcher, Immediate, Route
from broker.embedded_coordinator import connect_address, embedded_config
from broker.groups.coordinator import GroupCoordinator
from broker.handlers.api_versions import handle_api_versions
from broker.handlers.configs import AlterConfigsHandler, DescribeConfigsHandler
from broker.handlers.elect_leaders import ElectLeadersHandler
from broker.handlers.fetch import FetchHandler
from broker.handlers.find_coordinator import FindCoordinatorHandler
from broker.handlers.group_delete import DeleteGroupsHandler
from broker.handlers.group_describe import ConsumerGroupDescribeHandler
from broker.handlers.group_heartbeat import ConsumerGroupHeartbeatHandler
from broker.handlers.group_list import ListGroupsHandler
from broker.handlers.leader_epochs import LeaderEpochsHandler
from broker.handlers.list_offsets import ListOffsetsHandler
from broker.handlers.metadata import MetadataHandler
from broker.handlers.offset_commit import OffsetCommitHandler
from broker.handlers.offset_fetch import OffsetFetchHandler
from broker.handlers.produce import ProduceHandler
from broker.handlers.producer_id import InitProducerIdHandler
from broker.handlers.reassign_partitions import ReassignPartitionsHandler
from broker.handlers.topics import CreateTopicsHandler, DeleteTopicsHandler
from broker.metadata_cache import Changes, MetadataCache
from broker.metadata_sync import MetadataSync
from broker.metrics import (
    BrokerCollector,
    MetadataObserver,
    RequestStats,
    broker_health,
    starting_health,
)
from broker.partition import Partition
from broker.producer_id_manager import ProducerIdManager
from broker.registration import ensure_cluster_id, register, registration_for
from broker.replica_manager import ReplicaManager
from broker.replication.controlled_shutdown import controlled_shutdown
from broker.topic_admin import TopicAdmin
from broker.znodes import BrokerRegistration
from client.observability import Observability
from client.protocol import ApiKey
from coordinator.client import AsyncCoordinatorClient, ConnectionState
from coordinator.errors import CoordinatorError
from coordinator.server import serve as coordinator_serve

logger = logging.getLogger(__name__)

SETTLE_SECONDS = 30.0


class Broker:
    """One broker's components, built around an open coordinator session."""

    def __init__(self, config: BrokerConfig, zk: AsyncCoordinatorClient, data_dir: DataDir) -> None:
        self.config = config
        self.zk = zk
        self.data_dir = data_dir
        self.cache = MetadataCache()
        self.sync = MetadataSync(zk, self.cache)
        self.committer = Committer(config.flush_policy, config.flush_interval_ms, self._visible)
        self.replicas = ReplicaManager(
            config,
            data_dir,
            self.cache,
            self.committer,
            self._partition_changed,
            zk=zk,
            requests=self.sync.requests,
        )
        self.controller = Controller(
            zk, self.cache, config.broker_id, config=config, requests=self.sync.requests
        )
        self.admin = TopicAdmin(zk, self.cache, self.sync, config)
        self.fetch = FetchHandler(self.replicas, config.fetch_max_bytes)
        self.producer_ids = ProducerIdManager(zk, config.broker_id, config.producer_id_block_size)
        self.groups = GroupCoordinator(
            config, self.replicas, self.committer, self.cache, self.admin
        )
        self.dispatcher = Dispatcher(self._routes())
        self.port = 0
        self.connections: set[ClientConnection] = set()
        # Metrics and /health (broker.metrics).
        self.serving = False
        self.request_stats = RequestStats()
        self.metadata_observer = MetadataObserver(
            config.broker_id, self.cache, lambda: self.controller.active
        )
        self._nursery: trio.Nursery | None = None

    def _routes(self) -> dict[int, Route]:
        return {
            ApiKey.PRODUCE: Immediate(ProduceHandler(self.replicas, self.committer)),
            ApiKey.FETCH: Immediate(self.fetch),
            ApiKey.LIST_OFFSETS: Immediate(ListOffsetsHandler(self.replicas)),
            ApiKey.METADATA: Immediate(MetadataHandler(self.cache, self.admin, self.config)),
            ApiKey.API_VERSIONS: Immediate(handle_api_versions),
            ApiKey.CREATE_TOPICS: Background(CreateTopicsHandler(self.admin)),
            ApiKey.DELETE_TOPICS: Background(DeleteTopicsHandler(self.admin)),
            ApiKey.INIT_PRODUCER_ID: Background(InitProducerIdHandler(self.producer_ids)),
            ApiKey.DESCRIBE_CONFIGS: Immediate(DescribeConfigsHandler(self.cache, self.config)),
            ApiKey.ALTER_CONFIGS: Background(AlterConfigsHandler(self.admin)),
            ApiKey.FIND_COORDINATOR: Immediate(FindCoordinatorHandler(self.groups)),
            ApiKey.CONSUMER_GROUP_HEARTBEAT: Immediate(ConsumerGroupHeartbeatHandler(self.groups)),
            ApiKey.CONSUMER_GROUP_DESCRIBE: Immediate(ConsumerGroupDescribeHandler(self.groups)),
            ApiKey.OFFSET_COMMIT: Immediate(OffsetCommitHandler(self.groups)),
            ApiKey.OFFSET_FETCH: Immediate(OffsetFetchHandler(self.groups)),
            ApiKey.LIST_GROUPS: Immediate(ListGroupsHandler(self.groups)),
            ApiKey.DELETE_GROUPS: Immediate(DeleteGroupsHandler(self.groups)),
            ApiKey.OFFSET_FOR_LEADER_EPOCH: Immediate(LeaderEpochsHandler(self.replicas)),
            ApiKey.ELECT_LEADERS: Background(ElectLeadersHandler(self.admin, self.sync.requests)),
            ApiKey.ALTER_PARTITION_REASSIGNMENTS: Background(
                ReassignPartitionsHandler(self.admin, self.sync.requests)
            ),
        }

    # ------------------------------------------------------------ wiring callbacks

    def _visible(self, partition: Partition, nbytes: int) -> None:
        self.fetch.visible(partition.key, nbytes)

    def _partition_changed(self, tp: tuple[str, int]) -> None:
        self.fetch.partition_changed(tp)
        self.groups.partition_changed(tp)

    async def _on_metadata(self, changes: Changes) -> None:
        if changes.topics:
            await self.replicas.apply(changes.topics)
        await self.controller.on_changes(changes)

    def _on_session_state(self, state: ConnectionState) -> None:
        self.replicas.session_state(state)
        if state is ConnectionState.LOST:
            self.controller.resign()
        elif state is ConnectionState.CONNECTED and self._nursery is not None:
            # A new session after LOST: our ephemerals died with the old one.
            self._nursery.start_soon(self._rejoin)
        elif state is ConnectionState.RECONNECTED:
            self.sync.request_resync()

    async def _rejoin(self) -> None:
        try:
            await register(self.zk, self.config.broker_id, self._registration())
        except CoordinatorError as exc:
            logger.error("re-registering after a new coordinator session failed: %s", exc)
        self.sync.request_resync()
        self.controller.resign()

    def _registration(self) -> BrokerRegistration:
        return registration_for(self.config, self.port, str(self.data_dir.path))

    # ------------------------------------------------------------ lifecycle

    async def run(
        self, stop: trio.Event, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start (see the module docstring), serve until ``stop`` is set, then shut down."""
        config = self.config
        cluster_id = await ensure_cluster_id(self.zk)
        self.data_dir.check_cluster(config.broker_id, cluster_id)
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        if config.port == 0 and len(listeners) > 1:
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        self.port = int(listeners[0].socket.getsockname()[1])
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await register(self.zk, config.broker_id, self._registration())
                self.zk.add_listener(self._on_session_state)
                await self.sync.watch_and_load()
                self.sync.listeners.append(self._on_metadata)
                self.metadata_observer.baseline()
                self.sync.listeners.append(self.metadata_observer.on_changes)
                self.sync.request_listeners.append(self.controller.on_requests)
                if self.controller.should_campaign():
                    await self.controller.try_elect()
                await self.replicas.start()
                nursery.start_soon(self.sync.run)
                nursery.start_soon(self.controller.run)
                nursery.start_soon(self.committer.run)
                nursery.start_soon(self.replicas.run)
                nursery.start_soon(self.fetch.run_expiry)
                nursery.start_soon(self._maintenance)
                nursery.start_soon(self.groups.run)
                await self._settle()
                await nursery.start(trio.serve_listeners, self._serve_client, listeners)
                logger.info(
                    "broker %d serving on %s:%d (cluster %s, controller %d)",
                    config.broker_id,
                    config.host,
                    self.port,
                    cluster_id,
                    self.cache.controller_id,
                )
                self.serving = True
                task_status.started(self.port)
                await stop.wait()
                self.serving = False
                if config.controlled_shutdown_enable:
                    await controlled_shutdown(
                        self.zk,
                        config.broker_id,
                        self.replicas,
                        self.sync,
                        config.controlled_shutdown_timeout_ms / 1000.0,
                    )
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._shutdown(listeners)

    async def _settle(self) -> None:
        """Wait (bounded) until this broker leads what the metadata says it leads."""
        with trio.move_on_after(SETTLE_SECONDS) as scope:
            while not self._settled():
                with trio.move_on_after(0.2):
                    await self.sync.wait_updated()
        if scope.cancelled_caught:
            logger.warning("metadata did not settle within %.0fs; serving anyway", SETTLE_SECONDS)

    def _settled(self) -> bool:
        cache = self.cache
        if cache.controller is None:
            return False
        if self.controller.active and plan_states(cache, self.controller.epoch, cache.topics):
            return False
        me = self.config.broker_id
        for name, topic in cache.topics.items():
            for index, info in topic.states.items():
                if info.leader != me:
                    continue
                hosted = self.replicas.partitions.get((name, index))
                if hosted is None or not hosted.is_leader:
                    return False
        return True

    async def _maintenance(self) -> None:
        interval = self.config.log_maintenance_interval_ms / 1000.0
        while True:
            await trio.sleep(interval)
            await self.replicas.maintain()

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        await serve_connection(
            stream,
            self._handle,
            self.config.max_request_bytes,
            self._connection_closed,
            self.request_stats,
        )

    def _handle(self, conn: ClientConnection, message: Any) -> None:
        self.dispatcher.handle(conn, message)

    def _connection_closed(self, conn: ClientConnection) -> None:
        self.fetch.connection_closed(conn)

    async def _shutdown(self, listeners: list[trio.SocketListener]) -> None:
        for listener in listeners:
            await listener.aclose()
        self.fetch.shutdown()
        await self.replicas.close()
        self.controller.resign()
        await self.zk.close()
        logger.info("broker %d stopped", self.config.broker_id)


async def serve(
    config: BrokerConfig,
    embedded_overrides: dict[str, Any] | None = None,
    stop: trio.Event | None = None,
    *,
    observe: Observability | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a broker until ``stop`` is set (or until cancelled, less gracefully).

    ``task_status.started(port)`` is called once the broker fully serves. With
    ``observe``, the broker's metrics — and its embedded coordinator's — go into its
    registry, and its health checks (``broker``, ``coordinator``) into its checks.
    """
    if stop is None:
        stop = trio.Event()
    if observe is not None:
        observe.health.add("broker", starting_health)
    data_dir = await trio.to_thread.run_sync(DataDir.open, config.data_dir, config.broker_id)
    try:
        async with trio.open_nursery() as nursery:
            if config.coordinator:
                hosts = config.coordinator
            else:
                cconfig = embedded_config(config, embedded_overrides or {})
                cport = await nursery.start(partial(coordinator_serve, cconfig, observe=observe))
                hosts = connect_address(cconfig, cport)
                logger.info("embedded coordinator listening on %s", hosts)
            zk = AsyncCoordinatorClient(hosts, session_timeout=config.session_timeout_ms / 1000.0)
            await zk.start(nursery)
            try:
                broker = Broker(config, zk, data_dir)
                if observe is not None:
                    observe.registry.register(BrokerCollector(broker))
                    observe.health.add("broker", lambda: broker_health(broker))
                await broker.run(stop, task_status=task_status)
            finally:
                with trio.CancelScope(shield=True):
                    await zk.close()
            # The embedded coordinator goes last, after the session above was closed.
            nursery.cancel_scope.cancel()
    finally:
        data_dir.close()
