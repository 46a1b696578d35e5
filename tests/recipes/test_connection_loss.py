"""Recipes under real connection loss, injected by a proxy between client and server.

The proxy forwards a chosen request to the server (which applies it), swallows
the answer and cuts the connection: the client sees CONNECTION_LOSS for a
request that did happen, reconnects and resumes its session — the exact
failure that turns naive retries into orphans and double counts.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.client import CoordinatorClient, open_coordinator
from coordinator.errors import NotConnectedError
from coordinator.protocol import Api
from coordinator.recipes import (
    AsyncLeaderElection,
    AsyncLock,
    Counter,
    DoubleBarrier,
    GroupMembership,
    HoldState,
    LeaderElection,
    LeadershipLostError,
    Lock,
    LockLostError,
    Queue,
    Semaphore,
)
from tests.procs import ServerProcess
from tests.recipes.proxy import FaultProxy, path_contains

MakeClient = Callable[..., CoordinatorClient]
MUTATING = (Api.CREATE, Api.DELETE, Api.SET_DATA, Api.MULTI)
# Few examples by default (the suite's time budget); raise it to explore more.
EXAMPLES = int(os.environ.get("RECIPES_EXAMPLES", "6"))


def test_the_injected_loss_is_real(proxy: FaultProxy, make_client: MakeClient) -> None:
    """Control: a naive retry after the injected loss leaves an orphan node."""
    zk, observer = make_client(proxy.address), make_client()
    proxy.drop_response(path_contains(Api.CREATE, "/naive/"))
    session = zk.session_id
    with pytest.raises(NotConnectedError):
        zk.create("/naive/n-", ephemeral=True, sequential=True, make_parents=True)
    zk.retry(zk.create, "/naive/n-", ephemeral=True, sequential=True, make_parents=True)
    assert zk.session_id == session  # the session survived the cut
    assert len(observer.get_children("/naive")) == 2
    assert proxy.dropped == 1


def test_lock_create_retried_after_loss_leaves_no_orphan(
    proxy: FaultProxy, make_client: MakeClient
) -> None:
    zk, observer = make_client(proxy.address), make_client()
    proxy.drop_response(path_contains(Api.CREATE, "lock-"))
    lock = Lock(zk, "/loss/lock", "me")
    assert lock.acquire(timeout=10)
    assert proxy.dropped == 1
    assert len(observer.get_children("/loss/lock")) == 1
    assert Lock(observer, "/loss/lock").contenders() == ["me"]
    lock.release()
    assert observer.get_children("/loss/lock") == []


async def test_async_lock_create_retried_after_loss(
    proxy: FaultProxy, server: ServerProcess
) -> None:
    proxy.drop_response(path_contains(Api.CREATE, "lock-"))
    async with (
        open_coordinator(proxy.address, session_timeout=2.0) as zk,
        open_coordinator(server.address, session_timeout=2.0) as observer,
    ):
        async with AsyncLock(zk, "/loss/async-lock", "me") as lock:
            assert lock.is_acquired
            assert len(await observer.get_children("/loss/async-lock")) == 1
        assert proxy.dropped == 1
        assert await observer.get_children("/loss/async-lock") == []


def test_counter_update_with_lost_answer_counts_once(
    proxy: FaultProxy, make_client: MakeClient
) -> None:
    zk, observer = make_client(proxy.address), make_client()
    counter = Counter(zk, "/loss/counter")
    counter += 1
    proxy.drop_response(path_contains(Api.SET_DATA, "/loss/counter"))
    counter += 1
    assert proxy.dropped == 1
    assert Counter(observer, "/loss/counter").value == 2


def test_queue_put_and_get_with_lost_answers(proxy: FaultProxy, make_client: MakeClient) -> None:
    zk, observer = make_client(proxy.address), make_client()
    queue = Queue(zk, "/loss/queue")
    proxy.drop_response(path_contains(Api.CREATE, "item-"))
    queue.put(b"one")
    queue.put(b"two")
    assert len(Queue(observer, "/loss/queue")) == 2  # not three
    proxy.drop_response(lambda api, _payload: api == Api.MULTI)
    assert queue.get(timeout=5) == b"one"  # claimed despite the lost answer
    assert queue.get(timeout=5) == b"two"
    assert queue.get(block=False) is None
    assert proxy.dropped == 2
    assert observer.get_children("/loss/queue/claims") == []


def _drop_indices(proxy: FaultProxy, indices: set[int]) -> list[int]:
    """Drop the answers to the mutating requests at ``indices``; returns the list of
    mutating requests' indices seen so far (to count them)."""
    seen: list[int] = []

    def predicate(api: int, _payload: dict[str, Any]) -> bool:
        if api not in MUTATING:
            return False
        seen.append(len(seen))
        return seen[-1] in indices

    proxy.clear()
    proxy.drop_response(predicate, count=len(indices))
    return seen


