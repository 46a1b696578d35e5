"""One client connection: its read loop, its answers, and its background request tasks.

Requests of one read are handled one after another, synchronously, in arrival
order — so pipelined produce requests append in order. A request that must wait
(an acks=all produce for its fsync, a long-poll fetch, an admin request talking
to the coordinator) is answered later by whoever completes it; the loop does not
wait for it, so a parked fetch never holds up a produce behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from broker.metrics import RequestStats
from client.wire import (
    FramedConnection,
    FrameTooLargeError,
    ServerError,
    encode_response,
)
from client.wire.errors import FrameTooLargeServerError

logger = logging.getLogger(__name__)

# Stop reading from a client whose unsent responses exceed this, until they drain.
SEND_HIGH_WATER = 8 * 1024 * 1024
CLOSE_FLUSH_SECONDS = 2.0


class ClientConnection:
    __slots__ = ("closed", "framed", "in_flight", "nursery", "peer", "read_scope", "stats")

    def __init__(
        self,
        framed: FramedConnection,
        peer: str,
        nursery: trio.Nursery,
        stats: RequestStats | None = None,
    ) -> None:
        self.framed = framed
        self.peer = peer
        self.nursery = nursery
        self.read_scope = trio.CancelScope()
        self.closed = False
        # xid -> (latency label, arrival time) of requests not answered yet (broker.metrics).
        self.in_flight: dict[int, tuple[int, float]] = {}
        self.stats = stats

    def __repr__(self) -> str:
        return f"<ClientConnection {self.peer}>"

    def respond(self, xid: int, payload: Any) -> None:
        if self.in_flight:
            self.finished(xid)
        if not self.closed:
            self.framed.send(encode_response(xid, 0, payload))

    def fail(self, xid: int, error: ServerError) -> None:
        if self.in_flight:
            self.finished(xid)
        if not self.closed:
            self.framed.send(encode_response(xid, error.code, error.message))

    def finished(self, xid: int) -> None:
        """Request ``xid`` is answered (or never will be): record its latency."""
        entry = self.in_flight.pop(xid, None)
        if entry is not None and self.stats is not None:
            self.stats.done(entry[0], time.perf_counter() - entry[1])

    def spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a request's slow part as a task of this connection."""
        self.nursery.start_soon(fn, *args)

    def close(self) -> None:
        """Stop handling requests from this client; the connection then closes."""
        self.closed = True
        self.read_scope.cancel()


MessageHandler = Callable[[ClientConnection, Any], None]


async def serve_connection(
    stream: trio.SocketStream,
    handle: MessageHandler,
    max_frame: int,
    on_close: Callable[[ClientConnection], None],
    stats: RequestStats | None = None,
) -> None:
    """Read requests until the client leaves; every message goes to ``handle``.
    ``stats`` gets each request's latency and knows the open connections."""
    try:
        peer = "{}:{}".format(*stream.socket.getpeername()[:2])
    except OSError:
        peer = "?"
    framed = FramedConnection(stream, max_frame, resync=True)
    conn: ClientConnection | None = None
    try:
        async with trio.open_nursery() as nursery:
            conn = ClientConnection(framed, peer, nursery, stats)
            if stats is not None:
                stats.connections.add(conn)
            nursery.start_soon(_write_loop, conn)
            with conn.read_scope:
                await _read_loop(conn, handle)
            conn.closed = True
            on_close(conn)
            with trio.move_on_after(CLOSE_FLUSH_SECONDS):
                await framed.wait_drained()
            nursery.cancel_scope.cancel()
    except Exception:
        # One connection's failure must never reach the listener's nursery.
        logger.exception("connection %s failed", peer)
    finally:
        if stats is not None and conn is not None:
            stats.connections.discard(conn)
        with trio.CancelScope(shield=True):
            await framed.aclose()


async def _write_loop(conn: ClientConnection) -> None:
    try:
        await conn.framed.writer()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        logger.debug("connection %s: write failed: %r", conn.peer, exc)
    finally:
        conn.read_scope.cancel()


async def _read_loop(conn: ClientConnection, handle: MessageHandler) -> None:
    framed = conn.framed
    while True:
        try:
            messages = await framed.receive()
        except FrameTooLargeError as exc:
            conn.fail(0, FrameTooLargeServerError(str(exc)))
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        if not messages:
            return
        for message in messages:
            if conn.closed:
                return
            handle(conn, message)
        framed.flush_nowait()
        if framed.queued_bytes > SEND_HIGH_WATER:
            await framed.wait_drained()
