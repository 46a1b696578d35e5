"""RpcChannel over an in-memory stream: pipelining, push order, errors, loss."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from client.wire import (
    ConnectionLostError,
    ErrorTable,
    FramedConnection,
    RpcChannel,
    ServerError,
    UnsupportedApiError,
    encode_push,
    encode_response,
    parse_request,
)

TABLE = ErrorTable("test")


@TABLE.register
class NopeError(ServerError):
    code = 100
    name = "NOPE"


async def echo_server(stream: trio.abc.Stream, reverse: bool = False) -> None:
    """Answers each batch of requests (in reverse order when asked); api 9 fails."""
    conn = FramedConnection(stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.writer)
        while True:
            messages = await conn.receive()
            if not messages:
                break
            requests = [parse_request(m) for m in messages]
            for request in reversed(requests) if reverse else requests:
                if request.api == 9:
                    conn.send(encode_response(request.xid, NopeError.code, "no"))
                elif request.api == 8:
                    conn.send(encode_push({"before": request.xid}))
                    conn.send(encode_response(request.xid, 0, request.payload))
                elif request.api == 7:
                    await conn.aclose()
                    return
                else:
                    conn.send(encode_response(request.xid, 0, request.payload))
        nursery.cancel_scope.cancel()


async def test_many_calls_in_flight_match_their_responses() -> None:
    left, right = trio.testing.memory_stream_pair()
    channel = RpcChannel(left, TABLE)
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        results[i] = await channel.call(1, 0, {"i": i})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_server, right, True)
        nursery.start_soon(channel.run)
        async with trio.open_nursery() as calls:
            for i in range(200):
                calls.start_soon(one, i)
        assert results == {i: {"i": i} for i in range(200)}
        await channel.aclose()
        nursery.cancel_scope.cancel()


async def test_error_codes_become_exception_classes() -> None:
    left, right = trio.testing.memory_stream_pair()
    channel = RpcChannel(left, TABLE)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_server, right)
        nursery.start_soon(channel.run)
        with pytest.raises(NopeError) as info:
            await channel.call(9, 0, None)
        assert info.value.code == 100 and "no" in str(info.value)
        assert isinstance(TABLE.exception(2), UnsupportedApiError)
        assert "unknown test error code 4242" in str(TABLE.exception(4242))
        nursery.cancel_scope.cancel()


async def test_push_is_delivered_before_the_response_after_it() -> None:
    left, right = trio.testing.memory_stream_pair()
    seen: list[Any] = []
    channel = RpcChannel(left, TABLE, on_push=seen.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_server, right)
        nursery.start_soon(channel.run)
        await channel.call(8, 0, None)
        assert seen == [{"before": 1}]
        nursery.cancel_scope.cancel()


async def test_connection_loss_fails_every_pending_call() -> None:
    left, right = trio.testing.memory_stream_pair()
    channel = RpcChannel(left, TABLE)
    failures: list[BaseException] = []

    async def waiting() -> None:
        try:
            await channel.call(5, 0, None)
        except ConnectionLostError as exc:
            failures.append(exc)

    async def hang_up(stream: trio.abc.Stream) -> None:
        conn = FramedConnection(stream)
        await conn.receive()
        await conn.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hang_up, right)
        nursery.start_soon(channel.run)
        async with trio.open_nursery() as calls:
            for _ in range(3):
                calls.start_soon(waiting)
        assert len(failures) == 3
        with pytest.raises(ConnectionLostError):
            await channel.call(1, 0, None)


async def test_flush_nowait_hands_frames_to_the_kernel_without_the_writer() -> None:
    a, b = trio.socket.socketpair()
    left, right = trio.SocketStream(a), trio.SocketStream(b)
    conn = FramedConnection(left)
    conn.send(encode_response(1, 0, "x"))
    conn.send(encode_response(2, 0, "y"))
    conn.flush_nowait()  # no writer task is running
    assert conn.queued_bytes == 0
    reader = FramedConnection(right)
    received: list[Any] = []
    while len(received) < 2:
        received.extend(await reader.receive())
    assert received == [[1, 0, "x"], [2, 0, "y"]]
    await conn.aclose()
    await reader.aclose()
