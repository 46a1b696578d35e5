"""Server-side assignors: the target assignment of a group from its members' subscriptions.

An assignor is a pure function of the members (their subscribed topics), the
partition counts of those topics and the previous target assignment. It must
give every partition of a subscribed topic to exactly one member subscribed to
that topic; which one is its policy.

``uniform`` (the default; Kafka's UniformAssignor) balances the number of
partitions per member and moves as few partitions as it can:

- homogeneous subscriptions (every member subscribes to the same topics): each
  member gets ``floor(P/M)`` or ``ceil(P/M)`` partitions, the ceilings going to
  the members that already hold the most; each member keeps as many of its
  previous partitions as its quota allows, and only the rest moves. The number
  of partitions taken from a member that still subscribes to them is the
  minimum any balanced assignment can achieve.
- heterogeneous subscriptions: members keep what they held and still
  subscribe to; free partitions go, rarest topic first, to the least loaded
  subscriber; then single partitions move from a member to a subscriber with at
  least two fewer, newly placed ones first, until no such move is left.

``range`` (Kafka's RangeAssignor): per topic, the subscribers in member-id
order get contiguous ranges, the first ``P % M`` one partition more. It is not
sticky; it is for consumers that join topics by partition number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from broker.groups.records import Assignment

TopicPartition = tuple[str, int]

UNIFORM = "uniform"
RANGE = "range"
DEFAULT_ASSIGNOR = UNIFORM


@dataclass(frozen=True, slots=True)
class MemberSubscription:
    """What the assignor knows of a member: the existing topics it subscribes to."""

    member_id: str
    topics: frozenset[str]
    instance_id: str | None = None
    rack_id: str | None = None


class Assignor(Protocol):
    name: str

    def assign(
        self,
        members: Mapping[str, MemberSubscription],
        partition_counts: Mapping[str, int],
        previous: Mapping[str, Assignment],
    ) -> dict[str, dict[str, frozenset[int]]]:
        """member id -> its target partitions (every member present, maybe empty)."""
        ...


def _freeze(owned: dict[str, list[TopicPartition]]) -> dict[str, dict[str, frozenset[int]]]:
    out: dict[str, dict[str, frozenset[int]]] = {}
    for member, tps in owned.items():
        by_topic: dict[str, set[int]] = {}
        for topic, p in tps:
            by_topic.setdefault(topic, set()).add(p)
        out[member] = {t: frozenset(ps) for t, ps in by_topic.items()}
    return out


def _kept(
    members: Mapping[str, MemberSubscription],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Assignment],
) -> dict[str, list[TopicPartition]]:
    """Each member's previous partitions that still exist and that it still subscribes to
    (a partition claimed twice stays with the first member in id order)."""
    taken: set[TopicPartition] = set()
    kept: dict[str, list[TopicPartition]] = {}
    for member_id in sorted(members):
        sub = members[member_id]
        mine: list[TopicPartition] = []
        for topic, parts in sorted(previous.get(member_id, {}).items()):
            if topic not in sub.topics:
                continue
            count = partition_counts.get(topic, 0)
            for p in sorted(parts):
                tp = (topic, p)
                if p < count and tp not in taken:
                    taken.add(tp)
                    mine.append(tp)
        kept[member_id] = mine
    return kept


class UniformAssignor:
    name = UNIFORM

    def assign(
        self,
        members: Mapping[str, MemberSubscription],
        partition_counts: Mapping[str, int],
        previous: Mapping[str, Assignment],
    ) -> dict[str, dict[str, frozenset[int]]]:
        if not members:
            return {}
        kept = _kept(members, partition_counts, previous)
        topic_sets = {m.topics for m in members.values()}
        if len(topic_sets) == 1:
            owned = _homogeneous(sorted(members), next(iter(topic_sets)), partition_counts, kept)
        else:
            owned = _heterogeneous(members, partition_counts, kept)
        return _freeze(owned)


def _homogeneous(
    member_ids: list[str],
    topics: frozenset[str],
    partition_counts: Mapping[str, int],
    kept: dict[str, list[TopicPartition]],
) -> dict[str, list[TopicPartition]]:
    everything = [(t, p) for t in sorted(topics) for p in range(partition_counts.get(t, 0))]
    n = len(member_ids)
    base, extra = divmod(len(everything), n)
    # The ceilings go to the members holding the most: that keeps the most in place.
    by_holding = sorted(member_ids, key=lambda m: (-len(kept[m]), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_holding)}
    owned: dict[str, list[TopicPartition]] = {}
    placed: set[TopicPartition] = set()
    for m in member_ids:
        mine = list(kept[m][: quota[m]])
        owned[m] = mine
        placed.update(mine)
    free = [tp for tp in everything if tp not in placed]
    # Round-robin over the members below their quota spreads each topic; the free
    # partitions are exactly the sum of the deficits, so the loop always finds one.
    hungry = [m for m in member_ids if len(owned[m]) < quota[m]]
    j = 0
    for tp in free:
        while len(owned[hungry[j]]) >= quota[hungry[j]]:
            j = (j + 1) % len(hungry)
        owned[hungry[j]].append(tp)
        j = (j + 1) % len(hungry)
    return owned


def _heterogeneous(
    members: Mapping[str, MemberSubscription],
    partition_counts: Mapping[str, int],
    kept: dict[str, list[TopicPartition]],
) -> dict[str, list[TopicPartition]]:
    subscribers: dict[str, list[str]] = {}
    for m in sorted(members):
        for t in members[m].topics:
            if partition_counts.get(t, 0) > 0:
                subscribers.setdefault(t, []).append(m)
    owner: dict[TopicPartition, str] = {}
    load = {m: 0 for m in members}
    sticky: set[TopicPartition] = set()
    for m, tps in kept.items():
        for tp in tps:
            owner[tp] = m
            sticky.add(tp)
        load[m] = len(tps)
    # Free partitions, rarest topic first, each to its least loaded subscriber.
    for topic in sorted(subscribers, key=lambda t: (len(subscribers[t]), t)):
        for p in range(partition_counts[topic]):
            tp = (topic, p)
            if tp in owner:
                continue
            m = min(subscribers[topic], key=lambda x: (load[x], x))
            owner[tp] = m
            load[m] += 1
    # Balance: move one partition from a member to a subscriber holding >= 2 fewer.
    held: dict[str, list[TopicPartition]] = {m: [] for m in members}
    for tp, m in sorted(owner.items()):
        held[m].append(tp)
    moved = True
    while moved:
        moved = False
        for donor in sorted(members, key=lambda x: (-load[x], x)):
            # Partitions placed in this round move before ones the member held already.
            candidates = sorted(held[donor], key=lambda tp: (tp in sticky, tp))
            for tp in candidates:
                best = min(subscribers[tp[0]], key=lambda x: (load[x], x))
                if load[best] <= load[donor] - 2:
                    held[donor].remove(tp)
                    held[best].append(tp)
                    load[donor] -= 1
                    load[best] += 1
                    sticky.discard(tp)
                    moved = True
                    break
            if moved:
                break
    return held


class RangeAssignor:
    name = RANGE

    def assign(
        self,
        members: Mapping[str, MemberSubscription],
        partition_counts: Mapping[str, int],
        previous: Mapping[str, Assignment],
    ) -> dict[str, dict[str, frozenset[int]]]:
        owned: dict[str, list[TopicPartition]] = {m: [] for m in members}
        topics = sorted({t for m in members.values() for t in m.topics})
        for topic in topics:
            subs = sorted(m for m, s in members.items() if topic in s.topics)
            count = partition_counts.get(topic, 0)
            if not subs or count <= 0:
                continue
            base, extra = divmod(count, len(subs))
            start = 0
            for i, m in enumerate(subs):
                size = base + (1 if i < extra else 0)
                owned[m].extend((topic, p) for p in range(start, start + size))
                start += size
        return _freeze(owned)


ASSIGNORS: dict[str, Assignor] = {UNIFORM: UniformAssignor(), RANGE: RangeAssignor()}
