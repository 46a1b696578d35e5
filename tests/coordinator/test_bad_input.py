"""Malformed frames, wrong types, unknown apis, bad paths and oversized data or frames:
each gets a clear error, and a well-behaved client keeps being served throughout."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from client.wire import encode_frame
from coordinator.errors import BadArgumentsError, DataTooLargeError, InvalidPathError
from coordinator.protocol import Api
from tests.coordinator.test_server_support import RawConnection, open_raw, open_session
from tests.procs import ServerProcess

INVALID_REQUEST = 4
UNSUPPORTED_API = 2
UNSUPPORTED_VERSION = 3
FRAME_TOO_LARGE = 5
SESSION_REQUIRED = 108


@pytest.fixture
def server(start_coordinator: Callable[..., ServerProcess]) -> ServerProcess:
    return start_coordinator("--max-frame-bytes", "65536", "--max-data-bytes", "1024")


@asynccontextmanager
async def bystander(server: ServerProcess) -> AsyncIterator[list[int]]:
    """A client doing ordinary work in the background the whole time; yields its op count."""
    done: list[int] = [0]
    async with open_session(server) as s:
        await s.create("/bystander", b"0")

        async def work() -> None:
            while True:
                n = done[0]
                await s.call(Api.SET_DATA, {"path": "/bystander", "data": str(n).encode()})
                assert (await s.get("/bystander"))["data"] == str(n).encode()
                done[0] += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(work)
            yield done
            before = done[0]
            with trio.fail_after(20):
                while done[0] < before + 3:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()


async def still_works(raw: RawConnection) -> None:
    reply = await raw.call(int(Api.PING), 999, {})
    assert reply[0] == 999 and reply[1] == 0


async def test_malformed_frames_keep_the_connection(server: ServerProcess) -> None:
    async with bystander(server), open_raw(server) as raw:
        # A frame whose body is not msgpack: the length still delimits it.
        await raw.send_raw(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
        assert (await raw.next())[:2] == [0, INVALID_REQUEST]
        await raw.send_raw(struct.pack(">I", 0))
        assert (await raw.next())[:2] == [0, INVALID_REQUEST]
        # msgpack ext types, absurd declared lengths and deep nesting are refused too.
        for body in (b"\xd4\x01\x00", b"\xdd\xff\xff\xff\xff", b"\x91" * 5000 + b"\xc0"):
            await raw.send_raw(struct.pack(">I", len(body)) + body)
            assert (await raw.next())[:2] == [0, INVALID_REQUEST]
        await still_works(raw)


@pytest.mark.parametrize(
    ("message", "xid"),
    [
        ("hello", 0),
        (42, 0),
        ([1, 2], 0),
        ({"api": 13}, 0),
        ([13, 0, "xid", {}], 0),
        ([13, "zero", 7, {}], 7),
        ([None, 0, 8, {}], 8),
        ([13, 0, 9, "not a map"], 9),
        ([13, 0, 10, [1, 2]], 10),
    ],
)
async def test_not_a_request_envelope(server: ServerProcess, message: Any, xid: int) -> None:
    async with open_raw(server) as raw:
        await raw.send_message(message)
        reply = await raw.next()
        assert reply[0] == xid and reply[1] == INVALID_REQUEST and isinstance(reply[2], str)
        await still_works(raw)


async def test_unknown_api_and_version(server: ServerProcess) -> None:
    async with bystander(server), open_raw(server) as raw:
        assert (await raw.call(999, 1, {}))[:2] == [1, UNSUPPORTED_API]
        await raw.send(int(Api.GET_DATA), 2, {"path": "/"}, version=7)
        assert (await raw.next())[:2] == [2, UNSUPPORTED_VERSION]
        await raw.send(int(Api.GET_DATA), 3, {"path": "/"}, version=-1)
        assert (await raw.next())[:2] == [3, UNSUPPORTED_VERSION]
        await still_works(raw)


async def test_requests_before_connect(server: ServerProcess) -> None:
    async with open_raw(server, connect=False) as raw:
        assert (await raw.call(int(Api.GET_DATA), 1, {"path": "/"}))[:2] == [1, SESSION_REQUIRED]
        assert (await raw.call(int(Api.SERVER_STAT), 2, {}))[:2] == [2, 0]
        reply = await raw.call(int(Api.CONNECT), 3, {"timeout_ms": "soon"})
        assert reply[:2] == [3, INVALID_REQUEST]


@pytest.mark.parametrize(
    ("api", "payload"),
    [
        (Api.GET_DATA, {"path": 17}),
        (Api.GET_DATA, {}),
        (Api.GET_DATA, {"path": "/", "watch": "yes"}),
        (Api.CREATE, {"path": "/x", "data": "text, not bytes"}),
        (Api.CREATE, {"path": "/x", "mode": "ephemeral"}),
        (Api.CREATE, {"path": "/x", "make_parents": 1}),
        (Api.SET_DATA, {"path": "/", "data": b"", "version": "1"}),
        (Api.DELETE, {"path": "/x", "version": 1.5}),
        (Api.MULTI, {"ops": "all of them"}),
        (Api.SET_WATCHES, {"last_zxid": 0, "data": [1, 2]}),
        (Api.SET_WATCHES, {"last_zxid": -1}),
        (Api.REMOVE_WATCHES, {"path": "/", "kind": 3}),
        (Api.ADD_WATCH, {"path": "/"}),
    ],
)
async def test_wrong_types(server: ServerProcess, api: Api, payload: dict[str, Any]) -> None:
    async with open_raw(server) as raw:
        reply = await raw.call(int(api), 5, payload)
        assert reply[:2] == [5, INVALID_REQUEST], reply
        await still_works(raw)


async def test_bad_values(server: ServerProcess) -> None:
    async with bystander(server), open_session(server) as s:
        for path in (
            "",
            "relative",
            "/trailing/",
            "/a//b",
            "/a/../b",
            "/nul\x00",
            "/" + "x" * 5000,
        ):
            with pytest.raises(InvalidPathError):
                await s.create(path)
            with pytest.raises(InvalidPathError):
                await s.get(path)
        with pytest.raises(InvalidPathError):
            await s.call(Api.SET_WATCHES, {"last_zxid": 0, "data": ["nope"]})
        with pytest.raises(BadArgumentsError):
            await s.create("/m", mode=77)
        with pytest.raises(BadArgumentsError):
            await s.call(Api.SET_DATA, {"path": "/", "data": b"", "version": -7})
        with pytest.raises(BadArgumentsError):
            await s.call(Api.REMOVE_WATCHES, {"path": "/", "kind": "everything"})
        with pytest.raises(DataTooLargeError):
            await s.create("/big", b"x" * 1025)
        await s.create("/fits", b"x" * 1024)
        with pytest.raises(DataTooLargeError):
            await s.call(Api.SET_DATA, {"path": "/fits", "data": b"x" * 1025})


async def test_oversized_frame_closes_only_that_connection(server: ServerProcess) -> None:
    async with bystander(server), open_raw(server) as raw:
        await raw.send_raw(
            encode_frame([int(Api.CREATE), 0, 1, {"path": "/h", "data": b"x" * 70000}])
        )
        reply = await raw.next()
        assert reply[:2] == [0, FRAME_TOO_LARGE] and "65536" in reply[2]
        assert await raw.next() is None


async def test_garbage_bytes(server: ServerProcess) -> None:
    async with bystander(server):
        async with open_raw(server, connect=False) as raw:
            # Random bytes read as a huge length: refused before anything is buffered.
            await raw.send_raw(b"\xde\xad\xbe\xef" + b"garbage" * 10)
            reply = await raw.next()
            assert reply[:2] == [0, FRAME_TOO_LARGE]
            assert await raw.next() is None
        async with open_raw(server, connect=False) as raw:
            await raw.send_raw(b"\x00\x00")  # half a length, then hang up
        async with open_raw(server) as raw:
            await still_works(raw)
