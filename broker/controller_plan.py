"""The controller's decisions (sans-IO): which partition states to create or rewrite.

Given the metadata cache, ``plan_states`` returns the state writes that bring
each partition to a leader that is alive (DESIGN §8):

- a partition without a state gets one: the first live replica (not stopping)
  leads, the live replicas form the ISR, leader epoch 0;
- a partition whose leader died, restarted, is stopping (controlled shutdown) or
  is missing elects the first replica, in assignment order, that is alive, in
  the ISR, and neither restarted since the state was written nor stopping;
- failing that, an ISR member that restarted or is stopping may (keep the) lead:
  its log holds everything committed. Only with
  ``unclean.leader.election.enable`` may a live replica outside the ISR lead
  (with an ISR of itself); with no candidate at all the partition is left
  leaderless (leader -1) keeping its last ISR, so that the last in-sync replica
  can take over again when it comes back;
- dead, restarted and stopping followers leave the ISR. A restarted replica
  (its registration's czxid is newer than the state's mzxid) lost its place in
  the leader's bookkeeping; it rejoins once the leader sees it caught up.

``plan_preferred`` moves leadership back to each partition's preferred replica
(the first of its assignment) where that replica is alive, in sync and not
stopping — after a broker returned, this spreads the load again.

Every new leader gets ``leader_epoch + 1``. Writes carry the znode version they
were planned against, so a stale plan fails its compare-and-set instead of
overwriting newer state; planning again on the fresh cache yields nothing once
every write landed (the plan is idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from broker.metadata_cache import MetadataCache, PartitionInfo, TopicInfo
from broker.znodes import NO_LEADER, PartitionStateData

NEW_NODE = -1


@dataclass(frozen=True, slots=True)
class StateWrite:
    """Create (``version == NEW_NODE``) or compare-and-set one partition's state."""

    topic: str
    partition: int
    state: PartitionStateData
    version: int


@dataclass(frozen=True, slots=True)
class Brokers:
    """What the plan needs to know about the brokers."""

    live: frozenset[int]
    # broker -> czxid of its registration (a restarted broker has a newer one)
    registered_at: dict[int, int]
    stopping: frozenset[int]

    @classmethod
    def of(cls, cache: MetadataCache, stopping: Iterable[int] = ()) -> Brokers:
        live = frozenset(cache.live_brokers())
        return cls(
            live,
            {b: info.czxid for b, info in cache.brokers.items()},
            frozenset(stopping) & live,
        )

    def restarted(self, broker: int, info: PartitionInfo) -> bool:
        """Registered (again) after the state was last written."""
        return broker in self.live and self.registered_at.get(broker, 0) > info.mzxid


def plan_states(
    cache: MetadataCache,
    controller_epoch: int,
    topics: Iterable[str],
    unclean: dict[str, bool] | None = None,
    stopping: Iterable[int] = (),
) -> list[StateWrite]:
    """State writes for ``topics`` (those pending deletion are skipped)."""
    brokers = Brokers.of(cache, stopping)
    writes: list[StateWrite] = []
    for name in sorted(set(topics)):
        topic = cache.topic(name)
        if topic is None or name in cache.pending_deletions:
            continue
        allow_unclean = bool(unclean and unclean.get(name))
        for partition in sorted(topic.assignment.partitions):
            write = _plan_partition(topic, partition, brokers, controller_epoch, allow_unclean)
            if write is not None:
                writes.append(write)
    return writes


