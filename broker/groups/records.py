"""The records of ``__consumer_offsets``: keys, values, and their msgpack encoding.

Every change to a group or to its offsets is written as one or more records
before it is acknowledged; replaying the partition rebuilds the coordinator's
state (group_state.GroupShard.replay). The topic is compacted: the newest record
per key survives, and a record with a null value (a tombstone) deletes its key.
The record types follow Kafka's KIP-848 coordinator:

====  ===========================  ===============================  ==========================
type  key                          value                            written when
====  ===========================  ===============================  ==========================
1     [1, group, topic, partition] {offset, leader_epoch, metadata, a commit
                                   commit_timestamp_ms}
3     [3, group]                   {epoch, subscription}            the group epoch is bumped
5     [5, group, member]           {instance_id, rack_id, ...}      a member joins or changes
6     [6, group]                   {assignment_epoch}               a target is computed
7     [7, group, member]           {partitions}                     a member's target changes
8     [8, group, member]           {member_epoch, ..., assigned,    a member reconciles
                                   pending_revocation}
====  ===========================  ===============================  ==========================

Keys are msgpack arrays (deterministic bytes, so compaction matches them);
values are msgpack maps carrying a format version ``v`` (0), so a later version
can add fields. An assignment is encoded as ``{topic: [partition, ...]}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

import msgpack

#: One member's partitions: topic -> partitions. Canonical form: no empty sets.
Assignment = Mapping[str, frozenset[int]]

VALUE_VERSION = 0
#: The member states a current-assignment record may hold (group_state.MemberState).
MEMBER_STATES = frozenset(("stable", "unrevoked_partitions", "unreleased_partitions"))


class RecordFormatError(ValueError):
    """A ``__consumer_offsets`` record that does not decode."""


class RecordType(IntEnum):
    OFFSET_COMMIT = 1
    GROUP_METADATA = 3
    MEMBER_METADATA = 5
    TARGET_ASSIGNMENT_METADATA = 6
    TARGET_ASSIGNMENT_MEMBER = 7
    CURRENT_MEMBER_ASSIGNMENT = 8


# ---------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group_id: str


@dataclass(frozen=True, slots=True)
class MemberMetadataKey:
    group_id: str
    member_id: str


@dataclass(frozen=True, slots=True)
class TargetAssignmentMetadataKey:
    group_id: str


@dataclass(frozen=True, slots=True)
class TargetAssignmentMemberKey:
    group_id: str
    member_id: str


@dataclass(frozen=True, slots=True)
class CurrentAssignmentKey:
    group_id: str
    member_id: str


RecordKey = (
    OffsetCommitKey
    | GroupMetadataKey
    | MemberMetadataKey
    | TargetAssignmentMetadataKey
    | TargetAssignmentMemberKey
    | CurrentAssignmentKey
)


# ---------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    epoch: int
    #: Partition counts of every topic some member subscribes to (and that exists).
    subscription: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class MemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    server_assignor: str | None
    rebalance_timeout_ms: int


@dataclass(frozen=True, slots=True)
class TargetAssignmentMetadataValue:
    assignment_epoch: int


@dataclass(frozen=True, slots=True)
class TargetAssignmentMemberValue:
    partitions: Assignment


@dataclass(frozen=True, slots=True)
class CurrentAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: str
    assigned: Assignment
    pending_revocation: Assignment


RecordValue = (
    OffsetCommitValue
    | GroupMetadataValue
    | MemberMetadataValue
    | TargetAssignmentMetadataValue
    | TargetAssignmentMemberValue
    | CurrentAssignmentValue
)


class GroupRecord(NamedTuple):
    """One record: a key and its value, or None for a tombstone."""

    key: RecordKey
    value: RecordValue | None


_VALUE_TYPES: dict[type[Any], type[Any]] = {
    OffsetCommitKey: OffsetCommitValue,
    GroupMetadataKey: GroupMetadataValue,
    MemberMetadataKey: MemberMetadataValue,
    TargetAssignmentMetadataKey: TargetAssignmentMetadataValue,
    TargetAssignmentMemberKey: TargetAssignmentMemberValue,
    CurrentAssignmentKey: CurrentAssignmentValue,
}


# ---------------------------------------------------------------- assignments


def canonical(assignment: Mapping[str, Iterable[int]]) -> dict[str, frozenset[int]]:
    """A copy without empty topics, with frozensets."""
    out: dict[str, frozenset[int]] = {}
    for topic, parts in assignment.items():
        fs = frozenset(parts)
        if fs:
            out[topic] = fs
    return out


def _encode_assignment(assignment: Assignment) -> dict[str, list[int]]:
    return {t: sorted(ps) for t, ps in sorted(assignment.items()) if ps}


def _decode_assignment(raw: Any, what: str) -> dict[str, frozenset[int]]:
    if not isinstance(raw, dict):
        raise RecordFormatError(f"{what} must be a map")
    out: dict[str, frozenset[int]] = {}
    for topic, parts in raw.items():
        if not isinstance(topic, str) or not isinstance(parts, list):
            raise RecordFormatError(f"{what} must map topic names to partition lists")
        if not all(type(p) is int for p in parts):
            raise RecordFormatError(f"{what}: partitions must be integers")
        if parts:
            out[topic] = frozenset(parts)
    return out


# ---------------------------------------------------------------- encoding


def encode_key(key: RecordKey) -> bytes:
    fields: list[Any]
    if isinstance(key, OffsetCommitKey):
        fields = [RecordType.OFFSET_COMMIT, key.group_id, key.topic, key.partition]
    elif isinstance(key, GroupMetadataKey):
        fields = [RecordType.GROUP_METADATA, key.group_id]
    elif isinstance(key, MemberMetadataKey):
        fields = [RecordType.MEMBER_METADATA, key.group_id, key.member_id]
    elif isinstance(key, TargetAssignmentMetadataKey):
        fields = [RecordType.TARGET_ASSIGNMENT_METADATA, key.group_id]
    elif isinstance(key, TargetAssignmentMemberKey):
        fields = [RecordType.TARGET_ASSIGNMENT_MEMBER, key.group_id, key.member_id]
    else:
        fields = [RecordType.CURRENT_MEMBER_ASSIGNMENT, key.group_id, key.member_id]
    return bytes(msgpack.packb([int(f) if isinstance(f, IntEnum) else f for f in fields]))


def encode_value(value: RecordValue) -> bytes:
    body: dict[str, Any]
    if isinstance(value, OffsetCommitValue):
        body = {
            "offset": value.offset,
            "leader_epoch": value.leader_epoch,
            "metadata": value.metadata,
            "commit_timestamp_ms": value.commit_timestamp_ms,
        }
    elif isinstance(value, GroupMetadataValue):
        body = {"epoch": value.epoch, "subscription": dict(sorted(value.subscription.items()))}
    elif isinstance(value, MemberMetadataValue):
        body = {
            "instance_id": value.instance_id,
            "rack_id": value.rack_id,
            "client_id": value.client_id,
            "client_host": value.client_host,
            "subscribed_topic_names": list(value.subscribed_topic_names),
            "subscribed_topic_regex": value.subscribed_topic_regex,
            "server_assignor": value.server_assignor,
            "rebalance_timeout_ms": value.rebalance_timeout_ms,
        }
    elif isinstance(value, TargetAssignmentMetadataValue):
        body = {"assignment_epoch": value.assignment_epoch}
    elif isinstance(value, TargetAssignmentMemberValue):
        body = {"partitions": _encode_assignment(value.partitions)}
    else:
        body = {
            "member_epoch": value.member_epoch,
            "previous_member_epoch": value.previous_member_epoch,
            "state": value.state,
            "assigned": _encode_assignment(value.assigned),
            "pending_revocation": _encode_assignment(value.pending_revocation),
        }
    body["v"] = VALUE_VERSION
    return bytes(msgpack.packb(body))


def encode(record: GroupRecord) -> tuple[bytes, bytes | None]:
    """The (key, value) bytes of a record; value None for a tombstone."""
    key, value = record
    if value is not None and not isinstance(value, _VALUE_TYPES[type(key)]):
        raise TypeError(f"{type(value).__name__} is not the value of a {type(key).__name__}")
    return encode_key(key), None if value is None else encode_value(value)


# ---------------------------------------------------------------- decoding


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise RecordFormatError(f"{what} is not msgpack: {exc}") from None


def _text(raw: Any, what: str) -> str:
    if not isinstance(raw, str):
        raise RecordFormatError(f"{what} must be a string")
    return raw


def _opt_text(raw: Any, what: str) -> str | None:
    return None if raw is None else _text(raw, what)


def _int(raw: Any, what: str) -> int:
    if type(raw) is not int:
        raise RecordFormatError(f"{what} must be an integer")
    return raw


def decode_key(data: bytes) -> RecordKey:
    fields = _unpack(data, "record key")
    if not isinstance(fields, list) or not fields:
        raise RecordFormatError("a record key must be a non-empty array")
    kind = fields[0]
    n = len(fields)
    try:
        rtype = RecordType(kind)
    except ValueError:
        raise RecordFormatError(f"unknown record type {kind!r}") from None
    expected = {
        RecordType.OFFSET_COMMIT: 4,
        RecordType.GROUP_METADATA: 2,
        RecordType.MEMBER_METADATA: 3,
        RecordType.TARGET_ASSIGNMENT_METADATA: 2,
        RecordType.TARGET_ASSIGNMENT_MEMBER: 3,
        RecordType.CURRENT_MEMBER_ASSIGNMENT: 3,
    }[rtype]
    if n != expected:
        raise RecordFormatError(f"a key of type {rtype.name} has {expected} fields, not {n}")
    group = _text(fields[1], "group id")
    if rtype is RecordType.OFFSET_COMMIT:
        return OffsetCommitKey(group, _text(fields[2], "topic"), _int(fields[3], "partition"))
    if rtype is RecordType.GROUP_METADATA:
        return GroupMetadataKey(group)
    if rtype is RecordType.TARGET_ASSIGNMENT_METADATA:
        return TargetAssignmentMetadataKey(group)
    member = _text(fields[2], "member id")
    if rtype is RecordType.MEMBER_METADATA:
        return MemberMetadataKey(group, member)
    if rtype is RecordType.TARGET_ASSIGNMENT_MEMBER:
        return TargetAssignmentMemberKey(group, member)
    return CurrentAssignmentKey(group, member)


def decode_value(key: RecordKey, data: bytes) -> RecordValue:
    body = _unpack(data, "record value")
    if not isinstance(body, dict):
        raise RecordFormatError("a record value must be a map")
    try:
        if isinstance(key, OffsetCommitKey):
            return OffsetCommitValue(
                _int(body["offset"], "offset"),
                _int(body["leader_epoch"], "leader_epoch"),
                _text(body["metadata"], "metadata"),
                _int(body["commit_timestamp_ms"], "commit_timestamp_ms"),
            )
        if isinstance(key, GroupMetadataKey):
            raw_sub = body["subscription"]
            if not isinstance(raw_sub, dict) or not all(
                isinstance(t, str) and type(c) is int for t, c in raw_sub.items()
            ):
                raise RecordFormatError("subscription must map topic names to counts")
            return GroupMetadataValue(_int(body["epoch"], "epoch"), dict(raw_sub))
        if isinstance(key, MemberMetadataKey):
            names = body["subscribed_topic_names"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise RecordFormatError("subscribed_topic_names must be a list of strings")
            return MemberMetadataValue(
                _opt_text(body["instance_id"], "instance_id"),
                _opt_text(body["rack_id"], "rack_id"),
                _text(body["client_id"], "client_id"),
                _text(body["client_host"], "client_host"),
                tuple(names),
                _opt_text(body["subscribed_topic_regex"], "subscribed_topic_regex"),
                _opt_text(body["server_assignor"], "server_assignor"),
                _int(body["rebalance_timeout_ms"], "rebalance_timeout_ms"),
            )
        if isinstance(key, TargetAssignmentMetadataKey):
            return TargetAssignmentMetadataValue(_int(body["assignment_epoch"], "assignment_epoch"))
        if isinstance(key, TargetAssignmentMemberKey):
            return TargetAssignmentMemberValue(_decode_assignment(body["partitions"], "partitions"))
        state = _text(body["state"], "state")
        if state not in MEMBER_STATES:
            raise RecordFormatError(f"unknown member state {state!r}")
        return CurrentAssignmentValue(
            _int(body["member_epoch"], "member_epoch"),
            _int(body["previous_member_epoch"], "previous_member_epoch"),
            state,
            _decode_assignment(body["assigned"], "assigned"),
            _decode_assignment(body["pending_revocation"], "pending_revocation"),
        )
    except KeyError as exc:
        raise RecordFormatError(f"{type(key).__name__} value misses field {exc}") from None


def decode(key: bytes | None, value: bytes | None) -> GroupRecord:
    """A record from its stored key and value bytes."""
    if key is None:
        raise RecordFormatError("a __consumer_offsets record needs a key")
    k = decode_key(key)
    return GroupRecord(k, None if value is None else decode_value(k, value))
