"""The client's sans-IO membership state machine, against the sans-IO coordinator.

``Membership`` objects talk to a ``GroupShard`` directly (its heartbeat takes
the request the handler would parse), so the whole protocol runs without a
socket or a clock.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from broker.groups.group_state import GroupState
from broker.groups.shard import GroupConfig, GroupShard, HeartbeatRequest
from client.group_membership import (
    Assign,
    CommitFailedError,
    ErrorAction,
    Lose,
    Membership,
    MemberState,
    OffsetAndMetadata,
    Revoke,
    commit_errors,
)
from client.protocol import FencedMemberEpochError, UnknownMemberIdError
from client.types import TopicPartition as TP

TOPICS = {"t": 6}


def to_request(payload: dict[str, Any]) -> HeartbeatRequest:
    def owned(raw: Any) -> dict[str, frozenset[int]] | None:
        if raw is None:
            return None
        return {e["topic"]: frozenset(e["partitions"]) for e in raw if e["partitions"]}

    rebalance = payload.get("rebalance_timeout_ms", -1)
    names = payload.get("subscribed_topic_names")
    return HeartbeatRequest(
        group_id=payload["group_id"],
        member_id=payload["member_id"],
        member_epoch=payload["member_epoch"],
        instance_id=payload.get("instance_id"),
        rebalance_timeout_ms=None if rebalance == -1 else rebalance,
        subscribed_topic_names=None if names is None else tuple(names),
        subscribed_topic_regex=payload.get("subscribed_topic_regex"),
        server_assignor=payload.get("server_assignor"),
        owned=owned(payload.get("topic_partitions")),
    )


class World:
    def __init__(self) -> None:
        ids = itertools.count(1)
        self.shard = GroupShard(0, GroupConfig(session_timeout_ms=1000), lambda: f"m{next(ids)}")
        self.now = 0
        self.shard.on_loaded(0)

    def heartbeat(self, m: Membership) -> ErrorAction | None:
        outcome = self.shard.heartbeat(to_request(m.build_heartbeat()), TOPICS, self.now)
        return m.on_heartbeat_response(outcome.response, self.now / 1000)

    def reconcile(self, m: Membership) -> list[Any]:
        done = []
        while (action := m.next_action()) is not None:
            m.action_done(action, self.now / 1000)
            done.append(action)
        return done

    def settle(self, *members: Membership) -> None:
        for _ in range(10):
            for m in members:
                self.heartbeat(m)
                self.reconcile(m)


def state(m: Membership) -> MemberState:
    """The state, read through a call (mypy cannot see methods change it)."""
    return m.state


def joined(world: World, **kwargs: Any) -> Membership:
    m = Membership("g", **kwargs)
    m.subscribe(["t"])
    return m


def test_join_gets_everything_and_is_stable() -> None:
    w = World()
    m = joined(w)
    assert m.heartbeat_due(0.0)
    assert w.heartbeat(m) is None
    assert m.member_id == "m1" and m.member_epoch == 1
    assert m.state is MemberState.RECONCILING
    assert w.reconcile(m) == [Assign(frozenset(TP("t", p) for p in range(6)))]
    assert state(m) is MemberState.STABLE
    # The new ownership goes out at once.
    assert m.heartbeat_due(0.0)


def test_hand_over_revokes_before_the_new_member_gets_anything() -> None:
    w = World()
    a = joined(w)
    w.settle(a)
    b = joined(w)
    w.heartbeat(b)
    assert b.target == frozenset()  # everything still belongs to a
    w.heartbeat(a)
    action = a.next_action()
    assert isinstance(action, Revoke) and len(action.partitions) == 3
    w.heartbeat(b)
    assert b.target == frozenset()  # a has not reported the revocation yet
    a.action_done(action, 0.0)
    w.heartbeat(a)
    w.heartbeat(b)
    assert len(b.target) == 3 and not b.target & a.owned
    w.reconcile(b)
    w.settle(a, b)
    assert a.state is b.state is MemberState.STABLE
    assert w.shard.groups["g"].state() is GroupState.STABLE


def test_fenced_member_loses_its_partitions_then_rejoins() -> None:
    w = World()
    m = joined(w)
    w.settle(m)
    owned = m.owned
    action = m.on_heartbeat_error(FencedMemberEpochError("stale"), 1.0)
    assert action is ErrorAction.REJOIN
    assert m.state is MemberState.FENCED
    assert m.next_action() == Lose(owned)
    assert not m.heartbeat_due(1.0)
    m.action_done(Lose(owned), 1.0)
    assert state(m) is MemberState.JOINING and m.member_epoch == 0
    assert m.member_id == "m1"  # kept: the coordinator treats it as a rejoin
    w.settle(m)
    assert m.owned == owned and state(m) is MemberState.STABLE


def test_unknown_member_rejoins_under_a_new_id() -> None:
    w = World()
    m = joined(w)
    w.settle(m)
    m.on_heartbeat_error(UnknownMemberIdError("gone"), 1.0)
    w.reconcile(m)
    assert m.member_id == "" and m.state is MemberState.JOINING


def test_commit_request_needs_membership() -> None:
    w = World()
    m = joined(w)
    with pytest.raises(CommitFailedError):
        m.commit_request({TP("t", 0): OffsetAndMetadata(1)})
    w.settle(m)
    payload = m.commit_request({TP("t", 0): OffsetAndMetadata(5, "meta")})
    assert payload["member_epoch"] == m.member_epoch
    outcome = w.shard.commit_offsets(
        "g", payload["member_id"], payload["member_epoch"], _entries(payload), 0
    )
    assert all(error is None for _, error in outcome.response)
    assert commit_errors({"topics": []}) == {}


def _entries(payload: dict[str, Any]) -> list[Any]:
    from broker.groups.shard import CommitEntry

    return [
        CommitEntry(t["topic"], p["partition"], p["offset"], p["leader_epoch"], p["metadata"])
        for t in payload["topics"]
        for p in t["partitions"]
    ]


def test_leave_revokes_then_sends_the_leave_epoch() -> None:
    w = World()
    m = joined(w, instance_id="i-1")
    w.settle(m)
    m.leave()
    assert m.state is MemberState.LEAVING and not m.ready_to_leave
    action = m.next_action()
    assert isinstance(action, Revoke)
    m.action_done(action, 0.0)
    assert m.ready_to_leave
    leave = m.build_leave()
    assert leave is not None and leave["member_epoch"] == -2
    m.left()
    assert m.state is MemberState.LEFT


def test_partial_heartbeats_carry_only_changes() -> None:
    w = World()
    m = joined(w)
    w.settle(m)
    payload = m.build_heartbeat()
    assert payload["subscribed_topic_names"] is None
    assert payload["topic_partitions"] is None
    m.on_heartbeat_failed(0.0)
    payload = m.build_heartbeat()  # after a lost answer: everything again
    assert payload["subscribed_topic_names"] == ["t"]
    assert payload["topic_partitions"] is not None


def test_subscribe_validates() -> None:
    m = Membership("g")
    with pytest.raises(ValueError):
        m.subscribe(["a"], "b")
    with pytest.raises(ValueError):
        m.subscribe()
    with pytest.raises(ValueError):
        Membership("")


def test_leaving_while_fenced_loses_instead_of_revoking() -> None:
    w = World()
    m = joined(w)
    w.settle(m)
    owned = m.owned
    m.on_heartbeat_error(FencedMemberEpochError("stale"), 1.0)
    m.leave()
    assert m.next_action() == Lose(owned)
