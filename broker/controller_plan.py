"""The controller's decisions (sans-IO): which partition states to create or rewrite.

Given the metadata cache, ``plan_states`` returns the state writes that bring
each partition to a leader that is alive (DESIGN §8):

- a partition without a state gets one: the first live replica leads, the live
  replicas form the ISR, leader epoch 0;
- a partition whose leader died, or has no leader, elects the first replica
  (in assignment order) that is alive and in the ISR — or, only with
  ``unclean.leader.election.enable``, any live replica; with no candidate it is
  left leaderless (leader -1) keeping its last ISR, so that the last in-sync
  replica can take over again when it comes back;
- a leader that registered again after its leadership was written (it
  restarted; its registration's czxid is newer than the state's mzxid) is
  re-elected with a new leader epoch — it stays leader when it is a candidate;
- dead followers leave the ISR.

Every new leader gets ``leader_epoch + 1``. Writes carry the znode version they
were planned against, so a stale plan fails its compare-and-set instead of
overwriting newer state; planning again on the fresh cache yields nothing once
every write landed (the plan is idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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


def plan_states(
    cache: MetadataCache,
    controller_epoch: int,
    topics: Iterable[str],
    unclean: dict[str, bool] | None = None,
) -> list[StateWrite]:
    """State writes for ``topics`` (those pending deletion are skipped)."""
    live = cache.live_brokers()
    restarted_at = {b: info.czxid for b, info in cache.brokers.items()}
    writes: list[StateWrite] = []
    for name in sorted(set(topics)):
        topic = cache.topic(name)
        if topic is None or name in cache.pending_deletions:
            continue
        allow_unclean = bool(unclean and unclean.get(name))
        for partition in sorted(topic.assignment.partitions):
            write = _plan_partition(
                topic, partition, live, restarted_at, controller_epoch, allow_unclean
            )
            if write is not None:
                writes.append(write)
    return writes


def _plan_partition(
    topic: TopicInfo,
    partition: int,
    live: set[int],
    restarted_at: dict[int, int],
    controller_epoch: int,
    allow_unclean: bool,
) -> StateWrite | None:
    replicas = topic.replicas(partition)
    info = topic.states.get(partition)
    if info is None:
        live_replicas = [r for r in replicas if r in live]
        if not live_replicas:
            return None
        state = PartitionStateData(live_replicas[0], 0, live_replicas, controller_epoch)
        return StateWrite(topic.name, partition, state, NEW_NODE)
    current = info.state
    leader = current.leader
    leader_ok = leader != NO_LEADER and leader in live and restarted_at.get(leader, 0) < info.mzxid
    if leader_ok:
        isr = [r for r in current.isr if r in live]
        if leader not in isr:
            isr.insert(0, leader)
        if isr == current.isr:
            return None
        return _write(topic, partition, info, leader, current.leader_epoch, isr, controller_epoch)
    candidates = [r for r in replicas if r in current.isr and r in live]
    if leader in candidates:
        new_leader = leader
    elif candidates:
        new_leader = candidates[0]
    elif allow_unclean and any(r in live for r in replicas):
        new_leader = next(r for r in replicas if r in live)
        return _write(
            topic,
            partition,
            info,
            new_leader,
            current.leader_epoch + 1,
            [new_leader],
            controller_epoch,
        )
    else:
        if leader == NO_LEADER:
            return None
        return _write(
            topic,
            partition,
            info,
            NO_LEADER,
            current.leader_epoch + 1,
            list(current.isr),
            controller_epoch,
        )
    isr = [r for r in current.isr if r in live]
    return _write(
        topic, partition, info, new_leader, current.leader_epoch + 1, isr, controller_epoch
    )


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
