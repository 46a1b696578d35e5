"""The coordinator client against a real server process: requests, errors,
transactions, watches, listeners (async and blocking APIs)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest
import trio

from coordinator.client import (
    AsyncCoordinatorClient,
    ConnectionState,
    CoordinatorClient,
    EventType,
    Stat,
    WatchedEvent,
    fetch_server_stat,
    open_coordinator,
)
from coordinator.errors import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotConnectedError,
    NotEmptyError,
    NoWatcherError,
    RolledBackError,
    RuntimeInconsistencyError,
)
from tests.procs import ServerProcess

DEADLINE = 10.0


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    """A local port nobody listens on (connections are refused)."""
    return find_free_port()


async def wait_for(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


# -------------------------------------------------------------------- async


async def test_async_round_trip(coordinator_server: ServerProcess) -> None:
    async with open_coordinator(coordinator_server.address) as zk:
        assert zk.state is ConnectionState.CONNECTED and zk.connected
        assert zk.session_id != 0 and zk.session_timeout > 0
        assert await zk.create("/app", b"v0") == "/app"
        data, stat = await zk.get("/app")
        assert data == b"v0" and stat.version == 0 and stat.data_length == 2
        stat = await zk.set("/app", b"v1", version=0)
        assert stat.version == 1
        assert zk.last_zxid >= stat.mzxid
        with pytest.raises(BadVersionError):
            await zk.set("/app", b"v2", version=0)
        with pytest.raises(NodeExistsError):
            await zk.create("/app")
        with pytest.raises(NoNodeError):
            await zk.get("/missing")
        with pytest.raises(NoNodeError):
            await zk.create("/no/parent")
        assert await zk.exists("/missing") is None
        first = await zk.create("/app/job-", b"", sequential=True)
        second = await zk.create("/app/job-", b"", sequential=True)
        assert first < second and first.startswith("/app/job-")
        await zk.create("/app/deep/er/node", b"x", make_parents=True)
        children = await zk.get_children("/app")
        assert children == sorted([first.rsplit("/", 1)[1], second.rsplit("/", 1)[1], "deep"])
        names, parent = await zk.get_children("/app", include_stat=True)
        assert names == children and parent.num_children == 3
        with pytest.raises(NotEmptyError):
            await zk.delete("/app")
        await zk.ensure_path("/app/deep/er/node")
        await zk.ensure_path("/other/x")
        assert await zk.exists("/other/x") is not None
        await zk.sync("/app")
        await zk.delete("/app", recursive=True)
        assert await zk.exists("/app") is None
        with pytest.raises(NoNodeError):
            await zk.delete("/app", recursive=True)
        await zk.delete("/other/x")
        info = await zk.server_stat()
        assert info["node_count"] >= 1


async def test_async_bad_arguments_fail_before_sending(coordinator_server: ServerProcess) -> None:
    async with AsyncCoordinatorClient(coordinator_server.address) as zk:
        with pytest.raises(ValueError):
            await zk.create("relative")
        with pytest.raises(TypeError):
            await zk.create("/x", "text")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await zk.create("/x", ephemeral=True, ttl=1.0)
        with pytest.raises(TypeError):
            await zk.get("/x", watch="not callable")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await zk.remove_watches("/x", kind="bogus")
        with pytest.raises(NoWatcherError):
            await zk.remove_watches("/x")
    with pytest.raises(NotConnectedError):
        await zk.get("/x")  # closed


async def test_async_transactions(coordinator_server: ServerProcess) -> None:
    async with open_coordinator(coordinator_server.address) as zk:
        await zk.create("/t", b"0")
        tx = zk.transaction()
        tx.check("/t", 0).create("/t/a", b"a").set_data("/t", b"1").create("/t/s-", sequential=True)
        results = await tx.commit()
        assert results[0] is True and results[1] == "/t/a"
        assert isinstance(results[2], Stat) and results[2].version == 1
        assert isinstance(results[3], str) and results[3].startswith("/t/s-")

        tx = zk.transaction()
        tx.create("/t/b").check("/t", 0).delete("/t/a")
        results = await tx.commit()
        assert [type(r) for r in results] == [
            RolledBackError,
            BadVersionError,
            RuntimeInconsistencyError,
        ]
        assert await zk.exists("/t/b") is None  # nothing applied

        with pytest.raises(NoNodeError):
            async with zk.transaction() as t:
                t.create("/t/c")
                t.delete("/t/missing")
        assert await zk.exists("/t/c") is None
        async with zk.transaction() as t:
            t.delete("/t/a")
        assert await zk.exists("/t/a") is None


async def test_async_one_shot_watches_fire_once_in_order(coordinator_server: ServerProcess) -> None:
    async with open_coordinator(coordinator_server.address) as zk:
        events: list[WatchedEvent] = []
        await zk.create("/w", b"")
        await zk.get("/w", watch=events.append)
        assert await zk.exists("/w/new", watch=events.append) is None
        await zk.get_children("/w", watch=events.append)
        await zk.set("/w", b"1")
        await zk.set("/w", b"2")  # the data watch already fired: no second event
        await zk.create("/w/new")
        await zk.sync("/w")
        await wait_for(lambda: len(events) >= 3)
        await trio.sleep(0.1)
        assert [(e.type, e.path) for e in events] == [
            (EventType.DATA_CHANGED, "/w"),
            (EventType.CREATED, "/w/new"),
            (EventType.CHILDREN_CHANGED, "/w"),
        ]
        assert events[0].zxid < events[1].zxid
        assert zk.last_zxid >= events[-1].zxid


async def test_async_callbacks_may_be_coroutines_and_call_the_client(
    coordinator_server: ServerProcess,
) -> None:
    async with open_coordinator(coordinator_server.address) as zk:
        seen: list[bytes] = []

        async def on_change(event: WatchedEvent) -> None:
            data, _ = await zk.get(event.path, watch=on_change)  # re-arm, kazoo DataWatch style
            seen.append(data)

        await zk.create("/cb", b"0")
        await zk.get("/cb", watch=on_change)
        for value in (b"1", b"2", b"3"):
            await zk.set("/cb", value)
            await wait_for(lambda v=value: v in seen)  # type: ignore[misc]
        assert seen == [b"1", b"2", b"3"]


async def test_async_persistent_and_recursive_watches(coordinator_server: ServerProcess) -> None:
    async with open_coordinator(coordinator_server.address) as zk:
        await zk.create("/p", b"")
        plain: list[WatchedEvent] = []
        await zk.add_watch("/p", plain.append)
        async with zk.watch("/p", recursive=True) as events:
            await zk.create("/p/a", b"")
            await zk.create("/p/a/b", b"")
            await zk.set("/p/a/b", b"x")
            await zk.set("/p", b"y")
            await zk.delete("/p/a/b")
            got = [(await events.next(DEADLINE)) for _ in range(5)]
            assert [(e.type, e.path) for e in got] == [
                (EventType.CREATED, "/p/a"),
                (EventType.CREATED, "/p/a/b"),
                (EventType.DATA_CHANGED, "/p/a/b"),
                (EventType.DATA_CHANGED, "/p"),
                (EventType.DELETED, "/p/a/b"),
            ]
            assert [e.zxid for e in got] == sorted(e.zxid for e in got)
        await wait_for(lambda: len(plain) >= 2)
        # The plain persistent watch is still there after the recursive one left.
        await zk.set("/p", b"z")
        await wait_for(lambda: len(plain) >= 3)
        assert [(e.type, e.path) for e in plain] == [
            (EventType.CHILDREN_CHANGED, "/p"),
            (EventType.DATA_CHANGED, "/p"),
            (EventType.DATA_CHANGED, "/p"),
        ]
        await zk.remove_watches("/p", kind="persistent")
        await zk.set("/p", b"w")
        await zk.sync("/p")
        await trio.sleep(0.1)
        assert len(plain) == 3


async def test_ephemerals_vanish_when_the_session_is_closed(
    coordinator_server: ServerProcess,
) -> None:
    async with open_coordinator(coordinator_server.address) as observer:
        gone: list[WatchedEvent] = []
        async with open_coordinator(coordinator_server.address) as owner:
            path = await owner.create("/eph-", b"", ephemeral=True, sequential=True)
            stat = await observer.exists(path, watch=gone.append)
            assert stat is not None and stat.ephemeral_owner == owner.session_id
        await wait_for(lambda: bool(gone))
        assert gone[0].type == EventType.DELETED
        assert await observer.exists(path) is None


async def test_state_listeners_see_connected_then_lost_on_close(
    coordinator_server: ServerProcess,
) -> None:
    states: list[ConnectionState] = []
    zk = AsyncCoordinatorClient(coordinator_server.address)
    zk.add_listener(states.append)
    async with zk:
        await wait_for(lambda: bool(states))
    assert states == [ConnectionState.CONNECTED, ConnectionState.LOST]
    assert zk.state is ConnectionState.LOST and not zk.connected


async def test_connect_failure_is_reported(free_port: int) -> None:
    with pytest.raises(NotConnectedError, match="could not connect"):
        async with open_coordinator(f"127.0.0.1:{free_port}", connect_timeout=0.5):
            pass
    with pytest.raises(NotConnectedError):
        await fetch_server_stat(f"127.0.0.1:{free_port}", timeout=0.5)


async def test_pipelined_requests_from_many_tasks(coordinator_server: ServerProcess) -> None:
    async with open_coordinator(coordinator_server.address) as zk:
        await zk.create("/many")
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(zk.create, f"/many/n{i:02}")
        assert len(await zk.get_children("/many")) == 50


# ----------------------------------------------------------------- blocking


def test_blocking_round_trip_and_transactions(coordinator_server: ServerProcess) -> None:
    with CoordinatorClient(coordinator_server.address, session_timeout=5.0) as zk:
        assert zk.connected and zk.state is ConnectionState.CONNECTED
        assert zk.create("/b", b"1") == "/b"
        assert zk.get("/b")[0] == b"1"
        assert zk.set("/b", b"2").version == 1
        assert zk.exists("/b") is not None
        zk.create("/b/c/d", make_parents=True)
        assert zk.get_children("/b") == ["c"]
        children, stat = zk.get_children("/b", include_stat=True)
        assert children == ["c"] and stat.num_children == 1
        with pytest.raises(NoNodeError):
            zk.get("/nope")
        tx = zk.transaction()
        tx.set_data("/b", b"3", version=1)
        tx.delete("/b/c/d")
        results = tx.commit()
        assert isinstance(results[0], Stat) and results[1] is True
        with pytest.raises(BadVersionError), zk.transaction() as t:
            t.set_data("/b", b"4", version=99)
        zk.delete("/b", recursive=True)
        assert zk.exists("/b") is None
        assert zk.retry(zk.exists, "/b") is None
        assert zk.server_stat()["session_count"] >= 1
    with pytest.raises(NotConnectedError):
        zk.get("/b")


def test_blocking_callbacks_run_on_a_dispatcher_thread_and_may_block(
    coordinator_server: ServerProcess,
) -> None:
    with CoordinatorClient(coordinator_server.address) as zk:
        seen: list[tuple[bytes, str]] = []
        threads: set[str] = set()

        def on_change(event: WatchedEvent) -> None:
            data, _ = zk.get(event.path, watch=on_change)  # a blocking call from a callback
            threads.add(threading.current_thread().name)
            seen.append((data, event.type))

        zk.create("/bw", b"0")
        zk.get("/bw", watch=on_change)
        for value in (b"1", b"2"):
            zk.set("/bw", value)
            wait_until(lambda v=value: any(d == v for d, _ in seen))  # type: ignore[misc]
        assert threads == {"coordinator-callbacks"}

        events: list[WatchedEvent] = []
        zk.add_watch("/bw", events.append, recursive=True)
        zk.create("/bw/child")
        wait_until(lambda: bool(events))
        assert (events[0].type, events[0].path) == (EventType.CREATED, "/bw/child")
        with pytest.raises(TypeError):
            zk.add_watch("/bw", on_async, recursive=True)


async def on_async(event: WatchedEvent) -> None:
    """An async callback, refused by the blocking client."""


def test_blocking_listeners_and_restart(coordinator_server: ServerProcess) -> None:
    states: list[ConnectionState] = []
    zk = CoordinatorClient(coordinator_server.address)
    zk.add_listener(states.append)
    zk.start()
    first = zk.session_id
    zk.create("/restart-eph", ephemeral=True)
    zk.stop()
    assert states == [ConnectionState.CONNECTED, ConnectionState.LOST]
    zk.start()
    assert zk.session_id not in (0, first)
    assert zk.exists("/restart-eph") is None  # ended with the first session
    zk.close()
    with pytest.raises(RuntimeError):
        zk.start()


def test_blocking_start_fails_cleanly(free_port: int) -> None:
    zk = CoordinatorClient(f"127.0.0.1:{free_port}", connect_timeout=0.5)
    with pytest.raises(NotConnectedError):
        zk.start()
    zk.close()


async def test_host_list_skips_a_dead_server(coordinator_server: ServerProcess) -> None:
    hosts = f"127.0.0.1:{find_free_port()},{coordinator_server.address}"
    for _ in range(3):  # the start host is random: try a few times
        async with open_coordinator(hosts, connect_timeout=5.0) as zk:
            assert zk.server_address == coordinator_server.address
            assert await zk.exists("/") is not None
