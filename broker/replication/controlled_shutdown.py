"""Controlled shutdown: hand every leadership over before stopping (Kafka's
controlled.shutdown.enable).

A broker asked to stop (SIGTERM) first stops fetching — so that no leader takes
it back into an ISR — then creates the ephemeral
``/admin/controlled_shutdown/<id>``. The controller answers by electing, for each
partition this broker leads, another in-sync replica (leader epoch + 1), and by
removing this broker from every ISR, so acks=all no longer waits for it. The
broker waits until its metadata shows it leads nothing another replica could
take (or ``controlled_shutdown_timeout_ms`` passes), then shuts down as usual.
Producers meanwhile get NOT_LEADER_OR_FOLLOWER — retriable: they refresh their
metadata and go on at the new leaders, so a rolling restart shows them no error.

Partitions with no other in-sync replica (replication factor 1, or an ISR of
one) cannot move and stay led here until the broker stops.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from broker.metadata_sync import MetadataSync
from broker.replica_manager import ReplicaManager
from broker.replication.admin_znodes import shutdown_path
from coordinator.client import AsyncCoordinatorClient
from coordinator.errors import CoordinatorError, NodeExistsError

logger = logging.getLogger(__name__)


async def controlled_shutdown(
    zk: AsyncCoordinatorClient,
    broker_id: int,
    replicas: ReplicaManager,
    sync: MetadataSync,
    timeout: float,
) -> bool:
    """Move this broker's leaderships away; True if none is left that could move."""
    replicas.stop_following()
    others = replicas.cache.live_brokers() - {broker_id}
    if not others or (not replicas.leads_movable() and not _follows_anything(replicas)):
        return not replicas.leads_movable()
    started = trio.current_time()
    try:
        with contextlib.suppress(NodeExistsError):
            await zk.create(shutdown_path(broker_id), b"{}", ephemeral=True, make_parents=True)
    except CoordinatorError as exc:
        logger.warning("controlled shutdown: cannot ask the controller (%s); stopping", exc)
        return False
    logger.info("controlled shutdown: waiting for the controller to move my leaderships")
    with trio.move_on_after(timeout):
        while replicas.leads_movable() or _in_some_isr(replicas, broker_id):
            with trio.move_on_after(0.5):
                await sync.wait_updated()
    left = replicas.leads_movable()
    elapsed = trio.current_time() - started
    if left:
        logger.warning(
            "controlled shutdown: still leading %d partition(s) after %.1fs; stopping anyway",
            len(left),
            elapsed,
        )
        return False
    logger.info("controlled shutdown: leaderships moved in %.3fs", elapsed)
    return True


def _follows_anything(replicas: ReplicaManager) -> bool:
    return any(not p.is_leader for p in replicas.partitions.values())


def _in_some_isr(replicas: ReplicaManager, broker_id: int) -> bool:
    """Whether some partition still counts this broker as an in-sync follower."""
    return any(
        not p.is_leader and broker_id in p.isr and p.leader >= 0
        for p in replicas.partitions.values()
    )
