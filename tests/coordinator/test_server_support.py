"""Helpers for the coordinator server tests (no tests here): sessions over RpcChannel
and a raw framed connection that shows responses and pushes in arrival order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from client.wire import FramedConnection, RpcChannel, encode_frame, encode_request
from coordinator.errors import ERRORS
from coordinator.protocol import Api
from tests.procs import ServerProcess

# Guard against a hung server, never an assertion about speed.
WAIT = 20.0


class Session:
    """A connected RpcChannel plus every push it received."""

    def __init__(self, channel: RpcChannel) -> None:
        self.channel = channel
        self.pushes: list[dict[str, Any]] = []
        self._arrived = trio.Event()
        self.info: dict[str, Any] = {}

    def on_push(self, event: Any) -> None:
        self.pushes.append(event)
        self._arrived.set()
        self._arrived = trio.Event()

    @property
    def session_id(self) -> int:
        session_id: int = self.info["session_id"]
        return session_id

    @property
    def password(self) -> bytes:
        password: bytes = self.info["password"]
        return password

    @property
    def watch_events(self) -> list[tuple[str, str]]:
        return [(e["event"], e["path"]) for e in self.pushes if e.get("type") == "watch"]

    async def call(self, api: Api, payload: dict[str, Any] | None = None) -> Any:
        with trio.fail_after(WAIT):
            return await self.channel.call(int(api), 0, payload or {})

    async def wait_for_push(self, count: int = 1) -> list[dict[str, Any]]:
        """Wait until at least ``count`` pushes have arrived in total."""
        with trio.fail_after(WAIT):
            while len(self.pushes) < count:
                await self._arrived.wait()
        return self.pushes

    async def create(self, path: str, data: bytes = b"", **kw: Any) -> Any:
        return await self.call(Api.CREATE, {"path": path, "data": data, **kw})

    async def get(self, path: str, watch: bool = False) -> Any:
        return await self.call(Api.GET_DATA, {"path": path, "watch": watch})

    async def exists(self, path: str, watch: bool = False) -> Any:
        return (await self.call(Api.EXISTS, {"path": path, "watch": watch}))["stat"]


@asynccontextmanager
async def open_session(
    server: ServerProcess,
    *,
    timeout_ms: int = 10000,
    session_id: int = 0,
    password: bytes = b"",
    last_zxid: int = 0,
    connect: bool = True,
) -> AsyncIterator[Session]:
    stream = await trio.open_tcp_stream(server.host, server.port)
    session: Session
    channel = RpcChannel(stream, ERRORS, on_push=lambda e: session.on_push(e))
    session = Session(channel)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.run)
            try:
                if connect:
                    session.info = await session.call(
                        Api.CONNECT,
                        {
                            "session_id": session_id,
                            "password": password,
                            "timeout_ms": timeout_ms,
                            "last_zxid": last_zxid,
                        },
                    )
                yield session
            finally:
                await channel.aclose()
                nursery.cancel_scope.cancel()
    except ExceptionGroup as group:
        # Let pytest.raises see the one real error rather than trio's group around it.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class RawConnection:
    """Frames in, every server message out, in the order they arrive."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.framed = FramedConnection(stream)
        self.buffered: list[Any] = []

    async def send_raw(self, data: bytes) -> None:
        with trio.fail_after(WAIT):
            await self.framed.stream.send_all(data)

    async def send(self, api: int, xid: int, payload: Any, version: int = 0) -> None:
        await self.send_raw(encode_request(api, version, xid, payload))

    async def send_message(self, message: Any) -> None:
        await self.send_raw(encode_frame(message))

    async def next(self) -> Any:
        """The next message, or None once the server has closed the connection."""
        with trio.fail_after(WAIT):
            while not self.buffered:
                try:
                    messages = await self.framed.receive()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return None
                if not messages:
                    return None
                self.buffered.extend(messages)
        return self.buffered.pop(0)

    async def call(self, api: int, xid: int, payload: Any) -> Any:
        await self.send(api, xid, payload)
        return await self.next()

    async def aclose(self) -> None:
        await self.framed.aclose()


@asynccontextmanager
async def open_raw(server: ServerProcess, *, connect: bool = True) -> AsyncIterator[RawConnection]:
    stream = await trio.open_tcp_stream(server.host, server.port)
    raw = RawConnection(stream)
    try:
        if connect:
            reply = await raw.call(
                int(Api.CONNECT),
                0,
                {"session_id": 0, "password": b"", "timeout_ms": 10000, "last_zxid": 0},
            )
            if reply[1] != 0:
                raise RuntimeError(f"CONNECT failed: {reply}")
        yield raw
    finally:
        await raw.aclose()
