"""The controller: elected through the coordinator, it writes partition states.

Election (Kafka's ZooKeeper-era scheme): read ``/controller_epoch``, then in one
transaction create the ephemeral ``/controller`` {broker_id, epoch+1} and set
``/controller_epoch`` at the version just read. Whoever's transaction lands is
controller with a fresh epoch; the others wait for ``/controller`` to vanish.
Every write the controller makes is a transaction that first checks
``/controller_epoch`` is still at its version, so a controller that lost its
session (a zombie) cannot overwrite its successor's decisions.

Work (what to write is decided by broker.controller_plan): new topics get
their partition states, partitions whose leader died or restarted get a new
leader and leader epoch, dead followers leave the ISR, and topics listed under
``/admin/delete_topics`` are removed from the namespace (their brokers then
delete the logs).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict

import trio

from broker.controller_plan import NEW_NODE, StateWrite, plan_states
from broker.metadata_cache import Changes, MetadataCache
from broker.topic_config import TOPIC_CONFIGS
from broker.znodes import (
    CONTROLLER,
    CONTROLLER_EPOCH,
    ControllerData,
    ZnodeDataError,
    decode_epoch,
    delete_topic_path,
    encode_epoch,
    state_path,
    topic_path,
)
from client.protocol import InvalidConfigError
from coordinator.client import AsyncCoordinatorClient
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
    def __init__(self, zk: AsyncCoordinatorClient, cache: MetadataCache, broker_id: int) -> None:
        self.zk = zk
        self.cache = cache
        self.broker_id = broker_id
        self.active = False
        self.epoch = 0
        self._epoch_version = -1
        self._lot = trio.lowlevel.ParkingLot()
        self._kicked = True
        self._all_topics = True
        self._dirty: set[str] = set()
        self._retry = False

    # ------------------------------------------------------------ events

    async def on_changes(self, changes: Changes) -> None:
        """Metadata listener: remember what to look at and wake the controller task."""
        if changes.brokers:
            self._all_topics = True
        self._dirty.update(changes.topics)
        if changes.controller:
            self._check_superseded()
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
            delay = RETRY_SECONDS if self._retry else float("inf")
            with trio.move_on_after(delay):
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
                self.active = True
                self.epoch = epoch
                self._epoch_version = stat.version + 1
                self._all_topics = True
                logger.info("broker %d is the controller (epoch %d)", self.broker_id, epoch)
                return True
            if isinstance(error, BadVersionError):
                continue  # another broker won an election meanwhile; look again
            if isinstance(error, NodeExistsError) and await self._clear_own_stale_node():
                continue
            return self.active

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
            self.active = True
            self.epoch = holder.epoch
            self._epoch_version = stat.version
            self._all_topics = True
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
        unclean = {name: _unclean_enabled(cache.topics[name].config) for name in topics}
        writes = plan_states(cache, self.epoch, topics, unclean)
        by_topic: dict[str, list[StateWrite]] = defaultdict(list)
        for write in writes:
            by_topic[write.topic].append(write)
        for name, topic_writes in by_topic.items():
            if not self.active:
                return
            await self._write_states(name, topic_writes)
        for name in sorted(cache.pending_deletions):
            if not self.active:
                return
            await self._delete_topic(name)

    async def _write_states(self, topic: str, writes: list[StateWrite]) -> None:
        txn = self.zk.transaction().check(CONTROLLER_EPOCH, self._epoch_version)
        for w in writes:
            path = state_path(topic, w.partition)
            data = w.state.to_bytes()
            if w.version == NEW_NODE:
                txn.create(path, data, make_parents=True)
            else:
                txn.set_data(path, data, w.version)
        results = await txn.commit()
        if isinstance(results[0], BadVersionError):
            logger.warning("controller epoch %d was fenced by a newer controller", self.epoch)
            self.resign()
            return
        error = first_error(results)
        if error is not None:
            # The cache was behind; the watch bringing the news triggers a new plan.
            logger.debug("state writes for %s failed: %s", topic, error)
            self._dirty.add(topic)
            self._retry = True
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

    async def _delete_topic(self, name: str) -> None:
        try:
            await self.zk.delete(topic_path(name), recursive=True)
            logger.info("deleted topic %s", name)
        except NoNodeError:
            pass
        with contextlib.suppress(NoNodeError):
            await self.zk.delete(delete_topic_path(name))


def _unclean_enabled(config: dict[str, str]) -> bool:
    raw = config.get("unclean.leader.election.enable")
    if raw is None:
        return False
    try:
        return bool(TOPIC_CONFIGS["unclean.leader.election.enable"].parse(raw))
    except InvalidConfigError:
        return False
