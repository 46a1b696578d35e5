"""The coordinator server as a real process, spoken to over the wire."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from coordinator.errors import (
    AuthFailedError,
    BadArgumentsError,
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    NoWatcherError,
    SessionExpiredError,
    SessionRequiredError,
    TooManyRequestsError,
)
from coordinator.protocol import Api, CreateMode, Stat
from tests.coordinator.test_server_support import WAIT, open_raw, open_session
from tests.procs import ServerProcess

StartCoordinator = Callable[..., ServerProcess]


async def test_crud_round_trip(coordinator_server: ServerProcess) -> None:
    async with open_session(coordinator_server, timeout_ms=1) as s:
        assert s.info["timeout_ms"] == 2000  # clamped up to min_session_timeout_ms
        assert len(s.password) == 16 and s.session_id > 0
        created = await s.create("/app", b"v0")
        assert created["path"] == "/app"
        stat = Stat.from_wire(created["stat"])
        assert stat.czxid == created["zxid"] == stat.mzxid and stat.version == 0
        got = await s.get("/app")
        assert got["data"] == b"v0" and got["stat"] == created["stat"]
        assert got["zxid"] == created["zxid"]
        changed = await s.call(Api.SET_DATA, {"path": "/app", "data": b"v1", "version": 0})
        assert Stat.from_wire(changed["stat"]).version == 1
        with pytest.raises(BadVersionError):
            await s.call(Api.SET_DATA, {"path": "/app", "data": b"v2", "version": 0})
        await s.create("/app/b")
        await s.create("/app/a", b"", mode=int(CreateMode.EPHEMERAL))
        kids = await s.call(Api.GET_CHILDREN, {"path": "/app"})
        assert kids["children"] == ["a", "b"] and Stat.from_wire(kids["stat"]).num_children == 2
        with pytest.raises(NotEmptyError):
            await s.call(Api.DELETE, {"path": "/app", "version": -1})
        with pytest.raises(NodeExistsError):
            await s.create("/app")
        with pytest.raises(NoNodeError):
            await s.get("/nothing")
        assert await s.exists("/nothing") is None
        assert Stat.from_wire(await s.exists("/app/a")).ephemeral_owner == s.session_id
        deleted = await s.call(Api.DELETE, {"path": "/app/b", "version": 0})
        assert deleted["zxid"] > changed["zxid"]
        seq = await s.create("/app/q-", mode=int(CreateMode.PERSISTENT_SEQUENTIAL))
        assert seq["path"] == "/app/q-0000000003"  # b, a, delete of b
        deep = await s.create("/x/y/z", b"d", make_parents=True)
        assert deep["path"] == "/x/y/z"
        with pytest.raises(BadArgumentsError):
            await s.create("/ttl", ttl_ms=100)
        ttl = await s.create("/ttl", mode=int(CreateMode.PERSISTENT_WITH_TTL), ttl_ms=60000)
        assert ttl["path"] == "/ttl"
        pong = await s.call(Api.PING)
        synced = await s.call(Api.SYNC, {"path": "/app"})
        assert synced["path"] == "/app" and synced["zxid"] == pong["zxid"] == ttl["zxid"]


async def test_multi(coordinator_server: ServerProcess) -> None:
    async with open_session(coordinator_server) as s:
        await s.create("/m", b"0")
        ok = await s.call(
            Api.MULTI,
            {
                "ops": [
                    ["check", {"path": "/m", "version": 0}],
                    ["create", {"path": "/m/a", "data": b"a"}],
                    ["set", {"path": "/m", "data": b"1", "version": 0}],
                    ["delete", {"path": "/m/a"}],
                ]
            },
        )
        codes = [r[0] for r in ok["results"]]
        assert codes == [0, 0, 0, 0]
        assert ok["results"][1][1]["path"] == "/m/a"
        failed = await s.call(
            Api.MULTI,
            {
                "ops": [
                    ["create", {"path": "/m/b"}],
                    ["set", {"path": "/m", "data": b"2", "version": 0}],
                    ["delete", {"path": "/m"}],
                ]
            },
        )
        assert [r[0] for r in failed["results"]] == [110, BadVersionError.code, 111]
        assert await s.exists("/m/b") is None
        bad_op = await s.call(Api.MULTI, {"ops": [["check", {"path": "/m"}], ["explode", {}]]})
        assert [r[0] for r in bad_op["results"]] == [110, 4]
        assert (await s.call(Api.MULTI, {"ops": []}))["results"] == []


async def test_watch_event_precedes_the_response_that_reflects_it(
    coordinator_server: ServerProcess,
) -> None:
    async with open_raw(coordinator_server) as watcher, open_raw(coordinator_server) as writer:
        assert (await watcher.call(int(Api.CREATE), 1, {"path": "/w", "data": b"0"}))[1] == 0
        reply = await watcher.call(int(Api.GET_DATA), 2, {"path": "/w", "watch": True})
        assert reply[1] == 0
        reply = await watcher.call(int(Api.GET_CHILDREN), 3, {"path": "/w", "watch": True})
        assert reply[1] == 0
        # The writer's own watch: its push must come before its own SET response.
        assert (await writer.call(int(Api.EXISTS), 1, {"path": "/w", "watch": True}))[1] == 0
        await writer.send(int(Api.SET_DATA), 2, {"path": "/w", "data": b"1"})
        first, second = await writer.next(), await writer.next()
        assert first[0] == -1 and first[1]["event"] == "data_changed"
        assert second[0] == 2 and second[1] == 0
        # The watcher reads the new data: the event must already be in front of it.
        await watcher.send(int(Api.GET_DATA), 4, {"path": "/w"})
        event, reply = await watcher.next(), await watcher.next()
        assert event == [
            -1,
            {"type": "watch", "event": "data_changed", "path": "/w", "zxid": second[2]["zxid"]},
        ]
        assert reply[0] == 4 and reply[2]["data"] == b"1"
        # A create under /w fires the child watch, once.
        await writer.send(int(Api.CREATE), 3, {"path": "/w/k"})
        assert (await writer.next())[0] == 3
        await watcher.send(int(Api.PING), 5, {})
        event, reply = await watcher.next(), await watcher.next()
        assert event[1]["event"] == "children_changed" and event[1]["path"] == "/w"
        assert reply[0] == 5
        await writer.send(int(Api.SET_DATA), 4, {"path": "/w", "data": b"2"})
        assert (await writer.next())[0] == 4  # one-shot: no second event for the writer
        await watcher.send(int(Api.PING), 6, {})
        assert (await watcher.next())[0] == 6


async def test_exists_watch_create_and_delete_events(coordinator_server: ServerProcess) -> None:
    async with (
        open_session(coordinator_server) as watcher,
        open_session(coordinator_server) as other,
    ):
        assert await watcher.exists("/later", watch=True) is None
        await other.create("/later")
        await watcher.call(Api.PING)
        assert watcher.watch_events == [("created", "/later")]
        await watcher.get("/later", watch=True)
        await watcher.call(Api.GET_CHILDREN, {"path": "/", "watch": True})
        await other.call(Api.DELETE, {"path": "/later"})
        await watcher.call(Api.PING)
        assert watcher.watch_events[1:] == [("deleted", "/later"), ("children_changed", "/")]


async def test_persistent_watches_and_removal(coordinator_server: ServerProcess) -> None:
    async with open_session(coordinator_server) as s, open_session(coordinator_server) as w:
        await w.call(Api.ADD_WATCH, {"path": "/r", "mode": "persistent_recursive"})
        await w.call(Api.ADD_WATCH, {"path": "/r", "mode": "persistent"})
        await s.create("/r")
        await s.create("/r/a")
        await s.create("/r/a/b", b"x")
        await s.call(Api.SET_DATA, {"path": "/r/a/b", "data": b"y"})
        await s.call(Api.DELETE, {"path": "/r/a/b"})
        await w.call(Api.PING)
        assert w.watch_events == [
            ("created", "/r"),
            ("created", "/r/a"),
            ("children_changed", "/r"),  # the plain persistent watch on /r
            ("created", "/r/a/b"),
            ("data_changed", "/r/a/b"),
            ("deleted", "/r/a/b"),
        ]
        await w.call(Api.REMOVE_WATCHES, {"path": "/r", "kind": "persistent"})
        with pytest.raises(NoWatcherError):
            await w.call(Api.REMOVE_WATCHES, {"path": "/r", "kind": "any"})
        with pytest.raises(BadArgumentsError):
            await w.call(Api.ADD_WATCH, {"path": "/r", "mode": "sometimes"})
        await s.create("/r/c")
        await w.call(Api.PING)
        assert len(w.watch_events) == 6


async def test_reconnect_keeps_the_session(coordinator_server: ServerProcess) -> None:
    async with open_session(coordinator_server) as first:
        await first.create("/eph", b"", mode=int(CreateMode.EPHEMERAL))
        sid, password = first.session_id, first.password
        with pytest.raises(AuthFailedError):
            async with open_session(coordinator_server, session_id=sid, password=b"wrong"):
                pass
        with pytest.raises(SessionExpiredError):
            async with open_session(coordinator_server, session_id=12345, password=password):
                pass
        with pytest.raises(BadArgumentsError):
            async with open_session(coordinator_server, last_zxid=10**12):
                pass
        async with open_session(coordinator_server, session_id=sid, password=password) as again:
            assert again.session_id == sid and again.info["timeout_ms"] == 10000
            # The old connection was closed by the newer attach.
            with trio.fail_after(WAIT):
                while first.channel.is_open:
                    await trio.sleep(0.01)
            stat = Stat.from_wire(await again.exists("/eph"))
            assert stat.ephemeral_owner == sid


async def test_set_watches_after_reconnect(coordinator_server: ServerProcess) -> None:
    async with open_session(coordinator_server) as s:
        for path in ("/same", "/changed", "/gone", "/kids"):
            await s.create(path)
        last = (await s.call(Api.PING))["zxid"]
        await s.call(Api.SET_DATA, {"path": "/changed", "data": b"new"})
        await s.call(Api.DELETE, {"path": "/gone"})
        await s.create("/kids/k")
        await s.create("/born")
        await s.call(
            Api.SET_WATCHES,
            {
                "last_zxid": last,
                "data": ["/same", "/changed", "/gone"],
                "exist": ["/born", "/unborn"],
                "child": ["/kids"],
                "persistent": [],
                "persistent_recursive": ["/tree"],
            },
        )
        assert s.watch_events == [
            ("data_changed", "/changed"),
            ("deleted", "/gone"),
            ("created", "/born"),
            ("children_changed", "/kids"),
        ]
        await s.create("/unborn")
        await s.create("/tree/x", make_parents=True)
        await s.call(Api.SET_DATA, {"path": "/same", "data": b"!"})
        assert s.watch_events[4:] == [
            ("created", "/unborn"),
            ("created", "/tree"),
            ("created", "/tree/x"),
            ("data_changed", "/same"),
        ]


async def test_close_session_deletes_ephemerals_at_once(coordinator_server: ServerProcess) -> None:
    async with open_session(coordinator_server) as watcher:
        async with open_session(coordinator_server) as s:
            await s.create("/e1", mode=int(CreateMode.EPHEMERAL))
            await watcher.exists("/e1", watch=True)
            await s.call(Api.CLOSE_SESSION)
            pushes = await s.wait_for_push()
            assert pushes == [{"type": "session", "state": "closed"}]
        assert await watcher.exists("/e1") is None
        assert watcher.watch_events == [("deleted", "/e1")]


@pytest.mark.slow
async def test_session_expiry_deletes_ephemerals(coordinator_server: ServerProcess) -> None:
    async with open_session(coordinator_server) as watcher:
        async with open_session(coordinator_server, timeout_ms=2000) as doomed:
            await doomed.create("/lease", mode=int(CreateMode.EPHEMERAL))
            await doomed.create("/lease2", mode=int(CreateMode.EPHEMERAL_SEQUENTIAL))
            await watcher.exists("/lease", watch=True)
            sid, password = doomed.session_id, doomed.password
            # Stop talking; the server expires the session and tells this connection.
            pushes = await doomed.wait_for_push()
            assert pushes == [{"type": "session", "state": "expired"}]
        await watcher.wait_for_push()
        assert watcher.watch_events == [("deleted", "/lease")]
        assert await watcher.exists("/lease") is None
        assert (await watcher.call(Api.GET_CHILDREN, {"path": "/"}))["children"] == []
        with pytest.raises(SessionExpiredError):
            async with open_session(coordinator_server, session_id=sid, password=password):
                pass


async def test_requests_need_a_session_except_server_stat(
    coordinator_server: ServerProcess,
) -> None:
    async with open_session(coordinator_server, connect=False) as s:
        stat = await s.call(Api.SERVER_STAT)
        assert stat["version"].startswith("rivulet-coordinator")
        assert stat["node_count"] == 1 and stat["session_count"] == 0
        with pytest.raises(SessionRequiredError):
            await s.get("/")
        async with open_session(coordinator_server) as t:
            await t.create("/e", mode=int(CreateMode.EPHEMERAL))
            await t.get("/e", watch=True)
            stat = await s.call(Api.SERVER_STAT)
            assert stat["ephemeral_count"] == 1 and stat["watch_count"] == 1
            assert stat["session_count"] == 1 and stat["outstanding_requests"] == 0
            assert 0 <= stat["latency_min_ms"] <= stat["latency_avg_ms"] <= stat["latency_max_ms"]
            with pytest.raises(BadArgumentsError):
                await t.call(Api.CONNECT, {"timeout_ms": 1000})


async def test_containers_are_reaped(coordinator_server: ServerProcess) -> None:
    async with open_session(coordinator_server) as s:
        await s.create("/lock", mode=int(CreateMode.CONTAINER))
        await s.create("/lock/n", mode=int(CreateMode.EPHEMERAL_SEQUENTIAL))
        await s.exists("/lock", watch=True)
        await s.call(Api.DELETE, {"path": "/lock/n0000000000"})
        await s.wait_for_push()
        assert s.watch_events == [("deleted", "/lock")]


async def test_too_many_outstanding_requests(start_coordinator: StartCoordinator) -> None:
    server = start_coordinator("--max-outstanding-requests", "1", "--inline-fsync-max-txns", "0")
    async with open_session(server) as s:
        slots = [
            s.channel.send(int(Api.CREATE), 0, {"path": f"/n{i}", "data": b""}) for i in range(300)
        ]
        refused = 0
        for slot in slots:
            with trio.fail_after(WAIT):
                await slot.event.wait()
            if isinstance(slot.error, TooManyRequestsError):
                refused += 1
            else:
                assert slot.error is None
        assert 0 < refused < 300
        assert TooManyRequestsError.retriable


async def test_restart_keeps_nodes_and_sessions(
    start_coordinator: StartCoordinator, tmp_path: Path
) -> None:
    data_dir = tmp_path / "restart"
    server = start_coordinator(data_dir=data_dir)
    async with open_session(server) as s:
        await s.create("/keep", b"me")
        await s.create("/keep/e", mode=int(CreateMode.EPHEMERAL))
        sid, password = s.session_id, s.password
        last = (await s.call(Api.PING))["zxid"]
    assert server.stop() == 0
    assert list((data_dir / "snapshot").iterdir())
    again = start_coordinator(data_dir=data_dir)
    async with open_session(again, session_id=sid, password=password, last_zxid=last) as s:
        assert (await s.get("/keep"))["data"] == b"me"
        assert Stat.from_wire(await s.exists("/keep/e")).ephemeral_owner == sid
        assert s.info["last_zxid"] == last
