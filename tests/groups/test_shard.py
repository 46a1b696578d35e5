"""Scenarios of the sans-IO group coordinator (broker.groups.shard.GroupShard)."""

from __future__ import annotations

import itertools
from typing import Any

from broker.groups.group_state import GroupState, MemberState
from broker.groups.records import GroupRecord
from broker.groups.shard import CommitEntry, GroupConfig, GroupShard, HeartbeatRequest
from client.protocol import (
    FencedInstanceIdError,
    FencedMemberEpochError,
    GroupMaxSizeReachedError,
    OffsetMetadataTooLargeError,
    StaleMemberEpochError,
    UnknownMemberIdError,
    UnreleasedInstanceIdError,
)

DAY = 86_400_000


def make(**config: Any) -> tuple[GroupShard, list[GroupRecord]]:
    ids = itertools.count(1)
    shard = GroupShard(3, GroupConfig(**config), lambda: f"m{next(ids)}")
    shard.on_loaded(0)
    return shard, []


def join(
    shard: GroupShard,
    log: list[GroupRecord],
    topics: dict[str, int],
    now: int = 0,
    **fields: Any,
) -> dict[str, Any]:
    fields.setdefault("subscribed_topic_names", tuple(sorted(topics)))
    req = HeartbeatRequest("g", fields.pop("member_id", ""), 0, owned={}, **fields)
    outcome = shard.heartbeat(req, topics, now)
    log.extend(outcome.records)
    return outcome.response


def beat(
    shard: GroupShard,
    log: list[GroupRecord],
    topics: dict[str, int],
    member: str,
    epoch: int,
    owned: dict[str, frozenset[int]] | None,
    now: int = 0,
    **fields: Any,
) -> dict[str, Any]:
    outcome = shard.heartbeat(
        HeartbeatRequest("g", member, epoch, owned=owned, **fields), topics, now
    )
    log.extend(outcome.records)
    return outcome.response


def parts(response: dict[str, Any]) -> dict[str, frozenset[int]]:
    return {
        e["topic"]: frozenset(e["partitions"]) for e in response["assignment"]["topic_partitions"]
    }


def test_session_expiry_removes_the_member_and_bumps_the_epoch() -> None:
    shard, log = make(session_timeout_ms=1000)
    topics = {"t": 4}
    a = join(shard, log, topics)
    b = join(shard, log, topics, now=100)
    assert shard.next_deadline() == 1000
    assert shard.tick(999) == []
    records = shard.tick(1000)
    assert records  # a's tombstones and a new group epoch
    group = shard.groups["g"]
    assert set(group.members) == {b["member_id"]}
    assert group.group_epoch == 3
    # b's next heartbeat gets every partition (a's are free now).
    r = beat(shard, log, topics, b["member_id"], b["member_epoch"], {}, now=200)
    assert parts(r) == {"t": frozenset(range(4))}
    # a is fenced for good.
    r = beat(shard, log, topics, a["member_id"], a["member_epoch"], {}, now=200)
    assert r["error_code"] == UnknownMemberIdError.code


def test_rebalance_timeout_fences_a_member_that_never_revokes() -> None:
    shard, log = make(session_timeout_ms=10_000)
    topics = {"t": 4}
    a = join(shard, log, topics, rebalance_timeout_ms=500)
    b = join(shard, log, topics)
    owned_a = parts(a)
    r = beat(shard, log, topics, a["member_id"], a["member_epoch"], owned_a, now=10)
    assert len(parts(r)["t"]) == 2  # revoke two...
    assert shard.groups["g"].members[a["member_id"]].state is MemberState.UNREVOKED_PARTITIONS
    # ... which it keeps reporting as owned.
    beat(shard, log, topics, a["member_id"], r["member_epoch"], owned_a, now=300)
    shard.tick(509)
    assert a["member_id"] in shard.groups["g"].members
    shard.tick(510)
    assert a["member_id"] not in shard.groups["g"].members
    r = beat(shard, log, topics, b["member_id"], b["member_epoch"], {}, now=520)
    assert parts(r) == {"t": frozenset(range(4))}


