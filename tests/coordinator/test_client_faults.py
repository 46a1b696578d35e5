"""The client across faults: cut and stalled connections (through an in-test TCP
proxy), session expiry, server restarts and killed client processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable

import pytest
import trio

from coordinator.client import (
    AsyncCoordinatorClient,
    ConnectionState,
    CoordinatorClient,
    EventType,
    WatchedEvent,
    open_coordinator,
)
from coordinator.errors import NotConnectedError, SessionExpiredError
from tests.coordinator.test_client import find_free_port, wait_for
from tests.procs import ServerProcess

C = ConnectionState


class Proxy:
    """A TCP proxy the test controls: ``cut`` drops every connection and refuses
    new ones until ``restore``; ``stall`` stops forwarding bytes (a hung peer)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.port = 0
        self.refusing = False
        self._flowing = trio.Event()
        self._flowing.set()
        self._scopes: set[trio.CancelScope] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, downstream: trio.SocketStream) -> None:
        if self.refusing:
            await downstream.aclose()
            return
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                upstream = await trio.open_tcp_stream(*self.target)
                async with downstream, upstream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, downstream, upstream, nursery.cancel_scope)
                    nursery.start_soon(self._pump, upstream, downstream, nursery.cancel_scope)
            except (OSError, trio.BrokenResourceError):
                pass  # either side went away: this proxied connection is over
            finally:
                self._scopes.discard(scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        async for data in source:
            await self._flowing.wait()
            await sink.send_all(data)
        scope.cancel()

    def cut(self) -> None:
        self.refusing = True
        for scope in list(self._scopes):
            scope.cancel()

    def stall(self) -> None:
        self._flowing = trio.Event()

    def restore(self) -> None:
        self.refusing = False
        self._flowing.set()


@pytest.fixture
async def proxy(coordinator_server: ServerProcess, nursery: trio.Nursery) -> AsyncIterator[Proxy]:
    p = Proxy(coordinator_server.address)
    await nursery.start(p.run)
    yield p
    p.restore()


def recorder(client: AsyncCoordinatorClient) -> list[ConnectionState]:
    states: list[ConnectionState] = []
    client.add_listener(states.append)
    return states


async def test_reconnect_keeps_the_session_and_catches_up_watches(
    coordinator_server: ServerProcess, proxy: Proxy
) -> None:
    async with open_coordinator(coordinator_server.address) as other:
        zk = AsyncCoordinatorClient(proxy.address, session_timeout=6.0)
        states = recorder(zk)
        async with zk:
            session = zk.session_id
            await zk.create("/e", b"", ephemeral=True)
            await other.create("/w", b"0")
            await other.create("/r")
            fired: list[WatchedEvent] = []
            persistent: list[WatchedEvent] = []
            await zk.get("/w", watch=fired.append)
            assert await zk.exists("/later", watch=fired.append) is None
            await zk.add_watch("/r", persistent.append, recursive=True)

            proxy.cut()
            await wait_for(lambda: zk.state is C.SUSPENDED)
            assert not zk.connected
            # Changes made while this client is away.
            await other.set("/w", b"1")
            await other.create("/later")

            result: list[bytes] = []

            async def read_while_suspended() -> None:
                result.append((await zk.get("/w"))[0])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_while_suspended)
                await trio.sleep(0.2)
                assert not result  # waits for the reconnect
                proxy.restore()
            assert result == [b"1"]
            assert states == [C.CONNECTED, C.SUSPENDED, C.RECONNECTED]
            assert zk.session_id == session
            assert await other.exists("/e") is not None  # the session lived on
            # SET_WATCHES fired the watches whose nodes changed meanwhile.
            await wait_for(lambda: len(fired) >= 2)
            assert sorted((e.type, e.path) for e in fired) == [
                (EventType.CREATED, "/later"),
                (EventType.DATA_CHANGED, "/w"),
            ]
            # The persistent watch was re-registered and keeps working.
            await other.create("/r/x")
            await wait_for(lambda: bool(persistent))
            assert (persistent[-1].type, persistent[-1].path) == (EventType.CREATED, "/r/x")


