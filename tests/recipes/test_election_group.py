"""LeaderElection and GroupMembership against a real coordinator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import trio

from coordinator.client import CoordinatorClient, open_coordinator
from coordinator.recipes import (
    AsyncGroupMembership,
    AsyncLeaderElection,
    GroupMembership,
    LeaderElection,
    MemberExistsError,
    Participant,
)
from tests.procs import ServerProcess

MakeClient = Callable[..., CoordinatorClient]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_latch_style_and_observers(make_client: MakeClient) -> None:
    a, b, observer = make_client(), make_client(), make_client()
    one = LeaderElection(a, "/election/latch", "one", data=b"10.0.0.1")
    two = LeaderElection(b, "/election/latch", "two", data=b"10.0.0.2")
    watcher = LeaderElection(observer, "/election/latch")
    seen: list[str | None] = []
    with watcher.watch_leader(lambda info: seen.append(None if info is None else info.identifier)):
        assert wait_until(lambda: seen == [None])
        assert one.campaign()
        assert one.is_leader
        assert not two.campaign(timeout=0.2)  # withdraws again
        assert watcher.contenders() == ["one"]
        got: list[bool] = []
        thread = threading.Thread(target=lambda: got.append(two.campaign(timeout=10)))
        thread.start()
        assert wait_until(lambda: watcher.contenders() == ["one", "two"])
        info = watcher.leader_info()
        assert isinstance(info, Participant)
        assert (info.identifier, info.data) == ("one", b"10.0.0.1")
        one.resign()
        thread.join(10)
        assert got == [True] and two.is_leader and not one.is_leader
        assert watcher.leader() == "two"
        two.resign()
        assert wait_until(lambda: seen[-1] is None)
    assert seen[:2] == [None, "one"]
    assert "two" in seen


def test_selector_style_hands_over(make_client: MakeClient) -> None:
    clients = [make_client() for _ in range(3)]
    elections = [LeaderElection(zk, "/election/selector", f"c{i}") for i, zk in enumerate(clients)]
    leading: list[str] = []
    overlap: list[str] = []
    lock = threading.Lock()
    current: list[str] = []

    def lead(name: str) -> str:
        with lock:
            if current:
                overlap.append(name)
            current.append(name)
            leading.append(name)
        time.sleep(0.1)
        with lock:
            current.remove(name)
        return name

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda e=e: results.append(e.run(lead, e.identifier)))
        for e in elections
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(leading) == ["c0", "c1", "c2"]
    assert sorted(results) == ["c0", "c1", "c2"]
    assert overlap == []


async def test_async_election_and_observe(server: ServerProcess) -> None:
    async with (
        open_coordinator(server.address, session_timeout=2.0) as a,
        open_coordinator(server.address, session_timeout=2.0) as b,
    ):
        one = AsyncLeaderElection(a, "/election/async", "one", data=b"d1")
        two = AsyncLeaderElection(b, "/election/async", "two", data=b"d2")
        seen: list[str | None] = []
        async with one.observe() as leaders:

            async def follow() -> None:
                async for info in leaders:
                    seen.append(None if info is None else info.identifier)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                assert await one.run(_return_after, 0.05, "ran") == "ran"
                async with two:
                    assert two.is_leader
                    info = await one.leader_info()
                    assert info is not None and info.data == b"d2"
                with trio.fail_after(5):
                    while seen[-1:] != [None]:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        assert "one" in seen and "two" in seen


async def _return_after(delay: float, value: str) -> str:
    await trio.sleep(delay)
    return value


def test_group_membership(make_client: MakeClient) -> None:
    a, b = make_client(), make_client()
    snapshots: list[dict[str, bytes]] = []
    one = GroupMembership(a, "/groups/g", "one", b"data-1")
    two = GroupMembership(b, "/groups/g", "two", b"data-2")
    with one.watch(snapshots.append):
        assert wait_until(lambda: snapshots == [{}])
        with one:
            assert wait_until(lambda: snapshots[-1:] == [{"one": b"data-1"}])
            with two:
                assert one.members() == {"one": b"data-1", "two": b"data-2"}
                one.join()  # idempotent
                with pytest.raises(MemberExistsError):
                    GroupMembership(b, "/groups/g", "one").join()
                two.update(b"data-2b")
                assert one.members()["two"] == b"data-2b"
                assert wait_until(lambda: len(snapshots[-1]) == 2)
        assert wait_until(lambda: snapshots[-1:] == [{}])
    assert one.members() == {}


async def test_async_group_membership(server: ServerProcess) -> None:
    async with open_coordinator(server.address, session_timeout=2.0) as zk:
        group = AsyncGroupMembership(zk, "/groups/async", "m1", b"x")
        async with group.watch() as changes:
            assert await anext(changes) == {}
            async with group:
                assert await anext(changes) == {"m1": b"x"}
                assert await group.members() == {"m1": b"x"}
            assert await anext(changes) == {}
