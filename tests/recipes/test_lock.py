"""Lock and ReadWriteLock against a real coordinator: blocking threads and trio tasks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import trio

from coordinator.client import CoordinatorClient, open_coordinator
from coordinator.recipes import (
    AcquireCancelledError,
    AsyncLock,
    AsyncReadWriteLock,
    HoldState,
    Lock,
    NotHeldError,
    ReadWriteLock,
)
from tests.procs import ServerProcess

MakeClient = Callable[..., CoordinatorClient]


def test_exclusive_fifo_and_timeouts(make_client: MakeClient) -> None:
    a, b, c = make_client(), make_client(), make_client()
    first = Lock(a, "/locks/fifo", "first")
    second = Lock(b, "/locks/fifo", "second")
    third = Lock(c, "/locks/fifo", "third")
    assert first.acquire()
    assert first.is_acquired and first.state is HoldState.HELD
    assert not second.acquire(blocking=False)
    started = time.monotonic()
    assert not second.acquire(timeout=0.3)
    assert time.monotonic() - started >= 0.3
    # A failed attempt leaves no node behind.
    assert len(a.get_children("/locks/fifo")) == 1

    order: list[str] = []

    def take(lock: Lock) -> None:
        with lock:
            order.append(lock.identifier)

    threads = [threading.Thread(target=take, args=(second,))]
    threads[0].start()
    while len(a.get_children("/locks/fifo")) < 2:
        time.sleep(0.01)
    threads.append(threading.Thread(target=take, args=(third,)))
    threads[1].start()
    while len(a.get_children("/locks/fifo")) < 3:
        time.sleep(0.01)
    assert first.contenders() == ["first", "second", "third"]
    first.release()
    for thread in threads:
        thread.join(10)
    assert order == ["second", "third"]
    assert a.get_children("/locks/fifo") == []
    with pytest.raises(NotHeldError):
        first.release()


def test_reentrant_and_local_threads_share_one_node(make_client: MakeClient) -> None:
    zk = make_client()
    lock = Lock(zk, "/locks/reentrant")
    with lock, lock:
        assert len(zk.get_children("/locks/reentrant")) == 1
        # Another thread using the same object waits locally, not with a second node.
        got: list[bool] = []
        thread = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.2)))
        thread.start()
        thread.join()
        assert got == [False]
        assert len(zk.get_children("/locks/reentrant")) == 1
    assert zk.get_children("/locks/reentrant") == []
    assert not lock.is_acquired


def test_cancel_ends_a_pending_acquire(make_client: MakeClient) -> None:
    a, b = make_client(), make_client()
    holder, waiter = Lock(a, "/locks/cancel"), Lock(b, "/locks/cancel")
    holder.acquire()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            waiter.acquire()
        except AcquireCancelledError as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    while len(a.get_children("/locks/cancel")) < 2:
        time.sleep(0.01)
    waiter.cancel()
    thread.join(10)
    assert len(errors) == 1
    assert len(a.get_children("/locks/cancel")) == 1
    holder.release()


def test_read_write_lock(make_client: MakeClient) -> None:
    a, b, c = make_client(), make_client(), make_client()
    r1 = ReadWriteLock(a, "/locks/rw", "r1")
    r2 = ReadWriteLock(b, "/locks/rw", "r2")
    w = ReadWriteLock(c, "/locks/rw", "w")
    assert r1.read_lock.acquire()
    assert r2.read_lock.acquire(timeout=2)  # readers share
    assert not w.write_lock.acquire(timeout=0.2)  # the writer waits for both
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(w.write_lock.acquire(timeout=10)))
    thread.start()
    while len(a.get_children("/locks/rw")) < 3:
        time.sleep(0.01)
    # A reader arriving after a queued writer waits behind it (no writer starvation).
    late = ReadWriteLock(make_client(), "/locks/rw", "late")
    assert not late.read_lock.acquire(timeout=0.2)
    r1.read_lock.release()
    time.sleep(0.1)
    assert got == []
    r2.read_lock.release()
    thread.join(10)
    assert got == [True]
    # Downgrade: the writer may take its own read lock, then drop the write lock.
    assert w.read_lock.acquire(timeout=2)
    w.write_lock.release()
    assert late.read_lock.acquire(timeout=2)
    w.read_lock.release()
    late.read_lock.release()
    assert a.get_children("/locks/rw") == []


async def test_async_lock_mutual_exclusion(server: ServerProcess) -> None:
    inside = 0
    peak = 0
    entries = 0

    async def worker(name: str) -> None:
        nonlocal inside, peak, entries
        async with open_coordinator(server.address, session_timeout=2.0) as zk:
            lock = AsyncLock(zk, "/locks/async", name)
            for _ in range(5):
                async with lock:
                    inside += 1
                    peak = max(peak, inside)
                    entries += 1
                    await trio.sleep(0.01)
                    inside -= 1

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(worker, f"task-{i}")
    assert peak == 1
    assert entries == 20


async def test_async_cancelled_acquire_leaves_no_node(server: ServerProcess) -> None:
    async with (
        open_coordinator(server.address, session_timeout=2.0) as a,
        open_coordinator(server.address, session_timeout=2.0) as b,
    ):
        holder = AsyncLock(a, "/locks/async-cancel", "holder")
        waiter = AsyncLock(b, "/locks/async-cancel", "waiter")
        await holder.acquire()
        with trio.move_on_after(0.3) as scope:
            await waiter.acquire()
        assert scope.cancelled_caught
        assert holder.node is not None
        assert await a.get_children("/locks/async-cancel") == [holder.node.rsplit("/", 1)[1]]
        assert not await waiter.acquire(timeout=0.2)
        await holder.release()
        assert await waiter.acquire(timeout=2)
        assert await waiter.contenders() == ["waiter"]
        await waiter.release()
        assert await a.get_children("/locks/async-cancel") == []


async def test_async_read_write_lock(server: ServerProcess) -> None:
    async with open_coordinator(server.address, session_timeout=2.0) as zk:
        one = AsyncReadWriteLock(zk, "/locks/async-rw", "one")
        two = AsyncReadWriteLock(zk, "/locks/async-rw", "two")
        async with one.read_lock, two.read_lock:
            assert not await two.write_lock.acquire(timeout=0.2)
        async with two.write_lock:
            assert not await one.read_lock.acquire(blocking=False)
        assert await zk.get_children("/locks/async-rw") == []
