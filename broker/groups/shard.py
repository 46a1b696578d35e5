"""The sans-IO group coordinator of one ``__consumer_offsets`` partition.

A shard owns every group that hashes to its partition and those groups'
committed offsets. It never does I/O and never reads a clock: each call takes
``now_ms`` (and, for heartbeats, the partition counts of the cluster's topics)
and returns an ``Outcome`` — the records to append to the partition and the
response to send once they are durable. The records have already been replayed
into the shard's state when the call returns; the shell (broker.groups.
coordinator) must append them before anything else touches the shard, and if
the append fails, throw the shard away and reload it from the log.

Timers (``tick``): a member that has not heartbeated for the session timeout is
removed; a member that has not revoked partitions within its rebalance timeout
is removed; every ``offsets_retention_check_interval_ms`` expired offsets are
deleted, and then empty groups without offsets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from broker.groups.assignors import ASSIGNORS, DEFAULT_ASSIGNOR, MemberSubscription
from broker.groups.group_state import (
    JOIN_EPOCH,
    LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
    ConsumerGroup,
    GroupState,
    Member,
    MemberState,
    compile_regex,
    default_metadata,
    reconcile,
)
from broker.groups.offset_store import OffsetStore
from broker.groups.records import (
    Assignment,
    CurrentAssignmentKey,
    CurrentAssignmentValue,
    GroupMetadataKey,
    GroupMetadataValue,
    GroupRecord,
    MemberMetadataKey,
    MemberMetadataValue,
    OffsetCommitKey,
    OffsetCommitValue,
    TargetAssignmentMemberKey,
    TargetAssignmentMemberValue,
    TargetAssignmentMetadataKey,
    TargetAssignmentMetadataValue,
)
from broker.groups.timers import Timers
from client.protocol import (
    FencedInstanceIdError,
    FencedMemberEpochError,
    GroupIdNotFoundError,
    GroupMaxSizeReachedError,
    InvalidGroupIdError,
    NonEmptyGroupError,
    OffsetMetadataTooLargeError,
    StaleMemberEpochError,
    UnknownMemberIdError,
    UnreleasedInstanceIdError,
    UnsupportedAssignorError,
)
from client.wire import InvalidRequestError, ServerError

T = TypeVar("T")
DAY_MS = 24 * 3_600_000
MAX_ID_LENGTH = 255

#: A member waiting for released partitions heartbeats this many times more often
#: (but not more often than every UNRELEASED_MIN_INTERVAL_MS).
UNRELEASED_SPEEDUP = 10
UNRELEASED_MIN_INTERVAL_MS = 50

SESSION = "session"
REVOCATION = "revocation"
RETENTION = "retention"
TimerKey = tuple[str, str, str]
_RETENTION_KEY: TimerKey = (RETENTION, "", "")


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """The coordinator's settings (from BrokerConfig's ``group_*`` and ``offsets_*`` keys)."""

    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    offsets_retention_ms: int = 7 * DAY_MS
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096
    max_size: int = 2**31 - 1


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    """A CONSUMER_GROUP_HEARTBEAT; None fields mean "unchanged since the last one"."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int | None = None
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: Assignment | None = None
    client_id: str = ""
    client_host: str = ""


@dataclass(frozen=True, slots=True)
class CommitEntry:
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str = ""


@dataclass(slots=True)
class Outcome(Generic[T]):
    """Records to append (already applied to the shard), and the response to send after."""

    records: list[GroupRecord]
    response: T


def assignment_payload(assignment: Assignment) -> list[dict[str, Any]]:
    return [{"topic": t, "partitions": sorted(ps)} for t, ps in sorted(assignment.items()) if ps]


def _error_fields(error: ServerError | None) -> dict[str, Any]:
    if error is None:
        return {"error_code": 0, "error_message": None}
    return {"error_code": error.code, "error_message": error.message}


def _check_group_id(group_id: str) -> None:
    if not group_id:
        raise InvalidGroupIdError("the group id must not be empty")
    if len(group_id) > MAX_ID_LENGTH:
        raise InvalidGroupIdError(f"a group id is at most {MAX_ID_LENGTH} characters")


