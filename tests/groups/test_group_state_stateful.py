"""Stateful test of the sans-IO group coordinator (broker.groups.shard.GroupShard).

Simulated consumers join, heartbeat, change subscriptions, leave (for good or
as static members, temporarily), crash (they stop heartbeating and the session
expires on the passed clock) and commit; topics appear, grow and disappear.
After every step:

- no partition is owned by two live consumers (nor assigned or pending
  revocation at two members on the coordinator), and each live consumer owns
  only what the coordinator says it has;
- every new target assignment gives each partition to one subscriber; with
  homogeneous subscriptions it is balanced and moves exactly the minimal number
  of partitions away from members that could have kept them; with mixed ones no
  single move would improve the balance;
- replaying the records written so far — in full, or compacted to the newest
  record per key — rebuilds exactly the coordinator's state.

``converge`` runs the protocol to a fixpoint (crashed members expire, everyone
heartbeats until nothing changes) and checks that the group is stable with every
subscribed partition owned by a subscriber.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from broker.groups.group_state import ConsumerGroup, GroupState
from broker.groups.records import Assignment, GroupRecord
from broker.groups.shard import CommitEntry, GroupConfig, GroupShard, HeartbeatRequest
from client.protocol import (
    FencedMemberEpochError,
    StaleMemberEpochError,
    UnknownMemberIdError,
)

GROUP = "g"
SESSION_MS = 1_000
TOPIC_NAMES = ("a", "b", "c")
SUBSCRIPTIONS: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("a", "b"), None),
    (("a", "b"), None),
    (("a", "b"), None),
    (("a",), None),
    (("b", "c"), None),
    ((), "[ac]"),
    ((), ".*"),
)
LOST = {FencedMemberEpochError.code, UnknownMemberIdError.code}


@dataclass
class Consumer:
    member_id: str
    epoch: int
    names: tuple[str, ...]
    regex: str | None
    instance_id: str | None = None
    owned: dict[str, frozenset[int]] = field(default_factory=dict)
    #: The latest assignment received and not yet reconciled (callbacks take time).
    received: dict[str, frozenset[int]] | None = None
    last_heartbeat: int = 0

    def reconcile(self) -> None:
        """What the driver does once the callbacks ran: give up what is gone, take what
        is new."""
        if self.received is not None:
            self.owned, self.received = self.received, None


def as_assignment(payload: list[dict[str, Any]]) -> dict[str, frozenset[int]]:
    return {e["topic"]: frozenset(e["partitions"]) for e in payload if e["partitions"]}


def tps(assignment: Assignment) -> set[tuple[str, int]]:
    return {(t, p) for t, ps in assignment.items() for p in ps}


def snapshot(shard: GroupShard) -> dict[str, Any]:
    groups = {}
    for gid, g in shard.groups.items():
        groups[gid] = {
            "epoch": g.group_epoch,
            "assignment_epoch": g.assignment_epoch,
            "subscription": dict(g.subscription),
            "targets": {m: dict(a) for m, a in g.targets.items() if a},
            "static": dict(g.static_members),
            "owners": dict(g.owners),
            "members": {
                mid: (
                    m.metadata,
                    m.member_epoch,
                    m.previous_member_epoch,
                    m.state,
                    dict(m.assigned),
                    dict(m.pending_revocation),
                )
                for mid, m in g.members.items()
            },
        }
    offsets = {gid: o for gid, o in shard.offsets.items()}
    return {"groups": groups, "offsets": offsets}


def fresh_shard() -> GroupShard:
    return GroupShard(0, GroupConfig(), lambda: "unused")


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ids = itertools.count(1)
        self.instance_ids = itertools.count(1)
        self.shard = GroupShard(
            0,
            GroupConfig(session_timeout_ms=SESSION_MS, heartbeat_interval_ms=100),
            lambda: f"m{next(self.ids)}",
        )
        self.now = 0
        self.shard.on_loaded(self.now)
        self.topics: dict[str, int] = {"a": 3, "b": 2}
        self.consumers: dict[str, Consumer] = {}
        #: Members that crashed or were fenced: their last epoch (zombies).
        self.zombies: dict[str, int] = {}
        #: Static instances that left temporarily: instance id -> subscription.
        self.parked: dict[str, tuple[tuple[str, ...], str | None]] = {}
        self.log: list[GroupRecord] = []

    # ------------------------------------------------------------ helpers

    @property
    def group(self) -> ConsumerGroup | None:
        return self.shard.groups.get(GROUP)

    def _write(self, records: list[GroupRecord]) -> None:
        self.log.extend(records)

    def _heartbeat(self, c: Consumer, *, full: bool = True, join: bool = False) -> dict[str, Any]:
        before = self._target_snapshot()
        req = HeartbeatRequest(
            GROUP,
            c.member_id,
            0 if join else c.epoch,
            instance_id=c.instance_id,
            rebalance_timeout_ms=300_000,
            subscribed_topic_names=c.names if join else None,
            subscribed_topic_regex=(c.regex or "") if join else None,
            owned=dict(c.owned) if full or join else None,
        )
        outcome = self.shard.heartbeat(req, self.topics, self.now)
        self._write(outcome.records)
        self._check_new_target(before)
        resp = outcome.response
        code = resp["error_code"]
        if code:
            assert code in LOST, resp
            self.consumers.pop(c.member_id, None)
            self.zombies[c.member_id] = c.epoch
            return resp
        c.member_id = resp["member_id"]
        c.epoch = resp["member_epoch"]
        c.last_heartbeat = self.now
        if resp["assignment"] is not None:
            c.received = as_assignment(resp["assignment"]["topic_partitions"])
            if join:
                c.reconcile()
        return resp

    def _target_snapshot(self) -> tuple[int, dict[str, Assignment]] | None:
        g = self.group
        if g is None:
            return None
        return g.assignment_epoch, {m: dict(a) for m, a in g.targets.items()}

    def _check_new_target(self, before: tuple[int, dict[str, Assignment]] | None) -> None:
        g = self.group
        if g is None or not g.members:
            return
        prev_epoch, prev = before if before is not None else (0, {})
        if g.assignment_epoch == prev_epoch:
            return
        members = g.members
        topics_of = {m: g.member_topics(members[m]) for m in members}
        new = {m: tps(g.target(m)) for m in members}
        all_parts = {(t, p) for t, n in g.subscription.items() for p in range(n)}
        subscribed = {tp for tp in all_parts if any(tp[0] in ts for ts in topics_of.values())}
        seen: set[tuple[str, int]] = set()
        for m, parts in new.items():
            assert not parts & seen, "a partition in two targets"
            seen |= parts
            assert all(t in topics_of[m] for t, _ in parts), "a partition given to a non-subscriber"
        assert seen == subscribed, "a subscribed partition without an owner"
        load = {m: len(p) for m, p in new.items()}
        kept = {
            m: {tp for tp in tps(prev.get(m, {})) if tp in all_parts and tp[0] in topics_of[m]}
            for m in members
        }
        moved = sum(len(kept[m] - new[m]) for m in members)
        if len({frozenset(ts) for ts in topics_of.values()}) == 1:
            base, extra = divmod(len(all_parts), len(members))
            assert all(base <= n <= base + 1 for n in load.values()), load
            ranked = sorted(members, key=lambda m: -len(kept[m]))
            quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(ranked)}
            minimal = sum(max(0, len(kept[m]) - quota[m]) for m in members)
            assert moved == minimal, (moved, minimal, kept, new)
        else:
            for a, parts in new.items():
                for topic, _ in parts:
                    for b in members:
                        if topic in topics_of[b]:
                            assert load[b] > load[a] - 2, ("unbalanced", a, b, load)

    def _alive(self) -> list[Consumer]:
        return sorted(self.consumers.values(), key=lambda c: c.member_id)

    def _tick(self) -> None:
        self._write(self.shard.tick(self.now))

    # ------------------------------------------------------------ rules

    @rule(choice=st.integers(0, len(SUBSCRIPTIONS) - 1), static=st.booleans())
    def join(self, choice: int, static: bool) -> None:
        names, regex = SUBSCRIPTIONS[choice]
        iid = f"i{next(self.instance_ids)}" if static else None
        c = Consumer("", 0, names, regex, instance_id=iid)
        resp = self._heartbeat(c, join=True)
        assert resp["error_code"] == 0, resp
        self.consumers[c.member_id] = c

    @precondition(lambda self: self.parked)
    @rule(data=st.data())
    def rejoin_static(self, data: st.DataObject) -> None:
        iid = data.draw(st.sampled_from(sorted(self.parked)))
        names, regex = self.parked.pop(iid)
        g = self.group
        holder = None if g is None else g.static_members.get(iid)
        epoch_before = -1 if g is None else g.group_epoch
        old_assigned = None
        same_subscription = settled = False
        if g is not None and holder is not None:
            old_assigned = tps(g.members[holder].assigned)
            same_subscription = g.compute_subscription(self.topics) == g.subscription
            settled = g.group_epoch == g.assignment_epoch and tps(g.target(holder)) == old_assigned
        c = Consumer("", 0, names, regex, instance_id=iid)
        resp = self._heartbeat(c, join=True)
        assert resp["error_code"] == 0, resp
        self.consumers[c.member_id] = c
        g = self.group
        if holder is not None and g is not None and same_subscription:
            # Back within the session timeout: no new group epoch, and (when its
            # target had not moved meanwhile) exactly its own partitions back.
            assert g.group_epoch == epoch_before
            if settled:
                assert tps(c.owned) == old_assigned

    @precondition(lambda self: self.consumers)
    @rule(data=st.data(), full=st.booleans())
    def heartbeat(self, data: st.DataObject, full: bool) -> None:
        c = data.draw(st.sampled_from(self._alive()))
        resp = self._heartbeat(c, full=full)
        assert resp["error_code"] == 0, resp

    @precondition(lambda self: self.consumers)
    @rule(data=st.data(), choice=st.integers(0, len(SUBSCRIPTIONS) - 1))
    def change_subscription(self, data: st.DataObject, choice: int) -> None:
        c = data.draw(st.sampled_from(self._alive()))
        c.names, c.regex = SUBSCRIPTIONS[choice]
        before = self._target_snapshot()
        req = HeartbeatRequest(
            GROUP,
            c.member_id,
            c.epoch,
            instance_id=c.instance_id,
            subscribed_topic_names=c.names,
            subscribed_topic_regex=c.regex or "",
            owned=dict(c.owned),
        )
        outcome = self.shard.heartbeat(req, self.topics, self.now)
        self._write(outcome.records)
        self._check_new_target(before)
        resp = outcome.response
        assert resp["error_code"] == 0, resp
        c.epoch = resp["member_epoch"]
        c.last_heartbeat = self.now
        if resp["assignment"] is not None:
            c.received = as_assignment(resp["assignment"]["topic_partitions"])

    @precondition(lambda self: any(c.received is not None for c in self.consumers.values()))
    @rule(data=st.data())
    def run_callbacks(self, data: st.DataObject) -> None:
        c = data.draw(st.sampled_from([c for c in self._alive() if c.received is not None]))
        c.reconcile()

    @precondition(lambda self: self.consumers)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        c = data.draw(st.sampled_from(self._alive()))
        static = c.instance_id is not None and data.draw(st.booleans())
        req = HeartbeatRequest(GROUP, c.member_id, -2 if static else -1, instance_id=c.instance_id)
        outcome = self.shard.heartbeat(req, self.topics, self.now)
        self._write(outcome.records)
        assert outcome.response["error_code"] == 0, outcome.response
        del self.consumers[c.member_id]
        if static and c.instance_id is not None:
            self.parked[c.instance_id] = (c.names, c.regex)

    @precondition(lambda self: self.consumers)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        c = data.draw(st.sampled_from(self._alive()))
        del self.consumers[c.member_id]
        self.zombies[c.member_id] = c.epoch

    @rule(dt=st.integers(1, SESSION_MS - 1))
    def advance_time(self, dt: int) -> None:
        # Well-behaved consumers heartbeat before their session would run out.
        for c in self._alive():
            if c.last_heartbeat + SESSION_MS <= self.now + dt:
                self._heartbeat(c)
        self.now += dt
        self._tick()

    @rule(topic=st.sampled_from(TOPIC_NAMES), more=st.integers(1, 3))
    def grow_topic(self, topic: str, more: int) -> None:
        self.topics[topic] = self.topics.get(topic, 0) + more

    @precondition(lambda self: self.topics)
    @rule(data=st.data())
    def delete_topic(self, data: st.DataObject) -> None:
        topic = data.draw(st.sampled_from(sorted(self.topics)))
        del self.topics[topic]

    @precondition(lambda self: self.zombies)
    @rule(data=st.data())
    def zombie_commit(self, data: st.DataObject) -> None:
        mid = data.draw(st.sampled_from(sorted(self.zombies)))
        epoch = self.zombies[mid]
        g = self.group
        member = None if g is None else g.members.get(mid)
        outcome = self.shard.commit_offsets(GROUP, mid, epoch, [CommitEntry("a", 0, 42)], self.now)
        self._write(outcome.records)
        (_, error) = outcome.response[0]
        if member is None:
            assert isinstance(error, UnknownMemberIdError), error
        elif epoch != member.member_epoch:
            assert isinstance(error, FencedMemberEpochError | StaleMemberEpochError), error

    @precondition(lambda self: self.consumers)
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        c = data.draw(st.sampled_from(self._alive()))
        outcome = self.shard.commit_offsets(
            GROUP, c.member_id, c.epoch, [CommitEntry("a", 0, 7, metadata="m")], self.now
        )
        self._write(outcome.records)
        assert outcome.response[0][1] is None, outcome.response

    @rule()
    def converge(self) -> None:
        # Crashed and parked members expire while the live ones keep heartbeating...
        for _ in range(3):
            for c in self._alive():
                c.reconcile()
                self._heartbeat(c)
            self.now += SESSION_MS // 2 + 1
            self._tick()
        self.parked.clear()
        # ... then everyone heartbeats until nothing changes.
        for _ in range(20):
            changed = False
            for c in self._alive():
                before = (c.epoch, dict(c.owned))
                self._heartbeat(c)
                c.reconcile()
                changed = changed or (c.epoch, c.owned) != before
            if not changed:
                break
        g = self.group
        if not self.consumers:
            assert g is None or not g.members
            return
        assert g is not None
        assert g.state() is GroupState.STABLE, g.state()
        assert set(g.members) == set(self.consumers)
        expected = {
            (t, p)
            for t, n in self.topics.items()
            for p in range(n)
            if any(g.members[c.member_id].subscribes(t) for c in self._alive())
        }
        owned: set[tuple[str, int]] = set()
        for c in self._alive():
            mine = tps(c.owned)
            assert all(g.members[c.member_id].subscribes(t) for t, _ in mine)
            assert c.epoch == g.group_epoch == g.assignment_epoch
            owned |= mine
        assert owned == expected

    # ------------------------------------------------------------ invariants

    @invariant()
    def nobody_shares_a_partition(self) -> None:
        seen: dict[tuple[str, int], str] = {}
        for c in self._alive():
            for tp in tps(c.owned):
                assert tp not in seen, f"{tp} owned by {seen[tp]} and {c.member_id}"
                seen[tp] = c.member_id
        g = self.group
        if g is None:
            return
        held: dict[tuple[str, int], str] = {}
        for m in g.members.values():
            for tp in tps(m.assigned) | tps(m.pending_revocation):
                assert tp not in held, f"{tp} held by {held[tp]} and {m.member_id}"
                held[tp] = m.member_id
        assert held == g.owners
        for c in self._alive():
            m = g.members[c.member_id]
            assert tps(c.owned) <= tps(m.assigned) | tps(m.pending_revocation)

    @invariant()
    def replay_rebuilds_the_state(self) -> None:
        live = snapshot(self.shard)
        full = fresh_shard()
        for record in self.log:
            full.replay(record)
        assert snapshot(full) == live
        newest: dict[Any, tuple[int, GroupRecord]] = {}
        for i, record in enumerate(self.log):
            newest[record.key] = (i, record)
        compacted = fresh_shard()
        for _, record in sorted(newest.values(), key=lambda x: x[0]):
            compacted.replay(record)
        assert snapshot(compacted) == live


GroupMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGroupMachine = GroupMachine.TestCase
