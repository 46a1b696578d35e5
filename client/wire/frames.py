"""Frame codec (sans-IO): 4-byte big-endian length + msgpack body."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from client.wire.errors import FrameTooLargeError, MalformedFrameError

DEFAULT_MAX_FRAME = 64 * 1024 * 1024
PUSH_XID = -1
_LEN = struct.Struct(">I")
_LEN_SIZE = _LEN.size
# Compact the receive buffer once this much of it has been consumed.
_COMPACT_AT = 1 << 20


def _no_ext(code: int, data: bytes) -> Any:
    raise MalformedFrameError(f"msgpack extension type {code} is not allowed")


def encode_frame(message: Any) -> bytes:
    """One frame holding ``message`` packed with msgpack."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return _LEN.pack(len(body)) + body


def encode_request(api: int, version: int, xid: int, payload: Any) -> bytes:
    return encode_frame((api, version, xid, payload))


def encode_response(xid: int, error_code: int, payload: Any) -> bytes:
    return encode_frame((xid, error_code, payload))


def encode_push(event: Any) -> bytes:
    return encode_frame((PUSH_XID, event))


class UndecodableFrame:
    """Stands in for a well-delimited frame whose body is not msgpack (resync mode)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"UndecodableFrame({self.reason!r})"


class FrameDecoder:
    """Splits a byte stream into decoded msgpack messages.

    ``feed`` returns every message completed by the new bytes. A length above
    ``max_frame`` raises FrameTooLargeError before anything is buffered for it
    (messages completed before it in the same read are returned first, and the
    error is raised by the next ``feed``); after it the stream is unusable.
    A body that is not msgpack raises MalformedFrameError, or, with
    ``resync=True`` (servers), becomes an UndecodableFrame in the output: the
    length prefix already marks where the next frame starts, so the stream
    goes on.
    """

    __slots__ = ("_buf", "_error", "_pos", "max_frame", "resync")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, *, resync: bool = False) -> None:
        if max_frame <= 0:
            raise ValueError("max_frame must be positive")
        self.max_frame = max_frame
        self.resync = resync
        self._buf = bytearray()
        self._pos = 0
        self._error: FrameTooLargeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        pos = self._pos
        end = len(buf)
        out: list[Any] = []
        max_frame = self.max_frame
        unpack_len = _LEN.unpack_from
        try:
            while end - pos >= _LEN_SIZE:
                (length,) = unpack_len(buf, pos)
                if length > max_frame:
                    self._error = FrameTooLargeError(
                        f"frame of {length} bytes exceeds the {max_frame} limit"
                    )
                    if out:
                        return out
                    raise self._error
                stop = pos + _LEN_SIZE + length
                if stop > end:
                    break
                start = pos + _LEN_SIZE
                pos = stop
                try:
                    out.append(self._decode(buf, start, stop))
                except MalformedFrameError as exc:
                    if not self.resync:
                        raise
                    out.append(UndecodableFrame(str(exc)))
        finally:
            if pos == end:
                buf.clear()
                pos = 0
            elif pos >= _COMPACT_AT:
                del buf[:pos]
                pos = 0
            self._pos = pos
        return out

    @staticmethod
    def _decode(buf: bytearray, start: int, stop: int) -> Any:
        if stop == start:
            raise MalformedFrameError("empty frame")
        try:
            with memoryview(buf) as view:
                return msgpack.unpackb(
                    view[start:stop], raw=False, strict_map_key=False, ext_hook=_no_ext
                )
        except MalformedFrameError:
            raise
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise MalformedFrameError(f"frame body is not valid msgpack: {exc}") from None


@dataclass(frozen=True, slots=True)
class Request:
    api: int
    version: int
    xid: int
    payload: Any


@dataclass(frozen=True, slots=True)
class Response:
    xid: int
    error_code: int
    payload: Any


@dataclass(frozen=True, slots=True)
class Push:
    event: Any


class InvalidMessage(MalformedFrameError):
    """A well-framed message of the wrong shape; ``xid`` is set when it could be read."""

    def __init__(self, message: str, xid: int | None = None) -> None:
        super().__init__(message)
        self.xid = xid


def _is_int(value: Any) -> bool:
    return type(value) is int


def parse_request(message: Any) -> Request:
    """Validate the ``[api, version, xid, payload]`` envelope of a request."""
    if not isinstance(message, list | tuple) or len(message) != 4:
        raise InvalidMessage("a request is [api, version, xid, payload]")
    api, version, xid, payload = message
    if not _is_int(xid):
        raise InvalidMessage("request xid must be an integer")
    if not _is_int(api) or not _is_int(version):
        raise InvalidMessage("request api and version must be integers", xid)
    return Request(api, version, xid, payload)


def parse_server_message(message: Any) -> Response | Push:
    """Validate a response ``[xid, code, payload]`` or a push ``[-1, event]``."""
    if isinstance(message, list | tuple):
        if len(message) == 2 and message[0] == PUSH_XID:
            return Push(message[1])
        if len(message) == 3 and _is_int(message[0]) and _is_int(message[1]):
            return Response(message[0], message[1], message[2])
    raise InvalidMessage("a server message is [xid, error_code, payload] or [-1, event]")
