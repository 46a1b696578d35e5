"""Client side of an RPC connection: pipelined calls matched to responses by xid."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from client.wire.connection import FramedConnection
from client.wire.errors import (
    ConnectionLostError,
    ErrorTable,
    ProtocolError,
    ServerError,
)
from client.wire.frames import (
    DEFAULT_MAX_FRAME,
    Push,
    encode_request,
    parse_server_message,
)


class _Pending:
    __slots__ = ("error", "event", "payload")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.payload: Any = None
        self.error: BaseException | None = None


class RpcChannel:
    """Many calls in flight on one connection.

    Start ``run`` in a nursery; it reads responses and pushes until the
    connection ends, then fails every pending call with ConnectionLostError.
    ``on_push`` is called synchronously, in arrival order, before any later
    response is delivered — so a watch event is always seen before a response
    that reflects the change.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        errors: ErrorTable,
        *,
        on_push: Callable[[Any], None] | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.conn = FramedConnection(stream, max_frame)
        self.errors = errors
        self.on_push = on_push
        self._xids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lost: BaseException | None = None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def is_open(self) -> bool:
        return self._lost is None

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guard, self.conn.writer, nursery.cancel_scope)
                await self._guard(self._read_loop, nursery.cancel_scope)
        finally:
            self._fail_all(ConnectionLostError("connection closed"))
            with trio.CancelScope(shield=True):
                await self.conn.aclose()

    async def _guard(self, loop: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
        """Run one side of the connection; whichever side ends first ends both."""
        try:
            await loop()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail_all(ConnectionLostError(f"connection lost: {exc!r}"))
        except ProtocolError as exc:
            self._fail_all(ConnectionLostError(f"protocol error from server: {exc}"))
        finally:
            scope.cancel()

    async def _read_loop(self) -> None:
        pending = self._pending
        while True:
            messages = await self.conn.receive()
            if not messages:
                return
            for raw in messages:
                message = parse_server_message(raw)
                if isinstance(message, Push):
                    if self.on_push is not None:
                        self.on_push(message.event)
                    continue
                slot = pending.pop(message.xid, None)
                if slot is None:
                    continue  # a reply to a call that was cancelled
                if message.error_code:
                    detail = message.payload if isinstance(message.payload, str) else ""
                    slot.error = self.errors.exception(message.error_code, detail)
                else:
                    slot.payload = message.payload
                slot.event.set()

    def _fail_all(self, error: BaseException) -> None:
        if self._lost is None:
            self._lost = error
        pending, self._pending = self._pending, {}
        for slot in pending.values():
            slot.error = error
            slot.event.set()

    def send(self, api: int, version: int, payload: Any) -> _Pending:
        """Queue a request and return its slot (for callers that pipeline by hand)."""
        if self._lost is not None:
            raise ConnectionLostError(str(self._lost))
        xid = next(self._xids)
        slot = _Pending()
        self._pending[xid] = slot
        self.conn.send(encode_request(api, version, xid, payload))
        return slot

    def send_oneway(self, api: int, version: int, payload: Any) -> None:
        """Queue a request that wants no response (xid 0), e.g. a produce with acks=0."""
        if self._lost is not None:
            raise ConnectionLostError(str(self._lost))
        self.conn.send(encode_request(api, version, 0, payload))

    async def call(self, api: int, version: int, payload: Any) -> Any:
        """Send one request and wait for its response payload; raises ServerError subclasses."""
        slot = self.send(api, version, payload)
        if len(self._pending) == 1:
            self.conn.flush_nowait()  # alone in flight: skip the writer task's wake-up
        await slot.event.wait()
        if slot.error is not None:
            raise slot.error
        return slot.payload

    async def aclose(self) -> None:
        self._fail_all(ConnectionLostError("channel closed by the client"))
        await self.conn.aclose()


__all__ = ["RpcChannel", "ServerError"]