def _plan_partition(
    topic: TopicInfo,
    partition: int,
    brokers: Brokers,
    controller_epoch: int,
    allow_unclean: bool,
) -> StateWrite | None:
    replicas = topic.replicas(partition)
    live = brokers.live
    stopping = brokers.stopping
    info = topic.states.get(partition)
    if info is None:
        live_replicas = [r for r in replicas if r in live]
        if not live_replicas:
            return None
        running = [r for r in live_replicas if r not in stopping]
        leader = (running or live_replicas)[0]
        isr = [r for r in live_replicas if r not in stopping or r == leader]
        state = PartitionStateData(leader, 0, isr, controller_epoch)
        return StateWrite(topic.name, partition, state, NEW_NODE)
    current = info.state
    leader = current.leader
    isr = current.isr

    def healthy(r: int) -> bool:
        return r in live and r not in stopping and not brokers.restarted(r, info)

    candidates = [r for r in replicas if r in isr and healthy(r)]
    epoch = current.leader_epoch
    if leader != NO_LEADER and healthy(leader):
        new_leader = leader
    elif candidates:
        new_leader, epoch = candidates[0], epoch + 1
    else:
        in_sync_alive = [r for r in replicas if r in isr and r in live]
        if leader in in_sync_alive:
            new_leader = leader
            if brokers.restarted(leader, info):
                epoch += 1  # a new incarnation: fence the old one
        elif in_sync_alive:
            new_leader, epoch = in_sync_alive[0], epoch + 1
        elif allow_unclean and any(r in live for r in replicas):
            running = [r for r in replicas if r in live and r not in stopping]
            chosen = (running or [r for r in replicas if r in live])[0]
            return _write(topic, partition, info, chosen, epoch + 1, [chosen], controller_epoch)
        else:
            if leader == NO_LEADER:
                return None
            return _write(topic, partition, info, NO_LEADER, epoch + 1, list(isr), controller_epoch)
    new_isr = [r for r in isr if healthy(r) or r == new_leader]
    if new_leader not in new_isr:
        new_isr.insert(0, new_leader)
    if new_leader == leader and epoch == current.leader_epoch and new_isr == isr:
        return None
    return _write(topic, partition, info, new_leader, epoch, new_isr, controller_epoch)


class Preferred(Enum):
    """Whether a partition's preferred replica can take the lead."""

    ALREADY = "already"  # it leads already
    ELIGIBLE = "eligible"  # alive, in sync, not stopping: elect it
    UNAVAILABLE = "unavailable"  # dead, out of sync, stopping, or no state
    UNKNOWN = "unknown"  # no such partition


def preferred_status(
    cache: MetadataCache, topic: str, partition: int, stopping: Iterable[int] = ()
) -> Preferred:
    info = cache.topic(topic)
    if info is None or partition not in info.assignment.partitions:
        return Preferred.UNKNOWN
    replicas = info.replicas(partition)
    state = info.states.get(partition)
    if not replicas or state is None:
        return Preferred.UNAVAILABLE
    preferred = replicas[0]
    if state.leader == preferred:
        return Preferred.ALREADY
    brokers = Brokers.of(cache, stopping)
    if (
        preferred in brokers.live
        and preferred in state.isr
        and preferred not in brokers.stopping
        and not brokers.restarted(preferred, state)
    ):
        return Preferred.ELIGIBLE
    return Preferred.UNAVAILABLE


def plan_preferred(
    cache: MetadataCache,
    controller_epoch: int,
    partitions: Iterable[tuple[str, int]],
    stopping: Iterable[int] = (),
) -> list[StateWrite]:
    """Leadership back to the preferred replica wherever it can take it."""
    stop = frozenset(stopping)
    writes: list[StateWrite] = []
    for name, partition in sorted(set(partitions)):
        if name in cache.pending_deletions:
            continue
        if preferred_status(cache, name, partition, stop) is not Preferred.ELIGIBLE:
            continue
        topic = cache.topic(name)
        if topic is None:
            continue
        info = topic.states[partition]
        preferred = topic.replicas(partition)[0]
        writes.append(
            _write(
                topic,
                partition,
                info,
                preferred,
                info.leader_epoch + 1,
                list(info.isr),
                controller_epoch,
            )
        )
    return writes


def all_partitions(cache: MetadataCache) -> list[tuple[str, int]]:
    return [
        (name, p)
        for name, topic in sorted(cache.topics.items())
        for p in sorted(topic.assignment.partitions)
    ]


def _write(
    topic: TopicInfo,
    partition: int,
    info: PartitionInfo,
    leader: int,
    leader_epoch: int,
    isr: list[int],
    controller_epoch: int,
) -> StateWrite:
    state = PartitionStateData(leader, leader_epoch, isr, controller_epoch)
    return StateWrite(topic.name, partition, state, info.version)
