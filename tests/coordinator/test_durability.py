"""kill -9 while clients write: after a restart every acknowledged write is there and
nothing that was never sent was invented."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from client.wire import ConnectionLostError
from coordinator.protocol import Api, CreateMode, Stat
from tests.coordinator.test_server_support import WAIT, open_session
from tests.procs import ServerProcess

StartCoordinator = Callable[..., ServerProcess]
WRITERS = 4
ACKS_BEFORE_KILL = 40


async def write_until_killed(
    server: ServerProcess, writer: int, acked: dict[str, bytes], sent: set[str], enough: trio.Event
) -> None:
    """Create, then overwrite, nodes until the connection dies; record what was acked."""
    n = 0
    try:
        async with open_session(server) as s:
            while True:
                path = f"/d/w{writer}-{n}"
                data = f"{writer}:{n}".encode()
                sent.add(path)
                await s.create(path, data)
                acked[path] = data
                await s.call(Api.SET_DATA, {"path": path, "data": data + b"+", "version": 0})
                acked[path] = data + b"+"
                n += 1
                if n >= ACKS_BEFORE_KILL:
                    enough.set()
    except ConnectionLostError:
        return


async def check_recovered(server: ServerProcess, acked: dict[str, bytes], sent: set[str]) -> None:
    async with open_session(server) as s:
        children = (await s.call(Api.GET_CHILDREN, {"path": "/d"}))["children"]
        present = {f"/d/{c}" for c in children}
        missing = set(acked) - present
        assert not missing, f"acknowledged writes lost: {sorted(missing)[:5]}"
        assert present <= sent, f"invented: {sorted(present - sent)[:5]}"
        for path, data in acked.items():
            got = (await s.get(path))["data"]
            # The last acked value, or the overwrite that was sent but not yet acked.
            assert got == data or (not data.endswith(b"+") and got == data + b"+"), (path, got)


@pytest.mark.slow
async def test_kill_during_concurrent_writes(
    start_coordinator: StartCoordinator, tmp_path: Path
) -> None:
    data_dir = tmp_path / "kill"
    server = start_coordinator(data_dir=data_dir)
    acked: dict[str, bytes] = {}
    sent: set[str] = set()
    async with open_session(server) as setup:
        await setup.create("/d")
    async with trio.open_nursery() as nursery:
        events = [trio.Event() for _ in range(WRITERS)]
        for writer in range(WRITERS):
            nursery.start_soon(write_until_killed, server, writer, acked, sent, events[writer])
        with trio.fail_after(WAIT):
            for event in events:
                await event.wait()
        server.kill()  # SIGKILL mid-write: no shutdown, no final snapshot
    assert len(acked) >= WRITERS * ACKS_BEFORE_KILL
    restarted = start_coordinator(data_dir=data_dir)
    await check_recovered(restarted, acked, sent)


@pytest.mark.slow
async def test_kill_with_snapshots_and_log_purge(
    start_coordinator: StartCoordinator, tmp_path: Path
) -> None:
    data_dir = tmp_path / "snap"
    server = start_coordinator(
        "--snapshot-every", "50", "--log-file-bytes", "4096", data_dir=data_dir
    )
    async with open_session(server) as s:
        await s.create("/d")
        await s.create("/d/lease", mode=int(CreateMode.EPHEMERAL))
        sid, password = s.session_id, s.password
        acked = {}
        for i in range(400):
            path = f"/d/n{i}"
            await s.create(path, str(i).encode())
            acked[path] = str(i).encode()
        last = (await s.call(Api.PING))["zxid"]
        server.kill()
    snapshots = sorted(p for p in (data_dir / "snapshot").iterdir() if p.suffix != ".tmp")
    # keep=3, plus one written but not yet purged when the kill landed
    assert 1 <= len(snapshots) <= 4
    logs = sorted((data_dir / "log").iterdir())
    assert logs[0].name != "log.0000000000000001"  # purged behind the snapshots
    with open(logs[-1], "ab") as f:
        f.write(os.urandom(37))  # a torn tail, as a crash mid-append leaves
    restarted = start_coordinator(data_dir=data_dir)
    await check_recovered(restarted, acked, set(acked) | {"/d/lease"})
    async with open_session(restarted, session_id=sid, password=password, last_zxid=last) as s:
        assert Stat.from_wire(await s.exists("/d/lease")).ephemeral_owner == sid