def test_lost_response_is_tolerated_with_the_previous_epoch() -> None:
    shard, log = make()
    topics = {"t": 2}
    a = join(shard, log, topics)
    b = join(shard, log, topics)
    r = beat(shard, log, topics, a["member_id"], a["member_epoch"], parts(a))
    kept = parts(r)
    r = beat(shard, log, topics, a["member_id"], a["member_epoch"], kept)
    assert r["member_epoch"] == b["member_epoch"]
    # The answer was lost: a repeats its old epoch with a subset of its assignment.
    again = beat(shard, log, topics, a["member_id"], a["member_epoch"], kept)
    assert again["error_code"] == 0 and again["member_epoch"] == r["member_epoch"]
    # Not with partitions it does not have, nor with an epoch from the future.
    bad = beat(shard, log, topics, a["member_id"], a["member_epoch"], {"t": frozenset({0, 1})})
    assert bad["error_code"] == FencedMemberEpochError.code
    bad = beat(shard, log, topics, a["member_id"], r["member_epoch"] + 5, kept)
    assert bad["error_code"] == FencedMemberEpochError.code


def test_commit_epochs() -> None:
    shard, log = make()
    topics = {"t": 2}
    a = join(shard, log, topics)
    join(shard, log, topics)
    r = beat(shard, log, topics, a["member_id"], a["member_epoch"], parts(a))
    beat(shard, log, topics, a["member_id"], r["member_epoch"], parts(r))
    member = shard.groups["g"].members[a["member_id"]]
    entry = [CommitEntry("t", 0, 5)]

    def error(member_id: str, epoch: int) -> Any:
        return shard.commit_offsets("g", member_id, epoch, entry, 0).response[0][1]

    assert error(a["member_id"], member.member_epoch) is None
    assert isinstance(error(a["member_id"], member.member_epoch - 1), StaleMemberEpochError)
    assert isinstance(error(a["member_id"], member.member_epoch + 1), FencedMemberEpochError)
    assert isinstance(error("nobody", 1), UnknownMemberIdError)
    assert isinstance(error("", -1), UnknownMemberIdError)  # the group has members
    big = shard.commit_offsets(
        "g", a["member_id"], member.member_epoch, [CommitEntry("t", 1, 1, -1, "x" * 5000)], 0
    )
    assert isinstance(big.response[0][1], OffsetMetadataTooLargeError)
    assert big.records == []


def test_static_membership() -> None:
    shard, log = make(session_timeout_ms=1000)
    topics = {"t": 4}
    a = join(shard, log, topics, instance_id="i-a")
    b = join(shard, log, topics, instance_id="i-b")
    r = beat(shard, log, topics, a["member_id"], a["member_epoch"], parts(a), instance_id="i-a")
    r = beat(shard, log, topics, a["member_id"], r["member_epoch"], parts(r), instance_id="i-a")
    b2 = beat(shard, log, topics, b["member_id"], b["member_epoch"], {}, instance_id="i-b")
    group = shard.groups["g"]
    assert group.state() is GroupState.STABLE
    epoch = group.group_epoch
    mine = parts(r)
    # Another process claiming i-a while a is alive is refused.
    clash = join(shard, log, topics, instance_id="i-a")
    assert clash["error_code"] == UnreleasedInstanceIdError.code
    # a heartbeating under b's instance id is fenced.
    wrong = beat(shard, log, topics, a["member_id"], r["member_epoch"], None, instance_id="i-b")
    assert wrong["error_code"] == FencedInstanceIdError.code
    # A temporary leave keeps the assignment, a rejoin takes it over without a new epoch.
    left = beat(shard, log, topics, a["member_id"], -2, None, instance_id="i-a", now=10)
    assert left["member_epoch"] == -2
    back = join(shard, log, topics, instance_id="i-a", now=20)
    assert back["error_code"] == 0 and back["member_id"] != a["member_id"]
    assert parts(back) == mine and back["member_epoch"] == epoch
    assert group.group_epoch == epoch
    assert set(group.members) == {back["member_id"], b2["member_id"]}
    # Left temporarily for longer than the session: removed, partitions reassigned.
    beat(shard, log, topics, back["member_id"], -2, None, instance_id="i-a", now=30)
    beat(shard, log, topics, b2["member_id"], b2["member_epoch"], None, instance_id="i-b", now=900)
    shard.tick(1030)
    assert back["member_id"] not in group.members and group.group_epoch == epoch + 1


