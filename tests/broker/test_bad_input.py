"""Bad input gets its error code, and the broker keeps serving everyone else."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio

from client.protocol import (
    ApiKey,
    CorruptMessageError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidRequiredAcksError,
    InvalidTopicError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from client.wire import (
    InvalidRequestError,
    RpcChannel,
    UnsupportedApiError,
    UnsupportedVersionError,
    encode_request,
)
from client.wire.errors import FrameTooLargeServerError
from tests.broker.rpc import batch, connect, create_topic, fetch, produce, produce_request, values
from tests.procs import ServerProcess


@asynccontextmanager
async def bystander(address: str) -> AsyncIterator[RpcChannel]:
    """A well-behaved client whose topic must keep working throughout."""
    async with connect(address) as ch:
        if (await create_topic(ch, "bystander", 1))["error_code"] not in (
            0,
            TopicAlreadyExistsError.code,
        ):
            raise AssertionError("cannot create the bystander topic")
        yield ch


async def still_served(ch: RpcChannel) -> None:
    r = await produce(ch, "bystander", 0, batch(b"ok"), acks=-1)
    assert r["error_code"] == 0, r
    got = await fetch(ch, "bystander", 0, r["base_offset"], max_wait_ms=5000)
    assert values(got["records"]) == [(r["base_offset"], b"ok")]


async def test_bad_topic_names_partitions_and_batches(shared_broker: ServerProcess) -> None:
    async with bystander(shared_broker.address) as good, connect(shared_broker.address) as ch:
        for name in ("bad name", ".", "..", "x" * 250, "", "é"):
            r = await create_topic(ch, name, 1)
            assert r["error_code"] == InvalidTopicError.code, (name, r)
        meta = await ch.call(ApiKey.METADATA, 0, {"topics": ["bad/name"]})
        assert meta["topics"][0]["error_code"] == InvalidTopicError.code
        r = await produce(ch, "bad/name", 0, batch(b"x"))
        assert r["error_code"] == InvalidTopicError.code
        await still_served(good)

        assert (await create_topic(ch, "badinput", 2))["error_code"] == 0
        assert (await create_topic(ch, "badinput", 2))["error_code"] == TopicAlreadyExistsError.code
        r = await create_topic(ch, "zero-partitions", 0)
        assert r["error_code"] == InvalidPartitionsError.code
        rf = await ch.call(
            ApiKey.CREATE_TOPICS,
            0,
            {
                "topics": [
                    {"name": "rf3", "num_partitions": 1, "replication_factor": 3, "configs": {}}
                ],
                "timeout_ms": 1000,
            },
        )
        assert rf["topics"][0]["error_code"] == InvalidReplicationFactorError.code
        bad_config = await create_topic(ch, "badconfig", 1, {"retention.ms": "soon"})
        assert bad_config["error_code"] == InvalidConfigError.code
        unknown_config = await create_topic(ch, "badconfig", 1, {"no.such.key": "1"})
        assert unknown_config["error_code"] == InvalidConfigError.code

        assert (await produce(ch, "nosuchtopic", 0, batch(b"x")))["error_code"] == (
            UnknownTopicOrPartitionError.code
        )
        assert (await produce(ch, "badinput", 7, batch(b"x")))["error_code"] == (
            UnknownTopicOrPartitionError.code
        )
        assert (await fetch(ch, "badinput", 9, 0))["error_code"] == (
            UnknownTopicOrPartitionError.code
        )
        assert (await fetch(ch, "badinput", 0, 1000))["error_code"] == OffsetOutOfRangeError.code

        good_batch = bytearray(batch(b"payload" * 10))
        good_batch[-3] ^= 0xFF
        assert (await produce(ch, "badinput", 0, bytes(good_batch)))["error_code"] == (
            CorruptMessageError.code
        )
        for junk in (b"", b"garbage", b"\x00" * 61, batch(b"a")[:-1], batch(b"a") + b"xx"):
            r = await produce(ch, "badinput", 0, junk)
            assert r["error_code"] == CorruptMessageError.code, (junk, r)
        await still_served(good)

        assert (await create_topic(ch, "small", 1, {"max.message.bytes": "1024"}))[
            "error_code"
        ] == 0
        r = await produce(ch, "small", 0, batch(b"x" * 2000))
        assert r["error_code"] == MessageTooLargeError.code
        assert (await produce(ch, "small", 0, batch(b"x" * 100)))["error_code"] == 0
        # Nothing bad was appended anywhere.
        assert (await fetch(ch, "badinput", 0, 0))["high_watermark"] == 0
        await still_served(good)


async def test_wrong_types_apis_and_versions(shared_broker: ServerProcess) -> None:
    async with bystander(shared_broker.address) as good, connect(shared_broker.address) as ch:
        await create_topic(ch, "types", 1)
        wrong: list[tuple[int, int, Any, type[Exception]]] = [
            (ApiKey.PRODUCE, 0, {"acks": "1", "topics": []}, InvalidRequestError),
            (ApiKey.PRODUCE, 0, {"acks": 2, "topics": []}, InvalidRequiredAcksError),
            (ApiKey.PRODUCE, 0, [1, 2, 3], InvalidRequestError),
            (
                ApiKey.PRODUCE,
                0,
                {"acks": 1, "topics": [{"topic": 5, "partitions": []}]},
                InvalidRequestError,
            ),
            (ApiKey.PRODUCE, 0, produce_request("types", 0, "text", 1), InvalidRequestError),  # type: ignore[arg-type]
            (ApiKey.FETCH, 0, {"topics": "all"}, InvalidRequestError),
            (ApiKey.FETCH, 0, {"max_wait_ms": -5, "topics": []}, InvalidRequestError),
            (ApiKey.METADATA, 0, {"topics": "x"}, InvalidRequestError),
            (
                ApiKey.LIST_OFFSETS,
                0,
                {
                    "topics": [
                        {"topic": "types", "partitions": [{"partition": 0, "timestamp": "now"}]}
                    ]
                },
                InvalidRequestError,
            ),
            (ApiKey.INIT_PRODUCER_ID, 0, {"transactional_id": "tx"}, InvalidRequestError),
            (ApiKey.CREATE_TOPICS, 0, {"topics": 3}, InvalidRequestError),
            (99, 0, {}, UnsupportedApiError),
            (ApiKey.FETCH, 7, {}, UnsupportedVersionError),
            (ApiKey.METADATA, -1, {}, UnsupportedVersionError),
        ]
        for api, version, payload, error in wrong:
            with pytest.raises(error):
                await ch.call(api, version, payload)
            await still_served(good)


async def raw_roundtrip(address: str, data: bytes, expect: int, wait: float = 5.0) -> list[Any]:
    """Send raw bytes; the decoded frames received until ``expect`` of them arrived, the
    broker closed the connection, or ``wait`` seconds passed."""
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    out: list[Any] = []
    buf = b""
    async with stream:
        await stream.send_all(data)
        with trio.move_on_after(wait):
            while len(out) < expect:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    out.append("closed")
                    break
                buf += chunk
                while len(buf) >= 4:
                    (n,) = struct.unpack(">I", buf[:4])
                    if len(buf) < 4 + n:
                        break
                    out.append(msgpack.unpackb(buf[4 : 4 + n], raw=False))
                    buf = buf[4 + n :]
    return out


async def test_malformed_frames(shared_broker: ServerProcess) -> None:
    address = shared_broker.address
    async with bystander(address) as good:
        not_msgpack = struct.pack(">I", 3) + b"\xc1\xc1\xc1"
        follow_up = encode_request(ApiKey.API_VERSIONS, 0, 5, {})
        got = await raw_roundtrip(address, not_msgpack + follow_up, expect=2)
        assert got[0][1] == InvalidRequestError.code
        assert got[1][0] == 5 and got[1][1] == 0  # the stream goes on after a bad body
        partial = encode_request(ApiKey.METADATA, 0, 0, {})[:4]
        got = await raw_roundtrip(address, partial, expect=1, wait=0.5)
        assert got == []  # an incomplete frame is simply waited for
        not_a_request = struct.pack(">I", 2) + msgpack.packb([1])
        got = await raw_roundtrip(address, not_a_request, expect=1)
        assert got[0][1] == InvalidRequestError.code
        huge = struct.pack(">I", 0xFFFFFFF0)
        got = await raw_roundtrip(address, huge, expect=2)
        assert got[0][1] == FrameTooLargeServerError.code
        assert got[-1] == "closed"
        await still_served(good)