_example = itertools.count()


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(drops=st.sets(st.integers(min_value=0, max_value=35), max_size=4))
def test_every_recipe_survives_lost_answers(
    proxy: FaultProxy, make_client: MakeClient, drops: set[int]
) -> None:
    """Hypothesis picks which mutating requests lose their answer; afterwards every
    count is exact and no node is left behind."""
    zk = make_client(proxy.address)
    observer = make_client()
    root = f"/survive/{next(_example)}"
    dropped_before = proxy.dropped
    seen = _drop_indices(proxy, drops)

    lock = Lock(zk, f"{root}/lock")
    for _ in range(2):
        with lock:
            pass
    counter = Counter(zk, f"{root}/counter")
    for _ in range(3):
        counter += 1
    queue = Queue(zk, f"{root}/queue")
    queue.put(b"p0")
    queue.put(b"p1")
    queue.put_all([b"a", b"b"])
    items = [queue.get(timeout=5) for _ in range(4)]
    with Semaphore(zk, f"{root}/sem", max_leases=2):
        pass
    with GroupMembership(zk, f"{root}/group", "member", b"d") as group:
        assert group.members() == {"member": b"d"}
    with LeaderElection(zk, f"{root}/election", "me") as election:
        assert election.is_leader
    with DoubleBarrier(zk, f"{root}/barrier", 1, identifier="solo"):
        pass

    assert Counter(observer, f"{root}/counter").value == 3
    assert items == [b"p0", b"p1", b"a", b"b"]
    for path in ("lock", "sem/leases", "sem/locks", "group", "election", "barrier", "queue/claims"):
        assert observer.get_children(f"{root}/{path}") == [], path
    assert observer.get_children(f"{root}/queue") == ["claims"]
    # Every chosen loss that the workload reached was really injected.
    assert proxy.dropped - dropped_before == len({i for i in drops if i < len(seen)})


def test_holder_learns_of_suspension_and_loss(proxy: FaultProxy, make_client: MakeClient) -> None:
    zk, other = make_client(proxy.address), make_client()
    states: list[HoldState] = []
    lost = threading.Event()

    def on_lost(state: HoldState) -> None:
        states.append(state)
        if state is HoldState.LOST:
            lost.set()

    lock = Lock(zk, "/loss/partition", "partitioned", on_lost=on_lost)
    contender = Lock(other, "/loss/partition", "other")
    with pytest.raises(LockLostError), lock:
        proxy.hold()  # a partition: the holder hears nothing, the server neither
        started = time.monotonic()
        assert contender.acquire(timeout=15)  # after the server expired the holder
        took = time.monotonic() - started
        assert lost.wait(15)
        assert not lock.is_acquired
        assert lock.state is HoldState.LOST
        proxy.release()
    assert states == [HoldState.SUSPENDED, HoldState.LOST]
    assert took < 2.0 + 5.0  # within the session timeout plus generous slack
    contender.release()


async def test_async_holder_body_is_cancelled_on_suspension(
    proxy: FaultProxy, server: ServerProcess
) -> None:
    async with (
        open_coordinator(proxy.address, session_timeout=2.0) as zk,
        open_coordinator(server.address, session_timeout=2.0) as observer,
    ):
        lock = AsyncLock(zk, "/loss/async-partition")
        finished = False
        with pytest.raises(LockLostError) as info:
            async with lock:
                proxy.hold()
                await trio.sleep(30)  # cancelled once the connection is suspended
                finished = True
        assert not finished
        assert info.value.state in (HoldState.SUSPENDED, HoldState.LOST)
        proxy.release()
        with trio.fail_after(15):  # the node goes (deleted, or with the expired session)
            while await observer.get_children("/loss/async-partition"):
                await trio.sleep(0.1)


async def test_async_leader_is_cancelled_when_its_session_is_lost(
    proxy: FaultProxy, server: ServerProcess
) -> None:
    async with (
        open_coordinator(proxy.address, session_timeout=2.0) as zk,
        open_coordinator(server.address, session_timeout=2.0) as other,
    ):
        lost: list[HoldState] = []
        leader = AsyncLeaderElection(
            zk, "/loss/election", "partitioned", on_lost=lost.append, cancel_on_suspend=False
        )
        successor = AsyncLeaderElection(other, "/loss/election", "successor")

        async def lead() -> None:
            proxy.hold()
            await trio.sleep(60)  # cancelled when the session is lost, not at suspension

        with trio.fail_after(20), pytest.raises(LeadershipLostError) as info:
            await leader.run(lead)
        assert info.value.state is HoldState.LOST
        assert lost == [HoldState.SUSPENDED, HoldState.LOST]
        with trio.fail_after(10):
            assert await successor.campaign()
        assert await successor.leader() == "successor"
        proxy.release()
        await successor.resign()


def test_member_rejoins_after_its_session_expired(
    proxy: FaultProxy, make_client: MakeClient
) -> None:
    zk, observer = make_client(proxy.address), make_client()
    member = GroupMembership(zk, "/loss/group", "m", b"data")
    view = GroupMembership(observer, "/loss/group")
    member.join()
    session = zk.session_id
    proxy.hold()
    deadline = time.monotonic() + 15
    while view.members() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert view.members() == {}  # expired: the ephemeral node is gone
    proxy.release()
    while view.members() != {"m": b"data"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert view.members() == {"m": b"data"}  # re-joined under a new session
    assert zk.session_id != session
    member.leave()
    assert view.members() == {}
