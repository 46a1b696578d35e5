"""The leader writes its partitions' ISR changes to the coordinator (the trio shell).

Decision: ISR changes are written by the partition *leader*, as Kafka's leaders
did in its ZooKeeper era (and as its AlterPartition does through the
controller): a ``set`` of the state znode at the version this broker last saw,
keeping the leader and leader epoch it read. A compare-and-set cannot succeed
once anything else wrote the state — the controller electing another leader,
removing a dead or stopping follower, or finishing a reassignment — so a
deposed or stale leader can never change an ISR; it learns the news through
its watch and the next decision is made on the new state. The controller
itself never adds to an ISR; it only removes replicas that died, restarted or
are stopping.

When: ``LeaderState`` proposes a larger ISR as soon as a follower's fetch shows
it caught up (the follower fetch path calls ``kick``), and a smaller one on the
periodic check (every half ``replica_lag_time_max_ms``) when a member lagged for
longer than that. One change per partition is in flight at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import trio

from broker.partition import Partition
from broker.znodes import PartitionStateData, state_path
from coordinator.client import AsyncCoordinatorClient
from coordinator.errors import BadVersionError, CoordinatorError, NoNodeError

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class IsrWriter:
    def __init__(
        self,
        zk: AsyncCoordinatorClient,
        me: int,
        lag_max_ms: int,
        led: Callable[[], Iterable[Partition]],
        eligible: Callable[[], set[int]],
        on_visible: Callable[[Partition, int], None],
        controller_epoch: Callable[[Partition], int],
    ) -> None:
        self.zk = zk
        self.me = me
        self.lag_max_ms = lag_max_ms
        self.led = led
        self.eligible = eligible
        self.on_visible = on_visible
        self.controller_epoch = controller_epoch
        self._kicked: dict[Partition, None] = {}
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None

    def kick(self, partition: Partition) -> None:
        """Look at ``partition`` soon (a follower may have caught up)."""
        self._kicked[partition] = None
        self._wake.set()

    async def run(self) -> None:
        interval = self.lag_max_ms / 2000.0
        next_check = trio.current_time() + interval
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                with trio.move_on_at(next_check):
                    await self._wake.wait()
                self._wake = trio.Event()
                now = trio.current_time()
                check_all = now >= next_check
                if check_all:
                    next_check = now + interval
                    partitions = list(self.led())
                else:
                    partitions = list(self._kicked)
                self._kicked.clear()
                eligible = self.eligible()
                now_ms = _now_ms()
                for partition in partitions:
                    self._consider(partition, eligible, now_ms, shrink=check_all)

    def _consider(
        self, partition: Partition, eligible: set[int], now_ms: int, *, shrink: bool
    ) -> None:
        state = partition.leader_state
        if state is None or not partition.is_leader or state.pending is not None:
            return
        proposal = state.propose_shrink(now_ms) if shrink else None
        if proposal is None:
            proposal = state.propose_expand(eligible)
        if proposal is None or self._nursery is None:
            return
        state.begin_change(proposal)
        self._nursery.start_soon(self._write, partition, proposal)

    async def _write(self, partition: Partition, isr: list[int]) -> None:
        state = partition.leader_state
        if state is None:
            return
        epoch = partition.leader_epoch
        version = partition.state_version
        data = PartitionStateData(self.me, epoch, isr, self.controller_epoch(partition))
        try:
            stat = await self.zk.set(
                state_path(partition.topic, partition.partition), data.to_bytes(), version
            )
        except (BadVersionError, NoNodeError):
            logger.info("%s: ISR change to %s refused: the state changed meanwhile", partition, isr)
            if partition.leader_state is state:
                state.change_failed()
            return
        except CoordinatorError as exc:
            logger.warning("%s: ISR change to %s failed: %s", partition, isr, exc)
            if partition.leader_state is state:
                state.change_failed()
            return
        if partition.leader_state is not state or partition.leader_epoch != epoch:
            return
        logger.info("%s: ISR %s -> %s (leader epoch %d)", partition, partition.isr, isr, epoch)
        if stat.version > partition.state_version:
            partition.state_version = stat.version
            partition.isr = list(isr)
        state.change_committed(partition.isr)
        gained = partition.leader_state_moved()
        if gained:
            self.on_visible(partition, gained)
