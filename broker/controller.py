"""The controller: elected through the coordinator, it writes partition states.

Election (Kafka's ZooKeeper-era scheme): read ``/controller_epoch``, then in one
transaction create the ephemeral ``/controller`` {broker_id, epoch+1} and set
``/controller_epoch`` at the version just read. Whoever's transaction lands is
controller with a fresh epoch; the others wait for ``/controller`` to vanish.
Every write the controller makes is a transaction that first checks
``/controller_epoch`` is still at its version, so a controller that lost its
session (a zombie) cannot change anything its successor decided.

Work (what to write is decided by broker.controller_plan and
broker.replication.reassignment):

- new topics get their partition states; partitions whose leader died,
  restarted or is stopping get a new leader and leader epoch; dead, restarted
  and stopping followers leave the ISR;
- controlled shutdowns (``/admin/controlled_shutdown/<id>``) are exactly that:
  the stopping broker is neither a leader nor an ISR member from then on,
  wherever another in-sync replica exists;
- preferred-leader elections: on request (``/admin/preferred_replica_election``,
  the ElectLeaders api) and, with ``auto_leader_rebalance_enable``, every
  ``leader_imbalance_check_interval_ms`` over every partition;
- reassignments (``/admin/reassign_partitions``), one step per pass;
- topics listed under ``/admin/delete_topics`` are removed from the namespace
  (their brokers then delete the logs).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import defaultdict
from dataclasses import replace

import trio

from broker.config import BrokerConfig
from broker.controller_plan import NEW_NODE, StateWrite, all_partitions, plan_preferred, plan_states
from broker.metadata_cache import Changes, MetadataCache
from broker.replication.admin_znodes import (
    PREFERRED_ELECTION,
    AdminRequests,
    reassignment_path,
)
from broker.replication.reassignment import Step, plan_reassignment
from broker.topic_config import TOPIC_CONFIGS
from broker.znodes import (
    CONTROLLER,
    CONTROLLER_EPOCH,
    ControllerData,
    ZnodeDataError,
    decode_epoch,
    delete_topic_path,
    encode_epoch,
    partition_path,
    partitions_path,
    state_path,
    topic_path,
)
from client.protocol import InvalidConfigError
from coordinator.client import AsyncCoordinatorClient, AsyncTransaction
from coordinator.client.transaction import first_error
from coordinator.errors import (
    BadVersionError,
    CoordinatorError,
    NodeExistsError,
    NoNodeError,
)

logger = logging.getLogger(__name__)

RETRY_SECONDS = 0.5


class Controller:
    def __init__(
        self,
        zk: AsyncCoordinatorClient,
        cache: MetadataCache,
        broker_id: int,
        *,
        config: BrokerConfig | None = None,
        requests: AdminRequests | None = None,
    ) -> None:
        self.zk = zk
        self.cache = cache
        self.broker_id = broker_id
        self.config = config if config is not None else BrokerConfig(broker_id=broker_id)
        self.requests = requests if requests is not None else AdminRequests()
        self.active = False
        self.epoch = 0
        self._epoch_version = -1
        self._lot = trio.lowlevel.ParkingLot()
        self._kicked = True
        self._all_topics = True
        self._dirty: set[str] = set()
        self._retry = False
        self._requests_dirty = True
        self._next_rebalance = math.inf

    # ------------------------------------------------------------ events

    async def on_changes(self, changes: Changes) -> None:
        """Metadata listener: remember what to look at and wake the controller task."""
        if changes.brokers:
            self._all_topics = True
        self._dirty.update(changes.topics)
        if changes.controller:
            self._check_superseded()
        self._kick()

    def on_requests(self) -> None:
        """Request listener: the /admin work changed."""
        self._requests_dirty = True
        # A stopping broker must leave every ISR it is in: look at all partitions.
        self._all_topics = True
        self._kick()

    def resign(self) -> None:
        """The session was lost: our /controller node is gone with it."""
        if self.active:
            logger.info("broker %d is no longer the controller", self.broker_id)
        self.active = False
        self._all_topics = True
        self._kick()

    def _kick(self) -> None:
        self._kicked = True
        self._lot.unpark_all()

    def _check_superseded(self) -> None:
        current = self.cache.controller
        if self.active and current is not None and current.epoch > self.epoch:
            logger.warning("controller epoch %d superseded by %d", self.epoch, current.epoch)
            self.resign()

    # ------------------------------------------------------------ task

    async def run(self) -> None:
        """Campaign and work until cancelled."""
        while True:
            self._kicked = False
            try:
                if self.should_campaign():
                    await self.try_elect()
                if self.active:
                    await self._work()
            except (CoordinatorError, ZnodeDataError) as exc:
                logger.warning("controller: %s; retrying", exc)
                self._retry = True
            if self._kicked:
                continue
            wake_at = self._next_rebalance if self.active else math.inf
            if self._retry:
                wake_at = min(wake_at, trio.current_time() + RETRY_SECONDS)
            with trio.move_on_at(wake_at):
                await self._lot.park()

    def should_campaign(self) -> bool:
        """No controller — or a /controller naming this broker while it is not the
        controller, which can only be left by this broker's previous process."""
        current = self.cache.controller
        return not self.active and (current is None or current.broker_id == self.broker_id)

    async def try_elect(self) -> bool:
        """One election attempt; True if this broker is now the controller."""
        zk = self.zk
        while True:
            try:
                data, stat = await zk.get(CONTROLLER_EPOCH)
            except NoNodeError:
                with contextlib.suppress(NodeExistsError):
                    await zk.create(CONTROLLER_EPOCH, encode_epoch(0))
                continue
            epoch = decode_epoch(data) + 1
            me = ControllerData(self.broker_id, epoch)
            results = await (
                zk.transaction()
                .create(CONTROLLER, me.to_bytes(), ephemeral=True)
                .set_data(CONTROLLER_EPOCH, encode_epoch(epoch), stat.version)
                .commit()
            )
            error = first_error(results)
            if error is None:
                self._activate(epoch, stat.version + 1)
                logger.info("broker %d is the controller (epoch %d)", self.broker_id, epoch)
                return True
            if isinstance(error, BadVersionError):
                continue  # another broker won an election meanwhile; look again
            if isinstance(error, NodeExistsError) and await self._clear_own_stale_node():
                continue
            return self.active

    def _activate(self, epoch: int, epoch_version: int) -> None:
        self.active = True
        self.epoch = epoch
        self._epoch_version = epoch_version
        self._all_topics = True
        self._requests_dirty = True
        self._schedule_rebalance()

    def _schedule_rebalance(self) -> None:
        config = self.config
        if config.auto_leader_rebalance_enable:
            interval = config.leader_imbalance_check_interval_ms / 1000.0
            self._next_rebalance = trio.current_time() + interval
        else:
            self._next_rebalance = math.inf

    async def _clear_own_stale_node(self) -> bool:
        """A /controller left by this broker's previous process: delete it (True, try
        again). Held by this very session: resume as controller (False)."""
        try:
            data, stat = await self.zk.get(CONTROLLER)
        except NoNodeError:
            return True
        holder = ControllerData.from_bytes(data)
        if holder.broker_id != self.broker_id:
            return False
        if stat.ephemeral_owner == self.zk.session_id:
            await self._resume(holder)
            return False
        logger.info("removing /controller left by this broker's previous process")
        with contextlib.suppress(NoNodeError, BadVersionError):
            await self.zk.delete(CONTROLLER, version=stat.version)
        return True

    async def _resume(self, holder: ControllerData) -> None:
        """This session still holds /controller (we resigned too eagerly): take it back if
        its epoch is still the current one."""
        data, stat = await self.zk.get(CONTROLLER_EPOCH)
        if decode_epoch(data) == holder.epoch:
            self._activate(holder.epoch, stat.version)
            logger.info("broker %d resumes as controller (epoch %d)", self.broker_id, self.epoch)

    # ------------------------------------------------------------ work

    async def _work(self) -> None:
        self._retry = False
        cache = self.cache
        if self._all_topics:
            topics = set(cache.topics)
            self._all_topics = False
        else:
            topics = self._dirty & set(cache.topics)
        self._dirty.clear()
        stopping = self.requests.shutting_down
        unclean = {name: _unclean_enabled(cache.topics[name].config) for name in topics}
        await self._write_all(plan_states(cache, self.epoch, topics, unclean, stopping))
        if not self.active:
            return
        requests_dirty, self._requests_dirty = self._requests_dirty, False
        if requests_dirty or self.requests.reassignments:
            await self._reassign()
        if requests_dirty and self.active:
            await self._elect_requested()
        if self.active and trio.current_time() >= self._next_rebalance:
            self._schedule_rebalance()
            moving = set(self.requests.reassignments)
            wanted = [tp for tp in all_partitions(cache) if tp not in moving]
            await self._write_all(plan_preferred(cache, self.epoch, wanted, stopping))
        for name in sorted(cache.pending_deletions):
            if not self.active:
                return
            await self._delete_topic(name)

    async def _write_all(self, writes: list[StateWrite]) -> None:
        by_topic: dict[str, list[StateWrite]] = defaultdict(list)
        for write in writes:
            by_topic[write.topic].append(write)
        for name, topic_writes in by_topic.items():
            if not self.active:
                return
            await self._write_states(name, topic_writes)

    def _fenced_txn(self) -> AsyncTransaction:
        """A transaction that only commits while our controller epoch is current."""
        return self.zk.transaction().check(CONTROLLER_EPOCH, self._epoch_version)

    async def _commit(self, txn: AsyncTransaction, what: str) -> bool:
        """Commit; False (and the right reaction) when it failed."""
        results = await txn.commit()
        if isinstance(results[0], BadVersionError):
            logger.warning("controller epoch %d was fenced by a newer controller", self.epoch)
            self.resign()
            return False
        error = first_error(results)
        if error is not None:
            # The cache was behind; the watch bringing the news triggers a new plan.
            logger.debug("%s failed: %s", what, error)
            self._retry = True
            return False
        return True

    async def _write_states(self, topic: str, writes: list[StateWrite]) -> None:
        txn = self._fenced_txn()
        for w in writes:
            path = state_path(topic, w.partition)
            data = w.state.to_bytes()
            if w.version == NEW_NODE:
                txn.create(path, data, make_parents=True)
            else:
                txn.set_data(path, data, w.version)
        if not await self._commit(txn, f"state writes for {topic}"):
            self._dirty.add(topic)
            return
        for w in writes:
            logger.info(
                "%s-%d: leader %d, leader epoch %d, isr %s",
                topic,
                w.partition,
                w.state.leader,
                w.state.leader_epoch,
                w.state.isr,
            )

    # ------------------------------------------------------------ preferred leaders

    async def _elect_requested(self) -> None:
        cache = self.cache
        for name, partitions in sorted(self.requests.elections.items()):
            if not self.active:
                return
            wanted = all_partitions(cache) if partitions is None else partitions
            live = [tp for tp in wanted if tp not in self.requests.reassignments]
            await self._write_all(
                plan_preferred(cache, self.epoch, live, self.requests.shutting_down)
            )
            txn = self._fenced_txn().delete(f"{PREFERRED_ELECTION}/{name}")
            await self._commit(txn, f"removing election request {name}")

    # ------------------------------------------------------------ reassignments

    async def _reassign(self) -> None:
        cache = self.cache
        live = cache.live_brokers()
        for (name, index), target in sorted(self.requests.reassignments.items()):
            if not self.active:
                return
            topic = cache.topic(name)
            request = reassignment_path(name, index)
            if topic is None or index not in topic.assignment.partitions:
                await self._commit(self._fenced_txn().delete(request), f"dropping {request}")
                continue
            info = topic.states.get(index)
            step = plan_reassignment(
                topic.replicas(index),
                target,
                None if info is None else info.state,
                live,
                self.epoch,
            )
            if step.step is Step.WAIT:
                continue
            if step.step is Step.DONE:
                logger.info("%s-%d: reassignment to %s done", name, index, target)
                await self._commit(self._fenced_txn().delete(request), f"removing {request}")
                continue
            partitions = dict(topic.assignment.partitions)
            partitions[index] = step.replicas
            assignment = replace(topic.assignment, partitions=partitions)
            txn = self._fenced_txn().set_data(
                topic_path(name), assignment.to_bytes(), topic.version
            )
            if step.step is Step.FINISH and step.state is not None and info is not None:
                txn.set_data(state_path(name, index), step.state.to_bytes(), info.version)
            if await self._commit(txn, f"reassignment step of {name}-{index}"):
                logger.info(
                    "%s-%d: reassignment to %s: %s (replicas %s)",
                    name,
                    index,
                    target,
                    step.step.value,
                    step.replicas,
                )

    # ------------------------------------------------------------ deletion

    async def _delete_topic(self, name: str) -> None:
        """Delete the topic's znodes and the request, in one fenced transaction."""
        txn = self._fenced_txn()
        topic = self.cache.topic(name)
        if topic is not None:
            try:
                children = await self.zk.get_children(partitions_path(name))
            except NoNodeError:
                children = []
            for child in children:
                if child.isdigit():
                    p = int(child)
                    with contextlib.suppress(NoNodeError):
                        if await self.zk.exists(state_path(name, p)) is not None:
                            txn.delete(state_path(name, p))
                    txn.delete(partition_path(name, p))
            if await self.zk.exists(partitions_path(name)) is not None:
                txn.delete(partitions_path(name))
            txn.delete(topic_path(name))
        txn.delete(delete_topic_path(name))
        if await self._commit(txn, f"deleting topic {name}"):
            logger.info("deleted topic %s", name)


def _unclean_enabled(config: dict[str, str]) -> bool:
    raw = config.get("unclean.leader.election.enable")
    if raw is None:
        return False
    try:
        return bool(TOPIC_CONFIGS["unclean.leader.election.enable"].parse(raw))
    except InvalidConfigError:
        return False
