"""Semaphore against a real coordinator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import trio

from coordinator.client import CoordinatorClient, open_coordinator
from coordinator.recipes import (
    AsyncSemaphore,
    MaxLeasesMismatchError,
    NotHeldError,
    Semaphore,
    SemaphoreNotInitializedError,
)
from tests.procs import ServerProcess

MakeClient = Callable[..., CoordinatorClient]


def test_bound_several_leases_and_release(make_client: MakeClient) -> None:
    a, b = make_client(), make_client()
    one = Semaphore(a, "/sem/basic", max_leases=3, identifier="one")
    two = Semaphore(b, "/sem/basic", max_leases=3, identifier="two")
    assert one.acquire(count=2)
    assert one.leases == 2 and one.is_acquired
    assert two.acquire(timeout=1)
    assert not two.acquire(blocking=False)
    assert not two.acquire(timeout=0.2)
    assert sorted(one.lease_holders()) == ["one", "one", "two"]
    with pytest.raises(ValueError, match="cannot acquire 4"):
        two.acquire(count=4)
    # A waiter for two leases gets them only when two are free.
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(two.acquire(count=2, timeout=10)))
    thread.start()
    time.sleep(0.2)
    one.release(1)
    time.sleep(0.2)
    assert got == []
    one.release()
    thread.join(10)
    assert got == [True] and two.leases == 3
    two.release()
    with pytest.raises(NotHeldError):
        two.release()
    assert a.get_children("/sem/basic/leases") == []
    assert a.get_children("/sem/basic/locks") == []


def test_max_leases_is_shared(make_client: MakeClient) -> None:
    zk = make_client()
    with pytest.raises(SemaphoreNotInitializedError):
        Semaphore(zk, "/sem/shared").acquire()
    first = Semaphore(zk, "/sem/shared", max_leases=2)
    with first:
        pass
    assert zk.get("/sem/shared")[0] == b"2"
    with pytest.raises(MaxLeasesMismatchError) as info:
        Semaphore(zk, "/sem/shared", max_leases=5).acquire()
    assert (info.value.stored, info.value.given) == (2, 5)
    adopter = Semaphore(zk, "/sem/shared")
    assert adopter.get_max_leases() == 2
    with adopter:
        assert adopter.max_leases == 2


def test_set_max_leases_applies_to_new_acquisitions(make_client: MakeClient) -> None:
    a, b, c = make_client(), make_client(), make_client()
    one = Semaphore(a, "/sem/change", max_leases=1)
    two = Semaphore(b, "/sem/change")
    assert one.acquire()
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(two.acquire(timeout=10)))
    thread.start()
    time.sleep(0.3)
    assert got == []
    Semaphore(c, "/sem/change").set_max_leases(2)  # wakes the waiting acquirer
    thread.join(10)
    assert got == [True]
    assert two.max_leases == 2
    one.set_max_leases(1)  # holders keep their leases; no new grant until below the bound
    three = Semaphore(c, "/sem/change")
    assert not three.acquire(timeout=0.2)
    one.release()
    assert not three.acquire(timeout=0.2)
    two.release()
    assert three.acquire(timeout=2)
    three.release()


async def test_async_semaphore_bound(server: ServerProcess) -> None:
    inside = 0
    peak = 0
    done = 0

    async def worker(index: int) -> None:
        nonlocal inside, peak, done
        async with open_coordinator(server.address, session_timeout=2.0) as zk:
            sem = AsyncSemaphore(zk, "/sem/async", max_leases=2, identifier=f"w{index}")
            for _ in range(3):
                async with sem:
                    inside += 1
                    peak = max(peak, inside)
                    await trio.sleep(0.02)
                    inside -= 1
                    done += 1

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(worker, i)
    assert peak == 2
    assert done == 15


async def test_async_semaphore_cancel_leaves_no_node(server: ServerProcess) -> None:
    async with open_coordinator(server.address, session_timeout=2.0) as zk:
        holder = AsyncSemaphore(zk, "/sem/async-cancel", max_leases=1)
        waiter = AsyncSemaphore(zk, "/sem/async-cancel")
        await holder.acquire()
        with trio.move_on_after(0.3):
            await waiter.acquire()
        assert len(await zk.get_children("/sem/async-cancel/leases")) == 1
        assert await zk.get_children("/sem/async-cancel/locks") == []
        await holder.release()
        assert await waiter.acquire(timeout=2)
        assert await waiter.lease_holders() == [waiter.identifier]
        await waiter.release()
