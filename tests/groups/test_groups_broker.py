"""Consumer groups against a real broker process, driven by client.group_membership.

Three members share a six-partition topic; one stops heartbeating (a crash) and
the others take its partitions once its session expires; a fenced member's
commits are refused; static members come back without a reshuffle; describe,
list, delete and offset resets work; committed offsets survive kill -9 and a
clean restart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from client.group_membership import (
    ChannelTransport,
    CommitFailedError,
    CoordinatorLink,
    GroupMember,
    MemberState,
    OffsetAndMetadata,
    RebalanceListener,
    commit_offsets,
    fetch_committed,
)
from client.protocol import (
    ApiKey,
    FencedMemberEpochError,
    GroupIdNotFoundError,
    InvalidGroupIdError,
    NonEmptyGroupError,
    StaleMemberEpochError,
    UnknownMemberIdError,
    UnsupportedAssignorError,
)
from client.types import TopicPartition as TP
from client.wire import InvalidRequestError
from tests.broker.rpc import batch, connect, create_topic, produce
from tests.groups.conftest import GROUP_FLAGS, SESSION_MS
from tests.groups.helpers import commit, describe, fetch_offsets, find_coordinator, heartbeat
from tests.procs import ServerProcess

GENEROUS = 20.0


class Ledger(RebalanceListener):
    """Records who owns what across members; fails on a partition owned twice."""

    def __init__(self, owners: dict[TP, str], name: str) -> None:
        self.owners = owners
        self.name = name
        self.revoked: list[set[TP]] = []
        self.lost: list[set[TP]] = []

    async def on_partitions_assigned(self, partitions: set[TP]) -> None:
        for tp in partitions:
            assert tp not in self.owners, f"{tp} given to {self.name}, owned by {self.owners[tp]}"
            self.owners[tp] = self.name
        await trio.lowlevel.checkpoint()

    async def on_partitions_revoked(self, partitions: set[TP]) -> None:
        self.revoked.append(set(partitions))
        await trio.sleep(0.05)  # a slow callback (committing, say)
        for tp in partitions:
            assert self.owners.pop(tp) == self.name

    def on_partitions_lost(self, partitions: set[TP]) -> None:
        self.lost.append(set(partitions))
        for tp in partitions:
            self.owners.pop(tp, None)


async def run_member(member: GroupMember, scope: trio.CancelScope) -> None:
    with scope:
        await member.run()


async def wait_until(predicate: Callable[[], bool], timeout: float = GENEROUS) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def test_three_members_and_a_crash(group_broker: ServerProcess) -> None:
    address = group_broker.address
    group = "g-crash"
    async with connect(address) as ch:
        assert (await create_topic(ch, "orders", 6))["error_code"] == 0
        await find_coordinator(ch, group)
        owners: dict[TP, str] = {}
        all_parts = {TP("orders", p) for p in range(6)}
        async with ChannelTransport([address]) as transport, trio.open_nursery() as nursery:
            members = [
                GroupMember(transport, group, topics=["orders"], listener=Ledger(owners, f"c{i}"))
                for i in range(3)
            ]
            scopes = [trio.CancelScope() for _ in members]
            for member, scope in zip(members, scopes, strict=True):
                nursery.start_soon(run_member, member, scope)
            await wait_until(
                lambda: all(
                    m.state is MemberState.STABLE and len(m.assignment()) == 2 for m in members
                )
            )
            assert set(owners) == all_parts

            # c0 crashes: it stops heartbeating, and never says goodbye.
            crashed, survivors = members[0], members[1:]
            zombie_parts, zombie_id, zombie_epoch = (
                crashed.assignment(),
                crashed.member_id,
                crashed.member_epoch,
            )
            scopes[0].cancel()
            for tp in zombie_parts:
                del owners[tp]
            started = trio.current_time()
            await wait_until(
                lambda: all(
                    m.state is MemberState.STABLE and len(m.assignment()) == 3 for m in survivors
                )
            )
            took = trio.current_time() - started
            assert took >= SESSION_MS / 1000 * 0.5  # not before the session could expire
            assert set(owners) == all_parts
            assert all(not m.membership.fatal_error for m in survivors)

            # The zombie's commit is refused: it is not a member any more.
            codes = await commit(
                ch,
                group,
                {(tp.topic, tp.partition): 99 for tp in zombie_parts},
                zombie_id,
                zombie_epoch,
            )
            assert set(codes.values()) == {UnknownMemberIdError.code}

            # A live member's commit with an old or a future epoch is refused too.
            live = survivors[0]
            tp = next(iter(live.assignment()))
            key = {(tp.topic, tp.partition): 5}
            old = await commit(ch, group, key, live.member_id, live.member_epoch - 1)
            assert old == {(tp.topic, tp.partition): StaleMemberEpochError.code}
            future = await commit(ch, group, key, live.member_id, live.member_epoch + 1)
            assert future == {(tp.topic, tp.partition): FencedMemberEpochError.code}

            # With its current epoch it commits, and the offsets read back.
            await live.commit(
                {p: OffsetAndMetadata(10 + p.partition, "x") for p in live.assignment()}
            )
            got = await live.committed(live.assignment())
            assert got == {
                p: OffsetAndMetadata(10 + p.partition, "x", -1) for p in live.assignment()
            }

            for m in survivors:
                await m.leave(timeout=GENEROUS)
            assert owners == {}
        desc = await describe(ch, group)
        assert desc["group_state"] == "empty" and desc["members"] == []


async def test_static_member_comes_back_without_a_reshuffle(group_broker: ServerProcess) -> None:
    address = group_broker.address
    group = "g-static"
    async with connect(address) as ch:
        assert (await create_topic(ch, "static-t", 4))["error_code"] == 0
        await find_coordinator(ch, group)
        owners: dict[TP, str] = {}
        async with ChannelTransport([address]) as transport, trio.open_nursery() as nursery:
            other_ledger = Ledger(owners, "other")
            first = GroupMember(
                transport,
                group,
                topics=["static-t"],
                instance_id="i-1",
                listener=Ledger(owners, "i-1"),
            )
            other = GroupMember(
                transport, group, topics=["static-t"], instance_id="i-2", listener=other_ledger
            )
            for m in (first, other):
                nursery.start_soon(m.run)
            await wait_until(
                lambda: all(
                    m.state is MemberState.STABLE and len(m.assignment()) == 2
                    for m in (first, other)
                )
            )
            mine = first.assignment()
            epoch = (await describe(ch, group))["group_epoch"]
            revocations_before = len(other_ledger.revoked)

            await first.leave(timeout=GENEROUS)  # an instance id: a temporary, static leave
            desc = await describe(ch, group)
            leaving = [m for m in desc["members"] if m["instance_id"] == "i-1"]
            assert leaving and leaving[0]["member_epoch"] == -2

            again = GroupMember(
                transport,
                group,
                topics=["static-t"],
                instance_id="i-1",
                listener=Ledger(owners, "i-1 again"),
            )
            nursery.start_soon(again.run)
            await again.wait_stable(timeout=GENEROUS)
            assert again.assignment() == mine
            assert again.member_id != first.member_id
            desc = await describe(ch, group)
            assert desc["group_epoch"] == epoch
            assert len(other_ledger.revoked) == revocations_before
            assert other.state is MemberState.STABLE

            # A second process claiming the live instance id is turned away (retriable).
            reply = await heartbeat(
                ch, group_id=group, instance_id="i-1", subscribed_topic_names=["static-t"]
            )
            assert reply["error_code"] == 211  # UNRELEASED_INSTANCE_ID
            for m in (again, other):
                await m.leave(static=False, timeout=GENEROUS)


async def test_describe_list_delete_and_reset(group_broker: ServerProcess) -> None:
    address = group_broker.address
    group = "g-admin"
    async with connect(address) as ch:
        assert (await create_topic(ch, "admin-t", 2))["error_code"] == 0
        for p, n in ((0, 3), (1, 5)):
            assert (await produce(ch, "admin-t", p, batch(*[b"v"] * n)))["error_code"] == 0
        await find_coordinator(ch, group)
        joined = await heartbeat(
            ch, group_id=group, subscribed_topic_names=["admin-t"], topic_partitions=[]
        )
        assert joined["error_code"] == 0, joined
        member, epoch = joined["member_id"], joined["member_epoch"]
        assert joined["assignment"]["topic_partitions"] == [
            {"topic": "admin-t", "partitions": [0, 1]}
        ]

        listed = await ch.call(ApiKey.LIST_GROUPS, 0, {"states_filter": []})
        assert {"group_id": group, "group_state": "stable", "protocol_type": "consumer"} in listed[
            "groups"
        ]
        empty_only = await ch.call(ApiKey.LIST_GROUPS, 0, {"states_filter": ["Empty"]})
        assert group not in {g["group_id"] for g in empty_only["groups"]}

        desc = await describe(ch, group)
        assert desc["error_code"] == 0 and desc["group_state"] == "stable"
        assert desc["group_epoch"] == desc["assignment_epoch"] == epoch
        assert desc["assignor_name"] == "uniform"
        (m,) = desc["members"]
        assert m["member_id"] == member and m["member_epoch"] == epoch
        assert (
            m["assignment"]
            == m["target_assignment"]
            == [{"topic": "admin-t", "partitions": [0, 1]}]
        )
        assert m["subscribed_topic_names"] == ["admin-t"]

        deleted = await ch.call(ApiKey.DELETE_GROUPS, 0, {"groups": [group]})
        assert deleted["groups"][0]["error_code"] == NonEmptyGroupError.code
        # Resetting offsets is only for groups without members.
        refused = await commit(ch, group, {("admin-t", 0): 0})
        assert refused == {("admin-t", 0): UnknownMemberIdError.code}

        left = await heartbeat(ch, group_id=group, member_id=member, member_epoch=-1)
        assert left["error_code"] == 0 and left["member_epoch"] == -1

        # An admin reset to the latest offsets (LIST_OFFSETS, then a commit without membership).
        latest = await ch.call(
            ApiKey.LIST_OFFSETS,
            0,
            {
                "topics": [
                    {
                        "topic": "admin-t",
                        "partitions": [
                            {"partition": 0, "timestamp": -1},
                            {"partition": 1, "timestamp": -1},
                        ],
                    }
                ]
            },
        )
        ends = {p["partition"]: p["offset"] for p in latest["topics"][0]["partitions"]}
        assert ends == {0: 3, 1: 5}
        link = CoordinatorLink(_RpcTransport(ch), group)
        await commit_offsets(link, {TP("admin-t", p): o for p, o in ends.items()})
        assert await fetch_offsets(ch, group) == {("admin-t", 0): 3, ("admin-t", 1): 5}
        await commit_offsets(link, {TP("admin-t", 0): 0, TP("admin-t", 1): OffsetAndMetadata(0)})
        assert await fetch_committed(link, [TP("admin-t", 0), TP("admin-t", 9)]) == {
            TP("admin-t", 0): OffsetAndMetadata(0, "", -1),
            TP("admin-t", 9): None,
        }
        desc = await describe(ch, group)
        assert desc["group_state"] == "empty"

        deleted = await ch.call(ApiKey.DELETE_GROUPS, 0, {"groups": [group, "never-was"]})
        codes = {g["group_id"]: g["error_code"] for g in deleted["groups"]}
        assert codes == {group: 0, "never-was": GroupIdNotFoundError.code}
        assert (await describe(ch, group))["error_code"] == GroupIdNotFoundError.code
        assert await fetch_offsets(ch, group) == {}
        listed = await ch.call(ApiKey.LIST_GROUPS, 0, {"states_filter": []})
        assert group not in {g["group_id"] for g in listed["groups"]}


async def test_bad_requests_get_clear_errors(group_broker: ServerProcess) -> None:
    async with connect(group_broker.address) as ch:
        await find_coordinator(ch, "g-bad")
        reply = await heartbeat(ch, group_id="", subscribed_topic_names=["x"])
        assert reply["error_code"] == InvalidGroupIdError.code
        reply = await heartbeat(
            ch, group_id="g-bad", subscribed_topic_names=["x"], server_assignor="magic"
        )
        assert reply["error_code"] == UnsupportedAssignorError.code
        reply = await heartbeat(ch, group_id="g-bad", member_id="nobody", member_epoch=3)
        assert reply["error_code"] == UnknownMemberIdError.code
        reply = await heartbeat(ch, group_id="g-bad", subscribed_topic_regex="(unclosed")
        assert reply["error_code"] == InvalidRequestError.code
        with pytest.raises(InvalidRequestError):
            await ch.call(
                ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, {"group_id": "g-bad", "member_epoch": "0"}
            )
        with pytest.raises(InvalidRequestError):
            await ch.call(ApiKey.FIND_COORDINATOR, 0, {"key": "g-bad", "key_type": 1})
        with pytest.raises(InvalidRequestError):
            await ch.call(ApiKey.OFFSET_COMMIT, 0, {"group_id": "g-bad", "topics": "nope"})
        # ... and the broker still serves.
        assert (await find_coordinator(ch, "g-bad"))["error_code"] == 0


async def test_commit_from_a_non_member_driver_fails_cleanly(group_broker: ServerProcess) -> None:
    address = group_broker.address
    async with ChannelTransport([address]) as transport:
        member = GroupMember(transport, "g-nonmember", topics=["orders-none"])
        with pytest.raises(CommitFailedError):
            await member.commit({TP("orders-none", 0): 1})


@pytest.mark.slow
async def test_offsets_and_groups_survive_kill_and_restart(
    start_broker: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "durable"
    group = "g-durable"
    broker = start_broker(*GROUP_FLAGS, data_dir=data_dir)
    async with connect(broker.address) as ch:
        assert (await create_topic(ch, "durable-t", 3))["error_code"] == 0
        await find_coordinator(ch, group)
        joined = await heartbeat(
            ch, group_id=group, subscribed_topic_names=["durable-t"], topic_partitions=[]
        )
        member, epoch = joined["member_id"], joined["member_epoch"]
        codes = await commit(
            ch, group, {("durable-t", 0): 11, ("durable-t", 1): 12}, member, epoch, "before"
        )
        assert set(codes.values()) == {0}
    broker.kill()  # SIGKILL: only what was acknowledged (and so fsynced) must survive

    restarted = start_broker(*GROUP_FLAGS, data_dir=data_dir)
    async with connect(restarted.address) as ch:
        await find_coordinator(ch, group)
        with trio.fail_after(GENEROUS):
            while True:
                desc = await describe(ch, group)
                if desc["error_code"] == 0:
                    break
                await trio.sleep(0.05)
        assert [m["member_id"] for m in desc["members"]] == [member]
        assert desc["group_epoch"] == epoch
        assert await fetch_offsets(ch, group) == {("durable-t", 0): 11, ("durable-t", 1): 12}
        # The member never comes back: its session, re-armed at the load, expires.
        await _wait_for_state(ch, group, "empty")
        codes = await commit(ch, group, {("durable-t", 2): 30}, metadata="after")
        assert codes == {("durable-t", 2): 0}
    restarted.stop()  # a clean stop this time

    again = start_broker(*GROUP_FLAGS, data_dir=data_dir)
    async with connect(again.address) as ch:
        await find_coordinator(ch, group)
        await _wait_for_state(ch, group, "empty")
        assert await fetch_offsets(ch, group) == {
            ("durable-t", 0): 11,
            ("durable-t", 1): 12,
            ("durable-t", 2): 30,
        }
        desc = await describe(ch, group)
        assert desc["group_epoch"] == epoch + 1  # the expiry bumped it, and that survived too


async def _wait_for_state(ch: Any, group: str, state: str) -> None:
    with trio.fail_after(GENEROUS):
        while True:
            desc = await describe(ch, group)
            if desc["error_code"] == 0 and desc["group_state"] == state:
                return
            await trio.sleep(0.1)


class _RpcTransport:
    """A GroupTransport over one test channel (a single broker is every node)."""

    def __init__(self, ch: Any) -> None:
        self.ch = ch

    async def call_any(self, api: int, payload: dict[str, Any]) -> Any:
        return await self.ch.call(api, 0, payload)

    async def call_node(self, node: Any, api: int, payload: dict[str, Any]) -> Any:
        return await self.ch.call(api, 0, payload)
