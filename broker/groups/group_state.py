"""One consumer group's state (sans-IO): members, epochs, target assignment, ownership.

The state changes only by replaying records (``ConsumerGroup.replay``), both
when the coordinator loads its partition and when it handles a request: a
request handler (broker.groups.shard) decides which records to write, replays
them into this state, and hands them to the shell to append. So what is in
memory is always what replaying the log gives.

Epochs (KIP-848):

- the *group epoch* is bumped whenever membership, a subscription or the
  partition count of a subscribed topic changes;
- the *assignment epoch* is the group epoch the current target assignment was
  computed for;
- each member's *member epoch* reaches the assignment epoch once the member
  owns nothing that the target gives to someone else (``reconcile``).

A partition is in ``owners`` while some member has it assigned or pending
revocation; a member is given a partition of its target only once no other
member owns it, i.e. once its previous owner has reported it revoked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from broker.groups.records import (
    Assignment,
    CurrentAssignmentKey,
    CurrentAssignmentValue,
    GroupMetadataKey,
    GroupMetadataValue,
    GroupRecord,
    MemberMetadataKey,
    MemberMetadataValue,
    TargetAssignmentMemberKey,
    TargetAssignmentMemberValue,
    TargetAssignmentMetadataKey,
    TargetAssignmentMetadataValue,
)

TopicPartition = tuple[str, int]

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

EMPTY_ASSIGNMENT: Assignment = {}


class MemberState(StrEnum):
    """Where a member is in its reconciliation towards the target assignment."""

    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


class GroupState(StrEnum):
    EMPTY = "empty"
    ASSIGNING = "assigning"
    RECONCILING = "reconciling"
    STABLE = "stable"
    DEAD = "dead"


def is_internal_topic(name: str) -> bool:
    return name.startswith("__")


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """A subscription regular expression (Python syntax, matched against whole names).

    Raises re.error when it does not compile."""
    return re.compile(pattern)


def default_metadata() -> MemberMetadataValue:
    return MemberMetadataValue(
        instance_id=None,
        rack_id=None,
        client_id="",
        client_host="",
        subscribed_topic_names=(),
        subscribed_topic_regex=None,
        server_assignor=None,
        rebalance_timeout_ms=300_000,
    )


def partitions_of(assignment: Assignment) -> set[TopicPartition]:
    return {(t, p) for t, ps in assignment.items() for p in ps}


def assignment_size(assignment: Assignment) -> int:
    return sum(len(ps) for ps in assignment.values())


def is_subset(small: Assignment, big: Assignment) -> bool:
    return all(ps <= big.get(t, frozenset()) for t, ps in small.items())


def overlaps(a: Assignment, b: Assignment) -> bool:
    return any(ps & b.get(t, frozenset()) for t, ps in a.items())


@dataclass(slots=True)
class Member:
    member_id: str
    metadata: MemberMetadataValue = field(default_factory=default_metadata)
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: MemberState = MemberState.STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)

    @property
    def instance_id(self) -> str | None:
        return self.metadata.instance_id

    def current(self) -> CurrentAssignmentValue:
        return CurrentAssignmentValue(
            self.member_epoch,
            self.previous_member_epoch,
            self.state.value,
            self.assigned,
            self.pending_revocation,
        )

    def subscribes(self, topic: str) -> bool:
        meta = self.metadata
        if topic in meta.subscribed_topic_names:
            return True
        regex = meta.subscribed_topic_regex
        if regex and not is_internal_topic(topic):
            try:
                return compile_regex(regex).fullmatch(topic) is not None
            except re.error:
                return False
        return False


class ConsumerGroup:
    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.subscription: dict[str, int] = {}
        self.assignment_epoch = 0
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}
        self.targets: dict[str, Assignment] = {}
        self.owners: dict[TopicPartition, str] = {}
        #: A group metadata record exists (else the group lives only through members).
        self.has_metadata = False

    def __repr__(self) -> str:
        return f"<ConsumerGroup {self.group_id} epoch {self.group_epoch}>"

    # ------------------------------------------------------------ queries

    @property
    def is_empty(self) -> bool:
        return not self.members

    def state(self) -> GroupState:
        if not self.members:
            return GroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return GroupState.ASSIGNING
        for m in self.members.values():
            if m.member_epoch != self.assignment_epoch or m.state is not MemberState.STABLE:
                return GroupState.RECONCILING
        return GroupState.STABLE

    def target(self, member_id: str) -> Assignment:
        return self.targets.get(member_id, EMPTY_ASSIGNMENT)

    def member_topics(self, member: Member) -> frozenset[str]:
        """The topics of the subscription metadata that ``member`` subscribes to."""
        return frozenset(t for t in self.subscription if member.subscribes(t))

    def compute_subscription(
        self, topics: Mapping[str, int], members: Iterable[Member] | None = None
    ) -> dict[str, int]:
        """Partition counts of the existing topics some member subscribes to."""
        out: dict[str, int] = {}
        regexes: set[str] = set()
        for m in self.members.values() if members is None else members:
            for name in m.metadata.subscribed_topic_names:
                count = topics.get(name)
                if count:
                    out[name] = count
            if m.metadata.subscribed_topic_regex:
                regexes.add(m.metadata.subscribed_topic_regex)
        for pattern in sorted(regexes):
            try:
                rx = compile_regex(pattern)
            except re.error:
                continue
            for name in topics:
                if name not in out and not is_internal_topic(name) and rx.fullmatch(name):
                    count = topics[name]
                    if count:
                        out[name] = count
        return out

    def free_for(self, member_id: str, tp: TopicPartition) -> bool:
        owner = self.owners.get(tp)
        return owner is None or owner == member_id

    # ------------------------------------------------------------ replay

    def _member(self, member_id: str) -> Member:
        member = self.members.get(member_id)
        if member is None:
            member = self.members[member_id] = Member(member_id)
        return member

    def _release(self, member: Member) -> None:
        for tp in partitions_of(member.assigned) | partitions_of(member.pending_revocation):
            if self.owners.get(tp) == member.member_id:
                del self.owners[tp]

    def _remove_member(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is None:
            return
        self._release(member)
        iid = member.instance_id
        if iid is not None and self.static_members.get(iid) == member_id:
            del self.static_members[iid]

    def replay(self, record: GroupRecord) -> None:
        """Apply one record of this group (an offset commit is not one of them)."""
        key, value = record
        if isinstance(key, GroupMetadataKey):
            if value is None:
                self.has_metadata = False
                self.group_epoch = 0
                self.subscription = {}
            elif isinstance(value, GroupMetadataValue):
                self.has_metadata = True
                self.group_epoch = value.epoch
                self.subscription = dict(value.subscription)
        elif isinstance(key, TargetAssignmentMetadataKey):
            if value is None:
                self.assignment_epoch = 0
            elif isinstance(value, TargetAssignmentMetadataValue):
                self.assignment_epoch = value.assignment_epoch
        elif isinstance(key, TargetAssignmentMemberKey):
            if value is None:
                self.targets.pop(key.member_id, None)
            elif isinstance(value, TargetAssignmentMemberValue):
                self.targets[key.member_id] = dict(value.partitions)
        elif isinstance(key, MemberMetadataKey):
            if value is None:
                self._remove_member(key.member_id)
            elif isinstance(value, MemberMetadataValue):
                member = self._member(key.member_id)
                old = member.instance_id
                if (
                    old is not None
                    and old != value.instance_id
                    and self.static_members.get(old) == key.member_id
                ):
                    del self.static_members[old]
                member.metadata = value
                if value.instance_id is not None:
                    self.static_members[value.instance_id] = key.member_id
        elif isinstance(key, CurrentAssignmentKey):
            if value is None:
                if key.member_id in self.members:
                    self._set_current(key.member_id, None)
            elif isinstance(value, CurrentAssignmentValue):
                self._set_current(key.member_id, value)

    def _set_current(self, member_id: str, value: CurrentAssignmentValue | None) -> None:
        member = self._member(member_id)
        self._release(member)
        if value is None:
            value = CurrentAssignmentValue(0, 0, MemberState.STABLE.value, {}, {})
        member.member_epoch = value.member_epoch
        member.previous_member_epoch = value.previous_member_epoch
        member.state = MemberState(value.state)
        member.assigned = dict(value.assigned)
        member.pending_revocation = dict(value.pending_revocation)
        for tp in partitions_of(member.assigned) | partitions_of(member.pending_revocation):
            self.owners[tp] = member_id


# ---------------------------------------------------------------- reconciliation


def reconcile(
    group: ConsumerGroup, member: Member, owned: Assignment | None
) -> CurrentAssignmentValue:
    """The member's next current assignment (KIP-848's CurrentAssignmentBuilder).

    ``owned`` is what the member reported owning in this heartbeat (None: not
    reported). The member first gives up what its target no longer holds, keeping
    its epoch until it reports those partitions revoked; then it advances to the
    assignment epoch and receives the partitions of its target that nobody owns
    (the rest it receives on a later heartbeat, once their owners released them).
    """
    target_epoch = group.assignment_epoch
    if member.state is MemberState.UNREVOKED_PARTITIONS:
        if owned is None or overlaps(owned, member.pending_revocation):
            return member.current()
    elif member.state is MemberState.STABLE and member.member_epoch == target_epoch:
        return member.current()
    target = group.target(member.member_id)
    assigned: dict[str, frozenset[int]] = {}
    revoking: dict[str, frozenset[int]] = {}
    adding: dict[str, frozenset[int]] = {}
    unreleased = False
    for topic in sorted(set(target) | set(member.assigned)):
        want = target.get(topic, frozenset())
        have = member.assigned.get(topic, frozenset())
        keep = have & want
        if keep:
            assigned[topic] = keep
        if have - want:
            revoking[topic] = have - want
        new = {p for p in want - have if group.free_for(member.member_id, (topic, p))}
        if len(new) < len(want - have):
            unreleased = True
        if new:
            adding[topic] = frozenset(new)
    if revoking and (owned is None or overlaps(owned, revoking)):
        # Revoke first; the member keeps its epoch until it reports them gone.
        return CurrentAssignmentValue(
            member.member_epoch,
            member.previous_member_epoch,
            MemberState.UNREVOKED_PARTITIONS.value,
            assigned,
            revoking,
        )
    for topic, new_parts in adding.items():
        assigned[topic] = assigned.get(topic, frozenset()) | new_parts
    state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    return CurrentAssignmentValue(target_epoch, member.member_epoch, state.value, assigned, {})