@dataclass(frozen=True, slots=True)
class _Plan:
    """Who a heartbeat is from, decided before anything changes."""

    member_id: str
    kind: str  # "existing" | "new" | "rejoin" | "replace"
    replaced: str | None = None


class GroupShard:
    def __init__(
        self,
        partition: int,
        config: GroupConfig,
        new_member_id: Callable[[], str],
    ) -> None:
        self.partition = partition
        self.config = config
        self.new_member_id = new_member_id
        self.groups: dict[str, ConsumerGroup] = {}
        self.offsets = OffsetStore()
        self.timers: Timers[TimerKey] = Timers()

    # ------------------------------------------------------------ loading

    def replay(self, record: GroupRecord) -> None:
        """Apply one record (from the log at load time, or just decided by a request)."""
        key, value = record
        if isinstance(key, OffsetCommitKey):
            self.offsets.replay(key, value if isinstance(value, OffsetCommitValue) else None)
            return
        gid = key.group_id
        group = self.groups.get(gid)
        if group is None:
            if value is None:
                return
            group = self.groups[gid] = ConsumerGroup(gid)
        group.replay(record)
        if (
            not group.has_metadata
            and not group.members
            and not group.targets
            and group.assignment_epoch == 0
        ):
            del self.groups[gid]

    def on_loaded(self, now_ms: int) -> None:
        """After the load: every member gets a full session to heartbeat again."""
        self.timers.clear()
        for group in self.groups.values():
            for member in group.members.values():
                self._touch_session(group, member, now_ms)
                if member.state is MemberState.UNREVOKED_PARTITIONS:
                    self.timers.set(
                        (REVOCATION, group.group_id, member.member_id),
                        now_ms + member.metadata.rebalance_timeout_ms,
                    )
        self.timers.set(_RETENTION_KEY, now_ms + self.config.offsets_retention_check_interval_ms)

    def _apply(self, out: list[GroupRecord], record: GroupRecord) -> None:
        self.replay(record)
        out.append(record)

    # ------------------------------------------------------------ timers

    def next_deadline(self) -> int | None:
        return self.timers.next_deadline()

    def tick(self, now_ms: int) -> list[GroupRecord]:
        """Expire sessions, revocation deadlines and old offsets; the records to append."""
        out: list[GroupRecord] = []
        for kind, gid, mid in self.timers.pop_due(now_ms):
            if kind == RETENTION:
                self._expire(now_ms, out)
                self.timers.set(
                    _RETENTION_KEY, now_ms + self.config.offsets_retention_check_interval_ms
                )
                continue
            group = self.groups.get(gid)
            member = None if group is None else group.members.get(mid)
            if group is None or member is None:
                continue
            if kind == REVOCATION and member.state is not MemberState.UNREVOKED_PARTITIONS:
                continue
            self._remove_member(group, member, out)
        return out

    def _touch_session(self, group: ConsumerGroup, member: Member, now_ms: int) -> None:
        self.timers.set(
            (SESSION, group.group_id, member.member_id), now_ms + self.config.session_timeout_ms
        )

    def _cancel_timers(self, group_id: str, member_id: str) -> None:
        self.timers.cancel((SESSION, group_id, member_id))
        self.timers.cancel((REVOCATION, group_id, member_id))

    def _expire(self, now_ms: int, out: list[GroupRecord]) -> None:
        retention = self.config.offsets_retention_ms
        expired: list[OffsetCommitKey] = []
        for gid, offsets in self.offsets.items():
            group = self.groups.get(gid)
            subscribed = set(group.subscription) if group is not None and group.members else set()
            for (topic, partition), value in offsets.items():
                if topic not in subscribed and now_ms - value.commit_timestamp_ms >= retention:
                    expired.append(OffsetCommitKey(gid, topic, partition))
        for key in expired:
            self._apply(out, GroupRecord(key, None))
        for gid, group in list(self.groups.items()):
            if not group.members and gid not in self.offsets:
                self._delete_group_records(group, out)

    # ------------------------------------------------------------ heartbeat

    def heartbeat(
        self, req: HeartbeatRequest, topics: Mapping[str, int], now_ms: int
    ) -> Outcome[dict[str, Any]]:
        """One CONSUMER_GROUP_HEARTBEAT: join, leave, or heartbeat and reconcile."""
        try:
            self._validate(req)
            if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
                return self._leave(req, now_ms)
            plan = self._plan(req)
        except ServerError as exc:
            return Outcome([], self._heartbeat_error(req, exc))
        return self._join_or_heartbeat(req, plan, topics, now_ms)

    def _heartbeat_error(self, req: HeartbeatRequest, error: ServerError) -> dict[str, Any]:
        return {
            **_error_fields(error),
            "member_id": req.member_id,
            "member_epoch": req.member_epoch,
            "heartbeat_interval_ms": self.config.heartbeat_interval_ms,
            "assignment": None,
        }

    def _validate(self, req: HeartbeatRequest) -> None:
        _check_group_id(req.group_id)
        if len(req.member_id) > MAX_ID_LENGTH:
            raise InvalidRequestError(f"a member id is at most {MAX_ID_LENGTH} characters")
        if req.instance_id is not None and not 0 < len(req.instance_id) <= MAX_ID_LENGTH:
            raise InvalidRequestError(f"an instance id has 1..{MAX_ID_LENGTH} characters")
        if req.member_epoch < STATIC_LEAVE_EPOCH:
            raise InvalidRequestError(f"member_epoch {req.member_epoch} is not valid")
        if req.member_epoch != JOIN_EPOCH and not req.member_id:
            raise InvalidRequestError("member_id is required unless joining (member_epoch 0)")
        if req.member_epoch == STATIC_LEAVE_EPOCH and req.instance_id is None:
            raise InvalidRequestError("member_epoch -2 (static leave) needs an instance_id")
        if (
            req.member_epoch == JOIN_EPOCH
            and req.subscribed_topic_names is None
            and req.subscribed_topic_regex is None
        ):
            raise InvalidRequestError("joining needs subscribed_topic_names or a regex")
        if req.server_assignor is not None and req.server_assignor not in ASSIGNORS:
            raise UnsupportedAssignorError(
                f"no assignor {req.server_assignor!r}; known: {', '.join(sorted(ASSIGNORS))}"
            )
        if req.subscribed_topic_regex:
            try:
                compile_regex(req.subscribed_topic_regex)
            except re.error as exc:
                raise InvalidRequestError(
                    f"subscribed_topic_regex does not compile: {exc}"
                ) from None
        if req.rebalance_timeout_ms is not None and req.rebalance_timeout_ms <= 0:
            raise InvalidRequestError("rebalance_timeout_ms must be positive")

    def _plan(self, req: HeartbeatRequest) -> _Plan:
        group = self.groups.get(req.group_id)
        members = group.members if group is not None else {}
        if req.member_epoch == JOIN_EPOCH:
            if req.instance_id is not None:
                holder = group.static_members.get(req.instance_id) if group is not None else None
                if holder is not None and holder != req.member_id:
                    if members[holder].member_epoch != STATIC_LEAVE_EPOCH:
                        raise UnreleasedInstanceIdError(
                            f"instance {req.instance_id!r} is still held by member {holder}"
                        )
                    if req.member_id in members:
                        raise InvalidRequestError(
                            f"member {req.member_id} cannot take over instance {req.instance_id!r}"
                        )
                    return _Plan(req.member_id or self.new_member_id(), "replace", holder)
            existing = members.get(req.member_id) if req.member_id else None
            if existing is not None:
                if existing.instance_id != req.instance_id:
                    raise FencedInstanceIdError(
                        f"member {req.member_id} belongs to instance {existing.instance_id!r}"
                    )
                return _Plan(req.member_id, "rejoin")
            if group is not None and len(members) >= self.config.max_size:
                raise GroupMaxSizeReachedError(
                    f"group {req.group_id} has {len(members)} members, the maximum"
                )
            return _Plan(req.member_id or self.new_member_id(), "new")
        member = members.get(req.member_id)
        if group is None or member is None:
            raise UnknownMemberIdError(f"member {req.member_id} is not in group {req.group_id}")
        if (
            req.instance_id is not None
            and group.static_members.get(req.instance_id) != member.member_id
        ):
            raise FencedInstanceIdError(
                f"instance {req.instance_id!r} is held by another member than {req.member_id}"
            )
        self._check_epoch(member, req.member_epoch, req.owned)
        return _Plan(member.member_id, "existing")

    @staticmethod
    def _check_epoch(member: Member, epoch: int, owned: Assignment | None) -> None:
        if epoch == member.member_epoch:
            return
        # A lost response: the member may repeat its previous epoch if it owns nothing new.
        if (
            epoch == member.previous_member_epoch
            and member.member_epoch >= 0
            and owned is not None
            and all(ps <= member.assigned.get(t, frozenset()) for t, ps in owned.items())
        ):
            return
        raise FencedMemberEpochError(
            f"member {member.member_id} is at epoch {member.member_epoch}, not {epoch}"
        )

    def _join_or_heartbeat(
        self, req: HeartbeatRequest, plan: _Plan, topics: Mapping[str, int], now_ms: int
    ) -> Outcome[dict[str, Any]]:
        gid = req.group_id
        group = self.groups.get(gid)
        if group is None:
            group = self.groups[gid] = ConsumerGroup(gid)
        out: list[GroupRecord] = []
        mid = plan.member_id
        if plan.kind == "replace" and plan.replaced is not None:
            self._replace_static(group, group.members[plan.replaced], mid, out)
        elif plan.kind == "rejoin":
            # A member that lost its state (fenced, or restarted under the same id) owns
            # nothing any more; a static member back from a temporary leave keeps its own.
            rejoining = group.members[mid]
            kept = rejoining.assigned if rejoining.member_epoch == STATIC_LEAVE_EPOCH else {}
            self._apply(
                out,
                GroupRecord(
                    CurrentAssignmentKey(gid, mid),
                    CurrentAssignmentValue(
                        JOIN_EPOCH, JOIN_EPOCH, MemberState.STABLE.value, kept, {}
                    ),
                ),
            )
            self.timers.cancel((REVOCATION, gid, mid))
        before = group.members.get(mid)
        old_meta = before.metadata if before is not None else None
        meta = self._updated_metadata(old_meta, req)
        bump = before is None
        if meta != old_meta:
            self._apply(out, GroupRecord(MemberMetadataKey(gid, mid), meta))
            if old_meta is None or (
                old_meta.subscribed_topic_names != meta.subscribed_topic_names
                or old_meta.subscribed_topic_regex != meta.subscribed_topic_regex
            ):
                bump = True
        subscription = group.compute_subscription(topics)
        if bump or subscription != group.subscription:
            self._apply(
                out,
                GroupRecord(
                    GroupMetadataKey(gid), GroupMetadataValue(group.group_epoch + 1, subscription)
                ),
            )
        if group.group_epoch > group.assignment_epoch:
            self._compute_target(group, out)
        member = group.members[mid]
        was_assigned = member.assigned
        was_unrevoked = member.state is MemberState.UNREVOKED_PARTITIONS
        current = reconcile(group, member, req.owned)
        if current != member.current():
            self._apply(out, GroupRecord(CurrentAssignmentKey(gid, mid), current))
        self._touch_session(group, member, now_ms)
        if member.state is MemberState.UNREVOKED_PARTITIONS:
            if not was_unrevoked or (REVOCATION, gid, mid) not in self.timers:
                self.timers.set(
                    (REVOCATION, gid, mid), now_ms + member.metadata.rebalance_timeout_ms
                )
        else:
            self.timers.cancel((REVOCATION, gid, mid))
        send_assignment = (
            req.member_epoch == JOIN_EPOCH
            or req.owned is not None
            or member.assigned != was_assigned
        )
        response = {
            **_error_fields(None),
            "member_id": mid,
            "member_epoch": member.member_epoch,
            "heartbeat_interval_ms": self._interval_for(member),
            "assignment": (
                {"topic_partitions": assignment_payload(member.assigned)}
                if send_assignment
                else None
            ),
        }
        return Outcome(out, response)

    def _interval_for(self, member: Member) -> int:
        """The heartbeat interval to tell ``member``: a member waiting for partitions that
        their previous owners are releasing asks again sooner, to pick them up quickly."""
        interval = self.config.heartbeat_interval_ms
        if member.state is MemberState.UNRELEASED_PARTITIONS:
            return max(min(interval, UNRELEASED_MIN_INTERVAL_MS), interval // UNRELEASED_SPEEDUP)
        return interval

    @staticmethod
    def _updated_metadata(
        old: MemberMetadataValue | None, req: HeartbeatRequest
    ) -> MemberMetadataValue:
        base = old if old is not None else default_metadata()
        names = base.subscribed_topic_names
        if req.subscribed_topic_names is not None:
            names = tuple(sorted(set(req.subscribed_topic_names)))
        regex = base.subscribed_topic_regex
        if req.subscribed_topic_regex is not None:
            regex = req.subscribed_topic_regex or None
        return replace(
            base,
            instance_id=req.instance_id if req.instance_id is not None else base.instance_id,
            rack_id=req.rack_id if req.rack_id is not None else base.rack_id,
            client_id=req.client_id or base.client_id,
            client_host=req.client_host or base.client_host,
            subscribed_topic_names=names,
            subscribed_topic_regex=regex,
            server_assignor=(
                req.server_assignor if req.server_assignor is not None else base.server_assignor
            ),
            rebalance_timeout_ms=(
                req.rebalance_timeout_ms
                if req.rebalance_timeout_ms is not None
                else base.rebalance_timeout_ms
            ),
        )

    def _replace_static(
        self, group: ConsumerGroup, old: Member, new_id: str, out: list[GroupRecord]
    ) -> None:
        """A static member back after a temporary leave: the new incarnation takes over its
        assignment and target without a new group epoch."""
        gid = group.group_id
        target = group.target(old.member_id)
        assigned = old.assigned
        metadata = old.metadata
        self._remove_member_records(group, old, out)
        self._apply(out, GroupRecord(MemberMetadataKey(gid, new_id), metadata))
        self._apply(
            out,
            GroupRecord(
                TargetAssignmentMemberKey(gid, new_id), TargetAssignmentMemberValue(target)
            ),
        )
        self._apply(
            out,
            GroupRecord(
                CurrentAssignmentKey(gid, new_id),
                CurrentAssignmentValue(
                    JOIN_EPOCH, JOIN_EPOCH, MemberState.STABLE.value, assigned, {}
                ),
            ),
        )

    def _leave(self, req: HeartbeatRequest, now_ms: int) -> Outcome[dict[str, Any]]:
        group = self.groups.get(req.group_id)
        member = None if group is None else group.members.get(req.member_id)
        if group is None or member is None:
            raise UnknownMemberIdError(f"member {req.member_id} is not in group {req.group_id}")
        if req.instance_id is not None and member.instance_id != req.instance_id:
            raise FencedInstanceIdError(
                f"member {req.member_id} is not instance {req.instance_id!r}"
            )
        out: list[GroupRecord] = []
        if req.member_epoch == LEAVE_EPOCH:
            self._remove_member(group, member, out)
        else:
            self._apply(
                out,
                GroupRecord(
                    CurrentAssignmentKey(group.group_id, member.member_id),
                    CurrentAssignmentValue(
                        STATIC_LEAVE_EPOCH,
                        member.member_epoch,
                        MemberState.STABLE.value,
                        member.assigned,
                        {},
                    ),
                ),
            )
            self.timers.cancel((REVOCATION, group.group_id, member.member_id))
            self._touch_session(group, member, now_ms)
        response = {
            **_error_fields(None),
            "member_id": req.member_id,
            "member_epoch": req.member_epoch,
            "heartbeat_interval_ms": self.config.heartbeat_interval_ms,
            "assignment": None,
        }
        return Outcome(out, response)

    def _remove_member_records(
        self, group: ConsumerGroup, member: Member, out: list[GroupRecord]
    ) -> None:
        gid, mid = group.group_id, member.member_id
        self._apply(out, GroupRecord(CurrentAssignmentKey(gid, mid), None))
        if mid in group.targets:
            self._apply(out, GroupRecord(TargetAssignmentMemberKey(gid, mid), None))
        self._apply(out, GroupRecord(MemberMetadataKey(gid, mid), None))
        self._cancel_timers(gid, mid)

    def _remove_member(self, group: ConsumerGroup, member: Member, out: list[GroupRecord]) -> None:
        """A member leaves or is fenced: its partitions are free, and the group epoch moves."""
        self._remove_member_records(group, member, out)
        remaining = list(group.members.values())
        subscription = {
            t: c for t, c in group.subscription.items() if any(m.subscribes(t) for m in remaining)
        }
        self._apply(
            out,
            GroupRecord(
                GroupMetadataKey(group.group_id),
                GroupMetadataValue(group.group_epoch + 1, subscription),
            ),
        )

    def assignor_of(self, group: ConsumerGroup) -> str:
        """The assignor most members ask for (the default on a tie that includes it)."""
        votes: dict[str, int] = {}
        for m in group.members.values():
            name = m.metadata.server_assignor
            if name in ASSIGNORS:
                votes[name] = votes.get(name, 0) + 1
        if not votes:
            return DEFAULT_ASSIGNOR
        top = max(votes.values())
        leaders = sorted(n for n, v in votes.items() if v == top)
        return DEFAULT_ASSIGNOR if DEFAULT_ASSIGNOR in leaders else leaders[0]

    def _compute_target(self, group: ConsumerGroup, out: list[GroupRecord]) -> None:
        gid = group.group_id
        subs = {
            mid: MemberSubscription(mid, group.member_topics(m), m.instance_id, m.metadata.rack_id)
            for mid, m in group.members.items()
        }
        assignor = ASSIGNORS[self.assignor_of(group)]
        new = assignor.assign(subs, group.subscription, group.targets)
        for mid in sorted(subs):
            target = new.get(mid, {})
            if target != group.target(mid) or mid not in group.targets:
                self._apply(
                    out,
                    GroupRecord(
                        TargetAssignmentMemberKey(gid, mid), TargetAssignmentMemberValue(target)
                    ),
                )
        self._apply(
            out,
            GroupRecord(
                TargetAssignmentMetadataKey(gid), TargetAssignmentMetadataValue(group.group_epoch)
            ),
        )

    # ------------------------------------------------------------ offsets

    def commit_offsets(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        entries: Iterable[CommitEntry],
        now_ms: int,
    ) -> Outcome[list[tuple[CommitEntry, ServerError | None]]]:
        """OFFSET_COMMIT: the per-partition outcomes, and the commit records."""
        entries = list(entries)
        try:
            _check_group_id(group_id)
            self._check_committer(group_id, member_id, member_epoch)
        except ServerError as exc:
            return Outcome([], [(e, exc) for e in entries])
        out: list[GroupRecord] = []
        results: list[tuple[CommitEntry, ServerError | None]] = []
        limit = self.config.offset_metadata_max_bytes
        for e in entries:
            if len(e.metadata.encode()) > limit:
                results.append(
                    (e, OffsetMetadataTooLargeError(f"metadata is longer than {limit} bytes"))
                )
                continue
            value = OffsetCommitValue(e.offset, e.leader_epoch, e.metadata, now_ms)
            self._apply(out, GroupRecord(OffsetCommitKey(group_id, e.topic, e.partition), value))
            results.append((e, None))
        return Outcome(out, results)

    def _check_committer(self, group_id: str, member_id: str, member_epoch: int) -> None:
        group = self.groups.get(group_id)
        if not member_id:
            if group is not None and group.members:
                raise UnknownMemberIdError(
                    f"group {group_id} has members: only they may commit (stop them to reset)"
                )
            return
        member = None if group is None else group.members.get(member_id)
        if member is None:
            raise UnknownMemberIdError(f"member {member_id} is not in group {group_id}")
        if member_epoch > member.member_epoch:
            raise FencedMemberEpochError(
                f"member {member_id} is at epoch {member.member_epoch}, not {member_epoch}"
            )
        if member_epoch < member.member_epoch:
            raise StaleMemberEpochError(
                f"member {member_id} is at epoch {member.member_epoch}, not {member_epoch}"
            )

    def fetch_offsets(
        self,
        group_id: str,
        wanted: list[tuple[str, list[int]]] | None,
        member_id: str = "",
        member_epoch: int = -1,
    ) -> dict[str, Any]:
        """OFFSET_FETCH: the committed offsets (all of the group's if ``wanted`` is None)."""
        try:
            _check_group_id(group_id)
            if member_id:
                group = self.groups.get(group_id)
                member = None if group is None else group.members.get(member_id)
                if member is None:
                    raise UnknownMemberIdError(f"member {member_id} is not in group {group_id}")
                if member_epoch != member.member_epoch:
                    raise StaleMemberEpochError(
                        f"member {member_id} is at epoch {member.member_epoch}, not {member_epoch}"
                    )
        except ServerError as exc:
            return {**_error_fields(exc), "topics": []}
        if wanted is None:
            by_topic: dict[str, list[int]] = {}
            for topic, partition in self.offsets.of_group(group_id):
                by_topic.setdefault(topic, []).append(partition)
            wanted = list(by_topic.items())
        topics: list[dict[str, Any]] = []
        for topic, parts in wanted:
            entries: list[dict[str, Any]] = []
            for p in parts:
                value = self.offsets.get(group_id, topic, p)
                entries.append(
                    {
                        "partition": p,
                        "offset": -1 if value is None else value.offset,
                        "leader_epoch": -1 if value is None else value.leader_epoch,
                        "metadata": "" if value is None else value.metadata,
                        "error_code": 0,
                    }
                )
            topics.append({"topic": topic, "partitions": entries})
        return {**_error_fields(None), "topics": topics}

    # ------------------------------------------------------------ admin

    def group_exists(self, group_id: str) -> bool:
        return group_id in self.groups or group_id in self.offsets

    def group_state(self, group_id: str) -> GroupState:
        group = self.groups.get(group_id)
        if group is not None:
            return group.state()
        return GroupState.EMPTY if group_id in self.offsets else GroupState.DEAD

    def list_groups(self) -> list[tuple[str, GroupState]]:
        names = set(self.groups) | set(self.offsets.groups())
        return [(g, self.group_state(g)) for g in sorted(names)]

    def describe(self, group_id: str) -> dict[str, Any]:
        group = self.groups.get(group_id)
        if group is None:
            if group_id not in self.offsets:
                error = GroupIdNotFoundError(f"no group {group_id!r}")
                return {
                    "group_id": group_id,
                    **_error_fields(error),
                    "group_state": GroupState.DEAD.value,
                    "group_epoch": -1,
                    "assignment_epoch": -1,
                    "assignor_name": "",
                    "members": [],
                }
            group = ConsumerGroup(group_id)
        members = [
            {
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "rack_id": m.metadata.rack_id,
                "client_id": m.metadata.client_id,
                "client_host": m.metadata.client_host,
                "member_epoch": m.member_epoch,
                "state": m.state.value,
                "subscribed_topic_names": list(m.metadata.subscribed_topic_names),
                "subscribed_topic_regex": m.metadata.subscribed_topic_regex,
                "assignment": assignment_payload(m.assigned),
                "pending_revocation": assignment_payload(m.pending_revocation),
                "target_assignment": assignment_payload(group.target(m.member_id)),
            }
            for m in sorted(group.members.values(), key=lambda m: m.member_id)
        ]
        return {
            "group_id": group_id,
            **_error_fields(None),
            "group_state": group.state().value,
            "group_epoch": group.group_epoch,
            "assignment_epoch": group.assignment_epoch,
            "assignor_name": self.assignor_of(group),
            "members": members,
        }

    def delete_group(self, group_id: str) -> Outcome[ServerError | None]:
        """DELETE_GROUPS for one group: its offsets and its state, by tombstones."""
        try:
            _check_group_id(group_id)
        except ServerError as exc:
            return Outcome([], exc)
        if not self.group_exists(group_id):
            return Outcome([], GroupIdNotFoundError(f"no group {group_id!r}"))
        group = self.groups.get(group_id)
        if group is not None and group.members:
            return Outcome(
                [], NonEmptyGroupError(f"group {group_id} has {len(group.members)} member(s)")
            )
        out: list[GroupRecord] = []
        for topic, partition in self.offsets.of_group(group_id):
            self._apply(out, GroupRecord(OffsetCommitKey(group_id, topic, partition), None))
        if group is not None:
            self._delete_group_records(group, out)
        return Outcome(out, None)

    def _delete_group_records(self, group: ConsumerGroup, out: list[GroupRecord]) -> None:
        gid = group.group_id
        for mid in list(group.targets):
            self._apply(out, GroupRecord(TargetAssignmentMemberKey(gid, mid), None))
        self._apply(out, GroupRecord(TargetAssignmentMetadataKey(gid), None))
        self._apply(out, GroupRecord(GroupMetadataKey(gid), None))
