"""End to end against a real broker process: produce, fetch, ordering, idempotence, long-poll."""

from __future__ import annotations

import trio

from client.protocol import ApiKey, OutOfOrderSequenceError
from client.records import stamp_batch, walk_batches
from tests.broker.rpc import (
    batch,
    connect,
    create_topic,
    fetch,
    fetch_request,
    produce,
    produce_request,
    values,
)
from tests.procs import ServerProcess


def split(records: bytes) -> list[bytes]:
    return [records[pos : pos + h.size] for pos, h in walk_batches(records)]


async def fetch_all(ch: object, topic: str, partition: int, upto: int) -> bytes:
    out = b""
    offset = 0
    while offset < upto:
        r = await fetch(ch, topic, partition, offset, max_wait_ms=5000)  # type: ignore[arg-type]
        assert r["error_code"] == 0, r
        assert r["records"], r
        out += r["records"]
        last = list(walk_batches(r["records"]))[-1][1]
        offset = last.next_offset
    return out


async def test_fetch_returns_the_produced_batches_byte_for_byte(
    shared_broker: ServerProcess,
) -> None:
    async with connect(shared_broker.address) as ch:
        assert (await create_topic(ch, "bytes", 2))["error_code"] == 0
        sent: dict[int, list[bytes]] = {0: [], 1: []}
        for i in range(20):
            p = i % 2
            b = batch(*[f"v{i}-{j}".encode() for j in range(i + 1)], key=b"k")
            r = await produce(ch, "bytes", p, b, acks=-1 if i % 3 else 1)
            assert r["error_code"] == 0, r
            sent[p].append(stamp_batch(b, r["base_offset"], 0))
        for p in (0, 1):
            expected = b"".join(sent[p])
            got = await fetch_all(ch, "bytes", p, sum(i + 1 for i in range(p, 20, 2)))
            assert got == expected
            assert split(got) == sent[p]


async def test_pipelined_produces_keep_their_order(shared_broker: ServerProcess) -> None:
    async with connect(shared_broker.address) as ch:
        await create_topic(ch, "order", 1)
        slots = [
            ch.send(ApiKey.PRODUCE, 0, produce_request("order", 0, batch(f"{i}".encode())))
            for i in range(300)
        ]
        for slot in slots:
            await slot.event.wait()
            assert slot.error is None
        bases = [s.payload["topics"][0]["partitions"][0]["base_offset"] for s in slots]
        assert bases == list(range(300))
        got = await fetch_all(ch, "order", 0, 300)
        assert [v for _, v in values(got)] == [f"{i}".encode() for i in range(300)]


async def test_retried_idempotent_produce_is_not_duplicated(shared_broker: ServerProcess) -> None:
    async with connect(shared_broker.address) as ch:
        await create_topic(ch, "idem", 1)
        ids = await ch.call(
            ApiKey.INIT_PRODUCER_ID,
            0,
            {"transactional_id": None, "producer_id": -1, "producer_epoch": -1},
        )
        pid, epoch = ids["producer_id"], ids["producer_epoch"]
        first = batch(b"a", b"b", pid=pid, epoch=epoch, seq=0)
        second = batch(b"c", pid=pid, epoch=epoch, seq=2)
        r1 = await produce(ch, "idem", 0, first, acks=-1)
        r2 = await produce(ch, "idem", 0, second, acks=-1)
        # The producer did not see the answers and retries both: same offsets, no copies.
        again1 = await produce(ch, "idem", 0, first, acks=-1)
        again2 = await produce(ch, "idem", 0, second, acks=-1)
        assert (r1["base_offset"], r2["base_offset"]) == (0, 2)
        assert (again1["error_code"], again1["base_offset"]) == (0, 0)
        assert (again2["error_code"], again2["base_offset"]) == (0, 2)
        gap = await produce(ch, "idem", 0, batch(b"x", pid=pid, epoch=epoch, seq=7), acks=-1)
        assert gap["error_code"] == OutOfOrderSequenceError.code
        r = await fetch(ch, "idem", 0, 0)
        assert values(r["records"]) == [(0, b"a"), (1, b"b"), (2, b"c")]
        assert r["high_watermark"] == 3