def test_fenced_member_rejoins_under_its_id_and_gets_its_target_back() -> None:
    shard, log = make()
    topics = {"t": 3}
    a = join(shard, log, topics)
    again = join(shard, log, topics, member_id=a["member_id"])
    assert again["member_id"] == a["member_id"]
    assert parts(again) == {"t": frozenset(range(3))}
    assert shard.groups["g"].group_epoch == a["member_epoch"]


def test_subscription_and_partition_changes_bump_the_epoch() -> None:
    shard, log = make()
    a = join(shard, log, {"t": 2})
    r = beat(shard, log, {"t": 3}, a["member_id"], a["member_epoch"], parts(a))
    assert r["member_epoch"] == a["member_epoch"] + 1 and parts(r) == {"t": frozenset(range(3))}
    r = beat(
        shard,
        log,
        {"t": 3, "u": 1},
        a["member_id"],
        r["member_epoch"],
        parts(r),
        subscribed_topic_regex="[tu]",
        subscribed_topic_names=(),
    )
    assert parts(r)["t"] == frozenset(range(3))  # t kept; u comes once nothing is revoked
    assert shard.groups["g"].subscription == {"t": 3, "u": 1}
    internal = beat(
        shard,
        log,
        {"t": 3, "u": 1, "__consumer_offsets": 4},
        a["member_id"],
        r["member_epoch"],
        parts(r),
        subscribed_topic_regex=".*",
    )
    assert "__consumer_offsets" not in parts(internal)


def test_range_assignor_by_vote() -> None:
    shard, log = make()
    topics = {"t": 4}
    join(shard, log, topics, server_assignor="range")
    join(shard, log, topics, server_assignor="range")
    group = shard.groups["g"]
    assert shard.assignor_of(group) == "range"
    targets = sorted(sorted(a["t"]) for a in group.targets.values())
    assert targets == [[0, 1], [2, 3]]


def test_group_max_size() -> None:
    shard, log = make(max_size=1)
    join(shard, log, {"t": 1})
    r = join(shard, log, {"t": 1})
    assert r["error_code"] == GroupMaxSizeReachedError.code


def test_retention_expires_offsets_then_the_empty_group() -> None:
    shard, log = make(offsets_retention_ms=DAY, offsets_retention_check_interval_ms=1000)
    topics = {"t": 1, "old": 1}
    a = join(shard, log, topics, subscribed_topic_names=("t",))
    for topic in ("t", "old"):
        log += shard.commit_offsets(
            "g", a["member_id"], a["member_epoch"], [CommitEntry(topic, 0, 1)], 0
        ).records
    log += shard.commit_offsets("solo", "", -1, [CommitEntry("t", 0, 9)], 0).records
    log += shard.tick(DAY)
    # "old" is not subscribed: expired; "t" is, while the group has members.
    assert shard.offsets.of_group("g") == {("t", 0): shard.offsets.get("g", "t", 0)}
    assert shard.offsets.count("solo") == 0
    assert {g for g, _ in shard.list_groups()} == {"g"}
    beat(shard, log, topics, a["member_id"], -1, None, now=DAY)
    log += shard.tick(DAY + 1000)
    assert shard.offsets.count("g") == 0
    assert "g" not in shard.groups and shard.list_groups() == []


def test_describe_and_delete_an_offsets_only_group() -> None:
    shard, log = make()
    log += shard.commit_offsets("solo", "", -1, [CommitEntry("t", 0, 9)], 0).records
    desc = shard.describe("solo")
    assert desc["error_code"] == 0 and desc["group_state"] == "empty"
    outcome = shard.delete_group("solo")
    assert outcome.response is None and outcome.records
    assert not shard.group_exists("solo")
    assert shard.describe("solo")["group_state"] == "dead"
