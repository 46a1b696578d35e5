"""Broker registration: the ephemeral ``/brokers/ids/<id>`` znode, and the cluster id.

A broker restarted after a crash finds its previous process's registration
still there (the coordinator keeps a session until its timeout, even across its
own restart). Because the data directory is locked (broker.data_dir), a
registration naming this host and this data directory can only be that dead
process's, so it is deleted at once instead of waiting out the session. A
registration by anything else means the id is taken: the broker waits until
it goes away.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import uuid

import trio

from broker.config import BrokerConfig
from broker.znodes import (
    CLUSTER_ID,
    BrokerRegistration,
    ZnodeDataError,
    broker_path,
    decode,
    encode,
)
from coordinator.client import AsyncCoordinatorClient, WatchedEvent
from coordinator.errors import BadVersionError, NodeExistsError, NoNodeError

logger = logging.getLogger(__name__)


async def ensure_cluster_id(zk: AsyncCoordinatorClient) -> str:
    """The cluster's id, created (a random one) by the first broker ever started."""
    while True:
        try:
            data, _ = await zk.get(CLUSTER_ID)
        except NoNodeError:
            cluster_id = uuid.uuid4().hex
            try:
                await zk.create(CLUSTER_ID, encode({"id": cluster_id}), make_parents=True)
            except NodeExistsError:
                continue
            logger.info("created cluster id %s", cluster_id)
            return cluster_id
        value = decode(data, "cluster id").get("id")
        if not isinstance(value, str) or not value:
            raise ZnodeDataError(f"{CLUSTER_ID} holds no id")
        return value


def registration_for(config: BrokerConfig, port: int, data_dir: str) -> BrokerRegistration:
    return BrokerRegistration(
        host=config.advertised,
        port=port,
        rack=config.rack,
        started_at=time.time_ns() // 1_000_000,
        hostname=socket.gethostname(),
        data_dir=data_dir,
    )


async def register(zk: AsyncCoordinatorClient, broker_id: int, me: BrokerRegistration) -> None:
    """Create this broker's ephemeral registration, clearing a stale one of its own."""
    path = broker_path(broker_id)
    waiting_logged = False
    while True:
        try:
            await zk.create(path, me.to_bytes(), ephemeral=True, make_parents=True)
            logger.info("registered broker %d at %s:%d", broker_id, me.host, me.port)
            return
        except NodeExistsError:
            pass
        gone = trio.Event()

        def on_change(event: WatchedEvent, gone: trio.Event = gone) -> None:
            gone.set()

        try:
            data, stat = await zk.get(path, watch=on_change)
        except NoNodeError:
            continue
        if stat.ephemeral_owner == zk.session_id:
            if data != me.to_bytes():
                await zk.set(path, me.to_bytes(), stat.version)
            return
        try:
            other = BrokerRegistration.from_bytes(data)
        except ZnodeDataError:
            other = None
        if other is not None and other.hostname == me.hostname and other.data_dir == me.data_dir:
            logger.info("removing the registration left by this broker's previous process")
            with contextlib.suppress(NoNodeError, BadVersionError):
                await zk.delete(path, version=stat.version)
            continue
        if not waiting_logged:
            where = f"{other.host}:{other.port}" if other is not None else "an unknown process"
            logger.warning(
                "broker id %d is registered by %s; waiting for that registration to end",
                broker_id,
                where,
            )
            waiting_logged = True
        await gone.wait()