async def test_long_poll_returns_as_soon_as_a_record_arrives(shared_broker: ServerProcess) -> None:
    async with (
        connect(shared_broker.address) as consumer,
        connect(shared_broker.address) as producer,
    ):
        await create_topic(consumer, "poll", 1)
        result: dict[str, object] = {}

        async def poll() -> None:
            result.update(await fetch(consumer, "poll", 0, 0, max_wait_ms=10_000))

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.3)
            assert not result  # parked
            await produce(producer, "poll", 0, batch(b"hello"), acks=1)
        elapsed = trio.current_time() - start
        assert elapsed < 5.0, elapsed
        assert values(result["records"]) == [(0, b"hello")]  # type: ignore[arg-type]


async def test_produce_on_the_same_connection_passes_a_parked_fetch(
    shared_broker: ServerProcess,
) -> None:
    async with connect(shared_broker.address) as ch:
        await create_topic(ch, "passing", 1)
        parked = ch.send(ApiKey.FETCH, 0, fetch_request("passing", 0, 0, max_wait_ms=10_000))
        with trio.fail_after(5):
            r = await produce(ch, "passing", 0, batch(b"x"), acks=-1)
        assert r["error_code"] == 0
        with trio.fail_after(5):
            await parked.event.wait()
        part = parked.payload["topics"][0]["partitions"][0]
        assert values(part["records"]) == [(0, b"x")]


async def test_fetch_respects_byte_limits_but_always_makes_progress(
    shared_broker: ServerProcess,
) -> None:
    async with connect(shared_broker.address) as ch:
        await create_topic(ch, "limits", 1)
        big = batch(b"x" * 5000)
        for _ in range(4):
            await produce(ch, "limits", 0, big, acks=-1)
        one = await fetch(ch, "limits", 0, 0, partition_max_bytes=100)
        assert len(split(one["records"])) == 1  # larger than the limit, still returned
        two = await fetch(ch, "limits", 0, 0, partition_max_bytes=2 * len(big))
        assert len(split(two["records"])) == 2


async def test_acks_zero_gets_no_response_and_is_appended(shared_broker: ServerProcess) -> None:
    async with connect(shared_broker.address) as ch:
        await create_topic(ch, "acks0", 1)
        for i in range(10):
            ch.send_oneway(ApiKey.PRODUCE, 0, produce_request("acks0", 0, batch(b"%d" % i), 0))
        with trio.fail_after(10):
            r = await fetch(ch, "acks0", 0, 0, max_wait_ms=5000, min_bytes=1)
            got = values(r["records"])
            while len(got) < 10:
                r = await fetch(ch, "acks0", 0, len(got), max_wait_ms=5000)
                got += values(r["records"])
        assert [v for _, v in got] == [b"%d" % i for i in range(10)]


async def test_list_offsets(shared_broker: ServerProcess) -> None:
    async with connect(shared_broker.address) as ch:
        await create_topic(ch, "offsets", 1)
        await produce(ch, "offsets", 0, batch(b"a", ts=1_000), acks=-1)
        await produce(ch, "offsets", 0, batch(b"b", b"c", ts=2_000), acks=-1)
        parts = [{"partition": 0, "timestamp": t} for t in (-1, -2, 1_500, 9_999_999_999_999)]
        r = await ch.call(
            ApiKey.LIST_OFFSETS, 0, {"topics": [{"topic": "offsets", "partitions": parts}]}
        )
        got = [(x["offset"], x["timestamp"]) for x in r["topics"][0]["partitions"]]
        assert got == [(3, -1), (0, -1), (1, 2_001), (-1, -1)]
