"""Frame codec: round trips through any chunking; bad input raises ProtocolError."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.wire import (
    FrameDecoder,
    FrameTooLargeError,
    MalformedFrameError,
    ProtocolError,
    Push,
    Response,
    UndecodableFrame,
    encode_frame,
    encode_push,
    encode_request,
    encode_response,
    parse_request,
    parse_server_message,
)
from client.wire.frames import InvalidMessage

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.integers(-100, 100), inner, max_size=5)
    ),
    max_leaves=20,
)


def normalise(value: Any) -> Any:
    """msgpack turns tuples into lists; compare in that form."""
    if isinstance(value, tuple | list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(messages=st.lists(values, max_size=20), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_any_sequence_round_trips_through_any_chunking(
    messages: list[Any], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    decoder = FrameDecoder()
    received: list[Any] = []
    for piece in chunk(stream, cuts):
        received.extend(decoder.feed(piece))
    assert received == [normalise(m) for m in messages]
    assert decoder.buffered == 0


@given(st.integers(0, 2**31), st.integers(0, 2**31 - 1), st.integers(-1, 2**40), values)
def test_request_envelope_round_trips(api: int, version: int, xid: int, payload: Any) -> None:
    (message,) = FrameDecoder().feed(encode_request(api, version, xid, payload))
    request = parse_request(message)
    assert (request.api, request.version, request.xid) == (api, version, xid)
    assert request.payload == normalise(payload)


@given(st.integers(0, 2**40), st.integers(0, 1000), values)
def test_response_and_push_are_told_apart(xid: int, code: int, payload: Any) -> None:
    decoder = FrameDecoder()
    response, push = decoder.feed(encode_response(xid, code, payload) + encode_push(payload))
    assert parse_server_message(response) == Response(xid, code, normalise(payload))
    assert parse_server_message(push) == Push(normalise(payload))


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=10))
def test_random_bytes_raise_protocol_error_or_wait(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_frame=1024)
    try:
        for piece in chunk(data, cuts):
            decoder.feed(piece)
    except ProtocolError:
        return
    # Whatever was not rejected is either fully decoded or an incomplete frame waiting for more.
    assert decoder.buffered <= len(data)


def test_oversized_length_is_rejected_before_buffering() -> None:
    decoder = FrameDecoder(max_frame=1000)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(struct.pack(">I", 1001))
    with pytest.raises(FrameTooLargeError):
        FrameDecoder().feed(b"\xff\xff\xff\xff")


@given(st.lists(values, min_size=1, max_size=5), st.data())
def test_truncated_stream_never_yields_a_partial_message(
    messages: list[Any], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    cut = data.draw(st.integers(0, len(stream) - 1))
    decoder = FrameDecoder()
    received = decoder.feed(stream[:cut])
    assert received == [normalise(m) for m in messages[: len(received)]]
    assert len(received) < len(messages)


def test_body_that_is_not_msgpack_is_malformed() -> None:
    body = b"\xc1"  # never used by msgpack
    with pytest.raises(MalformedFrameError):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)


def test_trailing_bytes_inside_a_frame_are_malformed() -> None:
    body = msgpack.packb(1) + msgpack.packb(2)
    with pytest.raises(MalformedFrameError):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)


def test_empty_frame_and_extension_types_are_malformed() -> None:
    with pytest.raises(MalformedFrameError):
        FrameDecoder().feed(struct.pack(">I", 0))
    body = msgpack.packb(msgpack.ExtType(5, b"x"))
    with pytest.raises(MalformedFrameError):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)


@settings(max_examples=50)
@given(values)
def test_non_envelopes_are_invalid_messages(value: Any) -> None:
    shaped = isinstance(value, list) and len(value) == 4 and all(type(v) is int for v in value[:3])
    if shaped:
        return
    with pytest.raises(InvalidMessage):
        parse_request(value)


def test_invalid_message_keeps_a_readable_xid() -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_request(["api", 0, 7, {}])
    assert info.value.xid == 7


def test_resync_mode_skips_an_undecodable_body_and_goes_on() -> None:
    bad = b"\xc1"
    stream = encode_frame(1) + struct.pack(">I", len(bad)) + bad + encode_frame(2)
    decoder = FrameDecoder(resync=True)
    first, undecodable, second = decoder.feed(stream)
    assert (first, second) == (1, 2)
    assert isinstance(undecodable, UndecodableFrame) and "msgpack" in undecodable.reason
    with pytest.raises(MalformedFrameError):
        FrameDecoder().feed(stream)


def test_messages_before_an_oversized_frame_are_delivered_first() -> None:
    decoder = FrameDecoder(max_frame=100)
    stream = encode_frame("a") + encode_frame("b") + struct.pack(">I", 101)
    assert decoder.feed(stream) == ["a", "b"]
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"")
