"""Barrier, DoubleBarrier, Counter and Queue against a real coordinator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import trio

from coordinator.client import CoordinatorClient, open_coordinator
from coordinator.recipes import (
    AsyncBarrier,
    AsyncCounter,
    AsyncDoubleBarrier,
    AsyncQueue,
    Barrier,
    Counter,
    DoubleBarrier,
    MemberExistsError,
    Queue,
)
from tests.procs import ServerProcess

MakeClient = Callable[..., CoordinatorClient]


def test_barrier_gate(make_client: MakeClient) -> None:
    a, b = make_client(), make_client()
    gate = Barrier(a, "/barriers/gate")
    assert Barrier(b, "/barriers/gate").wait(timeout=0.1)  # open: no node
    gate.create()
    gate.create()  # idempotent
    assert not Barrier(b, "/barriers/gate").wait(timeout=0.2)
    passed: list[bool] = []
    threads = [
        threading.Thread(target=lambda: passed.append(Barrier(b, "/barriers/gate").wait(10)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    assert passed == []
    assert gate.remove()
    for thread in threads:
        thread.join(10)
    assert passed == [True, True, True]
    assert not gate.remove()


async def test_double_barrier_releases_exactly_when_all_arrived_and_left(
    server: ServerProcess,
) -> None:
    entered: list[str] = []
    left: list[str] = []
    leaving: list[str] = []
    events: dict[str, trio.Event] = {f"p{i}": trio.Event() for i in range(4)}

    async def participant(name: str) -> None:
        async with open_coordinator(server.address, session_timeout=2.0) as zk:
            barrier = AsyncDoubleBarrier(zk, "/barriers/double", 4, identifier=name)
            assert await barrier.enter(timeout=20)
            entered.append(name)
            await events[name].wait()
            leaving.append(name)
            assert await barrier.leave(timeout=20)
            left.append(name)

    async with trio.open_nursery() as nursery:
        for name in ("p0", "p1", "p2"):
            nursery.start_soon(participant, name)
        await trio.sleep(0.5)
        assert entered == []  # three of four: nobody may enter
        nursery.start_soon(participant, "p3")
        with trio.fail_after(10):
            while len(entered) < 4:
                await trio.sleep(0.01)
        for name in ("p2", "p0", "p3"):
            events[name].set()
        await trio.sleep(0.5)
        assert left == []  # one has not left: nobody may leave
        assert sorted(leaving) == ["p0", "p2", "p3"]
        events["p1"].set()
    assert sorted(left) == ["p0", "p1", "p2", "p3"]

    async with open_coordinator(server.address, session_timeout=2.0) as zk:
        assert await zk.get_children("/barriers/double") == []  # clean for the next round
        barrier = AsyncDoubleBarrier(zk, "/barriers/double", 2, identifier="alone")
        assert not await barrier.enter(timeout=0.2)
        assert await zk.get_children("/barriers/double") == []  # withdrawn
        gate = AsyncBarrier(zk, "/barriers/async-gate")
        await gate.create()
        assert not await gate.wait(timeout=0.1)
        assert await gate.remove()
        assert await gate.wait(timeout=0.1)


def test_double_barrier_blocking_and_id_clash(make_client: MakeClient) -> None:
    a, b = make_client(), make_client()
    b.create("/barriers/sync/x", ephemeral=True, make_parents=True)
    with pytest.raises(MemberExistsError):
        DoubleBarrier(a, "/barriers/sync", 2, identifier="x").enter(timeout=1)
    b.delete("/barriers/sync/x")

    one = DoubleBarrier(a, "/barriers/sync", 2, identifier="x")
    done: list[str] = []

    def other() -> None:
        with DoubleBarrier(b, "/barriers/sync", 2, identifier="y"):
            done.append("entered")
        done.append("left")

    thread = threading.Thread(target=other)
    thread.start()
    time.sleep(0.2)
    assert done == []
    assert one.enter(timeout=10) and one.participating
    time.sleep(0.3)
    assert done == ["entered"]  # y cannot leave before x does
    assert one.leave(timeout=10)
    thread.join(10)
    assert done == ["entered", "left"]


def test_counter_concurrent_increments(make_client: MakeClient) -> None:
    clients = [make_client() for _ in range(4)]
    counters = [Counter(zk, "/counters/c") for zk in clients]
    assert counters[0].value == 0

    def bump(counter: Counter) -> None:
        for _ in range(25):
            counter += 1

    threads = [threading.Thread(target=bump, args=(c,)) for c in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert counters[1].value == 100
    assert counters[2].decrement(10) == 90
    assert (counters[2].pre_value, counters[2].post_value) == (100, 90)
    assert clients[0].get("/counters/c")[0].split(b"\n")[0] == b"90"
    clients[0].create("/counters/plain", b"41")  # written by another tool
    plain = Counter(clients[0], "/counters/plain")
    assert plain.increment() == 42


async def test_async_counter(server: ServerProcess) -> None:
    async with open_coordinator(server.address, session_timeout=2.0) as zk:
        counter = AsyncCounter(zk, "/counters/async", default=10)
        assert await counter.get() == 10

        async def bump() -> None:
            for _ in range(10):
                await counter.increment(2)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(bump)
        assert await counter.get() == 70
        assert await counter.decrement() == 69


def test_queue_fifo_blocking_get(make_client: MakeClient) -> None:
    producer, consumer = make_client(), make_client()
    q_in, q_out = Queue(producer, "/queues/q"), Queue(consumer, "/queues/q")
    assert q_out.get(block=False) is None
    assert q_out.get(timeout=0.2) is None
    for i in range(5):
        q_in.put(b"item-%d" % i)
    q_in.put_all([b"batch-0", b"batch-1"])
    assert len(q_out) == 7
    assert [q_out.get(timeout=1) for _ in range(7)] == [
        *(b"item-%d" % i for i in range(5)),
        b"batch-0",
        b"batch-1",
    ]
    got: list[bytes | None] = []
    thread = threading.Thread(target=lambda: got.append(q_out.get(timeout=10)))
    thread.start()
    time.sleep(0.2)
    q_in.put(b"late")
    thread.join(10)
    assert got == [b"late"]
    assert len(q_in) == 0
    assert producer.get_children("/queues/q/claims") == []


async def test_async_queue_each_item_once(server: ServerProcess) -> None:
    received: list[bytes] = []
    async with open_coordinator(server.address, session_timeout=2.0) as zk:
        queue = AsyncQueue(zk, "/queues/async")

        async def consume() -> None:
            async with open_coordinator(server.address, session_timeout=2.0) as mine:
                q = AsyncQueue(mine, "/queues/async")
                while (item := await q.get(timeout=1.0)) is not None:
                    received.append(item)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(consume)
            for i in range(30):
                await queue.put(b"%d" % i)
        assert sorted(received, key=int) == [b"%d" % i for i in range(30)]
        assert await queue.size() == 0