@pytest.mark.slow
async def test_a_silent_server_is_detected_and_in_flight_calls_fail(
    coordinator_server: ServerProcess, proxy: Proxy
) -> None:
    zk = AsyncCoordinatorClient(proxy.address, session_timeout=3.0)
    states = recorder(zk)
    async with zk:
        proxy.stall()
        failures: list[BaseException] = []

        async def call() -> None:
            try:
                await zk.get("/")
            except NotConnectedError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            # No byte gets through: after 2/3 of the timeout the client gives up the link.
            await wait_for(lambda: zk.state is C.SUSPENDED)
        assert len(failures) == 1  # the in-flight call failed with CONNECTION_LOSS
        proxy.restore()
        await wait_for(lambda: zk.state is C.RECONNECTED)
        assert await zk.exists("/") is not None
        assert states == [C.CONNECTED, C.SUSPENDED, C.RECONNECTED]


@pytest.mark.slow
async def test_session_lost_after_the_timeout_then_a_new_session(
    coordinator_server: ServerProcess, proxy: Proxy
) -> None:
    async with open_coordinator(coordinator_server.address) as other:
        zk = AsyncCoordinatorClient(proxy.address, session_timeout=2.0)
        states = recorder(zk)
        async with zk:
            old_session = zk.session_id
            await zk.create("/gone", b"", ephemeral=True)
            await zk.create("/pw")
            one_shot: list[WatchedEvent] = []
            persistent: list[WatchedEvent] = []
            await zk.get("/pw", watch=one_shot.append)
            await zk.add_watch("/pw", persistent.append)
            proxy.cut()
            await wait_for(lambda: zk.state is C.SUSPENDED)
            with pytest.raises(SessionExpiredError):
                await zk.get("/pw")  # waits, then the session is given up
            assert zk.state is C.LOST
            proxy.restore()
            await wait_for(lambda: zk.state is C.CONNECTED)
            assert states == [C.CONNECTED, C.SUSPENDED, C.LOST, C.CONNECTED]
            assert zk.session_id not in (0, old_session)
            # The old session's ephemeral goes once the server expires it.
            with trio.fail_after(10):
                while await other.exists("/gone") is not None:
                    await trio.sleep(0.1)
            # One-shot watches died with the session; persistent ones came along.
            await other.set("/pw", b"x")
            await wait_for(lambda: bool(persistent))
            await zk.sync("/pw")
            assert one_shot == []
            assert persistent[-1].type == EventType.DATA_CHANGED


@pytest.mark.slow
def test_session_survives_a_server_restart(start_coordinator: Callable[..., ServerProcess]) -> None:
    port = find_free_port()
    server = start_coordinator(port=port)
    states: list[ConnectionState] = []
    with CoordinatorClient(server.address, session_timeout=10.0) as zk:
        zk.add_listener(states.append)
        session = zk.session_id
        zk.create("/survivor", b"", ephemeral=True)
        server.kill()
        _wait(lambda: zk.state is C.SUSPENDED)
        server = start_coordinator(port=port)
        _wait(lambda: zk.state is C.RECONNECTED)
        assert zk.session_id == session
        assert zk.exists("/survivor") is not None
    assert states == [C.SUSPENDED, C.RECONNECTED, C.LOST]  # LOST: the close


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


CHILD = textwrap.dedent("""
    import sys, time
    from coordinator.client import CoordinatorClient
    zk = CoordinatorClient(sys.argv[1], session_timeout=2.0)
    zk.start()
    for i in range(3):
        zk.create(f"/owned/e{i}", b"", ephemeral=True)
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.slow
def test_ephemerals_vanish_when_the_owner_is_killed(coordinator_server: ServerProcess) -> None:
    with CoordinatorClient(coordinator_server.address) as zk:
        zk.create("/owned")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, coordinator_server.address],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            assert len(zk.get_children("/owned")) == 3
            changes: list[WatchedEvent] = []
            zk.add_watch("/owned", changes.append)
            child.kill()  # SIGKILL: no CLOSE_SESSION, the server must expire it
            child.wait(timeout=10)
            _wait(lambda: zk.get_children("/owned") == [])
            assert {e.type for e in changes} == {EventType.CHILDREN_CHANGED}
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)
